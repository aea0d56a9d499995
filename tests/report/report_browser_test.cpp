// The run and comparison report pages in headless Chromium: every chart renders (the page sets
// data-charts="rendered" once vega-embed has drawn them all, as SVG), the console has no errors,
// and a screenshot of each page is saved for the docs (build/screenshots/). Skips with a message
// only where Chromium is missing; tools/setup.sh installs it.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "support/subprocess.h"
#include "test_corpus.h"

namespace moelab::tests {
namespace {

namespace fs = std::filesystem;

const char* kChromium = "/usr/bin/chromium";

class ReportPages : public ::testing::Test {
  protected:
    ReportPages() : corpus_(6000) {}

    CommandResult moelab(const std::string& arguments) {
        return run_command("cd " + shell_quote(corpus_.root().string()) + " && " +
                           shell_quote(MOELAB_BINARY) + " " + arguments);
    }
    fs::path dir(const std::string& name) const { return corpus_.root() / name; }

    struct Rendered {
        std::string dom;
        std::string console;  // Chromium's log of the page's console
    };

    // Loads `page` headless (offline flags: this machine has no network, and the page needs
    // none), waits for the charts, and returns the final DOM; also saves a screenshot.
    Rendered render(const fs::path& page, const fs::path& screenshot) {
        const std::string flags =
            " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
            " --disable-background-networking --disable-component-update --disable-sync"
            " --user-data-dir=" +
            shell_quote((corpus_.root() / "chromium-profile").string()) +
            " --virtual-time-budget=20000 --window-size=1200,2600";
        const std::string url = shell_quote("file://" + fs::absolute(page).string());
        const CommandResult dom = run_command(std::string(kChromium) + flags +
                                              " --enable-logging=stderr --v=0 --dump-dom " + url);
        fs::create_directories(screenshot.parent_path());
        run_command(std::string(kChromium) + flags +
                    " --screenshot=" + shell_quote(screenshot.string()) + " " + url);
        return {dom.out, dom.err};
    }

    static int count(const std::string& text, const std::string& what) {
        int n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
        return n;
    }

    static void expect_clean_console(const std::string& console) {
        // Chromium logs the page's console as "CONSOLE(line)" lines and uncaught exceptions with
        // "Uncaught"; an error of the page is either.
        std::istringstream lines(console);
        for (std::string line; std::getline(lines, line);) {
            EXPECT_EQ(line.find("Uncaught"), std::string::npos) << line;
            EXPECT_FALSE(line.find(":CONSOLE") != std::string::npos &&
                         line.find("ERROR") != std::string::npos)
                << line;
        }
    }

    TestCorpus corpus_;
};

TEST_F(ReportPages, RenderInHeadlessChromiumWithEveryChartAndNoConsoleErrors) {
    if (!fs::exists(kChromium)) {
        GTEST_SKIP() << "Chromium is not installed at " << kChromium
                     << " (tools/setup.sh installs the Debian package chromium)";
    }
    const std::string tiny =
        (fs::path(MOELAB_SOURCE_DIR) / "tests" / "recipes" / "tiny.toml").string();
    const CommandResult run =
        moelab("run " + shell_quote(tiny) + " --out a --set train.eval_every=4 --profile");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    ASSERT_TRUE(fs::exists(dir("a") / "report.html")) << "moelab run writes the report";
    const CommandResult report = moelab("report a");
    ASSERT_EQ(report.exit_code, 0) << report.err;
    for (const char* chart : {"loss", "learning_rate", "validation_ppl", "step_profile",
                              "expert_load", "routing_entropy", "dead_and_dropped"}) {
        EXPECT_TRUE(fs::exists(dir("a") / "report" / (std::string(chart) + ".svg"))) << chart;
        EXPECT_TRUE(fs::exists(dir("a") / "report" / (std::string(chart) + ".png"))) << chart;
    }

    const fs::path shots = fs::path(MOELAB_SCREENSHOT_DIR);
    const Rendered run_page = render(dir("a") / "report.html", shots / "run-report.png");
    EXPECT_NE(run_page.dom.find("data-charts=\"rendered\""), std::string::npos)
        << run_page.dom.substr(0, 2000) << run_page.console;
    EXPECT_NE(run_page.dom.find("data-chart-count=\"7\""), std::string::npos);
    EXPECT_EQ(count(run_page.dom, "class=\"marks\""), 7) << "one SVG per chart";
    EXPECT_NE(run_page.dom.find("Where a training step's time goes"), std::string::npos);
    EXPECT_NE(run_page.dom.find("Expert load over training"), std::string::npos);
    EXPECT_NE(run_page.dom.find("Resolved recipe"), std::string::npos);
    expect_clean_console(run_page.console);
    EXPECT_TRUE(fs::exists(shots / "run-report.png"));

    std::ofstream(dir("cmp.toml"))
        << "output = \"cmp\"\nmax_batches = 2\nseeds = [3, 4]\n"
           "set = [\"train.steps=6\"]\n"
           "[[run]]\nname = \"topk\"\nrecipe = \""
        << tiny
        << "\"\n"
           "[[run]]\nname = \"topk-k1\"\nrecipe = \""
        << tiny
        << "\"\n"
           "set = [\"router.k=1\"]\n"
           "[[perturbation]]\nkind = \"disable_top\"\nstrengths = [1, 2]\n"
           "[[perturbation]]\nkind = \"forced_balance\"\n";
    const CommandResult compare = moelab("compare cmp.toml");
    ASSERT_EQ(compare.exit_code, 0) << compare.err << compare.out;
    for (const char* chart :
         {"unperturbed", "disable_top_ppl", "disable_top_ratio", "forced_balance_ratio"}) {
        EXPECT_TRUE(fs::exists(dir("cmp") / "charts" / (std::string(chart) + ".png"))) << chart;
    }
    const Rendered compare_page =
        render(dir("cmp") / "report.html", shots / "comparison-report.png");
    EXPECT_NE(compare_page.dom.find("data-charts=\"rendered\""), std::string::npos)
        << compare_page.dom.substr(0, 2000) << compare_page.console;
    EXPECT_EQ(count(compare_page.dom, "class=\"marks\""), 4);
    EXPECT_NE(compare_page.dom.find("disable_top: ratio to unperturbed perplexity"),
              std::string::npos);
    expect_clean_console(compare_page.console);
    EXPECT_TRUE(fs::exists(shots / "comparison-report.png"));
}

}  // namespace
}  // namespace moelab::tests
