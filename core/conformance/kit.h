#pragma once

// The conformance kit of `moelab plugins test`, for a component of any kind: the router, attention
// or tokenizer checks, whichever the component is.

#include "core/conformance/conformance_report.h"
#include "core/plugin/registry.h"

namespace moelab::core {

ConformanceReport test_component(const RegisteredComponent& component);

}  // namespace moelab::core
