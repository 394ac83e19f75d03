// Tests of the run-control plugins: early_stopping, nonfinite_guard and grad_clip.
//
// Most tests drive a trainbus::Session by hand (scripted metric values, a
// tiny torch::nn::Linear with an optimizer) so every decision is exact and
// deterministic; two run the `trainbus` program end to end.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/lbfgs.h>
#include <torch/optim/sgd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "early_stopping.h"
#include "grad_clip.h"
#include "nonfinite_guard.h"
#include "trainbus/session.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
namespace es = early_stopping;
namespace ng = nonfinite_guard;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------
// Helpers

// Creates plugin T from JSON options the way the loader does (validated
// options, then T::Create), with its hook mask set.
template <class T>
absl::StatusOr<std::unique_ptr<T>> CreatePlugin(const std::string& json) {
  google::protobuf::Struct given;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &given);
  if (!parsed.ok()) return absl::InvalidArgumentError("test: bad JSON");
  const PluginInfo info = T::Info();
  auto options =
      PluginOptions::Create(info.options, given, absl::StrCat("plugin '", info.name, "'"));
  if (!options.ok()) return options.status();
  PluginContext ctx;
  ctx.name = info.name;
  ctx.options = *options;
  auto made = T::Create(ctx);
  if (!made.ok()) return made.status();
  (*made)->set_hooks(HooksOf<T>());
  return made;
}

std::string CreateError(absl::StatusOr<std::unique_ptr<es::EarlyStoppingPlugin>> made) {
  return made.ok() ? "(created)" : std::string(made.status().message());
}

es::Config ConfigOf(const std::string& json) {
  auto made = CreatePlugin<es::EarlyStoppingPlugin>(json);
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? (*made)->tracker().config() : es::Config{};
}

// Keeps every record published on the bus.
class Recorder : public Plugin {
 public:
  void OnRecord(const Record& r, Control&) override { records.push_back(r); }
  std::vector<double> Scalars(const std::string& tag) const {
    std::vector<double> out;
    for (const Record& r : records) {
      if (r.tag == tag) out.push_back(std::get<ScalarValue>(r.value).value);
    }
    return out;
  }
  std::vector<std::string> Texts(const std::string& tag) const {
    std::vector<std::string> out;
    for (const Record& r : records) {
      if (r.tag == tag) out.push_back(std::get<TextValue>(r.value).markdown);
    }
    return out;
  }
  std::vector<Record> records;
};

// A session with an early_stopping plugin (options as JSON), a recorder, and
// the log captured.
struct EsHarness {
  explicit EsHarness(const std::string& json, RunInfo run = {}) {
    session.bus().set_log_sink([this](absl::string_view l) { logs.emplace_back(l); });
    auto made = CreatePlugin<es::EarlyStoppingPlugin>(json);
    EXPECT_TRUE(made.ok()) << made.status();
    plugin = made->get();
    EXPECT_TRUE(session.AddPlugin(*std::move(made), "early_stopping").ok());
    auto rec = MakePlugin<Recorder>();
    recorder = rec.get();
    EXPECT_TRUE(session.AddPlugin(std::move(rec), "recorder").ok());
    this->run = run;
  }
  void Begin() { session.Begin(run); }
  std::string Logs() const {
    std::string all;
    for (const auto& l : logs) absl::StrAppend(&all, l, "\n");
    return all;
  }
  std::vector<std::string> logs;  // before the session, whose destructor may still log
  Session session;
  RunInfo run;
  es::EarlyStoppingPlugin* plugin = nullptr;
  Recorder* recorder = nullptr;
};

// Runs one epoch per value: `iterations` iterations, then a validation with
// {metric: value}, then EpochEnd. Returns the epochs run (stops like a host
// loop does once a stop is requested).
int RunEpochs(Session& s, const std::vector<double>& values, int iterations = 2,
              const std::string& metric = "val/loss") {
  int run = 0;
  for (double v : values) {
    if (s.ShouldStop()) break;
    s.BeginEpoch();
    for (int i = 0; i < iterations; ++i) s.EndIteration(1.0, 10);
    s.EndValidation({{metric, v}});
    s.EndEpoch();
    ++run;
  }
  return run;
}

// Feeds a Tracker one value per epoch (epoch cadence, 2 steps per epoch);
// returns the index of the value whose check stopped, or -1. `last` gets the
// stopping check.
int StopIndex(const es::Config& c, const std::vector<double>& values, es::Tracker* tracker = nullptr,
              es::CheckResult* last = nullptr) {
  es::Tracker local(c);
  es::Tracker& t = tracker ? *tracker : local;
  for (size_t i = 0; i < values.size(); ++i) {
    t.Observe(c.monitor, values[i]);
    es::CheckResult r = t.EpochEnd(2 * static_cast<int64_t>(i) + 1, static_cast<int64_t>(i));
    if (r.stop != es::StopCause::kNone) {
      if (last) *last = r;
      return static_cast<int>(i);
    }
  }
  return -1;
}

es::Config Cfg(const std::string& json) { return ConfigOf(json); }

// ---------------------------------------------------------------------------
// early_stopping: options

TEST(EarlyStoppingOptionsTest, BadOptionsNameTheOption) {
  using P = es::EarlyStoppingPlugin;
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({})")),
              HasSubstr("option 'monitor' is required"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": ""})")),
              HasSubstr("option 'monitor' is required"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "patience": -1})")),
              HasSubstr("option 'patience' must be >= 0, got -1"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "mode": "lowest"})")),
              HasSubstr("option 'mode' must be \"min\", \"max\" or \"auto\", got \"lowest\""));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "min_delta": -0.1})")),
              HasSubstr("option 'min_delta' must be finite and >= 0, got -0.1"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "every_n": 0})")),
              HasSubstr("option 'every_n' must be > 0, got 0"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "every_n": -3})")),
              HasSubstr("option 'every_n' must be > 0, got -3"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "check_on": "batch"})")),
              HasSubstr("option 'check_on' must be \"epoch\", \"validation\" or \"iteration\""));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "x", "start_from_epoch": -1})")),
              HasSubstr("option 'start_from_epoch' must be >= 0"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "x", "start_from_step": -1})")),
              HasSubstr("option 'start_from_step' must be >= 0"));
  EXPECT_THAT(CreateError(CreatePlugin<P>(
                  R"({"monitor": "val/loss", "stopping_threshold": 1, "divergence_threshold": 0.5})")),
              HasSubstr("option 'stopping_threshold' (1) must be better than option "
                        "'divergence_threshold' (0.5) for mode min"));
  // Types are checked by the option layer, which names the plugin.
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "patience": 1.5})")),
              AllOf(HasSubstr("plugin 'early_stopping'"), HasSubstr("option 'patience'")));
  EXPECT_THAT(CreateError(CreatePlugin<P>(R"({"monitor": "val/loss", "patiense": 2})")),
              HasSubstr("unknown option 'patiense'"));
}

TEST(EarlyStoppingOptionsTest, DefaultsAndAutoMode) {
  es::Config c = ConfigOf(R"({"monitor": "val/loss"})");
  EXPECT_EQ(c.mode, es::Mode::kMin);
  EXPECT_TRUE(c.mode_was_auto);
  EXPECT_EQ(c.patience, 3);
  EXPECT_EQ(c.min_delta, 0.0);
  EXPECT_FALSE(c.baseline.has_value());
  EXPECT_EQ(c.check_on, es::CheckOn::kEpoch);
  EXPECT_EQ(c.every_n, 1);
  EXPECT_TRUE(c.check_finite);
  EXPECT_FALSE(c.restore_best_weights);
  EXPECT_EQ(ConfigOf(R"({"monitor": "val/accuracy"})").mode, es::Mode::kMax);
  EXPECT_EQ(ConfigOf(R"({"monitor": "val/accuracy", "mode": "min"})").mode, es::Mode::kMin);

  EXPECT_EQ(es::AutoMode("val/accuracy"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("train/acc"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("val/AUC"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("val/f1"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("val/precision"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("val/recall@5"), es::Mode::kMax);
  EXPECT_EQ(es::AutoMode("val/loss"), es::Mode::kMin);
  EXPECT_EQ(es::AutoMode("train/mse"), es::Mode::kMin);
  EXPECT_EQ(es::AutoMode("epoch/mean_loss"), es::Mode::kMin);
}

// ---------------------------------------------------------------------------
// early_stopping: the decision rule

TEST(EarlyStoppingRuleTest, PatienceCountsBadChecksInARow) {
  es::Config c = Cfg(R"({"monitor": "val/loss", "patience": 2})");
  es::Tracker t(c);
  es::CheckResult last;
  // improve, improve, bad (1), improve resets, bad (1), bad (2) -> stop.
  EXPECT_EQ(StopIndex(c, {1.0, 0.9, 0.95, 0.8, 0.85, 0.81, 0.1}, &t, &last), 5);
  EXPECT_EQ(t.best(), 0.8);
  EXPECT_EQ(t.best_step(), 7);
  EXPECT_EQ(t.best_epoch(), 3);
  EXPECT_EQ(t.wait(), 2);
  EXPECT_EQ(t.checks(), 6);
  EXPECT_EQ(last.stop, es::StopCause::kPatience);
  EXPECT_EQ(last.reason,
            "val/loss did not improve for 2 checks (patience 2, min_delta 0, mode min; last "
            "0.81) at step 11, epoch 6; best val/loss 0.8 at step 7, epoch 4");
  EXPECT_THAT(last.markdown, HasSubstr("**Early stopping** at step 11, epoch 6"));
  EXPECT_THAT(last.markdown, HasSubstr("| best val/loss | 0.8 | 7 | 4 |"));

  // patience 0: the first bad check stops; an equal value is not an improvement.
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/loss", "patience": 0})"), {1.0, 0.5, 0.5}), 2);
  // Without a stop the tracker keeps going.
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/loss", "patience": 1})"), {3, 2, 1, 0.5}), -1);
}

TEST(EarlyStoppingRuleTest, MinDeltaMustBeBeatenStrictly) {
  // Keras/Lightning: min: current + min_delta < best; max: current - min_delta > best.
  es::Config c = Cfg(R"({"monitor": "val/loss", "min_delta": 0.25, "patience": 2})");
  es::Tracker t(c);
  // 1.0 best; 0.75 is exactly min_delta better: bad (1); 0.5 improves (0.75 < 1.0);
  // 0.3 (0.55 !< 0.5) bad (1); 0.26 (0.51) bad (2) -> stop.
  EXPECT_EQ(StopIndex(c, {1.0, 0.75, 0.5, 0.3, 0.26}, &t), 4);
  EXPECT_EQ(t.best(), 0.5);

  es::Config m = Cfg(R"({"monitor": "val/accuracy", "min_delta": 0.25, "patience": 1})");
  es::Tracker tm(m);
  EXPECT_EQ(StopIndex(m, {0.25, 0.75, 1.0}, &tm), 2);  // 1.0 - 0.25 = 0.75, not > 0.75
  EXPECT_EQ(tm.best(), 0.75);
}

TEST(EarlyStoppingRuleTest, BaselineIsTheFirstBest) {
  // Nothing beats the baseline: every check is bad.
  es::Config c = Cfg(R"({"monitor": "val/loss", "baseline": 0.5, "patience": 2})");
  es::Tracker t(c);
  es::CheckResult last;
  EXPECT_EQ(StopIndex(c, {0.6, 0.55, 0.4}, &t, &last), 1);
  EXPECT_FALSE(t.has_best());
  EXPECT_EQ(t.best(), 0.5);
  EXPECT_THAT(last.reason, HasSubstr("no check improved on the baseline 0.5"));
  // Without a baseline the same values are improvements.
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/loss", "patience": 2})"), {0.6, 0.55, 0.4}), -1);
  // A value that beats the baseline becomes the best and resets the count.
  es::Tracker t2(c);
  EXPECT_EQ(StopIndex(c, {0.6, 0.4, 0.45, 0.42, 0.1}, &t2), 3);
  EXPECT_EQ(t2.best(), 0.4);
  EXPECT_EQ(t2.best_epoch(), 1);
  // Max mode: the baseline must be exceeded.
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/accuracy", "baseline": 0.9, "patience": 1})"),
                      {0.95, 0.9}),
            1);
}

TEST(EarlyStoppingRuleTest, MaxModeForAccuracy) {
  es::Config c = Cfg(R"({"monitor": "val/accuracy", "patience": 1})");
  es::Tracker t(c);
  EXPECT_EQ(StopIndex(c, {0.5, 0.7, 0.9, 0.85}, &t), 3);
  EXPECT_EQ(t.best(), 0.9);
  es::Config mn = Cfg(R"({"monitor": "val/accuracy", "mode": "min", "patience": 1})");
  EXPECT_EQ(StopIndex(mn, {0.5, 0.7, 0.9, 0.85}), 1);
}

TEST(EarlyStoppingRuleTest, StoppingAndDivergenceThresholds) {
  es::CheckResult last;
  es::Config c = Cfg(R"({"monitor": "val/loss", "stopping_threshold": 0.2, "patience": 10})");
  es::Tracker t(c);
  // 0.2 equals the threshold: not better; 0.19 is.
  EXPECT_EQ(StopIndex(c, {0.5, 0.2, 0.19, 0.1}, &t, &last), 2);
  EXPECT_EQ(last.stop, es::StopCause::kStoppingThreshold);
  EXPECT_TRUE(last.improved);
  EXPECT_EQ(t.best(), 0.19);  // the stopping value is also the best
  EXPECT_THAT(last.reason, StartsWith("val/loss = 0.19 is better than stopping_threshold 0.2 "
                                      "(mode min) at step 5, epoch 3; best val/loss 0.19"));

  es::Config d = Cfg(R"({"monitor": "train/loss", "divergence_threshold": 2, "patience": 10})");
  EXPECT_EQ(StopIndex(d, {1.0, 2.0, 2.5}, nullptr, &last), 2);
  EXPECT_EQ(last.stop, es::StopCause::kDivergence);
  EXPECT_THAT(last.reason, StartsWith("train/loss = 2.5 is worse than divergence_threshold 2 "
                                      "(mode min) at step 5, epoch 3; best train/loss 1"));

  es::Config mx = Cfg(R"({"monitor": "val/accuracy", "stopping_threshold": 0.9,
                          "divergence_threshold": 0.1})");
  EXPECT_EQ(StopIndex(mx, {0.5, 0.95}, nullptr, &last), 1);
  EXPECT_EQ(last.stop, es::StopCause::kStoppingThreshold);
  EXPECT_EQ(StopIndex(mx, {0.5, 0.05}, nullptr, &last), 1);
  EXPECT_EQ(last.stop, es::StopCause::kDivergence);
}

TEST(EarlyStoppingRuleTest, NonFiniteValues) {
  es::CheckResult last;
  es::Config c = Cfg(R"({"monitor": "val/loss", "patience": 5})");
  EXPECT_EQ(StopIndex(c, {1.0, kNan}, nullptr, &last), 1);
  EXPECT_EQ(last.stop, es::StopCause::kNonFinite);
  EXPECT_EQ(last.reason,
            "val/loss is nan, not a finite number at step 3, epoch 2; best val/loss 1 at step 1, "
            "epoch 1");
  EXPECT_EQ(StopIndex(c, {1.0, kInf}, nullptr, &last), 1);
  EXPECT_THAT(last.reason, StartsWith("val/loss is inf, not a finite number"));
  // check_finite false: a non-finite value is a bad check, never a best (even -inf in min mode).
  es::Config off = Cfg(R"({"monitor": "val/loss", "patience": 2, "check_finite": false})");
  es::Tracker t(off);
  EXPECT_EQ(StopIndex(off, {1.0, kNan, -kInf}, &t, &last), 2);
  EXPECT_EQ(last.stop, es::StopCause::kPatience);
  EXPECT_EQ(t.best(), 1.0);
}

TEST(EarlyStoppingRuleTest, StartFromSkipsEarlyChecks) {
  const std::vector<double> values = {0.5, 0.6, 0.7, 0.8, 0.75};
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/loss", "patience": 1})"), values), 1);
  es::Config c = Cfg(R"({"monitor": "val/loss", "patience": 1, "start_from_epoch": 2})");
  es::Tracker t(c);
  EXPECT_EQ(StopIndex(c, values, &t), 3);  // epochs 0, 1 skipped; 0.7 is the first best
  EXPECT_EQ(t.best_epoch(), 2);
  EXPECT_EQ(t.checks(), 2);
  // start_from_step: steps are 2i + 1 here, so steps < 4 (epochs 0, 1) are skipped.
  EXPECT_EQ(StopIndex(Cfg(R"({"monitor": "val/loss", "patience": 1, "start_from_step": 4})"),
                      values),
            3);
  // A non-finite value still stops during the warm-up.
  EXPECT_EQ(StopIndex(c, {kNan}), 0);
}

// ---------------------------------------------------------------------------
// early_stopping: cadences, through a Session

TEST(EarlyStoppingCadenceTest, EpochCadenceStopsTheRunAndSaysWhy) {
  EsHarness h(R"({"monitor": "val/loss", "patience": 2})");
  h.Begin();
  // Epoch i ends at step 2i + 1. Best 0.5 at epoch 1; epochs 2, 3 are bad.
  EXPECT_EQ(RunEpochs(h.session, {1.0, 0.5, 0.6, 0.7, 0.1, 0.1}), 4);
  const std::string reason =
      "val/loss did not improve for 2 checks (patience 2, min_delta 0, mode min; last 0.7) at "
      "step 7, epoch 4; best val/loss 0.5 at step 3, epoch 2";
  EXPECT_TRUE(h.session.ShouldStop());
  EXPECT_EQ(h.session.stop_reason(), "early_stopping: " + reason);
  ASSERT_TRUE(h.session.End().ok());
  EXPECT_THAT(h.Logs(), HasSubstr("[early_stopping] monitoring val/loss (mode min from auto), "
                                  "patience 2 checks, min_delta 0, check every epoch"));
  EXPECT_THAT(h.Logs(), HasSubstr("[early_stopping] stopping: " + reason));
  // One best/wait scalar per check, the reason as a text record at the stop step.
  EXPECT_THAT(h.recorder->Scalars("early_stopping/best"), ElementsAre(1.0, 0.5, 0.5, 0.5));
  EXPECT_THAT(h.recorder->Scalars("early_stopping/wait"), ElementsAre(0, 0, 1, 2));
  auto texts = h.recorder->Texts("early_stopping/reason");
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_THAT(texts[0], HasSubstr("**Early stopping** at step 7, epoch 4: val/loss did not "
                                  "improve for 2 checks"));
  EXPECT_EQ(h.recorder->records.back().step, 7);
}

TEST(EarlyStoppingCadenceTest, EveryNEpochs) {
  EsHarness h(R"({"monitor": "val/loss", "patience": 1, "every_n": 2})");
  h.Begin();
  // Checks after epochs 1, 3, 5: 0.5 (best), 0.8 (bad) -> stop after epoch 3.
  // Epoch 2's 0.9 is never checked (every epoch would have stopped there).
  EXPECT_EQ(RunEpochs(h.session, {1.0, 0.5, 0.9, 0.8, 0.7, 0.6}), 4);
  EXPECT_EQ(h.plugin->tracker().checks(), 2);
  EXPECT_THAT(h.session.stop_reason(), HasSubstr("at step 7, epoch 4"));
}

TEST(EarlyStoppingCadenceTest, EpochCadenceOnlyChecksNewValues) {
  // Validation every other epoch: epochs without a new value are not checks.
  EsHarness h(R"({"monitor": "val/loss", "patience": 1})");
  h.Begin();
  std::vector<double> validated = {0.5, 0.6};
  int epochs = 0, next = 0;
  while (!h.session.ShouldStop() && epochs < 10) {
    h.session.BeginEpoch();
    h.session.EndIteration(1.0, 10);
    if (epochs % 2 == 1) h.session.EndValidation({{"val/loss", validated[next++]}});
    h.session.EndEpoch();
    ++epochs;
  }
  EXPECT_EQ(epochs, 4);  // stopped by the second validation (epoch 3), not by stale values
  EXPECT_EQ(h.plugin->tracker().checks(), 2);
  EXPECT_THAT(h.session.stop_reason(), HasSubstr("did not improve for 1 check "));
  EXPECT_THAT(h.session.stop_reason(), HasSubstr("at step 3, epoch 4"));
}

TEST(EarlyStoppingCadenceTest, EveryNthValidation) {
  EsHarness h(R"({"monitor": "val/loss", "patience": 1, "check_on": "validation",
                  "every_n": 2})");
  h.Begin();
  // Two validations per epoch (after iterations 1 and 3); every 2nd is checked:
  // values #1 (0.9, best) and #3 (0.95, bad) -> stop; #2 (0.1) is never checked.
  const std::vector<double> values = {1.0, 0.9, 0.1, 0.95, 0.05, 0.97};
  size_t next = 0;
  int iterations = 0;
  for (int epoch = 0; epoch < 3 && !h.session.ShouldStop(); ++epoch) {
    h.session.BeginEpoch();
    for (int i = 0; i < 4; ++i) {
      h.session.EndIteration(1.0, 10);
      ++iterations;
      if (i % 2 == 1) h.session.EndValidation({{"val/loss", values[next++]}});
      if (h.session.ShouldStop()) break;
    }
    h.session.EndEpoch();
  }
  EXPECT_EQ(next, 4u);
  EXPECT_EQ(iterations, 8);
  EXPECT_EQ(h.plugin->tracker().best(), 0.9);
  EXPECT_EQ(h.plugin->tracker().checks(), 2);
  EXPECT_THAT(h.session.stop_reason(),
              HasSubstr("at step 7, epoch 2; best val/loss 0.9 at step 3, epoch 1"));
}

TEST(EarlyStoppingCadenceTest, EveryNIterationsOnTrainLoss) {
  EsHarness h(R"({"monitor": "train/loss", "patience": 1, "check_on": "iteration",
                  "every_n": 3})");
  h.Begin();
  // Checks at steps 2, 5, 8: 3 (best), 3.5 (bad) -> stop at step 5. Step 3's 2 is not checked.
  const std::vector<double> losses = {5, 4, 3, 2, 2.5, 3.5, 1, 1, 1};
  h.session.BeginEpoch();
  int ran = 0;
  for (double loss : losses) {
    h.session.EndIteration(loss, 10);
    ++ran;
    if (h.session.ShouldStop()) break;
  }
  EXPECT_EQ(ran, 6);
  EXPECT_EQ(h.session.stop_reason(),
            "early_stopping: train/loss did not improve for 1 check (patience 1, min_delta 0, "
            "mode min; last 3.5) at step 5, epoch 1; best train/loss 3 at step 2, epoch 1");
  EXPECT_THAT(h.Logs(), HasSubstr("check every 3 iterations"));
}

// Publishes "val/f1" as a record in its own OnValidationEnd (after early_stopping's).
class F1Publisher : public Plugin {
 public:
  explicit F1Publisher(std::vector<double> values) : values_(std::move(values)) {}
  void OnValidationEnd(const ValidationEndEvent& e, Control& control) override {
    control.Publish(Record::Scalar("val/f1", values_[next_++], e.step));
  }

 private:
  std::vector<double> values_;
  size_t next_ = 0;
};

TEST(EarlyStoppingCadenceTest, MonitorFromRecordsPublishedByAnotherPlugin) {
  EsHarness h(R"({"monitor": "val/f1", "patience": 2, "check_on": "validation"})");
  ASSERT_TRUE(
      h.session.AddPlugin(MakePlugin<F1Publisher>(std::vector<double>{0.5, 0.6, 0.55, 0.58, 0.9}),
                          "f1")
          .ok());
  h.Begin();
  // The value arrives after early_stopping's OnValidationEnd: the due check
  // runs when the record comes. Mode auto -> max: 0.6 best, then 2 bad checks.
  EXPECT_EQ(RunEpochs(h.session, {1, 1, 1, 1, 1}), 4);
  EXPECT_EQ(h.plugin->tracker().config().mode, es::Mode::kMax);
  EXPECT_EQ(h.plugin->tracker().checks(), 4);
  EXPECT_THAT(h.session.stop_reason(),
              HasSubstr("val/f1 did not improve for 2 checks (patience 2, min_delta 0, mode max; "
                        "last 0.58) at step 7, epoch 4; best val/f1 0.6 at step 3, epoch 2"));
}

TEST(EarlyStoppingCadenceTest, EpochMeanLossAndIterationMetrics) {
  {
    EsHarness h(R"({"monitor": "epoch/mean_loss", "patience": 1})");
    h.Begin();
    const std::vector<std::vector<double>> epochs = {{3, 1}, {1, 1}, {2, 2}, {0, 0}};
    int ran = 0;
    for (const auto& losses : epochs) {
      if (h.session.ShouldStop()) break;
      h.session.BeginEpoch();
      for (double l : losses) h.session.EndIteration(l, 10);
      h.session.EndEpoch();
      ++ran;
    }
    EXPECT_EQ(ran, 3);  // means 2, 1, 2 -> the third is bad
    EXPECT_THAT(h.session.stop_reason(), HasSubstr("best epoch/mean_loss 1 at step 3, epoch 2"));
  }
  {
    EsHarness h(R"({"monitor": "train/accuracy", "patience": 1})");
    h.Begin();
    int ran = 0;
    for (double acc : {0.5, 0.8, 0.7, 0.9}) {
      if (h.session.ShouldStop()) break;
      h.session.BeginEpoch();
      Metrics m = {{"train/accuracy", acc}};
      h.session.EndIteration(1.0, 10, m);
      h.session.EndEpoch();
      ++ran;
    }
    EXPECT_EQ(ran, 3);
  }
}

TEST(EarlyStoppingCadenceTest, WarnsOnceWhenTheMonitorNeverAppears) {
  EsHarness h(R"({"monitor": "val/los"})");
  h.Begin();
  Metrics m = {{"train/accuracy", 0.5}};
  h.session.BeginEpoch();
  h.session.EndIteration(1.0, 10, m);
  h.session.EndValidation({{"val/loss", 0.5}, {"val/accuracy", 0.7}});
  h.session.EndEpoch();
  EXPECT_FALSE(h.session.ShouldStop());
  ASSERT_TRUE(h.session.End().ok());
  int warnings = 0;
  for (const auto& l : h.logs) warnings += absl::StrContains(l, "never appeared");
  EXPECT_EQ(warnings, 1);
  EXPECT_THAT(h.Logs(), HasSubstr("the monitored metric 'val/los' never appeared in this run, so "
                                  "early stopping never checked; metrics seen: epoch/mean_loss, "
                                  "train/accuracy, train/loss, val/accuracy, val/loss"));
}

// ---------------------------------------------------------------------------
// early_stopping: best weights and state

struct Net : torch::nn::Module {
  Net() {
    fc = register_module("fc", torch::nn::Linear(2, 1));
    seen = register_buffer("seen", at::zeros({1}));
    at::NoGradGuard no_grad;
    fc->weight.copy_(at::tensor({0.3f, -0.2f}).view({1, 2}));
    fc->bias.copy_(at::tensor({0.1f}));
  }
  torch::nn::Linear fc{nullptr};
  at::Tensor seen;
};

const at::Tensor& Inputs() {
  static const at::Tensor x =
      at::tensor({1.f, 2.f, 3.f, -1.f, 0.5f, 0.f, -2.f, 1.f}).view({4, 2});
  return x;
}
const at::Tensor& Targets() {
  static const at::Tensor y = at::tensor({1.f, 0.f, 2.f, -1.f}).view({4, 1});
  return y;
}

enum class Inject { kNone, kNanLoss, kNanGrad, kInfGrad, kNanLossAndBuffer };

// One training step on the fixed batch; returns the loss. With a session, its
// gradient hooks run between backward and step, and may skip the step. The
// buffer `seen` counts the optimizer steps taken.
double TrainStep(Net& net, torch::optim::Optimizer& opt, Inject inject = Inject::kNone,
                 Session* session = nullptr) {
  opt.zero_grad();
  at::Tensor loss = (net.fc->forward(Inputs()) - Targets()).pow(2).mean();
  if (inject == Inject::kNanLoss || inject == Inject::kNanLossAndBuffer) {
    loss = loss * std::numeric_limits<float>::quiet_NaN();
  }
  loss.backward();
  {
    at::NoGradGuard no_grad;
    if (inject == Inject::kNanGrad) net.fc->weight.grad()[0][1].fill_(kNan);
    if (inject == Inject::kInfGrad) net.fc->weight.grad()[0][1].fill_(kInf);
    // As a forward pass writing BatchNorm statistics from a bad batch would.
    if (inject == Inject::kNanLossAndBuffer) net.seen.fill_(kNan);
  }
  const double value = loss.item<double>();
  if (session != nullptr) {
    session->AfterBackward(value);
    if (!session->BeforeOptimizerStep(value)) return value;
  }
  opt.step();
  {
    at::NoGradGuard no_grad;
    net.seen.add_(1);
  }
  return value;
}

// A detached copy of every parameter and buffer, in named order.
std::vector<at::Tensor> Weights(const Net& net) {
  std::vector<at::Tensor> out;
  for (const auto& t : net.parameters()) out.push_back(t.detach().clone());
  for (const auto& t : net.buffers()) out.push_back(t.detach().clone());
  return out;
}

bool Equal(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!a[i].equal(b[i])) return false;
  }
  return true;
}

// Trains one step per epoch, validating with the scripted value; returns the
// weights after each epoch.
std::vector<std::vector<at::Tensor>> TrainEpochs(Session& s, Net& net,
                                                 torch::optim::Optimizer& opt,
                                                 const std::vector<double>& val_losses) {
  std::vector<std::vector<at::Tensor>> after;
  for (double v : val_losses) {
    if (s.ShouldStop()) break;
    s.BeginEpoch();
    s.EndIteration(TrainStep(net, opt), 4);
    s.EndValidation({{"val/loss", v}});
    after.push_back(Weights(net));
    s.EndEpoch();
  }
  return after;
}

TEST(EarlyStoppingWeightsTest, RestoresTheBestParametersAndBuffersNotTheLast) {
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  EsHarness h(R"({"monitor": "val/loss", "patience": 2, "restore_best_weights": true})");
  h.session.Bind(&net, &opt);
  h.Begin();
  // Best at epoch 2 (step 2); epochs 3 and 4 are bad -> stop after epoch 4.
  auto after = TrainEpochs(h.session, net, opt, {1.0, 0.8, 0.5, 0.7, 0.9, 0.1});
  ASSERT_EQ(after.size(), 5u);
  ASSERT_TRUE(h.session.ShouldStop());
  ASSERT_FALSE(Equal(after[2], after[4]));  // training did move the weights
  EXPECT_TRUE(Equal(Weights(net), after[4]));  // nothing restored before the end
  // The kept copy is a detached CPU clone, not the live tensors.
  ASSERT_EQ(h.plugin->best_weights().size(), 3u);  // fc.weight, fc.bias, seen
  EXPECT_EQ(h.plugin->best_weights()[0].first, "fc.weight");
  EXPECT_EQ(h.plugin->best_weights()[2].first, "seen");
  EXPECT_FALSE(h.plugin->best_weights()[0].second.is_same(net.fc->weight));
  EXPECT_FALSE(h.plugin->best_weights()[0].second.requires_grad());

  ASSERT_TRUE(h.session.End().ok());
  EXPECT_TRUE(Equal(Weights(net), after[2]));
  EXPECT_EQ(net.seen.item<float>(), 3.0f);  // the buffer too
  EXPECT_THAT(h.Logs(), HasSubstr("[early_stopping] restored the best weights (val/loss 0.5 at "
                                  "step 2, epoch 3): 2 parameters, 1 buffers"));
}

TEST(EarlyStoppingWeightsTest, NothingRestoredWhenNothingBeatTheBaseline) {
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  EsHarness h(R"({"monitor": "val/loss", "patience": 2, "baseline": 0.1,
                  "restore_best_weights": true})");
  h.session.Bind(&net, &opt);
  h.Begin();
  auto after = TrainEpochs(h.session, net, opt, {1.0, 0.8, 0.5});
  ASSERT_EQ(after.size(), 2u);
  ASSERT_TRUE(h.session.End().ok());
  EXPECT_TRUE(Equal(Weights(net), after[1]));
  EXPECT_THAT(h.Logs(), HasSubstr("no check improved on the starting best; the weights are left "
                                  "as trained"));
}

TEST(EarlyStoppingStateTest, ResumedPluginDecidesExactlyLikeTheOriginal) {
  const std::string options =
      R"({"monitor": "val/loss", "patience": 2, "restore_best_weights": true})";
  const std::vector<double> before = {1.0, 0.5, 0.6};  // best 0.5 (epoch 1), then wait 1
  const std::vector<double> after = {0.55, 0.4, 0.45};  // 0.55 is the 2nd bad check: stop

  // The original run, saving the state after epoch 2 (as a checkpoint would).
  Net net_a;
  torch::optim::SGD opt_a(net_a.parameters(), torch::optim::SGDOptions(0.1));
  EsHarness a(options);
  a.session.Bind(&net_a, &opt_a);
  a.Begin();
  auto weights_a = TrainEpochs(a.session, net_a, opt_a, before);
  auto saved = a.plugin->SaveState();
  ASSERT_TRUE(saved.ok()) << saved.status();
  const size_t records_at_save = a.recorder->records.size();
  auto rest_a = TrainEpochs(a.session, net_a, opt_a, after);

  // A fresh plugin given that state, in a run resuming at the same position,
  // with other weights (restore must bring back the saved best ones).
  Net net_b;
  {
    at::NoGradGuard no_grad;
    for (auto& p : net_b.parameters()) p.fill_(7.0f);
  }
  torch::optim::SGD opt_b(net_b.parameters(), torch::optim::SGDOptions(0.1));
  RunInfo resumed;
  resumed.start_step = 3;
  resumed.start_epoch = 3;
  EsHarness b(options, resumed);
  b.session.Bind(&net_b, &opt_b);
  ASSERT_TRUE(b.plugin->LoadState(*saved).ok());
  EXPECT_EQ(b.plugin->tracker().best(), 0.5);
  EXPECT_EQ(b.plugin->tracker().wait(), 1);
  EXPECT_EQ(b.plugin->tracker().best_step(), 1);
  ASSERT_EQ(b.plugin->best_weights().size(), 3u);
  EXPECT_TRUE(b.plugin->best_weights()[0].second.equal(weights_a[1][0]));
  b.Begin();
  auto rest_b = TrainEpochs(b.session, net_b, opt_b, after);

  // Identical decisions: same stop, same reason, same records after the save.
  EXPECT_EQ(rest_a.size(), 1u);
  EXPECT_EQ(rest_b.size(), 1u);
  EXPECT_EQ(a.session.stop_reason(),
            "early_stopping: val/loss did not improve for 2 checks (patience 2, min_delta 0, mode "
            "min; last 0.55) at step 3, epoch 4; best val/loss 0.5 at step 1, epoch 2");
  EXPECT_EQ(b.session.stop_reason(), a.session.stop_reason());
  EXPECT_EQ(b.plugin->tracker().checks(), a.plugin->tracker().checks());
  std::vector<std::pair<std::string, int64_t>> ra, rb;
  for (size_t i = records_at_save; i < a.recorder->records.size(); ++i) {
    ra.emplace_back(a.recorder->records[i].tag, a.recorder->records[i].step);
  }
  for (const Record& r : b.recorder->records) rb.emplace_back(r.tag, r.step);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(a.recorder->Scalars("early_stopping/wait").back(), 2.0);
  EXPECT_EQ(b.recorder->Scalars("early_stopping/wait").back(), 2.0);

  // Without the state a fresh plugin would not have stopped at all.
  EsHarness c(options, resumed);
  c.Begin();
  EXPECT_EQ(RunEpochs(c.session, after, 1), 3);
  EXPECT_FALSE(c.session.ShouldStop());

  // Both restore the best weights: those after epoch 1 of the original run.
  ASSERT_TRUE(a.session.End().ok());
  ASSERT_TRUE(b.session.End().ok());
  EXPECT_TRUE(Equal(Weights(net_a), weights_a[1]));
  EXPECT_TRUE(Equal(Weights(net_b), weights_a[1]));
}

TEST(EarlyStoppingStateTest, StateErrors) {
  auto a = CreatePlugin<es::EarlyStoppingPlugin>(R"({"monitor": "val/loss"})");
  auto b = CreatePlugin<es::EarlyStoppingPlugin>(R"({"monitor": "val/accuracy"})");
  ASSERT_TRUE(a.ok() && b.ok());
  auto saved = (*a)->SaveState();
  ASSERT_TRUE(saved.ok());
  absl::Status s = (*b)->LoadState(*saved);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("state was saved for monitor 'val/loss' (mode min) but this run monitors "
                        "'val/accuracy' (mode max)"));
  EXPECT_FALSE((*a)->LoadState("garbage").ok());
  EXPECT_FALSE((*a)->LoadState(saved->substr(0, saved->size() / 2)).ok());
  EXPECT_TRUE((*a)->LoadState(*saved).ok());
}

TEST(EarlyStoppingStateTest, TensorBytesRoundTrip) {
  es::NamedTensors in = {{"w", at::arange(6, at::kFloat).view({2, 3})},
                         {"steps", at::tensor({int64_t{5}})},
                         {"scalar", at::scalar_tensor(2.5, at::kDouble)},
                         {"empty", at::empty({0, 4})}};
  std::string bytes = es::EncodeTensors(in);
  auto out = es::DecodeTensors(bytes);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ((*out)[i].first, in[i].first);
    EXPECT_EQ((*out)[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE((*out)[i].second.equal(in[i].second)) << in[i].first;
  }
  EXPECT_FALSE(es::DecodeTensors(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(es::DecodeTensors(bytes + "x").ok());
  EXPECT_FALSE(es::DecodeTensors("nope").ok());
}

// ---------------------------------------------------------------------------
// nonfinite_guard

std::string GuardError(const std::string& json) {
  auto made = CreatePlugin<ng::NonFiniteGuardPlugin>(json);
  return made.ok() ? "(created)" : std::string(made.status().message());
}

TEST(NonFiniteGuardTest, BadOptionsNameTheOption) {
  EXPECT_THAT(GuardError(R"({"action": "ignore"})"),
              HasSubstr("option 'action' must be \"stop\" or \"skip\", got \"ignore\""));
  EXPECT_THAT(GuardError(R"({"every_n": 0})"), HasSubstr("option 'every_n' must be > 0, got 0"));
  EXPECT_THAT(GuardError(R"({"max_consecutive_skips": -1})"),
              HasSubstr("option 'max_consecutive_skips' must be >= 0, got -1"));
  EXPECT_EQ(GuardError(R"({})"), "(created)");
  EXPECT_EQ(ng::NonFiniteGuardPlugin::Info().default_priority, -100);
}

TEST(NonFiniteGuardTest, MessagesNameStepAndTensor) {
  EXPECT_FALSE(ng::CheckLoss(0.5, 3).has_value());
  EXPECT_EQ(*ng::CheckLoss(kNan, 41), "loss is nan at step 41");
  EXPECT_EQ(*ng::CheckLoss(kInf, 41), "loss is inf at step 41");
  EXPECT_EQ(*ng::CheckLoss(-kInf, 41), "loss is -inf at step 41");
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  TrainStep(net, opt);
  EXPECT_FALSE(ng::CheckGradients(net, 0).has_value());
  net.fc->weight.grad()[0][0].fill_(kNan);
  net.fc->weight.grad()[0][1].fill_(-kInf);
  net.fc->bias.grad().fill_(kInf);
  EXPECT_EQ(*ng::CheckGradients(net, 7),
            "gradient of 'fc.weight' has nan and -inf at step 7 (2 of 2 values); 1 more "
            "parameter has non-finite gradients");
}

// AllFinite's loop (CPU float and double in one dense block) and its other
// paths (LibTorch; a sparse tensor's stored values) against LibTorch's
// isfinite: one bad value anywhere, of each kind, and the finite extremes
// next to them, in each dtype's own range.
TEST(NonFiniteGuardTest, AllFiniteFindsEveryBadValueInEveryKindOfTensor) {
  auto extremes = [](at::ScalarType dtype) -> std::vector<double> {
    if (dtype == at::kDouble) {
      return {std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(),
              std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::min(),
              -0.0};
    }
    if (dtype == at::kHalf) return {65504.0, -65504.0, 6e-8, -0.0};
    return {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
            std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(), -0.0};
  };
  auto agrees_with_libtorch = [](const at::Tensor& t) {
    return ng::AllFinite(t) == at::isfinite(t).all().item<bool>();
  };
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kHalf}) {
    for (int64_t n : {1, 7, 37}) {  // blocks and a tail
      SCOPED_TRACE(absl::StrCat(c10::toString(dtype), " x ", n));
      const at::Tensor t = torch::linspace(-3, 3, n).to(dtype);
      EXPECT_TRUE(ng::AllFinite(t));
      for (double v : extremes(dtype)) {
        at::Tensor u = t.clone();
        u[n / 2] = v;
        EXPECT_TRUE(ng::AllFinite(u)) << v;
        EXPECT_TRUE(agrees_with_libtorch(u)) << v;
      }
      for (double bad : {kNan, kInf, -kInf}) {
        for (int64_t at_index : {int64_t{0}, n / 2, n - 1}) {
          at::Tensor u = t.clone();
          u[at_index] = bad;
          EXPECT_FALSE(ng::AllFinite(u)) << bad << " at " << at_index;
          EXPECT_TRUE(agrees_with_libtorch(u));
          EXPECT_FALSE(ng::AllFinite(at::_neg_view(u)));  // a pending negation
        }
      }
    }
  }
  at::Tensor grid = torch::ones({5, 6});
  grid[4][1] = kNan;
  EXPECT_FALSE(ng::AllFinite(grid.t()));                  // transposed: still one dense block
  EXPECT_FALSE(ng::AllFinite(grid.narrow(0, 3, 2)));      // a view at an offset
  EXPECT_TRUE(ng::AllFinite(grid.narrow(0, 0, 4)));
  EXPECT_TRUE(ng::AllFinite(grid.t().slice(1, 0, 4)));    // not dense: LibTorch
  EXPECT_FALSE(ng::AllFinite(grid.t().slice(1, 3, 5)));
  at::Tensor image = torch::ones({2, 3, 4, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  image[1][2][3][4] = kInf;
  EXPECT_FALSE(ng::AllFinite(image));
  EXPECT_FALSE(ng::AllFinite(grid.to_sparse()));  // sparse: its stored values
  EXPECT_TRUE(ng::AllFinite(torch::ones({5, 6}).to_sparse()));
  EXPECT_TRUE(ng::AllFinite(torch::zeros({0})));
  EXPECT_TRUE(ng::AllFinite(at::Tensor()));
}

struct GuardHarness {
  explicit GuardHarness(const std::string& json) {
    session.bus().set_log_sink([this](absl::string_view l) { logs.emplace_back(l); });
    auto made = CreatePlugin<ng::NonFiniteGuardPlugin>(json);
    EXPECT_TRUE(made.ok()) << made.status();
    plugin = made->get();
    EXPECT_TRUE(session.AddPlugin(*std::move(made), "nonfinite_guard").ok());
    auto rec = MakePlugin<Recorder>();
    recorder = rec.get();
    EXPECT_TRUE(session.AddPlugin(std::move(rec), "recorder").ok());
  }
  std::string Logs() const {
    std::string all;
    for (const auto& l : logs) absl::StrAppend(&all, l, "\n");
    return all;
  }
  // Runs `steps` iterations in one epoch, injecting per step; returns steps
  // run. `gradient_hooks` false: a host loop that does not publish
  // AfterBackward / BeforeOptimizerStep.
  int Run(Net& net, torch::optim::Optimizer& opt, int steps,
          const std::function<Inject(int)>& inject, bool gradient_hooks = true) {
    session.Bind(&net, &opt);
    session.Begin(RunInfo{});
    session.BeginEpoch();
    int ran = 0;
    for (int i = 0; i < steps && !session.ShouldStop(); ++i) {
      session.BeginIteration(4);
      session.EndIteration(TrainStep(net, opt, inject(i), gradient_hooks ? &session : nullptr), 4);
      ++ran;
    }
    return ran;
  }
  std::vector<std::string> logs;  // before the session, whose destructor may still log
  Session session;
  ng::NonFiniteGuardPlugin* plugin = nullptr;
  Recorder* recorder = nullptr;
};

TEST(NonFiniteGuardTest, StopsOnANanLoss) {
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  GuardHarness h(R"({})");
  EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 3 ? Inject::kNanLoss : Inject::kNone; }), 4);
  EXPECT_EQ(h.session.stop_reason(), "nonfinite_guard: loss is nan at step 3");
  ASSERT_TRUE(h.session.End().ok());
  EXPECT_THAT(h.Logs(), HasSubstr("[nonfinite_guard] loss is nan at step 3; stopping the run (its "
                                  "optimizer step was skipped: the parameters are still finite)"));
  EXPECT_TRUE(at::isfinite(net.fc->weight).all().item<bool>());
  EXPECT_THAT(h.recorder->Texts("nonfinite_guard/reason"),
              ElementsAre("**Stopped:** loss is nan at step 3"));
}

TEST(NonFiniteGuardTest, StopsOnAnInfGradientOrOnlyLaterWithoutGradientChecks) {
  {
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
    GuardHarness h(R"({"action": "stop"})");
    EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 2 ? Inject::kInfGrad : Inject::kNone; }),
              3);
    EXPECT_EQ(h.session.stop_reason(),
              "nonfinite_guard: gradient of 'fc.weight' has inf at step 2 (1 of 2 values)");
  }
  {
    // check_gradients false: the loss is finite at step 2; the inf weights
    // make the loss non-finite at step 3.
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
    GuardHarness h(R"({"check_gradients": false})");
    EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 2 ? Inject::kInfGrad : Inject::kNone; }),
              4);
    EXPECT_THAT(h.session.stop_reason(),
                AllOf(StartsWith("nonfinite_guard: loss is "), HasSubstr(" at step 3")));
  }
  {
    // every_n 2 checks every 2nd iteration (steps 1, 3, 5, ...): step 2 is
    // not checked; step 3 is, and finds the damage.
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
    GuardHarness h(R"({"every_n": 2})");
    EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 2 ? Inject::kInfGrad : Inject::kNone; }),
              4);
    EXPECT_THAT(h.session.stop_reason(), HasSubstr("at step 3"));
  }
}

// A reference run that really skips the bad steps (no forward, no update).
std::vector<at::Tensor> ReferenceSkipping(torch::optim::Optimizer& opt, Net& net, int steps,
                                          const std::vector<int>& skipped) {
  for (int i = 0; i < steps; ++i) {
    if (std::find(skipped.begin(), skipped.end(), i) != skipped.end()) continue;
    TrainStep(net, opt);
  }
  return Weights(net);
}

TEST(NonFiniteGuardTest, SkipUndoesTheStepWithSgdMomentum) {
  Net net, ref;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::optim::SGD ref_opt(ref.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  GuardHarness h(R"({"action": "skip"})");
  EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 3 ? Inject::kNanGrad : Inject::kNone; }),
            8);
  EXPECT_FALSE(h.session.ShouldStop());
  EXPECT_EQ(h.plugin->skipped_steps(), 1);
  auto expected = ReferenceSkipping(ref_opt, ref, 8, {3});
  auto got = Weights(net);
  ASSERT_EQ(got.size(), expected.size());
  // Parameters, the `seen` buffer (7 bumps) and thus the momentum equal a run
  // that never took step 3.
  EXPECT_TRUE(Equal(got, expected));
  EXPECT_THAT(h.Logs(), HasSubstr("[nonfinite_guard] skipped the optimizer step of step 3: "
                                  "gradient of 'fc.weight' has nan at step 3 (1 of 2 values)"));
  EXPECT_THAT(h.recorder->Texts("nonfinite_guard/skipped"),
              ElementsAre("skipped step 3 (gradient of 'fc.weight' has nan at step 3 (1 of 2 "
                          "values)): its optimizer step did not run"));
  EXPECT_THAT(h.recorder->Scalars("nonfinite_guard/skipped_steps"), ElementsAre(1.0));
  ASSERT_TRUE(h.session.End().ok());
  EXPECT_THAT(h.Logs(), HasSubstr("skipped 1 step with a non-finite loss or gradient"));
}

TEST(NonFiniteGuardTest, SkipUndoesTheFirstStepAndAdamState) {
  // Step 0 creates the optimizer's state lazily: skipping it must drop that state.
  Net net, ref;
  torch::optim::Adam opt(net.parameters(), torch::optim::AdamOptions(0.01));
  torch::optim::Adam ref_opt(ref.parameters(), torch::optim::AdamOptions(0.01));
  GuardHarness h(R"({"action": "skip"})");
  EXPECT_EQ(h.Run(net, opt, 6,
                  [](int i) { return i == 0 || i == 4 ? Inject::kNanLoss : Inject::kNone; }),
            6);
  EXPECT_EQ(h.plugin->skipped_steps(), 2);
  EXPECT_TRUE(Equal(Weights(net), ReferenceSkipping(ref_opt, ref, 6, {0, 4})));
  EXPECT_THAT(h.Logs(), HasSubstr("skipped the optimizer step of step 0: loss is nan at step 0"));
  // Adam's step counts match the reference (4 real steps).
  for (const auto& [key, state] : opt.state()) {
    EXPECT_EQ(static_cast<torch::optim::AdamParamState&>(*state).step(), 4);
  }
}

TEST(NonFiniteGuardTest, SkipStopsAfterTooManySkipsInARow) {
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  GuardHarness h(R"({"action": "skip", "max_consecutive_skips": 3})");
  EXPECT_EQ(h.Run(net, opt, 10, [](int i) { return i >= 2 ? Inject::kNanLoss : Inject::kNone; }),
            5);
  EXPECT_EQ(h.session.stop_reason(),
            "nonfinite_guard: 3 steps in a row were not finite (max_consecutive_skips 3); last: "
            "loss is nan at step 4");
  EXPECT_EQ(h.plugin->skipped_steps(), 3);
  Net ref;
  torch::optim::SGD ref_opt(ref.parameters(), torch::optim::SGDOptions(0.1));
  EXPECT_TRUE(Equal(Weights(net), ReferenceSkipping(ref_opt, ref, 5, {2, 3, 4})));
}

TEST(NonFiniteGuardTest, SkipWorksWithAnyOptimizerButNotWithABrokenBuffer) {
  {
    // No copy of the optimizer's state is needed: LBFGS is fine.
    Net net;
    torch::optim::LBFGS opt(net.parameters(), torch::optim::LBFGSOptions(0.1));
    GuardHarness h(R"({"action": "skip"})");
    h.session.Bind(&net, &opt);
    h.session.Begin(RunInfo{});
    EXPECT_TRUE(h.session.status().ok()) << h.session.status();
  }
  {
    // A forward pass that wrote a non-finite buffer cannot be undone by
    // skipping the update: the run stops and says why.
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
    GuardHarness h(R"({"action": "skip"})");
    EXPECT_EQ(h.Run(net, opt, 6,
                    [](int i) { return i == 2 ? Inject::kNanLossAndBuffer : Inject::kNone; }),
              3);
    EXPECT_EQ(h.session.stop_reason(),
              "nonfinite_guard: loss is nan at step 2; buffer 'seen' has nan at step 2 (1 of 1 "
              "values)");
    EXPECT_THAT(h.Logs(), HasSubstr("(a skip cannot undo a buffer's update)"));
    EXPECT_EQ(h.plugin->skipped_steps(), 0);
  }
}

TEST(NonFiniteGuardTest, AHostWithoutTheGradientHooksIsCheckedAfterTheStep) {
  {
    // "skip" cannot undo a step that already ran: it stops and says how to fix it.
    Net net;
    torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
    GuardHarness h(R"({"action": "skip"})");
    EXPECT_EQ(h.Run(net, opt, 8, [](int i) { return i == 3 ? Inject::kNanLoss : Inject::kNone; },
                    /*gradient_hooks=*/false),
              4);
    EXPECT_EQ(h.session.stop_reason(), "nonfinite_guard: loss is nan at step 3");
    EXPECT_THAT(h.Logs(), HasSubstr("this host does not call Session::BeforeOptimizerStep(), so "
                                    "the optimizer step of step 3 has already run"));
  }
  {
    // "stop" without a model still checks the loss.
    GuardHarness h(R"({})");
    h.session.Begin(RunInfo{});
    h.session.BeginEpoch();
    h.session.EndIteration(kInf, 4);
    EXPECT_EQ(h.session.stop_reason(), "nonfinite_guard: loss is inf at step 0");
    EXPECT_THAT(h.Logs(), HasSubstr("no model is bound to the session: only the loss is checked"));
  }
}

// ---------------------------------------------------------------------------
// Two instances of one plugin in one run

config::PluginConfig PluginFromJson(const std::string& json) {
  config::PluginConfig p;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &p).ok()) << json;
  return p;
}

// Two early_stopping monitors, loaded from the plugin library: each decides
// on its own metric, publishes under its own id, and keeps its own state.
TEST(PluginInstancesTest, TwoEarlyStoppingMonitorsEachWithItsOwnIdRecordsAndState) {
  std::vector<std::string> lines;
  Session session;
  session.bus().set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(session.LoadPlugin(PluginFromJson(R"({"name": "early_stopping", "id": "stop_on_loss",
      "options": {"monitor": "val/loss", "patience": 5}})")).ok());
  ASSERT_TRUE(session.LoadPlugin(PluginFromJson(R"({"name": "early_stopping", "id": "stop_on_accuracy",
      "options": {"monitor": "val/accuracy", "mode": "max", "patience": 1}})")).ok());
  EXPECT_THAT(Msg(session.LoadPlugin(PluginFromJson(R"({"name": "early_stopping", "id": "stop_on_loss"})"))),
              HasSubstr("plugin 'stop_on_loss' is loaded twice; list it once, or give each "
                        "instance its own `id`"));
  auto rec = MakePlugin<Recorder>();
  Recorder* recorder = rec.get();
  ASSERT_TRUE(session.AddPlugin(std::move(rec), "recorder").ok());
  session.Begin(RunInfo{});
  int epochs = 0;
  for (int epoch = 0; epoch < 10 && !session.ShouldStop(); ++epoch, ++epochs) {
    session.BeginEpoch();
    session.EndIteration(1.0, 4);
    // The loss keeps improving; the accuracy stalls after the first epoch.
    session.EndValidation(Metrics{{"val/loss", 1.0 / (epoch + 1)}, {"val/accuracy", 0.5}});
    session.EndEpoch();
  }
  EXPECT_EQ(epochs, 2);  // improved at 0, no better at 1: patience 1 ran out
  EXPECT_THAT(session.stop_reason(), StartsWith("stop_on_accuracy: "));
  EXPECT_THAT(recorder->Scalars("stop_on_loss/best"), ElementsAre(1.0, 0.5));
  EXPECT_THAT(recorder->Scalars("stop_on_accuracy/wait"), ElementsAre(0, 1));
  EXPECT_TRUE(recorder->Scalars("early_stopping/best").empty());
  EXPECT_THAT(lines, ::testing::Contains(StartsWith("[stop_on_accuracy] stopping: ")));
  std::vector<std::string> names;
  for (const auto& p : session.plugins()) names.push_back(p.name);
  EXPECT_THAT(names, ElementsAre("stop_on_loss", "stop_on_accuracy", "recorder"));
  ASSERT_TRUE(session.End().ok());
}

// ---------------------------------------------------------------------------
// grad_clip

namespace gc = grad_clip;

std::string ClipError(const std::string& json) {
  auto made = CreatePlugin<gc::GradClipPlugin>(json);
  return made.ok() ? "(created)" : std::string(made.status().message());
}

TEST(GradClipTest, BadOptionsNameTheOption) {
  EXPECT_THAT(ClipError(R"({})"), HasSubstr("set option 'max_norm' (clip by total norm) or "
                                            "'clip_value' (clip by value), or both"));
  EXPECT_THAT(ClipError(R"({"max_norm": -1})"),
              HasSubstr("option 'max_norm' must be a finite number >= 0"));
  EXPECT_THAT(ClipError(R"({"max_norm": 1, "norm_type": 0})"),
              HasSubstr("option 'norm_type' must be a number > 0 or the string \"inf\""));
  EXPECT_THAT(ClipError(R"({"max_norm": 1, "norm_type": "two"})"),
              HasSubstr("option 'norm_type' must be a number > 0"));
  EXPECT_THAT(ClipError(R"({"clip_value": -0.5})"),
              HasSubstr("option 'clip_value' must be a finite number >= 0"));
  EXPECT_THAT(ClipError(R"({"max_norm": 1, "log_every_n": -1})"),
              HasSubstr("option 'log_every_n' must be >= 0 (0: never), got -1"));
  EXPECT_EQ(ClipError(R"({"max_norm": 1, "norm_type": "inf"})"), "(created)");
  EXPECT_EQ(gc::GradClipPlugin::Info().default_priority, -50);
}

// Two identical sets of parameters with seeded random gradients.
std::vector<at::Tensor> ParamsWithGrads(uint64_t seed, double scale) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<at::Tensor> params;
  for (auto shape : {std::vector<int64_t>{5, 3}, {3}, {2, 3}, {2}}) {
    at::Tensor p = at::randn(shape, gen).set_requires_grad(true);
    p.mutable_grad() = at::randn(shape, gen) * scale;
    params.push_back(p);
  }
  return params;
}

TEST(GradClipTest, ClippingEqualsLibTorchsOwnFunctionsBitForBit) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double norm_type : {2.0, 1.0, 3.5, inf}) {
    for (double max_norm : {0.5, 1e6}) {  // clipped, and left alone
      SCOPED_TRACE(absl::StrCat("norm_type ", norm_type, " max_norm ", max_norm));
      auto ours = ParamsWithGrads(7, 3.0), theirs = ParamsWithGrads(7, 3.0);
      const double norm = gc::TotalGradNorm(ours, norm_type);
      const bool scaled = gc::ClipToNorm(ours, norm, max_norm);
      const double expected = torch::nn::utils::clip_grad_norm_(theirs, max_norm, norm_type);
      EXPECT_EQ(norm, expected);
      EXPECT_EQ(scaled, max_norm < norm);
      for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(ours[i].grad().equal(theirs[i].grad()));
    }
  }
  auto ours = ParamsWithGrads(8, 3.0), theirs = ParamsWithGrads(8, 3.0);
  gc::ClipToValue(ours, 0.25);
  torch::nn::utils::clip_grad_value_(theirs, 0.25);
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(ours[i].grad().equal(theirs[i].grad()));
  EXPECT_EQ(gc::TotalGradNorm({at::zeros({2}).set_requires_grad(true)}, 2.0), 0.0);  // no grads
}

struct ClipHarness {
  explicit ClipHarness(const std::string& json) {
    session.bus().set_log_sink([this](absl::string_view l) { logs.emplace_back(l); });
    auto made = CreatePlugin<gc::GradClipPlugin>(json);
    EXPECT_TRUE(made.ok()) << made.status();
    plugin = made->get();
    EXPECT_TRUE(session.AddPlugin(*std::move(made), "grad_clip", -50).ok());
    auto rec = MakePlugin<Recorder>();
    recorder = rec.get();
    EXPECT_TRUE(session.AddPlugin(std::move(rec), "recorder").ok());
  }
  std::vector<std::string> logs;
  Session session;
  gc::GradClipPlugin* plugin = nullptr;
  Recorder* recorder = nullptr;
};

TEST(GradClipTest, LogsTheNormBeforeClippingAndLeavesANonFiniteNormAlone) {
  Net net;
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.1));
  ClipHarness h(R"({"max_norm": 0.001, "log_every_n": 2})");
  h.session.Bind(&net, &opt);
  h.session.Begin(RunInfo{});
  h.session.BeginEpoch();
  std::vector<double> seen_by_step;
  for (int i = 0; i < 4; ++i) {
    h.session.BeginIteration(4);
    opt.zero_grad();
    at::Tensor loss = (net.fc->forward(Inputs()) - Targets()).pow(2).mean();
    loss.backward();
    if (i == 3) net.fc->weight.grad()[0][0].fill_(kNan);
    const double unclipped = gc::TotalGradNorm(net.parameters(), 2.0);
    h.session.AfterBackward(loss.item<double>());
    ASSERT_TRUE(h.session.BeforeOptimizerStep(loss.item<double>()));
    seen_by_step.push_back(gc::TotalGradNorm(net.parameters(), 2.0));
    if (i < 3) {
      EXPECT_GT(unclipped, 0.001);
      EXPECT_NEAR(seen_by_step.back(), 0.001, 1e-6) << "step " << i;
    } else {
      EXPECT_TRUE(std::isnan(seen_by_step.back()));  // left alone, not turned into all-nan
      EXPECT_FALSE(std::isnan(net.fc->bias.grad().item<double>()));
    }
    opt.step();
    h.session.EndIteration(loss.item<double>(), 4);
  }
  h.session.EndEpoch();
  ASSERT_TRUE(h.session.End().ok());
  // log_every_n 2: steps 0 and 2; the values are the norms before clipping.
  ASSERT_EQ(h.recorder->Scalars("grad_clip/norm").size(), 2u);
  EXPECT_GT(h.recorder->Scalars("grad_clip/norm")[0], 0.001);
  EXPECT_EQ(h.plugin->clipped_steps(), 3);
  std::string all;
  for (const auto& l : h.logs) absl::StrAppend(&all, l, "\n");
  EXPECT_THAT(all, HasSubstr("[grad_clip] scaled the gradients down in 3 of 4 steps (max_norm "
                             "0.001)"));
}

// ---------------------------------------------------------------------------
// End to end through the trainbus program

// 300 samples, batch 50: 6 iterations per epoch, validation every epoch.
std::string SmallConfig(const TempDir& dir, int epochs, const std::string& plugins) {
  return dir.Write("run.json", absl::StrCat(R"({
    "name": "small", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": )", epochs, R"(, "batch_size": 50, "num_threads": 1, "seed": 3},
    "model": {"type": "mlp", "hidden": [16]},
    "dataset": {"train_samples": 300, "val_samples": 60},
    "plugins": [)", plugins, "]}"));
}

TEST(ControlPluginsEndToEndTest, EarlyStoppingEndsTheRunWithItsReason) {
  TempDir dir;
  // A baseline no loss can beat (0): every epoch is a bad check, so with
  // patience 2 the run stops after epoch 2 of 6, whatever the training does.
  std::string config = SmallConfig(dir, 6, R"(
      {"name": "early_stopping",
       "options": {"monitor": "val/loss", "patience": 2, "baseline": 0,
                   "restore_best_weights": true}},
      {"name": "nonfinite_guard", "options": {"action": "skip"}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nonfinite_guard"));
  EXPECT_THAT(r.output, HasSubstr("[early_stopping] monitoring val/loss (mode min from auto), "
                                  "patience 2 checks"));
  EXPECT_THAT(r.output,
              HasSubstr("finished: 12 iterations in "));
  EXPECT_THAT(r.output, HasSubstr("(stopped: early_stopping: val/loss did not improve for 2 "
                                  "checks (patience 2, min_delta 0, mode min; last "));
  EXPECT_THAT(r.output, HasSubstr(") at step 11, epoch 2; no check improved on the baseline 0)"));
  EXPECT_THAT(r.output, HasSubstr("[early_stopping] restore_best_weights: no check improved"));
  EXPECT_THAT(r.output, Not(HasSubstr("[nonfinite_guard] skipped")));
}

// The plugin's state travels through the checkpoint plugin: a run cut after
// epoch 2 and resumed stops exactly where the uninterrupted run stops, on a
// best value (and best weights) from before the cut.
TEST(ControlPluginsEndToEndTest, ResumedRunStopsWhereTheStraightRunStops) {
  TempDir dir;
  const std::string plugins = R"(
      {"name": "early_stopping",
       "options": {"monitor": "val/loss", "patience": 2, "min_delta": 0.04,
                   "restore_best_weights": true}},
      {"name": "checkpoint", "options": {"every_n_epochs": 1, "save_on_end": false}})";
  std::string config = SmallConfig(dir, 15, plugins);
  CommandResult straight = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  const size_t at = straight.output.find("(stopped: early_stopping: ");
  ASSERT_NE(at, std::string::npos) << straight.output;
  const std::string stop_line = straight.output.substr(at, straight.output.find('\n', at) - at);
  // This seed stops at epoch 3 on a best from epoch 1 (checked below).
  EXPECT_THAT(stop_line, HasSubstr("at step 17, epoch 3; best val/loss "));
  EXPECT_THAT(stop_line, HasSubstr(" at step 5, epoch 1)"));

  fs::remove_all(dir.path() + "/runs");
  CommandResult first = RunTrainbus(absl::StrCat("train --config ", config, " --set trainer.epochs=2"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("finished: 12 iterations in "));
  CommandResult resumed = RunTrainbus(
      absl::StrCat("train --config ", config, " --resume ", dir.path(), "/runs/small/checkpoints"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resuming at step 12"));
  EXPECT_THAT(resumed.output, HasSubstr("finished: 6 iterations in "));
  EXPECT_THAT(resumed.output, HasSubstr(stop_line));
  // The best weights came from the checkpoint: this process never ran step 5.
  EXPECT_THAT(resumed.output, HasSubstr("[early_stopping] restored the best weights (val/loss "));
  EXPECT_THAT(resumed.output, HasSubstr(" at step 5, epoch 1): 4 parameters, 0 buffers"));
}

TEST(ControlPluginsEndToEndTest, BadOptionIsAClearError) {
  TempDir dir;
  std::string config = SmallConfig(
      dir, 2, R"({"name": "early_stopping", "options": {"monitor": "val/loss", "patience": -1}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'early_stopping'"),
                              HasSubstr("option 'patience' must be >= 0, got -1")));
  config = SmallConfig(dir, 2, R"({"name": "nonfinite_guard", "options": {"every_n": 0}})");
  r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'nonfinite_guard'"),
                              HasSubstr("option 'every_n' must be > 0, got 0")));
}

}  // namespace
}  // namespace trainbus
