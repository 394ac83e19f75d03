// Every class of bad input, run through the trainbus program as a user would
// type it: each ends in one line that names what is wrong and what to do,
// with a non-zero exit (2 for a config, 1 for a run), or, for a mistake that
// cannot stop a run, in a warning. None ends in terminate(), a backtrace, a
// hang or memory that grows with the number typed: each runs under a 6 GB
// address-space limit and a 60 s timeout.
//
// The cases also write docs/BAD_INPUT.md, so the table there is what the
// program prints today; the last test fails when the file is out of date.
#include <cstdint>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "test_util.h"

namespace trainbus {
namespace {

using test_util::CommandResult;
using test_util::RunCommand;
using test_util::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

struct Case {
  std::string kind;     // the class of bad input, for the table
  std::string input;    // what the user gives, as shown in the table
  std::string args;     // trainbus arguments; {dir} is the case's folder
  int exit_code;        // 2: refused config, 1: failed run, 0: ran (a warning)
  std::string says;     // the substring the line must hold
};

// A small valid run: 100 samples, batch 50, 1 epoch (2 iterations).
std::string SmallConfig(const TempDir& dir, const std::string& plugins = "") {
  return dir.Write("run.json", absl::StrCat(R"({"name": "bad", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 1, "batch_size": 50, "num_threads": 1},
    "dataset": {"train_samples": 100, "val_samples": 20},
    "plugins": [)", plugins, "]}"));
}

const std::vector<Case>& Cases() {
  static const auto* const kCases = new std::vector<Case>{
      {"config file", "`--config` names a folder", "train --config {dir}/x.json", 2,
       "is a folder, not a config file"},
      {"config file", "`--config /dev/null` (or an empty file)", "train --config /dev/null", 2,
       "is empty; write {} to take every default"},
      {"config file", "a key given twice", "train --config {dir}/dup.json", 2,
       "trainer.epochs is given twice (the second time on line 2); keep one"},
      {"`--set`", "an unclosed list", "train --config {dir}/run.json --set 'model.hidden=[1,'", 2,
       "expects a list written like [64, 32]"},
      {"`--set`", "a value out of range: the `--set` is named, not the file",
       "train --config {dir}/run.json --set trainer.epochs=0", 2,
       "--set trainer.epochs=0: trainer.epochs must be between 1 and 2^62, got 0"},
      {"`--set`", "disabling a plugin the config does not have (a typo)",
       "train --config {dir}/run.json --set plugins.tensorbaord.enabled=false", 2,
       "the config has no plugin 'tensorbaord' to disable"},
      {"size", "a model too large to build",
       "train --config {dir}/run.json --set model.type=mlp --set 'model.hidden=[65536,65536]'", 1,
       "gives the mlp model 4.35e+09 parameters"},
      {"size", "a generated dataset too large for memory",
       "train --config {dir}/run.json --set dataset.train_samples=1e12", 2,
       "dataset.train_samples must be at most 1000000 for \"shapes\""},
      {"size", "a plan longer than 2^62 iterations", "plan --samples 4000 --batch-size 1 --epochs 4611686018427387904", 2,
       "the plan is longer than 2^62 iterations"},
      {"size", "a plugin queue of a trillion records",
       "train --config {dir}/run.json --set plugins.tensorboard.options.max_queue=1e12", 1,
       "option 'max_queue' must be between 2 and 1048576 records (allocated up front)"},
      {"size", "a batch schedule multiplying by 1e300 with no maximum (the run completes)",
       "train --config {dir}/run.json --set trainer.epochs=2 --set "
       "'plugins.batch_size_schedule.options.schedule={\"mode\": \"multiply\", \"factor\": 1e300}'",
       0, "batch size 50 -> 100 from the next epoch"},
      {"threads and processes", "`trainer.num_threads=100000`",
       "train --config {dir}/run.json --set trainer.num_threads=100000", 2,
       "trainer.num_threads must be between 1 and 1024"},
      {"threads and processes", "`--nproc 1000000`", "train --config {dir}/run.json --nproc 1000000", 2,
       "is more than 256 local processes"},
      {"data files", "an MNIST header whose sizes multiply past 2^64",
       "train --config {dir}/run.json --set dataset.type=mnist --set dataset.dir={dir}/mnist", 1,
       "need more than the 0 data bytes the file holds (corrupt or truncated)"},
      {"monitored metric", "`checkpoint` monitor with a typo (the run completes)",
       "train --config {dir}/checkpoint.json", 0,
       "option 'monitor' \"val/los\" never appeared in this run, so no best checkpoint was saved"},
      {"monitored metric", "`schedulers` ReduceLROnPlateau monitor with a typo (the run completes)",
       "train --config {dir}/plateau.json", 0,
       "ReduceLROnPlateau's monitor 'val/los' never appeared in this run, so its lr never changed"},
  };
  return *kCases;
}

// The case's folder: the files its arguments name.
void Prepare(const TempDir& dir) {
  std::filesystem::create_directories(dir.Sub("x.json"));
  SmallConfig(dir);
  dir.Write("dup.json", "{\"trainer\": {\"epochs\": 2,\n \"epochs\": 3}}");
  std::filesystem::create_directories(dir.Sub("mnist"));
  // IDX3 header: 3 dimensions of 0xFFFFFFFF each, no data.
  dir.Write("mnist/train-images-idx3-ubyte",
            std::string("\0\0\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16));
  dir.Write("mnist/train-labels-idx1-ubyte", std::string("\0\0\x08\x01\0\0\0\0", 8));
  dir.Write("mnist/t10k-images-idx3-ubyte", std::string("\0\0\x08\x03\0\0\0\0\0\0\0\x1c\0\0\0\x1c", 16));
  dir.Write("mnist/t10k-labels-idx1-ubyte", std::string("\0\0\x08\x01\0\0\0\0", 8));
  const std::string checkpoint = test_util::ReadFile(SmallConfig(dir, R"({"name": "checkpoint", "options": {"monitor": "val/los"}})"));
  dir.Write("checkpoint.json", checkpoint);
  const std::string plateau = test_util::ReadFile(SmallConfig(
      dir, R"({"name": "schedulers", "options": {"monitor": "val/los", "schedule": {"type": "ReduceLROnPlateau"}}})"));
  dir.Write("plateau.json", plateau);
  SmallConfig(dir);  // run.json: no plugins
}

// Runs the program under the limits: 6 GB of address space (not under a
// sanitizer, which reserves terabytes), 60 s.
CommandResult RunLimited(const std::string& args) {
#ifdef BAD_INPUT_NO_MEMORY_LIMIT
  const char* limit = "";
#else
  const char* limit = "ulimit -v 6000000; ";
#endif
  return RunCommand(absl::StrCat(limit, "timeout 60 ", TRAINBUS_BIN, " ", args));
}

CommandResult RunCase(const TempDir& dir, const Case& c) {
  return RunLimited(absl::StrReplaceAll(c.args, {{"{dir}", dir.path()}}));
}

// The line of `output` holding `says`, with the temporary folder as <dir>.
std::string LineWith(const std::string& output, const std::string& says, const TempDir& dir) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (line.find(says) != absl::string_view::npos) {
      // Nothing of this machine in the docs: folders and the CPU count.
      std::string out = absl::StrReplaceAll(line, {{dir.path(), "<dir>"}, {BUILD_DIR, "<build>"}});
      return std::regex_replace(out, std::regex("this machine has [0-9]+ CPUs"),
                                "this machine has <n> CPUs");
    }
  }
  return "";
}

class BadInputTest : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInputTest, EndsInOneClearLine) {
  const Case& c = Cases()[GetParam()];
  TempDir dir;
  Prepare(dir);
  CommandResult r = RunCase(dir, c);
  EXPECT_EQ(r.exit_code, c.exit_code) << c.input << "\n" << r.output;
  EXPECT_THAT(r.output, HasSubstr(c.says)) << c.input;
  EXPECT_THAT(r.output, Not(HasSubstr("terminate called")));
  EXPECT_THAT(r.output, Not(HasSubstr("Exception raised from")));  // a LibTorch backtrace
  EXPECT_THAT(r.output, Not(HasSubstr("std::bad_alloc")));
  if (c.exit_code != 0) {
    // Nothing after the failure points elsewhere.
    EXPECT_THAT(r.output, Not(HasSubstr("never appeared"))) << c.input;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInputTest, ::testing::Range<size_t>(0, Cases().size()));

// A run asked for 1e18 epochs but stopped by max_iterations: its plan and
// memory do not grow with the number typed.
TEST(BadInputSizeTest, AHugeEpochCountIsPlannedAtOnce) {
  TempDir dir;
  CommandResult r = RunLimited(absl::StrCat(
      "train --config ", SmallConfig(dir),
      " --set trainer.epochs=1e18 --set trainer.max_iterations=3"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("finished: 3 iterations"));
  CommandResult plan = RunLimited("plan --samples 4000 --batch-size 64 --epochs 1000000000000000");
  EXPECT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_THAT(plan.output, HasSubstr("epochs 1-1000000000000000: batch 64 (last batch 32), 63 iterations each"));
  EXPECT_THAT(plan.output, HasSubstr("total: 63000000000000000 iterations"));
}

// docs/BAD_INPUT.md is this table: the program's own words today.
TEST(BadInputDocTest, TheTableInTheDocsIsWhatTheProgramSays) {
  std::string doc =
      "# Bad input and what trainbus says\n\n"
      "Every class of bad input ends in one line that names what is wrong and what to do: exit 2\n"
      "for a config refused before anything runs, 1 for a run that fails, 0 with a warning for a\n"
      "mistake that cannot stop a run. None ends in `terminate`, a backtrace, a hang or memory that\n"
      "grows with a number typed. This table is written by `tests/bad_input/bad_input_test.cc` from\n"
      "the program's output (the test fails when it is out of date; rewrite it with\n"
      "`TRAINBUS_WRITE_DOCS=1 build/tests/bad_input/bad_input_test`). The bounds of every config\n"
      "field are in [CLI.md](CLI.md#bounds); bad plugin options are named by the plugin\n"
      "(`plugin 'x': option 'y' must be ...`).\n\n"
      "| class | bad input | exit | what trainbus says |\n|---|---|---|---|\n";
  for (const Case& c : Cases()) {
    TempDir dir;
    Prepare(dir);
    CommandResult r = RunCase(dir, c);
    std::string line = LineWith(r.output, c.says, dir);
    ASSERT_FALSE(line.empty()) << c.input << "\n" << r.output;
    absl::StrAppend(&doc, "| ", c.kind, " | ", c.input, " | ", r.exit_code, " | `",
                    absl::StrReplaceAll(line, {{"|", "\\|"}, {"`", "'"}}), "` |\n");
  }
  if (std::getenv("TRAINBUS_WRITE_DOCS") != nullptr) {
    std::ofstream(BAD_INPUT_DOC) << doc;
    return;
  }
  EXPECT_EQ(test_util::ReadFile(BAD_INPUT_DOC), doc)
      << "docs/BAD_INPUT.md is out of date: rewrite it with "
         "TRAINBUS_WRITE_DOCS=1 build/tests/bad_input/bad_input_test --gtest_filter='BadInputDoc*'";
}

}  // namespace
}  // namespace trainbus
