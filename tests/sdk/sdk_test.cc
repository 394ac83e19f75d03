// The installed package, from outside this repository, the way users use it.
//
// Setup (once for all cases): `cmake --install` this build into a temporary
// prefix; configure and build, out of tree with Ninja and only
// -DCMAKE_PREFIX_PATH=<prefix>, examples/embed (its with_trainbus program),
// examples/custom_plugin and header_check/ (every installed header compiled
// on its own). Then the cases
// run the results with the installed `trainbus` program.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "test_util.h"

namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::ReadFile;
using trainbus::test_util::RunCommand;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

// The environment of a user's shell: nothing of ours on any search path.
const char* kCleanEnv = "env -u CMAKE_PREFIX_PATH -u TRAINBUS_PLUGIN_PATH -u trainbus_DIR ";

class SdkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = (fs::temp_directory_path() / "trainbus_sdk_XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    fs::current_path(root_);  // nothing the programs write lands in the build tree
    prefix_ = root_ + "/prefix";
    embed_build_ = root_ + "/embed-build";
    plugin_build_ = root_ + "/plugin-build";
    headers_build_ = root_ + "/headers-build";
    standalone_build_ = root_ + "/standalone-build";

    auto step = [](const std::string& what, const std::string& command) {
      const auto start = std::chrono::steady_clock::now();
      CommandResult r = RunCommand(absl::StrCat(kCleanEnv, command));
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cout << "[sdk] " << what << ": " << (r.exit_code == 0 ? "ok" : "FAILED") << " in "
                << static_cast<int>(secs * 10) / 10.0 << " s" << std::endl;
      if (r.exit_code != 0 && setup_error_.empty()) {
        setup_error_ = absl::StrCat(what, " failed (exit ", r.exit_code, "):\n$ ", command, "\n",
                                    r.output);
      }
      return r;
    };
    step("install", absl::StrCat(SDK_CMAKE, " --install ", Quote(SDK_BUILD_DIR), " --prefix ",
                                 Quote(prefix_)));
    if (!setup_error_.empty()) return;
    // The out-of-tree projects use the generator (and its make program) the
    // outer build uses: Ninja, or CMake's default, Unix Makefiles.
    auto configure = [&](const std::string& src, const std::string& build,
                         const std::string& extra) {
      return absl::StrCat(
          SDK_CMAKE, " -S ", Quote(src), " -B ", Quote(build), " -G ", Quote(SDK_GENERATOR),
          " -DCMAKE_MAKE_PROGRAM=", Quote(SDK_MAKE_PROGRAM),
          " -DCMAKE_CXX_COMPILER=", Quote(SDK_CXX_COMPILER),
          " -DCMAKE_BUILD_TYPE=", SDK_BUILD_TYPE, " -DCMAKE_PREFIX_PATH=", Quote(prefix_),
          " -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON", extra);
    };
    auto build = [&](const std::string& dir, const std::string& target = "") {
      // Keep going: report every failing file (e.g. every header that does not compile).
      return absl::StrCat(SDK_CMAKE, " --build ", Quote(dir), " --parallel 2",
                          target.empty() ? "" : " --target " + target, " -- ",
                          std::string(SDK_GENERATOR) == "Ninja" ? "-k 0" : "-k");
    };
    const std::string examples = absl::StrCat(SDK_SOURCE_DIR, "/examples");
    step("configure custom_plugin",
         configure(examples + "/custom_plugin", plugin_build_, ""));
    step("build custom_plugin", build(plugin_build_));
    step("configure header_check",
         configure(SDK_HEADER_CHECK_DIR, headers_build_,
                   absl::StrCat(" -DTRAINBUS_INCLUDE_DIR=", Quote(prefix_ + "/include"))));
    headers_ = step("build header_check", build(headers_build_));
    step("configure embed", configure(examples + "/embed", embed_build_, ""));
    // Only the program that uses trainbus: plain_loop, the same loop with
    // LibTorch alone, is built (and run, below) in this build's tree.
    step("build embed", build(embed_build_, "with_trainbus"));
    // The writer alone: with CMake (the tensorboard_core component), and
    // with pkg-config and nothing but the compiler.
    step("configure standalone_writer",
         configure(examples + "/standalone_writer", standalone_build_, ""));
    step("build standalone_writer", build(standalone_build_));
    // The other generator too, on the smallest project: a user's IDE may pick either.
    const bool ninja = std::string(SDK_GENERATOR) == "Ninja";
    other_generator_build_ = root_ + "/standalone-other-generator";
    step(absl::StrCat("configure standalone_writer with ", ninja ? "Unix Makefiles" : "Ninja"),
         absl::StrCat(SDK_CMAKE, " -S ", Quote(examples + "/standalone_writer"), " -B ",
                      Quote(other_generator_build_), " -G ",
                      Quote(ninja ? "Unix Makefiles" : "Ninja"),
                      " -DCMAKE_CXX_COMPILER=", Quote(SDK_CXX_COMPILER),
                      " -DCMAKE_BUILD_TYPE=", SDK_BUILD_TYPE, " -DCMAKE_PREFIX_PATH=",
                      Quote(prefix_), " -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"));
    step("build standalone_writer with the other generator",
         absl::StrCat(SDK_CMAKE, " --build ", Quote(other_generator_build_), " --parallel 2"));
    step("build standalone_writer with pkg-config",
         absl::StrCat(SDK_CXX_COMPILER, " -O1 -o ", Quote(standalone_build_ + "/log_numbers_pc"),
                      " ", Quote(examples + "/standalone_writer/log_numbers.cc"),
                      " $(PKG_CONFIG_PATH=", Quote(prefix_ + "/lib/pkgconfig"),
                      " pkg-config --cflags --libs trainbus-tensorboard)"));
  }

  static void TearDownTestSuite() {
    if (std::getenv("TRAINBUS_SDK_KEEP") != nullptr) {
      std::cout << "[sdk] kept " << root_ << std::endl;
      return;
    }
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void SetUp() override {
    if (!setup_error_.empty()) FAIL() << setup_error_;
  }

  static std::string Trainbus() { return prefix_ + "/bin/trainbus"; }
  static std::string PluginLibrary() { return plugin_build_ + "/libtrainbus_grad_norm.so"; }

  static inline std::string root_, prefix_, embed_build_, plugin_build_, headers_build_,
      standalone_build_, other_generator_build_;
  static inline std::string setup_error_;
  static inline CommandResult headers_;
};

TEST_F(SdkTest, TheInstallHoldsTheProgramPluginsAndPackage) {
  for (const char* f : {"bin/trainbus", "lib/cmake/trainbus/trainbusConfig.cmake",
                        "lib/cmake/trainbus/TrainbusPlugin.cmake", "lib/pkgconfig/trainbus.pc",
                        "include/trainbus/session.h", "include/trainbus/plugin.h",
                        "include/trainbus/tensorboard/summary_writer.h",
                        "lib/trainbus/plugins/libtrainbus_tensorboard.so",
                        "lib/trainbus/plugins/libtrainbus_csv.so"}) {
    EXPECT_TRUE(fs::exists(fs::path(prefix_) / f)) << f;
  }
  // The example plugin is not a bundled plugin.
  EXPECT_FALSE(fs::exists(fs::path(prefix_) / "lib/trainbus/plugins/libtrainbus_grad_norm.so"));
}

// pkg-config finds the headers and libraries where the package was
// installed, not at the prefix the build was configured with.
TEST_F(SdkTest, PkgConfigPointsIntoTheInstallPrefix) {
  const std::string pc = absl::StrCat(kCleanEnv, "PKG_CONFIG_PATH=", Quote(prefix_ + "/lib/pkgconfig"),
                                      " pkg-config --variable=");
  for (const auto& [variable, dir] :
       std::vector<std::pair<std::string, std::string>>{{"includedir", "include"}, {"libdir", "lib"}}) {
    CommandResult r = RunCommand(absl::StrCat(pc, variable, " trainbus"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::string value = r.output.substr(0, r.output.find('\n'));
    EXPECT_EQ(fs::weakly_canonical(value), fs::weakly_canonical(fs::path(prefix_) / dir))
        << variable << " = " << value;
  }
}

TEST_F(SdkTest, OutOfTreeBuildsSeeOnlyTheInstalledPackage) {
  for (const std::string& build : {embed_build_, plugin_build_, headers_build_, standalone_build_}) {
    const std::string cache = ReadFile(build + "/CMakeCache.txt");
    EXPECT_THAT(cache, HasSubstr(absl::StrCat("trainbus_DIR:PATH=", prefix_))) << build;
    const std::string commands = ReadFile(build + "/compile_commands.json");
    ASSERT_FALSE(commands.empty()) << build;
    EXPECT_THAT(commands, AllOf(Not(HasSubstr(absl::StrCat(SDK_SOURCE_DIR, "/framework"))),
                                Not(HasSubstr(SDK_BUILD_DIR))))
        << build;
    EXPECT_THAT(commands, HasSubstr(absl::StrCat("-isystem ", prefix_, "/include"))) << build;
  }
}

// A program that only logs numbers links the LibTorch-free writer: built
// with CMake (find_package(trainbus COMPONENTS tensorboard_core), which does
// not even look for LibTorch) and with pkg-config, it loads no LibTorch
// library, and what it writes is a valid run.
TEST_F(SdkTest, TheStandaloneWriterNeedsNoLibTorch) {
  EXPECT_THAT(ReadFile(standalone_build_ + "/CMakeCache.txt"), Not(HasSubstr("Torch_DIR")));
  for (const std::string& program : {standalone_build_ + "/log_numbers",
                                     standalone_build_ + "/log_numbers_pc",
                                     other_generator_build_ + "/log_numbers"}) {
    SCOPED_TRACE(program);
    CommandResult ldd = RunCommand(absl::StrCat("ldd ", Quote(program)));
    ASSERT_EQ(ldd.exit_code, 0) << ldd.output;
    EXPECT_THAT(ldd.output, AllOf(HasSubstr("libtrainbus_tensorboard_core.so"),
                                  Not(HasSubstr("libtorch")), Not(HasSubstr("libc10")),
                                  Not(HasSubstr("not found"))));
    const fs::path p(program);
    const std::string logs = absl::StrCat(root_, "/standalone-runs/",
                                          p.parent_path().filename().string(), "-",
                                          p.filename().string());
    CommandResult r = RunCommand(absl::StrCat(kCleanEnv, Quote(program), " ", Quote(logs + "/run"), " 500"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("wrote 504 records to " + logs + "/run"));
    CommandResult inspect = RunCommand(absl::StrCat(Trainbus(), " inspect --json ", Quote(logs)));
    ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
    EXPECT_THAT(inspect.output, AllOf(HasSubstr("\"corrupt\": false"), HasSubstr("\"curve/sin\""),
                                      HasSubstr("\"curve/values\""), HasSubstr("\"gradient\""),
                                      HasSubstr("\"notes\"")));
  }
}

TEST_F(SdkTest, EveryInstalledHeaderCompilesOnItsOwn) {
  EXPECT_EQ(headers_.exit_code, 0) << headers_.output;
  std::cout << "[sdk] header_check: "
            << std::distance(fs::directory_iterator(headers_build_ + "/tu"),
                             fs::directory_iterator())
            << " headers" << std::endl;
}

TEST_F(SdkTest, EmbedExampleTrainsAndWritesEventFilesThatInspectReads) {
  CommandResult plain = RunCommand(SDK_PLAIN_LOOP);
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_THAT(plain.output, HasSubstr("epoch 1: train loss "));

  const std::string logs = root_ + "/embed-runs";
  CommandResult r =
      RunCommand(absl::StrCat(kCleanEnv, embed_build_, "/with_trainbus ", SDK_SOURCE_DIR,
                       "/examples/embed/embed_config.json ", logs));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("epoch 1: train loss "),
                              HasSubstr("[tensorboard] writing event files to " + logs + "/embed-xor")));

  CommandResult inspect = RunCommand(absl::StrCat(Trainbus(), " inspect --json ", logs));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output,
              AllOf(HasSubstr("\"corrupt\": false"), HasSubstr("\"train/loss\""),
                    HasSubstr("\"lr/group0\""), HasSubstr("\"val/loss\""),
                    HasSubstr("\"val/accuracy\""), HasSubstr("\"weights/fc1.weight\""),
                    HasSubstr("\"early_stopping/wait\""),   // a record early_stopping publishes
                    HasSubstr("\"val/pr_curve\"")));        // the program's own SummaryWriter
  // The schedule halved the lr after 4 epochs: 0.1 -> 0.05.
  EXPECT_THAT(inspect.output, HasSubstr("\"schedulers/lr/group0\""));
}

TEST_F(SdkTest, CustomPluginIsListedByTrainbusPlugins) {
  CommandResult r = RunCommand(absl::StrCat(kCleanEnv, "TRAINBUS_PLUGIN_PATH=", Quote(plugin_build_), " ",
                                     Trainbus(), " plugins"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("grad_norm 1.0.0 — Publishes the global gradient norm"),
                    HasSubstr("library: " + fs::canonical(PluginLibrary()).string()),
                    HasSubstr("hooks:   OnTrainBegin, OnIterationEnd, OnTrainEnd"),
                    HasSubstr("max_norm (double, default 0)"), HasSubstr("norm_type (any, default 2)"),
                    HasSubstr("every_n (int, default 1)"),
                    HasSubstr("csv 1.0.0"),           // bundled plugins, found without any variable
                    HasSubstr("tensorboard 1.0.0")));
  // Not found without the variable.
  CommandResult without = RunCommand(absl::StrCat(kCleanEnv, Trainbus(), " plugins"));
  EXPECT_EQ(without.exit_code, 0) << without.output;
  EXPECT_THAT(without.output, AllOf(HasSubstr("tensorboard 1.0.0"), Not(HasSubstr("grad_norm"))));
}

// The example's own config.json, with the library path, log folder and size
// overridden the way a user would on the command line.
std::string CustomPluginRun(const std::string& trainbus, const std::string& logs,
                            const std::string& library, const std::string& extra) {
  return absl::StrCat(kCleanEnv, trainbus, " train --config ", SDK_SOURCE_DIR,
                      "/examples/custom_plugin/config.json", " --set log_root=", logs,
                      " --set plugins.grad_norm.library=", library,
                      " --set plugins.progress.enabled=false --set trainer.epochs=1",
                      " --set dataset.train_samples=256 --set trainer.num_threads=1", extra);
}

TEST_F(SdkTest, CustomPluginTakesEffectInARun) {
  const std::string logs = root_ + "/plugin-runs";
  CommandResult r = RunCommand(CustomPluginRun(Trainbus(), logs, PluginLibrary(), ""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugins: grad_norm tensorboard csv"),
                              HasSubstr("finished: 4 iterations"),
                              HasSubstr("[grad_norm] 4 measurements; largest gradient norm ")));
  CommandResult inspect = RunCommand(absl::StrCat(Trainbus(), " inspect --json ", logs));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output, AllOf(HasSubstr("\"grad_norm/global\""),
                                    HasSubstr("\"grad_norm/per_parameter\"")));
  // The csv plugin wrote its records too: one per iteration.
  const std::string csv = ReadFile(logs + "/grad-norm-demo/scalars.csv");
  for (int step = 0; step < 4; ++step) {
    EXPECT_THAT(csv, HasSubstr(absl::StrCat(",", step, ",grad_norm/global,"))) << csv;
  }

  // A tiny max_norm: the plugin stops the run after its first iteration.
  const std::string logs2 = root_ + "/plugin-runs-stop";
  r = RunCommand(CustomPluginRun(Trainbus(), logs2, PluginLibrary(),
                          " --set plugins.grad_norm.options.max_norm=1e-9"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("finished: 1 iterations"),
                              HasSubstr("stopped: grad_norm: gradient norm "),
                              HasSubstr(" at step 0 (epoch 1) exceeds max_norm 1e-09")));
}

// The README's plugin, built from examples/custom_plugin/loss_printer.cc
// against the installed package, and added on the command line with --set.
TEST_F(SdkTest, TheReadmePluginBuildsAndLogsEveryNthIteration) {
  const std::string logs = root_ + "/loss-printer-runs";
  CommandResult r = RunCommand(CustomPluginRun(
      Trainbus(), logs, PluginLibrary(),
      absl::StrCat(" --set plugins.loss_printer.library=", Quote(plugin_build_ + "/libtrainbus_loss_printer.so"),
                   " --set plugins.loss_printer.options.every_n=3")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugins: grad_norm tensorboard csv loss_printer"));
  // 4 iterations, every 3rd: after iteration 3 only (counting from 0, steps
  // 0 and 3 would print).
  int lines = 0;
  for (size_t at = r.output.find("[loss_printer] loss "); at != std::string::npos;
       at = r.output.find("[loss_printer] loss ", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1) << r.output;
}

// The example's own tests (trainbus/testing.h with GoogleTest), built and run
// against the installed package.
TEST_F(SdkTest, TheExamplePluginsTestsPassAgainstTheInstall) {
  const std::string ctest = (fs::path(SDK_CMAKE).parent_path() / "ctest").string();
  CommandResult r = RunCommand(absl::StrCat(kCleanEnv, Quote(ctest), " --test-dir ", Quote(plugin_build_),
                                            " --output-on-failure"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("examples.grad_norm_test"), HasSubstr("100% tests passed")));
}

TEST_F(SdkTest, CustomPluginOptionsAreValidated) {
  const std::string logs = root_ + "/plugin-runs-bad";
  CommandResult r = RunCommand(CustomPluginRun(Trainbus(), logs, PluginLibrary(),
                                        " --set plugins.grad_norm.options.every_n=0"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'grad_norm'"),
                              HasSubstr("option 'every_n' must be >= 1, got 0")));
  r = RunCommand(CustomPluginRun(Trainbus(), logs, PluginLibrary(),
                          " --set plugins.grad_norm.options.norm_type=fro"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("option 'norm_type' must be a number > 0 or the string \"inf\""));
  r = RunCommand(CustomPluginRun(Trainbus(), logs, PluginLibrary(),
                          " --set plugins.grad_norm.options.max_norm=true"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'grad_norm'"), HasSubstr("max_norm")));
}

}  // namespace
