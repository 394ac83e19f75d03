// The health plugin: each detector made to fire on a series built for it
// (and stay silent on a healthy one), the plugin end to end on a FakeRun,
// its state across a resume, and real runs of the trainbus program.
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "detectors.h"
#include "health.h"
#include "tensor_squares.h"
#include "test_util.h"
#include "trainbus/testing.h"

namespace trainbus::health {
namespace {

using ::testing::AllOf;
using ::testing::ContainsRegex;
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

TEST(DetectorsTest, AJumpToANewLevelIsOneSpikeAndTheBaselineFollows) {
  SpikeDetector d(20, 8.0);
  std::vector<int64_t> spikes;
  std::optional<double> last_score;
  for (int64_t i = 0; i < 100; ++i) {
    const double v = (i < 40 ? 1.0 : 5.0) + 0.01 * ((i * 7) % 5);
    SpikeDetector::Result r = d.Add(v);
    if (r.spike) spikes.push_back(i);
    last_score = r.score;
  }
  EXPECT_THAT(spikes, ElementsAre(40));  // not 40, 41, 42, ...
  EXPECT_GT(Robust(d.values()).median, 4.9);
  ASSERT_TRUE(last_score.has_value());
  EXPECT_LT(*last_score, 8.0);
}

TEST(DetectorsTest, SpikesAreJudgedAfterTheWarmUpNotAFullWindow) {
  SpikeDetector d(50, 8.0);
  for (int64_t i = 0; i < kSpikeWarmup; ++i) EXPECT_FALSE(d.Add(1.0 + 0.01 * (i % 3)).score);
  EXPECT_TRUE(d.Add(1.0).score.has_value());
  EXPECT_TRUE(d.Add(9.0).spike);
}

TEST(DetectorsTest, DivergenceIsARiseOfTheMedianNotOneWildValue) {
  TrendDetector t(20, 0.5);
  std::vector<int64_t> started;
  for (int64_t i = 0; i < 80; ++i) {
    double v = i < 50 ? 1.0 + 0.01 * (i % 4) : 2.0 + 0.01 * (i % 4);
    if (i == 30) v = 1000;  // one wild batch: the spike detector's
    if (t.Add(v).started) started.push_back(i);
  }
  // Ten of the newer half at 2.0 raise its median above 1.5.
  EXPECT_THAT(started, ElementsAre(55));
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
  EXPECT_TRUE(LooksLikeChance(2.5, 0.16, 6, 0.05));  // far above ln 6 at chance accuracy is as bad

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

// MeasureSquares against a reference summed here value by value: the loop
// (dense CPU float and double, in any dimension order, views with an offset
// or a pending negation) and the LibTorch path (every other kind).
TEST(TensorSquaresTest, MatchesAValueByValueSumOnEveryKindOfTensor) {
  auto reference = [](const at::Tensor& t) {
    const at::Tensor dense = t.layout() == at::kStrided ? t : t.to_dense();
    const at::Tensor wide = dense.to(dense.is_complex() ? at::kComplexDouble : at::kDouble);
    const at::Tensor magnitudes = wide.abs().contiguous();
    SquaresAndZeros r;
    const double* v = magnitudes.data_ptr<double>();
    for (int64_t i = 0; i < magnitudes.numel(); ++i) {
      r.sum_squares += v[i] * v[i];
      r.zeros += v[i] == 0.0;
    }
    r.entries = magnitudes.numel();
    return r;
  };
  torch::manual_seed(7);
  at::Tensor with_zeros = torch::randn({37, 11});
  with_zeros.index_put_({with_zeros.abs() < 0.3}, 0.0);
  with_zeros[0][0] = -0.0;
  const std::vector<std::pair<std::string, at::Tensor>> cases = {
      {"float", with_zeros},
      {"double", with_zeros.to(at::kDouble)},
      {"odd length (a tail after the blocks of four)", torch::randn({7})},
      {"one value", torch::full({1}, 3.0)},
      {"a view at an offset", with_zeros.narrow(0, 5, 20)},
      {"a negated view", at::_neg_view(with_zeros)},
      {"channels-last (dense, not contiguous)",
       torch::randn({2, 3, 4, 5}).contiguous(at::MemoryFormat::ChannelsLast)},
      {"transposed slice (not dense: LibTorch ops)", with_zeros.t().slice(1, 0, 30)},
      {"half (LibTorch ops)", with_zeros.to(at::kHalf)},
      {"sparse (its stored values)", with_zeros.to_sparse()},
      {"complex (LibTorch ops)", torch::complex(with_zeros, with_zeros.t().contiguous().t())},
  };
  for (const auto& [name, t] : cases) {
    SCOPED_TRACE(name);
    const SquaresAndZeros m = MeasureSquares(t);
    const SquaresAndZeros want = reference(t);
    EXPECT_NEAR(m.sum_squares, want.sum_squares, 1e-9 * want.sum_squares);
    EXPECT_EQ(m.zeros, want.zeros);
    EXPECT_EQ(m.entries, want.entries);
  }
  EXPECT_GE(MeasureSquares(with_zeros).zeros, 50);  // the cases above hold zeros to count
  // Empty and undefined tensors measure as empty; a NaN poisons the sum.
  const SquaresAndZeros empty = MeasureSquares(torch::zeros({0, 3}));
  EXPECT_EQ(empty.sum_squares, 0.0);
  EXPECT_EQ(empty.entries, 0);
  EXPECT_EQ(MeasureSquares(at::Tensor()).entries, 0);
  at::Tensor nan = torch::ones({9});
  nan[5] = std::nan("");
  EXPECT_TRUE(std::isnan(MeasureSquares(nan).sum_squares));
  EXPECT_TRUE(std::isinf(MeasureSquares(torch::full({2}, INFINITY)).sum_squares));
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
  // A run of spikes across the split (497-502) is one spike: the resumed
  // half must know it is inside that run.
  auto loss = [](int64_t s) {
    return s == 130 || s == 640 || (s >= 497 && s <= 502) ? 30.0 : Healthy(s % 300);
  };
  auto validation = [](int64_t e) { return Metrics{{"val/loss", e < 3 ? 1.0 / (e + 1) : 0.4}}; };
  HealthRun straight = RunHealth("{}", loss, validation);
  EXPECT_THAT(KindsOf(straight.findings), ::testing::IsSupersetOf({"spike@130", "spike@497", "spike@640"}));

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

  // A state saved before spike_spell and the request counters existed loads.
  std::string text = *state;
  for (const char* key : {"spike_spell", "requests_sent", "request_answered"}) {
    const size_t at = text.find(absl::StrCat("\n", key, " "));
    ASSERT_NE(at, std::string::npos) << key;
    text.erase(at + 1, text.find('\n', at + 1) - at);
  }
  EXPECT_TRUE((*second)->LoadState(text).ok()) << text;
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

// Real runs of the default example (the trainbus program, its CNN and its
// data) with every plugin off but health and what the test reads: each
// problem is made to happen for real and found at its step.
std::string Example(const TempDir& dir, const std::string& extra) {
  return absl::StrCat("train --config ", TRAINBUS_SOURCE_DIR, "/examples/shapes/config.json",
                      " --set log_root=", dir.path(), " --set trainer.num_threads=1",
                      " --set plugins.progress.enabled=false --set plugins.tensorboard.enabled=false",
                      " --set plugins.checkpoint.enabled=false --set plugins.early_stopping.enabled=false",
                      " --set plugins.health.enabled=true --set plugins.csv.enabled=true ", extra);
}
// The smaller example: 3 epochs of 19 iterations.
std::string SmallExample(const TempDir& dir, const std::string& extra) {
  return Example(dir, absl::StrCat("--set trainer.epochs=3 --set dataset.train_samples=1200 "
                                   "--set dataset.val_samples=300 ", extra));
}

// "kind@step" of each finding line the run printed, in order (overfitting:
// the step where it began).
std::vector<std::string> PrintedFindings(const std::string& output) {
  static const std::regex kLine(
      R"(\[health\] (loss spike at|the loss is diverging at|vanishing gradients at|exploding gradients at|the model has collapsed to chance at|plateau at|overfitting since) step (\d+))");
  static const std::map<std::string, std::string> kKinds = {
      {"loss spike at", "spike"},          {"the loss is diverging at", "divergence"},
      {"vanishing gradients at", "vanishing"}, {"exploding gradients at", "exploding"},
      {"the model has collapsed to chance at", "chance"}, {"plateau at", "plateau"},
      {"overfitting since", "overfitting"}};
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(output.begin(), output.end(), kLine); it != std::sregex_iterator(); ++it) {
    out.push_back(absl::StrCat(kKinds.at((*it)[1].str()), "@", (*it)[2].str()));
  }
  return out;
}

// The csv plugin's rows for `tag`: "step:value".
std::vector<std::string> CsvRows(const TempDir& dir, const std::string& tag) {
  std::vector<std::string> rows;
  for (absl::string_view line :
       absl::StrSplit(test_util::ReadFile(dir.path() + "/shapes-cnn/scalars.csv"), '\n')) {
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() == 4 && f[2] == tag) rows.push_back(absl::StrCat(f[1], ":", f[3]));
  }
  return rows;
}

TEST(HealthRunTest, ATooHighLearningRateSpikesKillsTheReLUsAndCollapsesToChance) {
  TempDir dir;
  CommandResult r = RunTrainbus(Example(dir, "--set optimizer.lr=0.5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // lr 0.5 (ten times the example's): two wild batches while the warm-up
  // raises the lr, then every ReLU dies (gradients exactly zero, checked every
  // 50th iteration, 3 checks in a row) and the network predicts one class.
  EXPECT_THAT(PrintedFindings(r.output),
              ElementsAre("spike@33", "spike@37", "vanishing@149", "chance@188"))
      << r.output;
  // The losses' last digits depend on the CPU (LibTorch's vector kernels sum
  // in a different order on another CPU): 5.991 on one machine, 5.993 on another.
  EXPECT_THAT(r.output, AllOf(ContainsRegex("loss spike at step 33 \\(epoch 1, batch 33\\): 5\\.99[0-9]"),
                              HasSubstr("in 5 layers: 0.weight, 0.bias, 3.weight, 3.bias, 7.weight"),
                              HasSubstr("is near ln(6) = 1.792"),
                              HasSubstr("99.9% of the gradients are exactly zero (dead units)"),
                              HasSubstr("[health] 4 findings: 1 chance, 2 spike, 1 vanishing")));
  // The records: the running count of findings, and the dead share.
  EXPECT_THAT(CsvRows(dir, "health/finding_count"), ElementsAre("33:1", "37:2", "149:3", "188:4"));
  EXPECT_THAT(CsvRows(dir, "health/dead_gradients"), ::testing::Contains(::testing::StartsWith("149:0.99")));
  // Every 50th iteration: the norm over the optimizer's one param group.
  std::vector<std::string> group = CsvRows(dir, "health/param_group/0/grad_norm");
  ASSERT_THAT(group, ::testing::SizeIs(6));
  double squares = 0;
  for (const char* layer : {"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"}) {
    const std::vector<std::string> rows = CsvRows(dir, absl::StrCat("health/grad_norm/", layer));
    ASSERT_FALSE(rows.empty()) << layer;
    const double norm = std::stod(rows[0].substr(rows[0].find(':') + 1));  // step 49
    squares += norm * norm;
  }
  EXPECT_THAT(group[0], ::testing::StartsWith("49:"));
  EXPECT_NEAR(std::stod(group[0].substr(3)), std::sqrt(squares), 1e-9 * std::sqrt(squares));
}

TEST(HealthRunTest, ACollapseWithALossAboveChanceIsNamedToo) {
  TempDir dir;
  // 5 epochs of 19 iterations: the validations from iteration 50 on (steps
  // 56, 75 and 94) are at chance, and count; those at 18 and 37 do not.
  CommandResult r = RunTrainbus(SmallExample(dir, "--set optimizer.lr=5 --set trainer.epochs=5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(PrintedFindings(r.output), ElementsAre("chance@94")) << r.output;
  EXPECT_THAT(r.output, HasSubstr("val/loss 1.987 is above ln(6) = 1.792 and val/accuracy 0.1667 near 1/6"));
}

TEST(HealthRunTest, AnLrJumpAfterTrainingDivergesTheLoss) {
  TempDir dir;
  // Two good epochs at 0.05, then StepLR multiplies the lr by 20.
  CommandResult r = RunTrainbus(Example(
      dir, R"(--set trainer.epochs=4 --set 'plugins.schedulers.options.schedule={"type":"StepLR","step_size":126,"gamma":20}')"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // One spike (the jump itself: a run of wild losses is one spike), the
  // divergence once the newer half of the window is at the new level, and
  // the dead ReLUs that follow.
  EXPECT_THAT(PrintedFindings(r.output), ElementsAre("spike@127", "divergence@151", "vanishing@249"))
      << r.output;
  // The percentage's last digits depend on the CPU (274.3 % on one machine,
  // 273.3 % on another): the step and the size are what the test checks.
  EXPECT_THAT(r.output, ContainsRegex("the loss is diverging at step 151: its median over the last 50 "
                                      "iterations is 27[0-9]\\.[0-9]% above that of the 50 before"));
  EXPECT_THAT(CsvRows(dir, "health/loss_trend"), ::testing::Contains(::testing::StartsWith("151:2.7")));
}

TEST(HealthRunTest, ATinyTrainingSetOverfits) {
  TempDir dir;
  // One batch of 64 training images, 60 epochs at a constant lr.
  CommandResult r = RunTrainbus(Example(dir, "--set trainer.epochs=60 --set dataset.train_samples=64 "
                                             "--set dataset.val_samples=500 --set plugins.schedulers.enabled=false"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // It overfits from step 24 on (val/loss worse than its best 1.291 while the
  // gap grows), which is also a plateau of val/loss, then the memorising
  // network throws a wild batch. The untrained start (at chance for 3
  // validations) is not a collapse: chance is judged from iteration 50.
  EXPECT_THAT(PrintedFindings(r.output), ElementsAre("overfitting@24", "plateau@28", "spike@29"))
      << r.output;
  EXPECT_THAT(r.output, HasSubstr("overfitting since step 24: val/loss (1.566, best 1.291) has worsened"));
  EXPECT_THAT(CsvRows(dir, "health/overfit_gap"), ::testing::Contains(::testing::StartsWith("26:1.02")));
}

TEST(HealthRunTest, APlateauAsksTheSchedulersForALowerLr) {
  TempDir dir;
  // A constant lr (ReduceLROnPlateau with a patience it never reaches) and a
  // validation every 10 iterations: val/loss stops improving by 0.1 % and
  // health asks schedulers for one reduction.
  CommandResult r = RunTrainbus(Example(
      dir, R"(--set trainer.validate_every_n_iterations=10 --set 'plugins.schedulers.options.schedule={"type":"ReduceLROnPlateau","patience":1000,"factor":0.1}' --set plugins.health.options.plateau_request=schedulers)"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(PrintedFindings(r.output), ElementsAre("plateau@149")) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("for 5 checks; asked schedulers for a ReduceLROnPlateau reduction"),
                              HasSubstr("[schedulers] ReduceLROnPlateau (schedule): lr of group 0 reduced "
                                        "from 0.05 to 0.005 on request: plateau at step 149")));
  EXPECT_THAT(CsvRows(dir, "schedulers/lr/group0"), ElementsAre(::testing::StartsWith("150:0.005")));
}

TEST(HealthRunTest, TheExampleAsConfiguredHasNoProblems) {
  TempDir dir;
  CommandResult r = RunTrainbus(Example(dir, ""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(PrintedFindings(r.output), ::testing::IsEmpty()) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[health] no problems found")) << r.output;
  EXPECT_THAT(CsvRows(dir, "health/finding_count"), ::testing::IsEmpty());
}

}  // namespace
}  // namespace trainbus::health
