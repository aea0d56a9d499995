#pragma once

// The recipe's host sections and their bindings. One place lists every host key, its doc string
// and valid range; the reader, the printer and `moelab check` use it.

#include <string>
#include <utility>
#include <vector>

#include "core/config/options.h"
#include "core/config/options_binding.h"

namespace moelab::core {

// Keys at the top level of a recipe (name, description, seed).
const OptionsBinding<Recipe>& recipe_top_binding();
const OptionsBinding<PluginsOptions>& plugins_binding();
const OptionsBinding<DataOptions>& data_binding();
// One [[data.source]] table.
const OptionsBinding<DataSourceOptions>& data_source_binding();
const OptionsBinding<ModelOptions>& model_binding();
const OptionsBinding<MoeOptions>& moe_binding();
const OptionsBinding<InitOptions>& init_binding();
const OptionsBinding<TrainOptions>& train_binding();
const OptionsBinding<StageOptions>& stage_binding();
const OptionsBinding<EvalOptions>& eval_binding();
const OptionsBinding<ParallelOptions>& parallel_binding();
// [eval.perturbation], and each perturbation of a comparison file.
const OptionsBinding<PerturbationOptions>& perturbation_binding();
// Problems of a perturbation that one key cannot see alone (strength against kind), as
// (key, message) pairs; keys are relative to the perturbation's table.
std::vector<std::pair<std::string, std::string>> check_perturbation(const PerturbationOptions& p);

// Tables whose keys the host owns, in printing order.
const std::vector<std::string>& host_section_names();
// Tables that select a plugin component ("plugin = ...") and carry its options.
const std::vector<std::string>& plugin_section_names();

}  // namespace moelab::core
