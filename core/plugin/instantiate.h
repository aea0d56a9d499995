#pragma once

// Creating components. Each function calls the plugin's factory through call_plugin() (so a
// throwing factory becomes a PluginError naming the plugin), refuses a null result, and returns an
// object that keeps the plugin's library loaded for as long as it lives.

#include <filesystem>
#include <memory>
#include <string_view>

#include "core/plugin/registry.h"

namespace moelab::core {

std::shared_ptr<sdk::Router> instantiate_router(const RegisteredRouter& router,
                                                const sdk::MoeLayerContext& context,
                                                const sdk::Params& params);
std::shared_ptr<sdk::MoeBlock> instantiate_block(const RegisteredRouter& router,
                                                 const sdk::MoeLayerContext& context,
                                                 const sdk::Params& params);
std::shared_ptr<sdk::Attention> instantiate_attention(const RegisteredAttention& attention,
                                                      const sdk::AttentionContext& context,
                                                      const sdk::Params& params);
std::shared_ptr<sdk::Tokenizer> train_tokenizer(const RegisteredTokenizer& tokenizer,
                                                const sdk::TokenizerTrainingData& data,
                                                const sdk::Params& params);
std::shared_ptr<sdk::Tokenizer> load_tokenizer(const RegisteredTokenizer& tokenizer,
                                               std::string_view serialized,
                                               const sdk::Params& params);
// The same for text read from `file`: what the plugin finds wrong in it is said once, as a
// FileError naming the file ("FILE: <the plugin's reason> (read as a 'bpe' tokenizer by plugin
// 'bpe' (...))"), not wrapped in the plugin's and the operation's names first.
std::shared_ptr<sdk::Tokenizer> load_tokenizer(const RegisteredTokenizer& tokenizer,
                                               std::string_view serialized,
                                               const sdk::Params& params,
                                               const std::filesystem::path& file);

}  // namespace moelab::core
