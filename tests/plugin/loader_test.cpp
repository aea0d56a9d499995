// Plugin loading against fixture libraries: the good path, every way a library can be refused,
// errors raised inside plugins, and the lifetime rule (objects keep their library loaded).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/plugin/fingerprint_check.h"
#include "core/plugin/instantiate.h"
#include "core/plugin/loader.h"
#include "core/plugin/plugin_error.h"
#include "moelab/sdk/fingerprint.h"
#include "moelab/sdk/version.h"
#include "support/subprocess.h"
#include "support/temp_dir.h"

namespace moelab::core {
namespace {

namespace fs = std::filesystem;

fs::path fixture_dir(const std::string& name) { return fs::path(MOELAB_FIXTURE_DIR) / name; }

sdk::MoeLayerContext small_context() {
    sdk::MoeLayerContext context;
    context.model.d_model = 4;
    context.model.experts = 3;
    return context;
}

TEST(PluginLoader, LoadsAWellFormedPlugin) {
    PluginRegistry registry = load_plugins({fixture_dir("good")});
    ASSERT_TRUE(registry.refusals().empty());
    ASSERT_EQ(registry.plugins().size(), 1u);
    EXPECT_EQ(registry.plugins()[0]->name, "good");
    EXPECT_EQ(registry.plugins()[0]->build_fingerprint, sdk::kBuildFingerprint);
    const RegisteredRouter* router = registry.find_router("fixture-router");
    ASSERT_NE(router, nullptr);
    EXPECT_EQ(router->component.params.find("answer")->doc, "a parameter with a default");
}

TEST(PluginLoader, CreatedObjectsKeepTheirLibraryLoaded) {
    std::shared_ptr<sdk::Router> router;
    {
        PluginRegistry registry = load_plugins({fixture_dir("good")});
        router = instantiate_router(*registry.find_router("fixture-router"), small_context(),
                                    sdk::Params());
    }  // the registry, and with it its handles on the library, is gone
    sdk::RouterInput input;
    input.hidden = at::ones({5, 4});
    sdk::UnperturbedSelection unperturbed;
    input.selection = &unperturbed;
    const sdk::RoutingDecision decision = router->route(input);  // code of the plugin library
    EXPECT_EQ(decision.expert_indices.sizes(), (at::IntArrayRef{5, 1}));
}

TEST(PluginLoader, RefusesAWrongAbiVersionNamingFileAndBothVersions) {
    PluginRegistry registry = load_plugins({fixture_dir("wrong_abi")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_TRUE(registry.plugins().empty());
    EXPECT_EQ(registry.find_router("wrong-abi-router"), nullptr);
    const PluginRefusal& refusal = registry.refusals()[0];
    EXPECT_EQ(refusal.file.filename(), "moelab-plugin-wrong-abi.so");
    EXPECT_NE(
        refusal.reason.find("plugin ABI version " + std::to_string(sdk::kPluginAbiVersion + 1000)),
        std::string::npos)
        << refusal.reason;
    EXPECT_NE(refusal.reason.find("host's ABI version " + std::to_string(sdk::kPluginAbiVersion)),
              std::string::npos)
        << refusal.reason;
}

TEST(PluginLoader, RefusesAWrongFingerprintNamingBothValues) {
    PluginRegistry registry = load_plugins({fixture_dir("wrong_fingerprint")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_TRUE(registry.plugins().empty());
    const std::string& reason = registry.refusals()[0].reason;
    EXPECT_NE(reason.find("torch=9.99"), std::string::npos) << reason;
    EXPECT_NE(reason.find(sdk::kBuildFingerprint), std::string::npos) << reason;
    EXPECT_NE(reason.find("torch: plugin 9.99, host"), std::string::npos) << reason;
    EXPECT_EQ(registry.refusals()[0].file.filename(), "moelab-plugin-wrong-fingerprint.so");
}

TEST(PluginLoader, RefusesAnotherSdkMajorVersionWithTheSameAbiNumber) {
    PluginRegistry registry = load_plugins({fixture_dir("wrong_sdk")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_TRUE(registry.plugins().empty());
    const std::string& reason = registry.refusals()[0].reason;
    EXPECT_NE(reason.find("plugin built against moelab SDK '3.1.0', but this moelab has SDK " +
                          std::string(sdk::kSdkVersion) + " (major versions must match)"),
              std::string::npos)
        << reason;
}

TEST(PluginLoader, RefusesANewerSdkMinorVersion) {
    PluginRegistry registry = load_plugins({fixture_dir("newer_sdk")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_TRUE(registry.plugins().empty());
    const std::string& reason = registry.refusals()[0].reason;
    EXPECT_NE(reason.find("newer than this moelab's SDK " + std::string(sdk::kSdkVersion)),
              std::string::npos)
        << reason;
}

TEST(PluginLoader, ThrowingFactoryBecomesAHostErrorNamingThePlugin) {
    PluginRegistry registry = load_plugins({fixture_dir("throwing_factory")});
    ASSERT_TRUE(registry.refusals().empty());
    const RegisteredRouter* router = registry.find_router("exploding-router");
    ASSERT_NE(router, nullptr);
    try {
        instantiate_router(*router, small_context(), sdk::Params());
        FAIL() << "expected a PluginError";
    } catch (const PluginError& error) {
        const std::string message = error.what();
        EXPECT_NE(message.find("plugin 'throwing'"), std::string::npos) << message;
        EXPECT_NE(message.find("moelab-plugin-throwing.so"), std::string::npos) << message;
        EXPECT_NE(message.find("creating router 'exploding-router'"), std::string::npos) << message;
        EXPECT_NE(message.find("factory exploded"), std::string::npos) << message;
    }
}

TEST(PluginLoader, ThrowingRegistrationRegistersNothing) {
    PluginRegistry registry = load_plugins({fixture_dir("throwing_register")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_EQ(registry.find_router("half-registered-router"), nullptr);
    const std::string& reason = registry.refusals()[0].reason;
    EXPECT_NE(reason.find("plugin 'throwing-register'"), std::string::npos) << reason;
    EXPECT_NE(reason.find("registration exploded"), std::string::npos) << reason;
}

TEST(PluginLoader, RefusesALibraryWithoutTheEntrySymbol) {
    PluginRegistry registry = load_plugins({fixture_dir("not_a_plugin")});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_NE(registry.refusals()[0].reason.find("is not a moelab plugin"), std::string::npos);
    EXPECT_NE(registry.refusals()[0].reason.find("moelab_plugin_entry"), std::string::npos);
}

TEST(PluginLoader, DuplicateComponentNamesNameBothFiles) {
    PluginRegistry registry = load_plugins({fixture_dir("good"), fixture_dir("duplicate")});
    ASSERT_EQ(registry.plugins().size(), 1u);
    ASSERT_EQ(registry.refusals().size(), 1u);
    const std::string& reason = registry.refusals()[0].reason;
    EXPECT_NE(reason.find("'fixture-router'"), std::string::npos) << reason;
    EXPECT_NE(reason.find("moelab-plugin-good.so"), std::string::npos) << reason;
    EXPECT_NE(reason.find("moelab-plugin-duplicate.so"), std::string::npos) << reason;
}

TEST(PluginLoader, SameDirectoryTwiceLoadsOnce) {
    PluginRegistry registry = load_plugins({fixture_dir("good"), fixture_dir("good")});
    EXPECT_EQ(registry.plugins().size(), 1u);
    EXPECT_TRUE(registry.refusals().empty());
}

TEST(PluginLoader, IgnoresFilesNotNamedLikePluginsAndMissingDirectories) {
    const tests::TempDir dir("moelab-loader-ignore");
    {
        std::ofstream(dir / "libsomething.so") << "not even an ELF file";
        std::ofstream(dir / "moelab-plugin-readme.txt") << "text";
    }
    PluginRegistry registry = load_plugins({dir.path(), dir / "does-not-exist"});
    EXPECT_TRUE(registry.plugins().empty());
    EXPECT_TRUE(registry.refusals().empty());
}

TEST(PluginLoader, CorruptLibraryIsRefusedNotFatal) {
    const tests::TempDir dir("moelab-loader-corrupt");
    { std::ofstream(dir / "moelab-plugin-corrupt.so") << "not an ELF file"; }
    PluginRegistry registry = load_plugins({dir.path()});
    ASSERT_EQ(registry.refusals().size(), 1u);
    EXPECT_NE(registry.refusals()[0].reason.find("cannot be loaded"), std::string::npos);
}

TEST(PluginLoader, FingerprintMismatchListsEveryDifferingField) {
    auto mismatch = fingerprint_mismatch("compiler=gcc-12;cxx11abi=0;torch=2.5;cuda=1",
                                         "compiler=gcc-12;cxx11abi=1;torch=1.13;cuda=0");
    ASSERT_TRUE(mismatch.has_value());
    EXPECT_NE(mismatch->find("cxx11abi: plugin 0, host 1"), std::string::npos) << *mismatch;
    EXPECT_NE(mismatch->find("torch: plugin 2.5, host 1.13"), std::string::npos) << *mismatch;
    EXPECT_NE(mismatch->find("cuda: plugin 1, host 0"), std::string::npos) << *mismatch;
    EXPECT_EQ(mismatch->find("compiler"), std::string::npos) << *mismatch;
    EXPECT_FALSE(fingerprint_mismatch("a=1;b=2", "a=1;b=2").has_value());
}

// The CLI over every broken fixture: a clear message, exit code 2, never a crash.
class CliWithFixture : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(CliWithFixture, ReportsAndExitsWithTwo) {
    const auto& [fixture, expected] = GetParam();
    const tests::CommandResult result = tests::run_command(
        "MOELAB_PLUGIN_PATH=" + tests::shell_quote(fixture_dir(fixture).string()) + " " +
        tests::shell_quote(MOELAB_BINARY) + " plugins");
    EXPECT_EQ(result.signal, 0) << result.err;
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_NE(result.err.find(expected), std::string::npos) << result.err;
    EXPECT_NE(result.err.find(fixture_dir(fixture).string()), std::string::npos) << result.err;
    EXPECT_NE(result.out.find("topk"), std::string::npos) << "built-in plugins still listed";
}

INSTANTIATE_TEST_SUITE_P(
    BrokenFixtures, CliWithFixture,
    ::testing::Values(
        std::pair<std::string, std::string>{"wrong_abi", "plugin ABI version"},
        std::pair<std::string, std::string>{"wrong_fingerprint", "torch=9.99"},
        std::pair<std::string, std::string>{"throwing_register", "registration exploded"},
        std::pair<std::string, std::string>{"not_a_plugin", "is not a moelab plugin"}));

TEST(CliWithFixture, ThrowingFactoryStillListsItsComponent) {
    // Listing does not call factories, so a plugin whose factory throws is listed normally.
    const tests::CommandResult listing = tests::run_command(
        "MOELAB_PLUGIN_PATH=" + tests::shell_quote(fixture_dir("throwing_factory").string()) + " " +
        tests::shell_quote(MOELAB_BINARY) + " plugins info exploding-router");
    EXPECT_EQ(listing.exit_code, 0) << listing.err;
    EXPECT_NE(listing.out.find("exploding-router (router)"), std::string::npos);
}

}  // namespace
}  // namespace moelab::core
