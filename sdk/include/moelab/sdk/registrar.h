#pragma once

// The host object a plugin's register function adds its components to. Registration is explicit
// (no static initialisers): the loader calls the descriptor's register_components exactly once.

#include "moelab/sdk/attention.h"
#include "moelab/sdk/router_component.h"
#include "moelab/sdk/tokenizer.h"

namespace moelab::sdk {

class Registrar {
  public:
    virtual void add_router(RouterComponent component) = 0;
    virtual void add_attention(AttentionComponent component) = 0;
    virtual void add_tokenizer(TokenizerComponent component) = 0;

  protected:
    ~Registrar() = default;
};

}  // namespace moelab::sdk
