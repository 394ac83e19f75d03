// The plugin author's API: trainbus/testing.h, PluginState,
// PluginOptions::FromJson, EveryN; and the one "every N" rule, checked on
// each bundled plugin that has an every-N option, through FakeRun.
#include <cmath>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "test_util.h"
#include "trainbus/plugin.h"
#include "trainbus/plugin_loader.h"
#include "trainbus/plugin_state.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/testing.h"

namespace trainbus {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::CreatePlugin;
using testing::FakeRun;
using testing::FakeRunOptions;
using testing::FakeRunResult;
using test_util::TempDir;
namespace fs = std::filesystem;

// A plugin as a user writes one: an option, a record at the current step, a
// log line, a stop request and state kept with PluginState.
class RiseCounter : public Plugin {
 public:
  static PluginInfo Info() {
    return {"rise_counter", "1.0.0", "Counts iterations whose loss rose",
            {{"every_n", OptionType::kInt, "1", "Publish the count every N iterations"},
             {"max_rises", OptionType::kInt, "0", "Stop after this many rises (0: never)"}}};
  }
  static absl::StatusOr<std::unique_ptr<RiseCounter>> Create(const PluginContext& ctx) {
    const int64_t n = ctx.options.GetInt("every_n");
    if (n < 1) return absl::InvalidArgumentError(absl::StrCat("option 'every_n' must be >= 1, got ", n));
    auto p = std::make_unique<RiseCounter>();
    p->every_n_ = n;
    p->max_rises_ = ctx.options.GetInt("max_rises");
    p->prefix_ = ctx.instance() + "/";
    return p;
  }
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    if (e.loss > last_) ++rises_;
    last_ = e.loss;
    if (EveryN(every_n_, e.step)) {
      control.PublishScalar(prefix_ + "rises", static_cast<double>(rises_));
      control.Log(absl::StrCat("step ", e.step, ": ", rises_, " rises"));
    }
    if (max_rises_ > 0 && rises_ >= max_rises_ && !control.stop_requested()) {
      control.RequestStop(absl::StrCat(rises_, " rises"));
    }
  }
  absl::StatusOr<std::string> SaveState() override {
    PluginState state;
    state.SetInt("rises", rises_);
    state.SetDouble("last", last_);
    return state.Serialize();
  }
  absl::Status LoadState(absl::string_view bytes) override {
    absl::StatusOr<PluginState> state = PluginState::Parse(bytes);
    if (!state.ok()) return state.status();
    if (absl::Status s = state->GetInt("rises", &rises_); !s.ok()) return s;
    return state->GetDouble("last", &last_);
  }
  int64_t rises() const { return rises_; }

 private:
  int64_t every_n_ = 1, max_rises_ = 0, rises_ = 0;
  double last_ = std::numeric_limits<double>::infinity();
  std::string prefix_;
};

// Loss 1, 2, 1, 2, ...: it rises at every odd step.
double Sawtooth(int64_t step) { return step % 2 == 0 ? 1.0 : 2.0; }

TEST(EveryNTest, CountsFromOneSoTheNthIterationActs) {
  std::vector<int64_t> acted;
  for (int64_t step = 0; step < 16; ++step) {
    if (EveryN(5, step)) acted.push_back(step);
  }
  EXPECT_THAT(acted, ElementsAre(4, 9, 14));
  EXPECT_TRUE(EveryN(1, 0));
  EXPECT_FALSE(EveryN(0, 4));   // 0: never
  EXPECT_FALSE(EveryN(-5, 4));
}

TEST(PluginStateTest, EveryValueComesBackExactly) {
  PluginState state;
  const std::vector<double> doubles = {0.1, -0.0, 1e-310, 1.0 / 3.0, 6.02214076e23,
                                       std::numeric_limits<double>::infinity(),
                                       -std::numeric_limits<double>::infinity(),
                                       std::numeric_limits<double>::max()};
  for (size_t i = 0; i < doubles.size(); ++i) state.SetDouble(absl::StrCat("d", i), doubles[i]);
  state.SetDouble("nan", std::nan(""));
  state.SetInt("min", std::numeric_limits<int64_t>::min());
  state.SetInt("max", std::numeric_limits<int64_t>::max());
  state.SetBool("yes", true);
  state.SetBool("no", false);
  const std::string odd("line\nbreak, tab\t, quote \" and a NUL \0 byte", 40);
  state.SetString("text", odd);
  state.SetString("empty", "");
  absl::StatusOr<std::string> bytes = state.Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  absl::StatusOr<PluginState> back = PluginState::Parse(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), state.size());
  for (size_t i = 0; i < doubles.size(); ++i) {
    double d = 0;
    ASSERT_TRUE(back->GetDouble(absl::StrCat("d", i), &d).ok());
    EXPECT_EQ(std::memcmp(&d, &doubles[i], sizeof d), 0) << "d" << i << " " << doubles[i];
  }
  double nan = 0;
  ASSERT_TRUE(back->GetDouble("nan", &nan).ok());
  EXPECT_TRUE(std::isnan(nan));
  int64_t min = 0, max = 0;
  ASSERT_TRUE(back->GetInt("min", &min).ok());
  ASSERT_TRUE(back->GetInt("max", &max).ok());
  EXPECT_EQ(min, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(max, std::numeric_limits<int64_t>::max());
  bool yes = false, no = true;
  ASSERT_TRUE(back->GetBool("yes", &yes).ok());
  ASSERT_TRUE(back->GetBool("no", &no).ok());
  EXPECT_TRUE(yes);
  EXPECT_FALSE(no);
  std::string text, empty = "x";
  ASSERT_TRUE(back->GetString("text", &text).ok());
  ASSERT_TRUE(back->GetString("empty", &empty).ok());
  EXPECT_EQ(text, odd);
  EXPECT_EQ(empty, "");
  // The same state gives the same bytes, whatever order it was set in.
  EXPECT_EQ(*back->Serialize(), *bytes);
}

TEST(PluginStateTest, MistakesAreNamed) {
  PluginState state;
  state.SetInt("count", 3);
  double d = 7;
  absl::Status missing = state.GetDouble("best", &d);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("no value 'best'"));
  absl::Status wrong_type = state.GetDouble("count", &d);
  EXPECT_EQ(wrong_type.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(wrong_type.message()), HasSubstr("value 'count' holds an int, not a double"));
  EXPECT_EQ(d, 7);  // left as it was

  state.SetInt("has space", 1);
  absl::StatusOr<std::string> bytes = state.Serialize();
  ASSERT_FALSE(bytes.ok());
  EXPECT_THAT(std::string(bytes.status().message()), HasSubstr("key 'has space' is not 1-64 characters"));

  absl::StatusOr<PluginState> foreign = PluginState::Parse("measured=3\nmax=0.5\n");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(foreign.status().message()), HasSubstr("was not written by trainbus::PluginState"));
  absl::StatusOr<PluginState> torn = PluginState::Parse("trainbus-plugin-state 1\nbest d 0.5\nwait i x\n");
  ASSERT_FALSE(torn.ok());
  EXPECT_THAT(std::string(torn.status().message()), HasSubstr("line 3 is not 'key type value': 'wait i x'"));
}

TEST(PluginOptionsTest, FromJsonValidatesLikeTheLoader) {
  const std::vector<OptionSpec> specs = RiseCounter::Info().options;
  absl::StatusOr<PluginOptions> given = PluginOptions::FromJson(specs, R"({"every_n": 5})", "plugin 'rise_counter'");
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->GetInt("every_n"), 5);
  EXPECT_EQ(given->GetInt("max_rises"), 0);  // the default
  EXPECT_TRUE(given->IsSet("every_n"));
  EXPECT_TRUE(PluginOptions::FromJson(specs, "", "x").ok());  // nothing given: defaults

  absl::StatusOr<PluginOptions> broken = PluginOptions::FromJson(specs, R"({"every_n": )", "plugin 'rise_counter'");
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(std::string(broken.status().message()),
              StartsWith("plugin 'rise_counter': the options are not a JSON object"));
  absl::StatusOr<PluginOptions> unknown = PluginOptions::FromJson(specs, R"({"every": 5})", "plugin 'rise_counter'");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown option 'every'"));
}

TEST(CreatePluginTest, GivesTheErrorsAUserWouldSee) {
  absl::StatusOr<std::unique_ptr<RiseCounter>> made = CreatePlugin<RiseCounter>(R"({"every_n": 0})");
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(std::string(made.status().message()),
            "plugin 'rise_counter': option 'every_n' must be >= 1, got 0");
  made = CreatePlugin<RiseCounter>(R"({"every_n": "5"})");
  ASSERT_FALSE(made.ok());
  EXPECT_THAT(std::string(made.status().message()), HasSubstr("every_n"));
  made = CreatePlugin<RiseCounter>();
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->hooks(), kHookIterationEnd | kClosesNothing);  // as TRAINBUS_PLUGIN sets it
}

TEST(FakeRunTest, DrivesTheWholeLifecycleAndRecordsWhatPluginsDid) {
  auto plugin = CreatePlugin<RiseCounter>(R"({"every_n": 5})");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  FakeRunOptions options;
  options.epochs = 2;
  options.iterations_per_epoch = 10;
  FakeRun run(options);
  ASSERT_TRUE(run.Add(plugin->get(), "rise_counter").ok());
  run.set_loss(Sawtooth);
  int validations = 0;
  run.set_validation([&](int64_t epoch) {
    ++validations;
    return Metrics{{"val/loss", 1.0 / (epoch + 1)}};
  });
  FakeRunResult result = run.Run();
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.reason, EndReason::kCompleted);
  EXPECT_EQ(result.last_step, 19);
  EXPECT_EQ(result.iterations_run, 20);
  EXPECT_EQ(validations, 2);

  const testing::RecordingPlugin& seen = run.recorder();
  EXPECT_THAT(seen.Steps("rise_counter/rises"), ElementsAre(4, 9, 14, 19));
  EXPECT_THAT(seen.Scalars("rise_counter/rises"), ElementsAre(2, 5, 7, 10));
  EXPECT_THAT(result.log, ElementsAre("[rise_counter] step 4: 2 rises", "[rise_counter] step 9: 5 rises",
                                      "[rise_counter] step 14: 7 rises", "[rise_counter] step 19: 10 rises"));
  EXPECT_EQ(seen.Count("Setup"), 1);
  EXPECT_EQ(seen.Count("TrainBegin"), 1);
  EXPECT_EQ(seen.Count("EpochBegin"), 2);
  EXPECT_EQ(seen.Count("IterationEnd"), 20);
  EXPECT_EQ(seen.Count("BeforeOptimizerStep"), 20);
  EXPECT_EQ(seen.Count("ValidationEnd"), 2);
  EXPECT_EQ(seen.Count("EpochEnd"), 2);
  EXPECT_EQ(seen.Count("Abort"), 0);
  EXPECT_EQ(seen.calls().back(), (testing::HookCall{"TrainEnd", 19}));

  FakeRunResult again = run.Run();
  EXPECT_THAT(std::string(again.status.message()), HasSubstr("runs once"));
}

TEST(FakeRunTest, AStopRequestEndsTheRunAfterThatIteration) {
  auto plugin = CreatePlugin<RiseCounter>(R"({"max_rises": 3})");
  ASSERT_TRUE(plugin.ok());
  FakeRunOptions options;
  options.epochs = 3;
  FakeRun run(options);
  ASSERT_TRUE(run.Add(plugin->get(), "rise_counter").ok());
  run.set_loss(Sawtooth);
  FakeRunResult result = run.Run();
  EXPECT_EQ(result.reason, EndReason::kStopRequested);
  EXPECT_EQ(result.stop_reason, "rise_counter: 3 rises");
  EXPECT_EQ(result.last_step, 5);  // rises at steps 1, 3, 5
  EXPECT_EQ(run.recorder().Count("EpochEnd"), 1);
  EXPECT_EQ(run.recorder().Count("TrainEnd"), 1);
}

TEST(FakeRunTest, AResumedRunContinuesFromTheSavedState) {
  auto first = CreatePlugin<RiseCounter>();
  ASSERT_TRUE(first.ok());
  FakeRunOptions half;
  half.iterations_per_epoch = 10;
  FakeRun a(half);
  ASSERT_TRUE(a.Add(first->get(), "rise_counter").ok());
  a.set_loss(Sawtooth);
  ASSERT_TRUE(a.Run().status.ok());
  absl::StatusOr<std::string> saved = (*first)->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_THAT(*saved, HasSubstr("rises i 5\n"));

  auto second = CreatePlugin<RiseCounter>();
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->LoadState(*saved).ok());
  FakeRunOptions rest = half;
  rest.epochs = 2;
  rest.start_step = 10;
  FakeRun b(rest);
  ASSERT_TRUE(b.Add(second->get(), "rise_counter").ok());
  b.set_loss(Sawtooth);
  FakeRunResult result = b.Run();
  EXPECT_EQ(result.iterations_run, 10);
  EXPECT_EQ((*second)->rises(), 10);  // as one run of 20 iterations
  EXPECT_FALSE((*second)->LoadState("garbage").ok());
}

// Stops before any iteration when asked in OnEpochBegin, and asks for a
// checkpoint at the end of every epoch.
class StopAtOnce : public Plugin {
 public:
  static PluginInfo Info() { return {"stop_at_once", "1.0.0", "test", {}}; }
  static absl::StatusOr<std::unique_ptr<StopAtOnce>> Create(const PluginContext&) {
    return std::make_unique<StopAtOnce>();
  }
  void OnEpochBegin(const EpochBeginEvent&, Control& control) override { control.RequestStop("now"); }
  void OnEpochEnd(const EpochEndEvent&, Control& control) override {
    control.RequestCheckpoint("epoch end");
  }
};

TEST(FakeRunTest, AStopAskedBeforeTheFirstIterationRunsNone) {
  auto plugin = CreatePlugin<StopAtOnce>();
  ASSERT_TRUE(plugin.ok());
  FakeRun run;
  ASSERT_TRUE(run.Add(plugin->get(), "stop_at_once").ok());
  FakeRunResult result = run.Run();
  EXPECT_EQ(result.iterations_run, 0);
  EXPECT_EQ(result.last_step, -1);
  EXPECT_EQ(result.stop_reason, "stop_at_once: now");
  EXPECT_THAT(result.checkpoint_requests, ElementsAre("-1: stop_at_once: epoch end"));
  EXPECT_EQ(run.recorder().Count("IterationBegin"), 0);
}

class ThrowsInCreate : public Plugin {
 public:
  static PluginInfo Info() { return {"throws_in_create", "1.0.0", "test", {}}; }
  static absl::StatusOr<std::unique_ptr<ThrowsInCreate>> Create(const PluginContext&) {
    throw std::runtime_error("no GPU here");
  }
};

TEST(CreatePluginTest, AnExceptionFromCreateIsAnError) {
  auto plugin = CreatePlugin<ThrowsInCreate>();
  ASSERT_FALSE(plugin.ok());
  EXPECT_EQ(plugin.status().message(), "plugin 'throws_in_create': Create() threw: no GPU here");
}

// --- The "every N" rule on every bundled plugin that has an every-N option --

std::unique_ptr<Plugin> LoadBundled(const std::string& name, const std::string& options_json,
                                    const std::string& log_dir) {
  google::protobuf::Struct options;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(options_json, &options).ok());
  PluginLoader loader;
  absl::StatusOr<std::unique_ptr<Plugin>> plugin = loader.Create(name, "", options, log_dir);
  EXPECT_TRUE(plugin.ok()) << plugin.status();
  return plugin.ok() ? *std::move(plugin) : nullptr;
}

TEST(EveryNConventionTest, EveryBundledPluginActsAfterTheNthIteration) {
  TempDir dir;
  std::unique_ptr<Plugin> tensorboard = LoadBundled(
      "tensorboard",
      R"({"loss_every_n": 5, "lr_every_n": 0, "timing_every_n": 0, "histograms_every_n": 0,
          "images": 0, "hparams": false, "layout": false, "validation": false})",
      dir.path());
  std::unique_ptr<Plugin> csv = LoadBundled("csv", R"({"every_n": 5})", dir.path());
  std::unique_ptr<Plugin> checkpoint = LoadBundled(
      "checkpoint", R"({"every_n_iterations": 5, "every_n_epochs": 0, "keep_last": 10})", dir.path());
  std::unique_ptr<Plugin> early_stopping = LoadBundled(
      "early_stopping",
      R"({"monitor": "train/loss", "check_on": "iteration", "every_n": 5, "patience": 100})",
      dir.path());
  ASSERT_TRUE(tensorboard && csv && checkpoint && early_stopping);

  FakeRunOptions options;
  options.epochs = 2;
  options.iterations_per_epoch = 10;
  options.log_dir = dir.path();
  FakeRun run(options);
  ASSERT_TRUE(run.Add(tensorboard.get(), "tensorboard").ok());
  ASSERT_TRUE(run.Add(csv.get(), "csv").ok());
  ASSERT_TRUE(run.Add(early_stopping.get(), "early_stopping").ok());
  ASSERT_TRUE(run.Add(checkpoint.get(), "checkpoint", 1000).ok());
  FakeRunResult result = run.Run();
  ASSERT_TRUE(result.status.ok()) << result.status;

  // early_stopping checks after iterations 5, 10, 15, 20.
  EXPECT_THAT(run.recorder().Steps("early_stopping/wait"), ElementsAre(4, 9, 14, 19));
  // checkpoint saves then too, and names each by the iterations done.
  std::vector<std::string> every;
  for (const std::string& c : result.checkpoints) {
    if (c.find("every 5 iterations") != std::string::npos) every.push_back(c.substr(0, c.find(':')));
    if (c.find("every 5 iterations") != std::string::npos) {
      EXPECT_THAT(c, HasSubstr(absl::StrFormat("step-%08d", std::stoll(c) + 1)));
    }
  }
  EXPECT_THAT(every, ElementsAre("4", "9", "14", "19"));

  // csv and tensorboard write train/loss at the same steps.
  std::vector<int64_t> csv_steps;
  std::ifstream rows(dir.path() + "/scalars.csv");
  std::string line;
  while (std::getline(rows, line)) {
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    int64_t step = 0;
    if (cells.size() == 4 && cells[2] == "train/loss" && absl::SimpleAtoi(cells[1], &step)) {
      csv_steps.push_back(step);
    }
  }
  EXPECT_THAT(csv_steps, ElementsAre(4, 9, 14, 19));
  std::vector<int64_t> event_steps;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    if (entry.path().filename().string().find("tfevents") == std::string::npos) continue;
    auto contents = tensorboard::ReadEventFile(entry.path().string());
    ASSERT_TRUE(contents.ok()) << contents.status();
    for (const auto& e : contents->events) {
      for (const auto& v : e.summary().value()) {
        if (v.tag() == "train/loss") event_steps.push_back(e.step());
      }
    }
  }
  EXPECT_THAT(event_steps, ElementsAre(4, 9, 14, 19));
}

// Publishes a scalar and then a text under one tag (the health plugin once
// did, with its finding count and its findings table).
class OneTagTwoKinds : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    control.PublishScalar("mine/findings", 1.0);
    if (e.step >= 2) control.PublishText("mine/findings", "| a table |");
  }
};

TEST(TensorBoardPluginTest, ATagPublishedAsTwoKindsIsNamedOnce) {
  TempDir dir;
  std::unique_ptr<Plugin> tensorboard = LoadBundled(
      "tensorboard", R"({"loss_every_n": 0, "lr_every_n": 0, "timing_every_n": 0, "histograms_every_n": 0,
          "images": 0, "hparams": false, "layout": false, "validation": false})", dir.path());
  ASSERT_TRUE(tensorboard);
  FakeRunOptions options;
  options.iterations_per_epoch = 5;
  options.log_dir = dir.path();
  FakeRun run(options);
  OneTagTwoKinds publisher;
  ASSERT_TRUE(run.Add(&publisher, "mine", -1).ok());
  ASSERT_TRUE(run.Add(tensorboard.get(), "tensorboard").ok());
  FakeRunResult result = run.Run();
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_THAT(result.log, ElementsAre(HasSubstr("writing event files to"), "[tensorboard] warning: tag 'mine/findings' was published as "
                                      "scalar and now as text at step 2: TensorBoard keeps one kind of "
                                      "data per tag and will show only one of them; publish them under "
                                      "different tags"));
}

TEST(EveryNConventionTest, TheGuardChecksTheNthIterationOnly) {
  TempDir dir;
  std::unique_ptr<Plugin> guard =
      LoadBundled("nonfinite_guard", R"({"every_n": 5, "check_gradients": false})", dir.path());
  ASSERT_TRUE(guard);
  FakeRun run;
  ASSERT_TRUE(run.Add(guard.get(), "nonfinite_guard").ok());
  // Non-finite at steps 2 and 4: only step 4, the 5th iteration, is checked.
  run.set_loss([](int64_t step) { return step == 2 || step == 4 ? std::nan("") : 1.0; });
  FakeRunResult result = run.Run();
  EXPECT_EQ(result.reason, EndReason::kStopRequested);
  EXPECT_EQ(result.last_step, 4);
  EXPECT_THAT(result.stop_reason, HasSubstr("step 4"));
}

}  // namespace
}  // namespace trainbus
