// The health plugin: each detector made to fire on a series built for it
// (and stay silent on a healthy one), the plugin end to end on a FakeRun,
// its state across a resume, and real runs of the trainbus program.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "detectors.h"
#include "health.h"
#include "test_util.h"
#include "trainbus/testing.h"

namespace trainbus::health {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::CreatePlugin;
using testing::FakeRun;
using testing::FakeRunOptions;
using testing::FakeRunResult;
using test_util::CommandResult;
using test_util::RunTrainbus;
using test_util::TempDir;

// A healthy loss: 2 falling towards 0.2, with 3% noise seeded by the step
// (the same value for a step however the run is split).
double Healthy(int64_t step) {
  std::mt19937 rng(static_cast<uint32_t>(step));
  std::normal_distribution<double> noise(0.0, 0.03);
  return (0.2 + 1.8 * std::exp(-step / 150.0)) * (1.0 + noise(rng));
}

std::vector<std::string> KindsOf(const std::vector<Finding>& findings) {
  std::vector<std::string> kinds;
  for (const Finding& f : findings) kinds.push_back(absl::StrCat(f.kind, "@", f.step));
  return kinds;
}

TEST(DetectorsTest, RobustStatsIgnoreTheOutlier) {
  RobustStats s = Robust({1, 2, 3, 4, 100});
  EXPECT_EQ(s.median, 3);
  EXPECT_NEAR(s.mad, 1.4826, 1e-12);  // |deviations| 2 1 0 1 97 -> median 1
}

TEST(DetectorsTest, ASpikeIsFoundOnceAndDoesNotMoveTheBaseline) {
  SpikeDetector d(20, 8.0);
  std::vector<int64_t> spikes;
  for (int64_t i = 0; i < 100; ++i) {
    const double v = i == 60 ? 9.0 : 1.0 + 0.01 * ((i * 7) % 5);
    if (d.Add(v).spike) spikes.push_back(i);
  }
  EXPECT_THAT(spikes, ElementsAre(60));
  EXPECT_LT(Robust(d.values()).median, 1.1);
}

TEST(DetectorsTest, PlateauOverfitChanceAndGradients) {
  PlateauDetector plateau(3, 0.01, /*lower_is_better=*/true);
  std::vector<int> started;
  const double values[] = {1.0, 0.8, 0.79999, 0.8, 0.81, 0.8, 0.5, 0.5, 0.5, 0.5};
  for (int i = 0; i < 10; ++i) {
    if (plateau.Add(values[i])) started.push_back(i);
  }
  EXPECT_THAT(started, ElementsAre(4, 9));  // 3 stale checks after 0.8; again after 0.5

  OverfitDetector overfit(3);
  std::vector<int64_t> began;
  const double train[] = {1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2};
  const double val[] = {1.1, 0.9, 0.8, 0.85, 0.9, 0.95, 1.0};
  for (int i = 0; i < 7; ++i) {
    if (auto b = overfit.Add(train[i], val[i], 10 * i)) began.push_back(*b);
  }
  EXPECT_THAT(began, ElementsAre(30));  // worse than the best from the 4th check on

  EXPECT_TRUE(LooksLikeChance(std::log(6.0), 1.0 / 6, 6, 0.05));
  EXPECT_FALSE(LooksLikeChance(std::log(6.0), 0.6, 6, 0.05));
  EXPECT_FALSE(LooksLikeChance(0.3, 0.1, 6, 0.05));

  GradientWatch watch(1e-8, 100, 2);
  EXPECT_EQ(watch.Add("a", 0.0), GradientWatch::Change::kNone);
  EXPECT_EQ(watch.Add("a", 0.0), GradientWatch::Change::kVanished);
  EXPECT_EQ(watch.Add("a", 0.0), GradientWatch::Change::kNone);  // once
  EXPECT_EQ(watch.Add("b", 500), GradientWatch::Change::kExploded);
  EXPECT_EQ(watch.Add("b", 1), GradientWatch::Change::kNone);
}

// The plugin on a FakeRun of `epochs` x 100 iterations with the given loss
// and validation.
struct HealthRun {
  FakeRunResult result;
  std::vector<Finding> findings;
  std::vector<std::string> texts;
};
HealthRun RunHealth(const std::string& options, std::function<double(int64_t)> loss,
              std::function<Metrics(int64_t)> validation = nullptr, int64_t epochs = 10) {
  auto plugin = CreatePlugin<HealthPlugin>(options);
  EXPECT_TRUE(plugin.ok()) << plugin.status();
  FakeRunOptions o;
  o.epochs = epochs;
  o.iterations_per_epoch = 100;
  FakeRun run(o);
  EXPECT_TRUE(run.Add(plugin->get(), "health").ok());
  run.set_loss(std::move(loss));
  if (validation) run.set_validation(std::move(validation));
  HealthRun r;
  r.result = run.Run();
  r.findings = (*plugin)->findings();
  r.texts = run.recorder().Texts("health/findings");
  return r;
}

Metrics Improving(int64_t epoch) {
  return {{"val/loss", 1.0 / (epoch + 1)}, {"val/accuracy", 0.5 + epoch * 0.04}};
}

TEST(HealthPluginTest, AHealthyRunReportsNothing) {
  HealthRun r = RunHealth(R"({"classes": 6})", Healthy, Improving);
  EXPECT_TRUE(r.findings.empty()) << ::testing::PrintToString(KindsOf(r.findings));
  EXPECT_THAT(r.result.log, ElementsAre("[health] no problems found"));
}

TEST(HealthPluginTest, ALossSpikeIsReportedWithItsStepAndBatch) {
  HealthRun r = RunHealth("{}", [](int64_t s) { return s == 437 ? 25.0 : Healthy(s); }, Improving);
  EXPECT_THAT(KindsOf(r.findings), ElementsAre("spike@437"));
  EXPECT_THAT(r.findings[0].message, HasSubstr("loss spike at step 437 (epoch 5, batch 37): 25"));
  ASSERT_EQ(r.texts.size(), 1u);
  EXPECT_THAT(r.texts[0], HasSubstr("| 437 | spike | loss spike at step 437"));
  EXPECT_THAT(r.result.log.back(), HasSubstr("1 finding: 1 spike (first: loss spike at step 437"));
}

TEST(HealthPluginTest, ADivergingLossIsReportedOnceWhenItStarts) {
  // Healthy, then from step 500 the loss climbs 1% an iteration.
  HealthRun r = RunHealth("{}", [](int64_t s) { return s < 500 ? Healthy(s) : 0.3 * std::pow(1.01, s - 500); });
  ASSERT_EQ(r.findings.size(), 1u) << ::testing::PrintToString(KindsOf(r.findings));
  EXPECT_EQ(r.findings[0].kind, "divergence");
  EXPECT_GT(r.findings[0].step, 500);
  EXPECT_LT(r.findings[0].step, 700);
  EXPECT_THAT(r.findings[0].hint, HasSubstr("lower the learning rate"));
}

TEST(HealthPluginTest, APlateauOverfittingAndCollapseToChance) {
  // val/loss flat from epoch 2: a plateau after 5 more validations.
  HealthRun plateau = RunHealth(R"({"overfit_checks": 0})", Healthy,
                          [](int64_t e) { return Metrics{{"val/loss", e < 2 ? 1.0 / (e + 1) : 0.5}}; });
  EXPECT_THAT(KindsOf(plateau.findings), ElementsAre("plateau@699"));
  // val/loss worse than its best from epoch 4 while the training loss falls.
  HealthRun overfit = RunHealth(R"({"plateau_patience": 0})", Healthy,
                          [](int64_t e) { return Metrics{{"val/loss", e < 4 ? 1.0 - 0.1 * e : 0.7 + 0.05 * e}}; });
  ASSERT_EQ(overfit.findings.size(), 1u) << ::testing::PrintToString(KindsOf(overfit.findings));
  EXPECT_EQ(overfit.findings[0].kind, "overfitting");
  EXPECT_THAT(overfit.findings[0].message, HasSubstr("overfitting since step 499"));
  // Stuck at ln(6) and 1/6: collapsed.
  HealthRun chance = RunHealth(R"({"classes": 6, "plateau_patience": 0, "overfit_checks": 0})",
                         [](int64_t) { return std::log(6.0); },
                         [](int64_t) { return Metrics{{"val/loss", 1.7918}, {"val/accuracy", 0.1667}}; });
  EXPECT_THAT(KindsOf(chance.findings), ElementsAre("chance@299"));
  EXPECT_THAT(chance.findings[0].message, HasSubstr("collapsed to chance at step 299 (3 validations in a row): val/loss 1.792 is near ln(6)"));
}

TEST(HealthPluginTest, FindingsCanStopTheRunOrAskForACheckpoint) {
  HealthRun r = RunHealth(R"({"stop_on": ["spike"], "checkpoint_on": ["spike"]})",
                    [](int64_t s) { return s == 150 ? 40.0 : Healthy(s); });
  EXPECT_EQ(r.result.reason, EndReason::kStopRequested);
  EXPECT_EQ(r.result.last_step, 150);
  EXPECT_THAT(r.result.stop_reason, HasSubstr("health: loss spike at step 150"));
  EXPECT_THAT(r.result.checkpoint_requests, ElementsAre("150: health: health: spike"));
}

TEST(HealthPluginTest, VanishingGradientsOfAFrozenLayer) {
  torch::nn::Linear frozen(2, 2), live(2, 2);
  frozen->weight.mutable_grad() = torch::zeros({2, 2});
  frozen->bias.mutable_grad() = torch::zeros({2});
  auto plugin = CreatePlugin<HealthPlugin>(R"({"gradients_every_n": 10, "vanish_checks": 3})");
  ASSERT_TRUE(plugin.ok());
  FakeRunOptions o;
  o.iterations_per_epoch = 50;
  FakeRun run(o);
  run.Bind(frozen.ptr().get(), nullptr);
  ASSERT_TRUE(run.Add(plugin->get(), "health").ok());
  FakeRunResult result = run.Run();
  // Checked after iterations 10, 20, 30: the third check finds it.
  EXPECT_THAT(KindsOf((*plugin)->findings()), ElementsAre("vanishing@29"));
  EXPECT_THAT((*plugin)->findings()[0].message, HasSubstr("vanishing gradients at step 29 in 2 layers: weight, bias (norm below 1e-08 at 3 checks in a row)"));
  EXPECT_THAT(run.recorder().Scalars("health/dead_gradients"), ::testing::Each(1.0));
  EXPECT_THAT(run.recorder().Steps("health/grad_norm/weight"), ElementsAre(9, 19, 29, 39, 49));
}

TEST(HealthPluginTest, AResumedRunFindsWhatTheStraightRunFinds) {
  auto loss = [](int64_t s) { return s == 130 || s == 640 ? 30.0 : Healthy(s % 300); };
  auto validation = [](int64_t e) { return Metrics{{"val/loss", e < 3 ? 1.0 / (e + 1) : 0.4}}; };
  HealthRun straight = RunHealth("{}", loss, validation);

  auto first = CreatePlugin<HealthPlugin>("{}");
  ASSERT_TRUE(first.ok());
  FakeRunOptions half;
  half.epochs = 5;
  half.iterations_per_epoch = 100;
  FakeRun a(half);
  ASSERT_TRUE(a.Add(first->get(), "health").ok());
  a.set_loss(loss);
  a.set_validation(validation);
  a.Run();
  absl::StatusOr<std::string> state = (*first)->SaveState();
  ASSERT_TRUE(state.ok()) << state.status();

  auto second = CreatePlugin<HealthPlugin>("{}");
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE((*second)->LoadState(*state).ok());
  FakeRunOptions rest = half;
  rest.epochs = 10;
  rest.start_step = 500;
  FakeRun b(rest);
  ASSERT_TRUE(b.Add(second->get(), "health").ok());
  b.set_loss(loss);
  b.set_validation(validation);
  b.Run();
  EXPECT_EQ(KindsOf((*second)->findings()), KindsOf(straight.findings));
  EXPECT_FALSE(KindsOf(straight.findings).empty());
  EXPECT_FALSE((*second)->LoadState("not a state").ok());
}

TEST(HealthPluginTest, BadOptionsAreNamed) {
  auto bad = CreatePlugin<HealthPlugin>(R"({"stop_on": ["spikes"]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("plugin 'health': option 'stop_on' names 'spikes', which is no kind of "
                        "finding; kinds: chance, divergence, exploding, overfitting, plateau, spike, vanishing"));
  bad = CreatePlugin<HealthPlugin>(R"({"spike_window": 3})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("option 'spike_window' must be 0 (off) or 5-100000, got 3"));
}

// Real runs of the default example, smaller: a learning rate of 2 kills the
// network early (val/accuracy at chance, loss at ln 6), and the plugin says
// so; the same run at the example's own lr finds nothing.
std::string SmallExample(const TempDir& dir) {
  return absl::StrCat("train --config ", TRAINBUS_SOURCE_DIR, "/examples/shapes/config.json",
                      " --set log_root=", dir.path(), " --set trainer.epochs=3",
                      " --set dataset.train_samples=1200 --set dataset.val_samples=300",
                      " --set trainer.num_threads=1 --set plugins.progress.enabled=false",
                      " --set plugins.tensorboard.enabled=false --set plugins.checkpoint.enabled=false",
                      " --set plugins.early_stopping.enabled=false --set plugins.health.enabled=true");
}

TEST(HealthRunTest, ATooHighLearningRateCollapsesToChanceAndIsNamed) {
  TempDir dir;
  CommandResult r = RunTrainbus(SmallExample(dir) + " --set optimizer.lr=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("[health] the model has collapsed to chance at step 56 (3 validations in a row)"),
                              HasSubstr("is near ln(6) = 1.792"), HasSubstr("of the gradients are exactly zero (dead units)"),
                              HasSubstr("lower the learning rate")))
      << r.output;
}

TEST(HealthRunTest, TheExampleAsConfiguredHasNoProblems) {
  TempDir dir;
  CommandResult r = RunTrainbus(SmallExample(dir));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("[health] no problems found"), Not(HasSubstr("collapsed"))))
      << r.output;
}

}  // namespace
}  // namespace trainbus::health
