#include "core/report/chart_export.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "core/report/report_assets.h"
#include "core/system/atomic_file.h"

extern char** environ;

namespace moelab::core {

namespace fs = std::filesystem;

namespace {

// Runs a program found on PATH with its output discarded; the exit status, or -1 when it could
// not be started.
int run_quietly(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int started = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (started != 0) return -1;
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

std::vector<std::string> export_charts(const ReportPage& page, const fs::path& dir) {
    std::vector<std::string> problems;
    fs::create_directories(dir);
    std::vector<std::string> render = {"node", (report_assets_dir() / "render_svg.mjs").string()};
    for (const auto& [id, spec] : page.charts()) {
        const fs::path file = dir / (id + ".vl.json");
        write_file_atomically(file, spec.dump(2) + "\n");
        render.push_back(file.string());
        render.push_back((dir / (id + ".svg")).string());
    }
    if (page.charts().empty()) return problems;
    const int rendered = run_quietly(render);
    if (rendered != 0) {
        problems.push_back(rendered < 0 ? "node not found: charts were not rendered to SVG"
                                        : fmt::format("rendering the charts to SVG failed (node "
                                                      "{} exited with {})",
                                                      render[1], rendered));
        return problems;
    }
    for (const auto& [id, spec] : page.charts()) {
        const int status =
            run_quietly({"rsvg-convert", "--zoom=2", "--background-color=white", "-o",
                         (dir / (id + ".png")).string(), (dir / (id + ".svg")).string()});
        if (status != 0) {
            problems.push_back(status < 0 ? "rsvg-convert not found (Debian package "
                                            "librsvg2-bin): no PNG files"
                                          : fmt::format("rsvg-convert failed on {}.svg", id));
            break;
        }
    }
    return problems;
}

}  // namespace moelab::core
