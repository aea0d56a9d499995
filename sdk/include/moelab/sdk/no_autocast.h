#pragma once

// Scope in which autocast is off: operations run in the dtype of their inputs. The host opens one
// around Router::route(); MoeBlock plugins open one around their own routing math so that router
// logits, softmax/sigmoid and selection stay in fp32 when the model trains in bfloat16.

#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace moelab::sdk {

class NoAutocast {
  public:
    NoAutocast() = default;
    NoAutocast(const NoAutocast&) = delete;
    NoAutocast& operator=(const NoAutocast&) = delete;

  private:
    c10::impl::ExcludeDispatchKeyGuard guard_{c10::autocast_dispatch_keyset};
};

}  // namespace moelab::sdk
