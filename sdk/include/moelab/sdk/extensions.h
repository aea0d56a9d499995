#pragma once

// Method-specific data crossing the plugin boundary without a struct field per method. A struct
// that carries data only some methods need (RoutingDecision, ExpertBankSpec) has an `extensions`
// member; each piece of data is a documented, typed key declared next to the struct it extends
// (routing.h decision_extension::, expert_bank.h bank_extension::). See Note [Extensions].
//
// Note [Extensions]
// ~~~~~~~~~~~~~~~~~
// A new key is an SDK minor version: the struct layouts stay as they are, so plugins built against
// older minors keep working. The host checks every key it receives against the keys of its own
// SDK version and refuses unknown ones with an error naming the plugin, the key and the host's
// SDK version: a plugin built against a newer minor that needs a newer key fails loudly on an older
// host, never silently. The table of keys, each with the version that introduced it, is in
// sdk/README.md ("Extensions").

#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <ATen/core/Tensor.h>

namespace moelab::sdk {

// The value types an extension may have. Frozen: adding one is an ABI change.
using ExtensionValue = std::variant<double, at::Tensor>;

// A documented key: its name and the type of its value.
template <class Value>
struct ExtensionKey {
    static_assert(std::is_same_v<Value, double> || std::is_same_v<Value, at::Tensor>,
                  "extension values are double or at::Tensor");
    std::string_view name;
};

class Extensions {
  public:
    // The value converts to the key's type: set(kActivationThreshold, 0) stores 0.0.
    template <class Value>
    void set(const ExtensionKey<Value>& key, std::type_identity_t<Value> value) {
        entries_.insert_or_assign(std::string(key.name), ExtensionValue(std::move(value)));
    }

    // The value under `key`, or null when it is absent or holds another type.
    template <class Value>
    const Value* find(const ExtensionKey<Value>& key) const {
        auto it = entries_.find(key.name);
        return it == entries_.end() ? nullptr : std::get_if<Value>(&it->second);
    }

    bool empty() const { return entries_.empty(); }
    const std::map<std::string, ExtensionValue, std::less<>>& entries() const { return entries_; }

  private:
    std::map<std::string, ExtensionValue, std::less<>> entries_;
};

}  // namespace moelab::sdk
