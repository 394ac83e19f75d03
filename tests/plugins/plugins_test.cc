// The bundled plugins, end to end through the `trainbus` program: a run from
// a config in a temporary folder, then its event files read back with our
// reader (trainbus inspect's engine) and its console output checked.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/inspect.h"
#include "trainbus/tensorboard/proto/hparams.pb.h"
#include "trainbus/tensorboard/proto/plugins.pb.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A small, fast run: 300 samples, batch 50 -> 6 iterations per epoch.
std::string SmallConfig(const TempDir& dir, const std::string& plugins) {
  return dir.Write("run.json", absl::StrCat(R"({
    "name": "small", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 50, "num_threads": 1},
    "dataset": {"train_samples": 300, "val_samples": 60},
    "plugins": [)", plugins, "]}"));
}

// The session status the run's last _hparams_/session_end_info records, or -1.
int SessionStatus(const std::string& run_dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    if (e.path().filename().string().find("tfevents") != std::string::npos) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  int status = -1;
  for (const std::string& f : files) {
    auto contents = tensorboard::ReadEventFile(f);
    if (!contents.ok()) continue;
    for (const auto& e : contents->events) {
      for (const auto& v : e.summary().value()) {
        if (v.tag() != "_hparams_/session_end_info") continue;
        tensorboard::proto::hparams::HParamsPluginData data;
        if (data.ParseFromString(v.metadata().plugin_data().content())) {
          status = data.session_end_info().status();
        }
      }
    }
  }
  return status;
}

std::map<std::string, tensorboard::InspectTag> TagsOf(const tensorboard::InspectRun& run) {
  std::map<std::string, tensorboard::InspectTag> out;
  for (const auto& t : run.tags) out[t.tag] = t;
  return out;
}

TEST(TensorBoardPluginTest, WritesEveryKindTheRunProduces) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "tensorboard",
      "options": {"histograms_every_n": 5, "timing_every_n": 1, "images": 4}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("TensorBoard event files are in"),
                              HasSubstr("tensorboard --logdir")));

  auto report = tensorboard::InspectLogDir(dir.path() + "/runs");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 1u);
  EXPECT_FALSE(report->corrupt());
  EXPECT_EQ(report->truncated(), 0);
  EXPECT_EQ(report->runs[0].run, "small");
  auto tags = TagsOf(report->runs[0]);
  // 12 iterations, each once: the hparams records repeat no metric.
  EXPECT_EQ(tags["train/loss"].count, 12);
  EXPECT_EQ(tags["train/loss"].written, 12);
  EXPECT_EQ(tags["val/loss"].count, 2);
  EXPECT_EQ(tags["train/loss"].first_step, 0);
  EXPECT_EQ(tags["train/loss"].last_step, 11);
  EXPECT_EQ(tags["train/loss"].kind, "scalar");
  EXPECT_EQ(tags["lr/group0"].count, 12);
  EXPECT_FLOAT_EQ(*tags["lr/group0"].last_value, 0.05f);  // TensorBoard scalars are float32
  EXPECT_EQ(tags["time/samples_per_second"].count, 12);
  EXPECT_EQ(tags["val/accuracy"].first_step, 5);
  EXPECT_EQ(tags["epoch/mean_loss"].count, 2);
  EXPECT_EQ(tags["weights/0.weight"].kind, "histogram");
  EXPECT_EQ(tags["weights/0.weight"].count, 2);  // every 5th iteration: steps 4, 9
  EXPECT_EQ(tags["grads/0.weight"].count, 2);
  EXPECT_EQ(tags["inputs"].kind, "image");
  // The graph at the start; the video of the first iterations (12 of the 16
  // frames asked for: the run is shorter) at step 0; at the end, the last
  // validation's outputs for the Projector.
  EXPECT_EQ(tags["__run_graph__"].kind, "graph");
  EXPECT_EQ(tags["__run_graph__"].written, 1);
  EXPECT_EQ(tags["inputs/video"].kind, "video");
  EXPECT_EQ(tags["inputs/video"].first_step, 0);
  EXPECT_EQ(tags["val/outputs:00011"].kind, "embedding");
  const std::string projected = dir.path() + "/runs/small/00011/val%2foutputs/";
  std::vector<std::string> rows = absl::StrSplit(test_util::ReadFile(projected + "metadata.tsv"), '\n',
                                                 absl::SkipEmpty());
  ASSERT_EQ(rows.size(), 61u);  // the header and the 60 validation samples
  EXPECT_EQ(rows[0], "label\tpredicted\tcorrect");
  std::vector<std::string> points = absl::StrSplit(test_util::ReadFile(projected + "tensors.tsv"), '\n',
                                                   absl::SkipEmpty());
  ASSERT_EQ(points.size(), 60u);
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(points[0], '\t')).size(), 6u) << "6 classes";
  EXPECT_TRUE(fs::exists(projected + "sprite.png"));
  EXPECT_EQ(tags["run/config"].kind, "text");
  EXPECT_EQ(tags["custom_scalars__config__"].kind, "custom_scalars");
  EXPECT_EQ(tags["_hparams_/session_start_info"].kind, "hparams");
  EXPECT_EQ(tags["_hparams_/session_end_info"].kind, "hparams");
  // No experiment record: TensorBoard infers the table from every run's start
  // info, so a log root's runs show the union of their hparams.
  EXPECT_EQ(tags.count("_hparams_/experiment"), 0u);
  EXPECT_EQ(tags["_hparams_/session_start_info"].first_step, 0);
  EXPECT_EQ(tags["_hparams_/session_end_info"].first_step, 11);
  EXPECT_EQ(SessionStatus(dir.path() + "/runs/small"), tensorboard::proto::hparams::STATUS_SUCCESS);

  // And `trainbus inspect` agrees, exiting 0 on a healthy log directory.
  CommandResult inspect = RunTrainbus(absl::StrCat("inspect --json ", dir.path(), "/runs"));
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output, HasSubstr("\"corrupt\": false"));
}

TEST(TensorBoardPluginTest, BadOptionsAndUnwritableFolderAreClearErrors) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "tensorboard", "options": {"flush_secs": 0}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("plugin 'tensorboard'"));
  EXPECT_THAT(r.output, HasSubstr("option 'flush_secs' must be > 0"));
  r = RunTrainbus(absl::StrCat("train --config ",
                               SmallConfig(dir, R"({"name": "tensorboard", "options": {"embeddings": 2000}})")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("option 'embeddings' must be between 0 and 1024 samples"));

  // A log folder below a regular file cannot be created (even by root).
  std::string blocker = dir.Write("blocker", "a file, not a folder");
  std::string config2 = SmallConfig(
      dir, absl::StrCat(R"({"name": "tensorboard", "options": {"log_dir": ")", blocker, R"(/x"}})"));
  r = RunTrainbus(absl::StrCat("train --config ", config2));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'tensorboard' threw in OnTrainBegin at step 0"),
                              HasSubstr(blocker)));
}

// Resume: the first session's tail (steps >= the resume step) and its hparams
// records are cut from its file, and the second session's file starts with a
// SessionLog START at the resume step, so every reader shows each step once
// and the HParams dashboard shows the second session's values.
TEST(TensorBoardPluginTest, ResumedRunWritesThePurgeStepAndContinuesTheCurves) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "tensorboard", "options": {"layout": false}},
      {"name": "checkpoint", "options": {"every_n_epochs": 1}})");
  CommandResult first = RunTrainbus(absl::StrCat("train --config ", config, " --set trainer.max_iterations=10"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // Resume from the checkpoint of step 6 (the first epoch's end): the first
  // session's steps 6..9 are abandoned.
  CommandResult second = RunTrainbus(absl::StrCat("train --config ", config, " --resume ", dir.path(),
                                                  "/runs/small/checkpoints/step-00000006"));
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_THAT(second.output, HasSubstr("resuming at step 6"));
  EXPECT_THAT(second.output, HasSubstr("[tensorboard] resuming at step 6: removed"));

  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path() + "/runs/small")) {
    if (e.path().filename().string().find("tfevents") != std::string::npos) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 2u);
  auto resumed = tensorboard::ReadEventFile(files[1]);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_GE(resumed->events.size(), 2u);
  bool purge = false;
  int64_t first_loss_step = -1;
  for (const auto& e : resumed->events) {
    if (e.has_session_log() && e.session_log().status() == 1 && e.step() == 6) purge = true;
    for (const auto& v : e.summary().value()) {
      if (v.tag() == "train/loss" && first_loss_step < 0) first_loss_step = e.step();
    }
  }
  EXPECT_TRUE(purge) << "no SessionLog START at the purge step 6";
  EXPECT_EQ(first_loss_step, 6);  // the curve continues where the checkpoint left off
  // The first session's file keeps steps 0..5 and its own START at step 0
  // (TensorBoard's Python loader ignores a run's first START).
  auto original = tensorboard::ReadEventFile(files[0]);
  ASSERT_TRUE(original.ok());
  int64_t max_step = -1;
  bool first_start = false;
  for (const auto& e : original->events) {
    if (e.has_session_log() && e.session_log().status() == 1 && e.step() == 0) first_start = true;
    for (const auto& v : e.summary().value()) {
      max_step = std::max(max_step, e.step());
      EXPECT_NE(v.tag().rfind("_hparams_/", 0), 0u) << "the first session's hparams stayed";
    }
  }
  EXPECT_TRUE(first_start);
  EXPECT_EQ(max_step, 5);

  auto report = tensorboard::InspectLogDir(dir.path() + "/runs");
  ASSERT_TRUE(report.ok());
  auto tags = TagsOf(report->runs[0]);
  EXPECT_EQ(tags["train/loss"].first_step, 0);
  EXPECT_EQ(tags["train/loss"].last_step, 11);
  for (const char* tag : {"train/loss", "lr/group0", "val/loss"}) {
    EXPECT_EQ(tags[tag].count, tags[tag].count_legacy) << tag;
    EXPECT_EQ(tags[tag].count, tags[tag].written) << tag;
    EXPECT_EQ(tags[tag].duplicate_steps, 0) << tag;
  }
  EXPECT_EQ(tags["train/loss"].count, 12);
  EXPECT_EQ(tags["lr/group0"].count, 12);
  EXPECT_EQ(tags["_hparams_/session_start_info"].written, 1);
  EXPECT_EQ(tags["_hparams_/session_start_info"].first_step, 6);
  // The graph is the run's, written once by its first session; each
  // session's last validation is one Projector embedding.
  EXPECT_EQ(tags["__run_graph__"].written, 1);
  EXPECT_EQ(tags["val/outputs:00005"].kind, "embedding");
  EXPECT_EQ(tags["val/outputs:00011"].kind, "embedding");
}

// On a terminal (a pseudo-terminal from script(1)) the progress bar is drawn
// in place; a plugin's message must start a line of its own, never land on
// the bar's line ("ETA 00:00[checkpoint] saving ...").
// A resume whose plugin options differ from the checkpoint's says which,
// per plugin; unchanged plugins say nothing.
TEST(ResumeTest, ChangedPluginOptionsAreNamedOnResume) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "checkpoint", "options": {"every_n_epochs": 1}},
      {"name": "early_stopping", "options": {"monitor": "val/loss", "patience": 5}})");
  CommandResult first = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  CommandResult same = RunTrainbus(absl::StrCat("train --config ", config, " --set trainer.epochs=3 --resume ",
                                                dir.path(), "/runs/small/checkpoints"));
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_THAT(same.output, Not(HasSubstr("runs with other options")));
  CommandResult changed = RunTrainbus(absl::StrCat(
      "train --config ", config, " --set trainer.epochs=4 --set plugins.early_stopping.options.patience=7",
      " --set plugins.early_stopping.options.min_delta=0.01 --resume ", dir.path(), "/runs/small/checkpoints"));
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_THAT(changed.output,
              AllOf(HasSubstr("warning: plugin 'early_stopping' runs with other options than when checkpoint"),
                    HasSubstr("(min_delta 0 -> 0.01, patience 5 -> 7); its restored state was made under "
                              "the old ones"),
                    Not(HasSubstr("plugin 'checkpoint' runs with other options"))));
}

// --set adds a plugin the config does not name; csv then writes train/loss
// after every 4th iteration (steps 3, 7, 11 of 12).
TEST(CsvPluginTest, SetAddsThePluginAndEveryNCountsFromOne) {
  TempDir dir;
  std::string config = SmallConfig(dir, "");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config, " --set plugins.csv.options.every_n=4"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugins: csv"));
  std::vector<int64_t> steps;
  std::istringstream rows(test_util::ReadFile(dir.path() + "/runs/small/scalars.csv"));
  std::string line;
  while (std::getline(rows, line)) {
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    int64_t step = 0;
    if (cells.size() == 4 && cells[2] == "train/loss" && absl::SimpleAtoi(cells[1], &step)) {
      steps.push_back(step);
    }
  }
  EXPECT_THAT(steps, ::testing::ElementsAre(3, 7, 11));
}

// Another plugin's Custom Scalars category (health's) is written in the
// run's one layout beside the training charts, keeping only the regexes
// that match a tag the run wrote.
TEST(TensorBoardPluginTest, OtherPluginsLayoutCategoriesJoinTheRunsLayout) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "tensorboard"},
      {"name": "health", "options": {"gradients_every_n": 2}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<tensorboard::proto::Layout> layouts;
  for (const auto& entry : fs::directory_iterator(dir.path() + "/runs/small")) {
    if (entry.path().filename().string().find("tfevents") == std::string::npos) continue;
    auto contents = tensorboard::ReadEventFile(entry.path().string());
    ASSERT_TRUE(contents.ok());
    for (const auto& e : contents->events) {
      for (const auto& v : e.summary().value()) {
        if (v.tag() != "custom_scalars__config__") continue;
        tensorboard::proto::Layout layout;
        ASSERT_TRUE(layout.ParseFromString(v.tensor().string_val(0)));
        layouts.push_back(layout);
      }
    }
  }
  ASSERT_EQ(layouts.size(), 1u);  // one layout: TensorBoard shows a run's last one only
  std::map<std::string, std::vector<std::string>> charts;
  for (const auto& category : layouts[0].category()) {
    for (const auto& chart : category.chart()) {
      for (const auto& tag : chart.multiline().tag()) charts[category.title()].push_back(tag);
    }
  }
  EXPECT_THAT(charts["training"], ::testing::Contains("^train/loss$"));
  for (const char* resolving : {"^health/grad_norm/", "^health/update_ratio/", "^health/dead_gradients$",
                                "^health/overfit_gap$"}) {
    EXPECT_THAT(charts["health"], ::testing::Contains(resolving));
  }
  // No finding, no spike score yet (its window is 50): those regexes would show nothing.
  EXPECT_THAT(charts["health"], Not(::testing::Contains("^health/findings$")));
  EXPECT_THAT(charts["health"], Not(::testing::Contains("^health/loss_spike_score$")));
}

TEST(ProgressPluginTest, PluginMessagesNeverLandOnTheProgressBarsLine) {
  TempDir dir;
  // Saving the best val/loss logs from OnValidationEnd, while the bar of the
  // epoch is still on the screen.
  std::string config = SmallConfig(dir, R"({"name": "progress", "options": {"refresh_seconds": 0}},
      {"name": "checkpoint", "options": {"monitor": "val/loss", "every_n_epochs": 0}})");
  CommandResult r = test_util::RunCommand(absl::StrCat(
      "script -qec '", TRAINBUS_BIN, " train --config ", config, "' /dev/null"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_THAT(r.output, HasSubstr("\r"));  // the bar was drawn in place
  size_t at = 0;
  int messages = 0;
  while ((at = r.output.find("[checkpoint] saving", at)) != std::string::npos) {
    ++messages;
    const std::string before = r.output.substr(at >= 4 ? at - 4 : 0, std::min<size_t>(at, 4));
    EXPECT_TRUE(before == "\r\033[K" || before.back() == '\n')
        << "message glued to the line before it: ..." << r.output.substr(at >= 60 ? at - 60 : 0, 80);
    at += 1;
  }
  EXPECT_GE(messages, 2);
}

TEST(ProgressPluginTest, PrintsLinesAndEpochSummariesWhenNotATerminal) {
  TempDir dir;
  std::string config = SmallConfig(
      dir, R"({"name": "progress", "options": {"mode": "lines", "every_n_iterations": 3}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch 1/2 [===============>              ] 3/6 it "));
  EXPECT_THAT(r.output, HasSubstr("epoch 2/2 [==============================] 6/6 it "));
  EXPECT_THAT(r.output, HasSubstr("epoch 1/2 done: 6 it in "));
  EXPECT_THAT(r.output, HasSubstr(", val/loss "));
  EXPECT_THAT(r.output, HasSubstr(" lr 5.0e-02 ETA "));
  EXPECT_THAT(r.output, Not(HasSubstr("\r")));  // no in-place redraws in a log
}

TEST(ProgressPluginTest, RedrawsInPlaceOnATerminal) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "progress", "options": {"mode": "tty"}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\repoch 1/2 ["));
  EXPECT_THAT(r.output, HasSubstr("\033[K"));
}

}  // namespace
}  // namespace trainbus
