// Interop end to end on tiny trained runs: the Python checkpoint loader reads what the host wrote,
// and `moelab export --format hf` writes models whose loss, recomputed from the exported files
// alone by a NumPy forward pass written from Hugging Face's modeling conventions
// (hf_reference_loss.py), is moelab's own validation loss to 1e-5 relative.

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/assembly/loaded_recipe.h"
#include "core/assembly/trained_model.h"
#include "core/checkpoint/checkpoint.h"
#include "core/config/diagnostics.h"
#include "core/interop/hugging_face_export.h"
#include "core/model/model_assembly.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/plugin_error.h"
#include "core/train/expert_shards.h"
#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Two small runs that between them use every part of the mapping: an MoE model (Mixtral) with
// grouped-query attention and a tied head, and a dense one (Llama) with position interpolation
// (linear rope scaling) and its own head. A large initialisation makes every layer matter to the
// logits, so that a wrong mapping or setting would move the loss well beyond the tolerance.
constexpr char kMoeRecipe[] = R"(seed = 5
[data]
corpus = "corpus"
seq_len = 24
cache_dir = "cache"
[tokenizer]
plugin = "bytes"
[model]
layers = 2
d_model = 32
heads = 4
kv_heads = 2
d_ff = 64
ffn = "moe"
init_std = 0.3
[attention]
plugin = "rope"
base = 500.0
[moe]
experts = 4
d_ff_expert = 16
[router]
plugin = "topk"
k = 2
[train]
steps = 40
batch_size = 8
warmup_steps = 2
log_every = 8
eval_every = 0
[eval]
batch_size = 8
max_batches = 0
)";

constexpr char kDenseRecipe[] = R"(seed = 6
[data]
corpus = "corpus"
seq_len = 24
cache_dir = "cache"
[tokenizer]
plugin = "bytes"
[model]
layers = 2
d_model = 32
heads = 2
d_ff = 48
ffn = "dense"
tie_embeddings = false
init_std = 0.3
[attention]
plugin = "pi"
base = 2000.0
scale = 2.0
[train]
steps = 40
batch_size = 8
warmup_steps = 2
log_every = 8
eval_every = 0
[eval]
batch_size = 8
max_batches = 0
)";

// The rows of `moelab_checkpoint.py --json` against the C++ reader's tensors: the same names,
// shapes and dtype (float32), sums to 1e-9, and the same first values.
void expect_listed(const json& rows, const std::map<std::string, at::Tensor>& tensors) {
    ASSERT_EQ(rows.size(), tensors.size());
    for (const json& row : rows) {
        const std::string name = row["name"];
        SCOPED_TRACE(name);
        ASSERT_EQ(tensors.count(name), 1u);
        const at::Tensor& tensor = tensors.at(name);
        EXPECT_EQ(row["shape"].get<std::vector<std::int64_t>>(), tensor.sizes().vec());
        EXPECT_EQ(row["dtype"], "float32");
        const double sum = tensor.to(at::kDouble).sum().item<double>();
        EXPECT_NEAR(row["sum"].get<double>(), sum, 1e-9 * (1 + std::abs(sum)));
        const at::Tensor flat = tensor.reshape({-1});
        const auto first = row["first"].get<std::vector<double>>();
        ASSERT_EQ(first.size(), static_cast<std::size_t>(std::min<std::int64_t>(4, flat.numel())));
        for (std::size_t i = 0; i < first.size(); ++i) {
            EXPECT_EQ(first[i], flat[static_cast<std::int64_t>(i)].item<float>());
        }
    }
}

class Interop : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        corpus_ = new TestCorpus(3000);
        for (const auto& [name, text] : {std::pair{"moe", kMoeRecipe}, {"dense", kDenseRecipe}}) {
            std::ofstream(dir(std::string(name) + ".toml")) << text;
            const CommandResult run = moelab(fmt::format("run {}.toml --out {}", name, name));
            ASSERT_EQ(run.exit_code, 0) << run.err;
        }
    }
    static void TearDownTestSuite() {
        delete corpus_;
        corpus_ = nullptr;
    }

    static CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_->root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    static CommandResult python(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_->root().string()) + " && " +
                           shell_quote(MOELAB_PYTHON) + " " + arguments);
    }
    static fs::path dir(const std::string& name) { return corpus_->root() / name; }
    static std::string source(const std::string& path) {
        return shell_quote(std::string(MOELAB_SOURCE_DIR) + "/" + path);
    }

    // Runs `body` with the corpus directory as the working directory (recipes name ./corpus).
    template <class Body>
    static void in_corpus(Body&& body) {
        const fs::path cwd = fs::current_path();
        fs::current_path(corpus_->root());
        try {
            body();
        } catch (...) {
            fs::current_path(cwd);
            throw;
        }
        fs::current_path(cwd);
    }

    // moelab's validation loss of `run` over the whole split, and the split's tokens written to
    // `tokens_file` as int64.
    static double validation_loss(const std::string& run, const fs::path& tokens_file) {
        double loss = 0;
        in_corpus([&] {
            const auto loaded = core::load_and_resolve(run + "/recipe.resolved.toml", {});
            const fs::path step = core::resolve_checkpoint(run);
            const core::TrainedModel trained(loaded->resolved, run, step, core::DeviceChoice::kCpu,
                                             [](const std::string&) {});
            loss = trained.evaluate(core::Split::kValidation, 0).loss();
            const core::TokenView tokens =
                trained.dataset().sources().at(0).tokens(core::Split::kValidation);
            std::vector<std::int64_t> ids(static_cast<std::size_t>(tokens.size()));
            tokens.copy_to(0, tokens.size(), ids.data());
            std::ofstream out(tokens_file, std::ios::binary);
            out.write(reinterpret_cast<const char*>(ids.data()),
                      static_cast<std::streamsize>(ids.size() * sizeof(std::int64_t)));
        });
        return loss;
    }

    // The loss of `run`'s export (<run>-hf) from the exported files alone (hf_reference_loss.py)
    // is moelab's validation loss to 1e-5 relative.
    // Then, as a control that the comparison can fail, the same weights with `wrong` set in
    // config.json give a loss off by more than 1e-3.
    static void expect_reference_loss(const std::string& run, const std::string& layout,
                                      const json& wrong) {
        const double loss = validation_loss(run, dir(run + "-tokens.bin"));
        const double hf_loss = reference_loss(run + "-hf", run + "-tokens.bin");
        EXPECT_NEAR(hf_loss / loss, 1.0, 1e-5) << "moelab " << loss << ", reference " << hf_loss;
        std::cout << fmt::format(
            "[ figures  ] {} export: moelab {:.8f}, reference {:.8f}, relative difference "
            "{:.2e}\n",
            layout, loss, hf_loss, std::abs(hf_loss / loss - 1));

        fs::copy(dir(run + "-hf"), dir(run + "-wrong"));
        json config = json::parse(read_text(dir(run + "-wrong/config.json")));
        config.update(wrong);
        std::ofstream(dir(run + "-wrong/config.json")) << config.dump();
        const double wrong_loss = reference_loss(run + "-wrong", run + "-tokens.bin");
        EXPECT_GT(std::abs(wrong_loss / loss - 1), 1e-3) << wrong.dump() << ": " << wrong_loss;
    }

    static double reference_loss(const std::string& export_dir, const std::string& tokens) {
        const CommandResult reference = python(source("tests/interop/hf_reference_loss.py") + " " +
                                               export_dir + " " + tokens + " 24");
        EXPECT_EQ(reference.exit_code, 0) << reference.err;
        return reference.exit_code == 0 ? json::parse(reference.out)["loss"].get<double>() : 0.0;
    }

    static TestCorpus* corpus_;
};
TestCorpus* Interop::corpus_ = nullptr;

TEST_F(Interop, PythonLoaderReadsTheTensorsTheHostWrote) {
    const CommandResult listed =
        python(source("tools/python/moelab_checkpoint.py") + " moe --json");
    ASSERT_EQ(listed.exit_code, 0) << listed.err
                                   << "\n(the loader needs NumPy: tools/setup.sh installs "
                                      "python3-numpy)";
    const json out = json::parse(listed.out);
    const core::LoadedCheckpoint checkpoint =
        core::load_checkpoint(core::resolve_checkpoint(dir("moe")), core::CheckpointParts::kModel);
    EXPECT_EQ(out["step"], checkpoint.state.step);
    EXPECT_EQ(out["model"]["d_model"], 32);
    EXPECT_EQ(out["model"]["kv_heads"], 2);
    EXPECT_EQ(out["model"]["experts"], 4);
    EXPECT_EQ(out["model"]["vocab_size"], 257);
    EXPECT_EQ(out["model"]["end_of_document_id"], 256);
    expect_listed(out["tensors"], checkpoint.model);
    // The layout facts the loader reads from the metadata, and the fused [gate | up] split.
    const CommandResult facts =
        python("-c " + shell_quote("import sys; sys.path.insert(0, " + source("tools/python") +
                                   "); import moelab_checkpoint as mc; c = mc.load('moe'); "
                                   "g, u = c.swiglu('layer1.moe.block.experts'); "
                                   "print(c.tied_head, g.shape, c.recipe['router']['k'], "
                                   "repr(float(u[2, 3, 5])))"));
    ASSERT_EQ(facts.exit_code, 0) << facts.err;
    const std::string prefix = "True (4, 32, 16) 2 ";
    ASSERT_EQ(facts.out.rfind(prefix, 0), 0u) << facts.out;
    // Column 5 of the up half is column d_ff_expert + 5 of w_in.
    EXPECT_EQ(std::stod(facts.out.substr(prefix.size())),
              checkpoint.model.at("layer1.moe.block.experts.w_in")[2][3][16 + 5].item<float>());
}

// An expert-parallel checkpoint (Note [Expert shards]): two files, each with two experts of every
// stack, and an index. The loader puts the stacks back together: the same tensors as the whole
// checkpoint.
TEST_F(Interop, PythonLoaderPutsExpertShardsBackTogether) {
    const core::LoadedCheckpoint whole =
        core::load_checkpoint(core::resolve_checkpoint(dir("moe")), core::CheckpointParts::kModel);
    std::map<std::string, core::ExpertShard> first_half, second_half;
    std::vector<core::NamedTensor> first_tensors, second_tensors;
    for (const auto& [name, tensor] : whole.model) {
        if (name.find(".experts.") == std::string::npos) {
            first_tensors.push_back({name, tensor});
            continue;
        }
        first_half[name] = {0, 2, 4};
        second_half[name] = {2, 2, 4};
        first_tensors.push_back({name, tensor.narrow(0, 0, 2)});
        second_tensors.push_back({name, tensor.narrow(0, 2, 2)});
    }
    core::CheckpointContents contents;
    contents.shards.files = 2;
    contents.model =
        core::split_into_experts(first_tensors, first_half, contents.shards.model_stacks);
    std::map<std::string, std::int64_t> second_stacks;
    const std::vector<core::NamedTensor> second =
        core::split_into_experts(second_tensors, second_half, second_stacks);
    core::SaveHooks hooks;
    hooks.before_publish = [&](const fs::path& directory) {
        core::write_checkpoint_shard(directory, 2, 2, second, {});
    };
    core::save_checkpoint(dir("sharded/checkpoints"), whole.state.step, contents, 1, hooks);
    ASSERT_TRUE(fs::exists(dir("sharded/checkpoints") / fmt::format("step-{}", whole.state.step) /
                           "model-00002-of-00002.safetensors"));

    const CommandResult listed =
        python(source("tools/python/moelab_checkpoint.py") + " sharded/checkpoints --json");
    ASSERT_EQ(listed.exit_code, 0) << listed.err;
    const json out = json::parse(listed.out);
    expect_listed(out["tensors"], whole.model);
}

TEST_F(Interop, MixtralExportGivesMoelabsLoss) {
    const CommandResult exported = moelab("export moe --format hf -o moe-hf --max-shard-size 20KB");
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    EXPECT_NE(exported.out.find("as MixtralForCausalLM (4 experts, 2 per token)"),
              std::string::npos)
        << exported.out;
    const json config = json::parse(read_text(dir("moe-hf/config.json")));
    EXPECT_EQ(config["model_type"], "mixtral");
    EXPECT_EQ(config["num_key_value_heads"], 2);
    EXPECT_EQ(config["rope_theta"], 500.0);
    EXPECT_TRUE(config["rope_scaling"].is_null());
    EXPECT_EQ(config["tie_word_embeddings"], true);
    EXPECT_EQ(config["eos_token_id"], 256);
    // Shards above the limit, with Hugging Face's index.
    const json index = json::parse(read_text(dir("moe-hf/model.safetensors.index.json")));
    EXPECT_GT(index["weight_map"].size(), 30u);
    EXPECT_EQ(index["weight_map"]["model.layers.1.block_sparse_moe.experts.3.w2.weight"]
                  .get<std::string>()
                  .find("model-0000"),
              0u);
    EXPECT_FALSE(fs::exists(dir("moe-hf/model.safetensors")));
    EXPECT_TRUE(fs::exists(dir("moe-hf/tokenizer.json")));
    const json tokenizer_config = json::parse(read_text(dir("moe-hf/tokenizer_config.json")));
    EXPECT_EQ(tokenizer_config["tokenizer_class"], "PreTrainedTokenizerFast");
    EXPECT_EQ(tokenizer_config["eos_token"], "<|endoftext|>");
    EXPECT_EQ(tokenizer_config["add_bos_token"], false);

    expect_reference_loss("moe", "Mixtral", {{"num_experts_per_tok", 1}});
}

TEST_F(Interop, LlamaExportGivesMoelabsLoss) {
    // A trailing slash names the directory itself (the temporary sibling stays outside it).
    fs::create_directory(dir("dense-hf"));
    const CommandResult exported = moelab("export dense -o dense-hf/ --dtype float32");
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    EXPECT_NE(exported.out.find("as LlamaForCausalLM:"), std::string::npos) << exported.out;
    const json config = json::parse(read_text(dir("dense-hf/config.json")));
    EXPECT_EQ(config["model_type"], "llama");
    EXPECT_EQ(config["intermediate_size"], 48);
    EXPECT_EQ(config["rope_theta"], 2000.0);
    EXPECT_EQ(config["rope_scaling"]["rope_type"], "linear");
    EXPECT_EQ(config["rope_scaling"]["factor"], 2.0);
    EXPECT_EQ(config["tie_word_embeddings"], false);
    EXPECT_TRUE(fs::exists(dir("dense-hf/model.safetensors")));

    expect_reference_loss("dense", "Llama", {{"rope_theta", 100.0}});
}

// What has no equivalent is refused before anything is written, naming the key or component
// and why (exit 2); so is an output directory that holds something.
TEST_F(Interop, ExportRefusesWhatHasNoEquivalent) {
    const struct {
        const char* arguments;
        const char* message;
    } cases[] = {
        {"export moe -o x1 --set router.renormalize=false",
         "renormalize = false weights the selected experts by their softmax probabilities"},
        {"export moe -o x2 --set moe.capacity_factor=1.25",
         "moe.capacity_factor: capacity_factor = 1.25 drops tokens"},
        {"export moe -o x3 --set moe.interval=2",
         "moe.interval: MoE layers from layer 0 every 2 leave dense layers"},
        {"export moe -o corpus", "-o corpus: exists and is not an empty directory"},
        {"export moe -o ./", "-o ./: the working directory or one above it"},
        {"export moe -o x5 --max-shard-size 99999999999999GB", "--max-shard-size: expected a size"},
        {"export moe -o x4 --max-shard-size 5XB", "--max-shard-size: expected a size"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.arguments);
        const CommandResult out = moelab(c.arguments);
        EXPECT_EQ(out.exit_code, 2) << out.err;
        EXPECT_NE(out.err.find(c.message), std::string::npos) << out.err;
    }
    for (const char* name : {"x1", "x2", "x3", "x4", "x5"})
        EXPECT_FALSE(fs::exists(dir(name))) << name;
}

// A component without the feature is refused with the feature's name, before the model is built.
TEST_F(Interop, ComponentsWithoutTheFeatureAreRefused) {
    const struct {
        const char* section;      // of kMoeRecipe
        const char* replacement;  // another component there
        const char* message;
    } cases[] = {
        {"[attention]\nplugin = \"rope\"\nbase = 500.0\n",
         "[attention]\nplugin = \"harpe\"\nbases = \"uniform\"\n",
         "attention 'harpe' does not list the feature export.hf.llama_attention"},
        {"[router]\nplugin = \"topk\"\nk = 2\n", "[router]\nplugin = \"maskmoe\"\n",
         "router 'maskmoe' does not list the feature export.hf.mixtral_gate"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.replacement);
        std::string recipe = kMoeRecipe;
        const std::size_t at = recipe.find(c.section);
        ASSERT_NE(at, std::string::npos);
        recipe.replace(at, std::string(c.section).size(), c.replacement);
        std::ofstream(dir("refused.toml")) << recipe;
        in_corpus([&] {
            const auto loaded =
                core::load_and_resolve("refused.toml", {}, core::hugging_face_export_features());
            try {
                core::require_hugging_face_features(loaded->resolved);
                ADD_FAILURE() << "accepted";
            } catch (const core::ConfigError& error) {
                EXPECT_NE(std::string(error.what()).find(c.message), std::string::npos)
                    << error.what();
            }
        });
    }
}

// A router that lists the Mixtral feature but weights its one expert by its probability (Switch)
// is caught by the probe on the built model: a PluginError naming the plugin and layer.
TEST_F(Interop, AFalsePromiseIsCaughtOnTheBuiltModel) {
    std::string recipe = kMoeRecipe;
    const std::size_t at = recipe.find("[router]");
    recipe.replace(at, recipe.find("[train]") - at,
                   fmt::format("[router]\nplugin = \"false-mixtral-router\"\n[plugins]\n"
                               "search_path = [\"{}/false_mixtral_router\"]\n",
                               MOELAB_FIXTURE_DIR));
    std::ofstream(dir("false.toml")) << recipe;
    in_corpus([&] {
        const auto loaded =
            core::load_and_resolve("false.toml", {}, core::hugging_face_export_features());
        core::require_hugging_face_features(loaded->resolved);  // it lists the feature
        const auto tokenizer = core::load_tokenizer(
            *loaded->resolved.tokenizer, R"({"tokenizer": "bytes", "type": "bytes", "version": 1})",
            loaded->resolved.tokenizer_params);
        const auto model = core::assemble_model(
            loaded->resolved, core::DeviceChoice::kCpu, tokenizer->vocab_size(),
            [] { return at::Tensor(); }, core::hugging_face_export_features());
        try {
            core::hugging_face_model(loaded->resolved, *model, *tokenizer);
            ADD_FAILURE() << "accepted";
        } catch (const core::PluginError& error) {
            const std::string what = error.what();
            EXPECT_NE(what.find("plugin 'false-mixtral-router'"), std::string::npos) << what;
            EXPECT_NE(what.find("lists export.hf.mixtral_gate, but in layer 0 it routes a probe "
                                "token to experts ["),
                      std::string::npos)
                << what;
            // One expert per token: Mixtral's weight is its probability over itself.
            EXPECT_NE(what.find("where Mixtral's routing with the same weight gives experts ["),
                      std::string::npos)
                << what;
            const std::string tail = "with weights [1]";
            ASSERT_GE(what.size(), tail.size());
            EXPECT_EQ(what.substr(what.size() - tail.size()), tail) << what;
        }
    });
}

}  // namespace
}  // namespace moelab::tests
