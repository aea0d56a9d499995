#include "core/conformance/kit.h"

#include <variant>

#include "core/conformance/attention_conformance.h"
#include "core/conformance/router_conformance.h"
#include "core/conformance/tokenizer_conformance.h"

namespace moelab::core {

namespace {

ConformanceReport test(const RegisteredRouter& router) { return test_router_component(router); }
ConformanceReport test(const RegisteredAttention& attention) {
    return test_attention_component(attention);
}
ConformanceReport test(const RegisteredTokenizer& tokenizer) {
    return test_tokenizer_component(tokenizer);
}

}  // namespace

ConformanceReport test_component(const RegisteredComponent& component) {
    return std::visit([](const auto& registered) { return test(registered); }, component);
}

}  // namespace moelab::core
