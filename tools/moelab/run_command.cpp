#include <fmt/format.h>

#include "cli_support.h"
#include "commands.h"
#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/train/init_from.h"
#include "core/train/model_state.h"
#include "core/train/trainer.h"

namespace moelab::cli {

int run_recipe(const RunArgs& args) {
    const auto loaded = core::load_and_resolve(args.recipe, args.overrides);
    // A resumed run does not read init.from again: its source may be gone by now.
    if (!args.resume) core::check_init_source(loaded->resolved.recipe);
    core::RunOptions options;
    options.out_dir = args.out_dir;
    options.resume = args.resume;
    options.stop_after_steps = args.stop_after_steps;
    options.profile = args.profile || args.profile_operators;
    options.profile_operators = args.profile_operators;
    options.rehash_stored_recipe = [](const std::filesystem::path& stored) {
        return core::recipe_hash(core::load_and_resolve(stored.string(), {})->resolved);
    };
    options.load_reference_model = [](const std::string& from, core::DeviceChoice device) {
        return core::load_trained_model(from, device, [](const std::string&) {});
    };
    const core::RunResult result = core::run_training(loaded->resolved, options);
    switch (result.outcome) {
        case core::RunOutcome::kCompleted:
            return kExitOk;
        case core::RunOutcome::kStopped:
            return kExitOk;
        case core::RunOutcome::kInterrupted:
            return 130;  // the shell's convention for SIGINT
    }
    return kExitOk;
}

}  // namespace moelab::cli
