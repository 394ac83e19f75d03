// The schedulers plugin:
//   - the schedules library against golden sequences from PyTorch 1.13.1
//     (tests/schedulers/goldens/lr_goldens.txt, made by
//     plugins/schedulers/tools/make_goldens.py), step for step, relative
//     error <= 1e-9 (in practice the doubles are identical);
//   - save/restore in the middle of every golden case;
//   - every bad option's message;
//   - the plugin in-process on a Session with a real SGD optimizer (per-group
//     schedules, intervals, ReduceLROnPlateau sources, records, resume);
//   - end to end through the trainbus program (lrs read back from the
//     TensorBoard event file, errors in the program's output).
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "schedulers_plugin.h"
#include "lr_schedules.h"
#include "schedules.h"
#include "trainbus/session.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "test_util.h"

namespace trainbus::schedulers {
namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

google::protobuf::Value Json(const std::string& text) {
  google::protobuf::Value v;
  auto s = google::protobuf::util::JsonStringToMessage(text, &v);
  EXPECT_TRUE(s.ok()) << text << ": " << s.message();
  return v;
}

double RelErr(double got, double want) {
  if (got == want) return 0.0;
  if (want == 0.0) return std::fabs(got);
  return std::fabs(got - want) / std::fabs(want);
}

// --- goldens -----------------------------------------------------------------

struct Golden {
  std::string name;
  std::string config;
  std::vector<double> lrs;
  std::vector<double> metrics;
  int64_t steps = 0;
  int64_t error_at = -1;
  std::vector<std::vector<double>> rows;
};

std::vector<double> ParseDoubles(absl::string_view text) {
  std::vector<double> out;
  for (absl::string_view tok : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    out.push_back(std::strtod(std::string(tok).c_str(), nullptr));
  }
  return out;
}

const std::vector<Golden>& Goldens() {
  static const std::vector<Golden>* goldens = [] {
    auto* out = new std::vector<Golden>();
    std::ifstream in(SCHEDULERS_GOLDENS);
    std::string line;
    Golden g;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      if (absl::StartsWith(line, "case ")) {
        g = Golden();
        g.name = line.substr(5);
      } else if (absl::StartsWith(line, "config ")) {
        g.config = line.substr(7);
      } else if (absl::StartsWith(line, "lrs ")) {
        g.lrs = ParseDoubles(line.substr(4));
      } else if (absl::StartsWith(line, "metrics ")) {
        std::vector<double> m = ParseDoubles(line.substr(8));
        g.metrics.assign(m.begin() + 1, m.end());  // first is the count
      } else if (absl::StartsWith(line, "steps ")) {
        std::sscanf(line.c_str(), "steps %ld error_at %ld", &g.steps, &g.error_at);
      } else if (line == "end") {
        out->push_back(g);
      } else {
        g.rows.push_back(ParseDoubles(line));
      }
    }
    return out;
  }();
  return *goldens;
}

// Steps `s` from row `from` to the end of golden `g`, comparing every row;
// returns the largest relative error.
double RunAgainstGolden(Scheduler& s, const Golden& g, int64_t from) {
  double max_err = 0;
  for (int64_t t = from + 1; t <= g.steps; ++t) {
    absl::Status st = g.metrics.empty() ? s.Step() : s.StepWithMetric(g.metrics[t - 1]);
    if (t == g.error_at) {
      EXPECT_FALSE(st.ok()) << g.name << ": PyTorch raised at step() call " << t;
      EXPECT_THAT(std::string(st.message()), HasSubstr("OneCycleLR: stepped past total_steps"));
      return max_err;
    }
    EXPECT_TRUE(st.ok()) << g.name << " step " << t << ": " << st;
    if (!st.ok()) return 1.0;
    const std::vector<double>& want = g.rows[t];
    EXPECT_EQ(s.lrs().size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const double err = RelErr(s.lrs()[i], want[i]);
      max_err = std::max(max_err, err);
      if (err > 1e-9) {
        ADD_FAILURE() << g.name << " step " << t << " group " << i << ": got "
                      << absl::StrCat(s.lrs()[i]) << " want " << absl::StrCat(want[i])
                      << " (relative error " << err << ")";
        return max_err;
      }
    }
  }
  EXPECT_EQ(g.error_at, -1) << g.name << ": PyTorch raised but we did not";
  return max_err;
}

std::string TypeOf(const Golden& g) {
  return Json(g.config).struct_value().fields().at("type").string_value();
}

// One test per schedule type, over every golden case of that type.
class SchedulersGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::vector<const Golden*> Cases() const {
    std::vector<const Golden*> out;
    for (const Golden& g : Goldens()) {
      if (TypeOf(g) == GetParam()) out.push_back(&g);
    }
    EXPECT_GE(out.size(), 3u) << GetParam();
    return out;
  }
};

TEST_P(SchedulersGoldenTest, SameLearningRatesAsPyTorch) {
  double max_err = 0;
  for (const Golden* gp : Cases()) {
    const Golden& g = *gp;
    SCOPED_TRACE(g.name);
    ASSERT_GE(g.steps, 1000);
    ASSERT_EQ(static_cast<int64_t>(g.rows.size()), g.error_at > 0 ? g.error_at : g.steps + 1);
    auto s = Scheduler::Create(Json(g.config), g.lrs, "schedule");
    ASSERT_TRUE(s.ok()) << s.status();
    for (size_t i = 0; i < g.lrs.size(); ++i) {
      EXPECT_LE(RelErr((*s)->lrs()[i], g.rows[0][i]), 1e-9) << "after construction, group " << i;
    }
    max_err = std::max(max_err, RunAgainstGolden(**s, g, 0));
  }
  EXPECT_LE(max_err, 1e-9);
  RecordProperty("max_relative_error", absl::StrCat(max_err));
}

TEST_P(SchedulersGoldenTest, SaveAndLoadInTheMiddleContinuesExactly) {
  for (const Golden* gp : Cases()) {
    const Golden& g = *gp;
    const int64_t last = g.error_at > 0 ? g.error_at - 1 : g.steps;
    for (int64_t n : {int64_t{0}, int64_t{1}, last / 2, last - 1}) {
      SCOPED_TRACE(absl::StrCat(g.name, ": saved after ", n, " steps"));
      auto first = Scheduler::Create(Json(g.config), g.lrs, "schedule");
      ASSERT_TRUE(first.ok()) << first.status();
      for (int64_t t = 1; t <= n; ++t) {
        ASSERT_TRUE(
            (g.metrics.empty() ? (*first)->Step() : (*first)->StepWithMetric(g.metrics[t - 1])).ok());
      }
      const std::string state = (*first)->SaveState();
      // A fresh scheduler, built from other lrs: the state replaces them.
      std::vector<double> other(g.lrs.size(), 0.123);
      auto second = Scheduler::Create(Json(g.config), other, "schedule");
      ASSERT_TRUE(second.ok()) << second.status();
      absl::Status loaded = (*second)->LoadState(state);
      ASSERT_TRUE(loaded.ok()) << loaded;
      EXPECT_EQ((*second)->lrs(), g.rows[n]);
      EXPECT_EQ((*second)->SaveState(), state);
      EXPECT_LE(RunAgainstGolden(**second, g, n), 1e-9);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PyTorch, SchedulersGoldenTest, ::testing::ValuesIn(KnownScheduleTypes()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(SchedulersGoldensTest, CoverEveryScheduleWithManyStepsAndUnder5MB) {
  const auto& goldens = Goldens();
  ASSERT_GE(goldens.size(), 50u);
  std::map<std::string, int> per_type;
  int64_t rows = 0;
  double max_err = 0;
  for (const Golden& g : goldens) {
    auto v = Json(g.config);
    per_type[v.struct_value().fields().at("type").string_value()]++;
    rows += static_cast<int64_t>(g.rows.size());
    auto s = Scheduler::Create(v, g.lrs, "schedule");
    ASSERT_TRUE(s.ok()) << g.name << ": " << s.status();
    max_err = std::max(max_err, RunAgainstGolden(**s, g, 0));
  }
  for (const std::string& type : KnownScheduleTypes()) {
    EXPECT_GE(per_type[type], type == "ChainedScheduler" || type == "SequentialLR" ? 4 : 3) << type;
  }
  EXPECT_LT(fs::file_size(SCHEDULERS_GOLDENS), 5u << 20);
  std::printf("goldens: %zu cases, %ld rows, max relative error vs PyTorch %.3g\n",
              goldens.size(), static_cast<long>(rows), max_err);
  EXPECT_LE(max_err, 1e-9);
  RecordProperty("max_relative_error", absl::StrCat(max_err));
}

// --- a few values by hand (the table in SCHEDULES.md) ------------------------------

std::vector<double> Sequence(const std::string& config, std::vector<double> lrs, int steps) {
  auto s = Scheduler::Create(Json(config), lrs, "schedule");
  EXPECT_TRUE(s.ok()) << s.status();
  std::vector<double> out;
  if (!s.ok()) return out;
  out.push_back((*s)->lrs()[0]);
  for (int i = 0; i < steps; ++i) {
    EXPECT_TRUE((*s)->Step().ok());
    out.push_back((*s)->lrs()[0]);
  }
  return out;
}

TEST(SchedulersLibraryTest, DocumentedExamples) {
  // PyTorch's SequentialLR docstring example: ConstantLR(0.1, 2) then
  // ExponentialLR(0.9), lr 1. The docstring says 0.1, 0.1, 0.9, 0.81, 0.729,
  // but 1.13.1 restarts the next schedule at its t = 0 on the milestone, so
  // it really gives 0.1, 0.1, 1.0, 0.9, 0.81 (checked with python3-torch).
  auto seq = Sequence(R"({"type": "SequentialLR", "milestones": [2], "schedulers": [
      {"type": "ConstantLR", "factor": 0.1, "total_iters": 2},
      {"type": "ExponentialLR", "gamma": 0.9}]})",
                      {1.0}, 4);
  EXPECT_NEAR(seq[0], 0.1, 1e-15);
  EXPECT_NEAR(seq[1], 0.1, 1e-15);
  EXPECT_EQ(seq[2], 1.0);
  EXPECT_NEAR(seq[3], 0.9, 1e-15);
  EXPECT_NEAR(seq[4], 0.81, 1e-15);
  // LinearLR docstring: 0.05 with start_factor 0.5, total_iters 4.
  auto lin = Sequence(R"({"type": "LinearLR", "start_factor": 0.5, "total_iters": 4})", {0.05}, 5);
  EXPECT_THAT(lin, ::testing::Pointwise(::testing::DoubleNear(1e-15),
                                        std::vector<double>{0.025, 0.03125, 0.0375, 0.04375, 0.05,
                                                            0.05}));
  // Cosine: not clamped, rises again after T_max.
  auto cos = Sequence(R"({"type": "CosineAnnealingLR", "T_max": 4})", {1.0}, 6);
  EXPECT_NEAR(cos[2], 0.5, 1e-15);
  EXPECT_NEAR(cos[4], 0.0, 1e-15);
  EXPECT_NEAR(cos[6], 0.5, 1e-15);
}

// --- bad options ---------------------------------------------------------------

std::string CreateError(const std::string& config, std::vector<double> lrs = {0.1}) {
  auto s = Scheduler::Create(Json(config), lrs, "schedule");
  if (s.ok()) return "OK";
  // Validate() without groups agrees on everything but per-group list lengths.
  return std::string(s.status().message());
}

TEST(SchedulersLibraryTest, BadOptionsNameTheScheduleAndTheOption) {
  EXPECT_EQ(CreateError(R"({"type": "StepLR", "step_size": 10, "gamma": -0.5})"),
            "schedule StepLR: option 'gamma' must be >= 0, got -0.5");
  EXPECT_EQ(CreateError(R"({"type": "ExponentialLR", "gamma": -1})"),
            "schedule ExponentialLR: option 'gamma' must be >= 0, got -1");
  EXPECT_EQ(CreateError(R"({"type": "MultiStepLR", "milestones": [100, 50]})"),
            "schedule MultiStepLR: option 'milestones' must be strictly increasing, got 50 after "
            "100 at index 1");
  EXPECT_EQ(CreateError(R"({"type": "MultiStepLR", "milestones": [10, 10]})"),
            "schedule MultiStepLR: option 'milestones' must be strictly increasing, got 10 after "
            "10 at index 1");
  EXPECT_EQ(CreateError(R"({"type": "SequentialLR", "milestones": [20, 10], "schedulers": [
      {"type": "ConstantLR"}, {"type": "ConstantLR"}, {"type": "ConstantLR"}]})"),
            "schedule SequentialLR: option 'milestones' must be strictly increasing, got 10 after "
            "20 at index 1");
  EXPECT_EQ(CreateError(R"({"type": "SequentialLR", "milestones": [20], "schedulers": [
      {"type": "ConstantLR"}, {"type": "ConstantLR"}, {"type": "ConstantLR"}]})"),
            "schedule SequentialLR: option 'milestones' must have one value fewer than "
            "'schedulers' (3 schedulers need 2 milestones), got 1");
  EXPECT_EQ(CreateError(R"({"type": "OneCycleLR", "max_lr": 0.1})"),
            "schedule OneCycleLR: option 'total_steps' is required (or both 'epochs' and "
            "'steps_per_epoch'): the cycle's length");
  EXPECT_EQ(CreateError(R"({"type": "OneCycleLR", "max_lr": 0.1, "epochs": 3})"),
            "schedule OneCycleLR: option 'total_steps' is required (or both 'epochs' and "
            "'steps_per_epoch'): the cycle's length");
  EXPECT_EQ(CreateError(R"({"type": "OneCycleLR", "total_steps": 100})"),
            "schedule OneCycleLR: option 'max_lr' is required");
  EXPECT_EQ(CreateError(R"({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 2, "pct_start": 0.3})"),
            "schedule OneCycleLR: option 'pct_start' 0.3 with total_steps 2 leaves a phase with no "
            "steps (pct_start * total_steps must be > 1 and < total_steps)");
  EXPECT_EQ(CreateError(R"({"type": "Cosine", "T_max": 10})"),
            "schedule: unknown schedule type \"Cosine\" (known: StepLR, MultiStepLR, ConstantLR, "
            "LinearLR, ExponentialLR, PolynomialLR, CosineAnnealingLR, "
            "CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR, ReduceLROnPlateau, SequentialLR, "
            "ChainedScheduler)");
  EXPECT_EQ(CreateError(R"({"type": "CosineAnnealingLR", "T_max": 10, "T_maxx": 3})"),
            "schedule CosineAnnealingLR: unknown option 'T_maxx' (known: T_max, eta_min, verbose)");
  EXPECT_EQ(CreateError(R"({"type": "SequentialLR", "milestones": [5], "schedulers": [
      {"type": "LinearLR"}, {"type": "CosineAnnealingLR", "T_max": 10, "eta_mni": 0}]})"),
            "schedule.schedulers[1] CosineAnnealingLR: unknown option 'eta_mni' (known: T_max, "
            "eta_min, verbose)");
  EXPECT_EQ(CreateError(R"({"type": "StepLR", "step_size": "10"})"),
            "schedule StepLR: option 'step_size' must be an integer, got string \"10\"");
  EXPECT_EQ(CreateError(R"({"type": "StepLR", "step_size": 2.5})"),
            "schedule StepLR: option 'step_size' must be an integer, got 2.5");
  EXPECT_EQ(CreateError(R"({"type": "StepLR"})"), "schedule StepLR: option 'step_size' is required");
  EXPECT_EQ(CreateError(R"({"type": "StepLR", "step_size": 0})"),
            "schedule StepLR: option 'step_size' must be >= 1, got 0");
  EXPECT_EQ(CreateError(R"({"type": "CosineAnnealingLR", "T_max": 10, "eta_min": "0"})"),
            "schedule CosineAnnealingLR: option 'eta_min' must be a number, got string \"0\"");
  EXPECT_EQ(CreateError(R"({"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "mode": "sine"})"),
            "schedule CyclicLR: option 'mode' must be one of \"triangular\", \"triangular2\", "
            "\"exp_range\", got \"sine\"");
  EXPECT_EQ(CreateError(R"({"type": "CyclicLR", "base_lr": 0.01, "max_lr": [0.1, 0.2, 0.3]})",
                        {0.1, 0.2}),
            "schedule CyclicLR: option 'max_lr' has 3 values but the optimizer has 2 param groups");
  EXPECT_EQ(CreateError(R"({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10,
      "three_phase": "yes"})"),
            "schedule OneCycleLR: option 'three_phase' must be true or false, got string \"yes\"");
  EXPECT_EQ(CreateError(R"({"type": "ReduceLROnPlateau", "factor": 1.5})"),
            "schedule ReduceLROnPlateau: option 'factor' must be in [0, 1) (PyTorch: factor should "
            "be < 1.0), got 1.5");
  EXPECT_EQ(CreateError(R"({"type": "ReduceLROnPlateau", "threshold_mode": "relative"})"),
            "schedule ReduceLROnPlateau: option 'threshold_mode' must be one of \"rel\", \"abs\", "
            "got \"relative\"");
  EXPECT_EQ(CreateError(R"({"type": "ReduceLROnPlateau", "mode": "auto"})"),
            "schedule ReduceLROnPlateau: option 'mode' must be one of \"min\", \"max\", got \"auto\"");
  EXPECT_EQ(CreateError(R"({"type": "ConstantLR", "factor": 0})"),
            "schedule ConstantLR: option 'factor' must be in (0, 1], got 0");
  EXPECT_EQ(CreateError(R"({"type": "LinearLR", "start_factor": 1.5})"),
            "schedule LinearLR: option 'start_factor' must be in (0, 1], got 1.5");
  EXPECT_EQ(CreateError(R"({"type": "CosineAnnealingWarmRestarts", "T_0": 10, "T_mult": 0})"),
            "schedule CosineAnnealingWarmRestarts: option 'T_mult' must be an integer >= 1, got 0");
  EXPECT_EQ(CreateError(R"({"step_size": 3})"),
            "schedule: missing 'type' (one of StepLR, MultiStepLR, ConstantLR, LinearLR, "
            "ExponentialLR, PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, "
            "OneCycleLR, ReduceLROnPlateau, SequentialLR, ChainedScheduler)");
  EXPECT_EQ(CreateError(R"("StepLR")"),
            "schedule: a schedule must be an object such as {\"type\": \"StepLR\", \"step_size\": "
            "10}, got string \"StepLR\"");
  EXPECT_EQ(CreateError(R"({"type": "SequentialLR", "milestones": [5], "schedulers": [
      {"type": "LinearLR"}, {"type": "ReduceLROnPlateau"}]})"),
            "schedule.schedulers[1] ReduceLROnPlateau: cannot be used inside SequentialLR (PyTorch "
            "1.13 cannot step it there either); use it at the top level or in ChainedScheduler");
  EXPECT_EQ(CreateError(R"({"type": "ChainedScheduler", "schedulers": [{"type": "ReduceLROnPlateau"}]})"),
            "schedule.schedulers[0] ReduceLROnPlateau: cannot be chained (it steps on a metric); use "
            "it at the top level");
  EXPECT_EQ(CreateError(R"({"type": "ChainedScheduler", "schedulers": []})"),
            "schedule ChainedScheduler: option 'schedulers' must be a non-empty list of schedule "
            "objects, got an empty list");
  // Validate() (no param groups known yet) reports the same messages.
  EXPECT_EQ(Scheduler::Validate(Json(R"({"type": "StepLR", "step_size": 10, "gamma": -0.5})"),
                                "groups[1]")
                .message(),
            "groups[1] StepLR: option 'gamma' must be >= 0, got -0.5");
  EXPECT_TRUE(Scheduler::Validate(
                  Json(R"({"type": "CyclicLR", "base_lr": [0.01, 0.02], "max_lr": [0.1, 0.2]})"),
                  "schedule")
                  .ok());
}

TEST(SchedulersLibraryTest, StateFromAnotherScheduleIsRejected) {
  auto a = Scheduler::Create(Json(R"({"type": "StepLR", "step_size": 3})"), {0.1}, "schedule");
  auto b = Scheduler::Create(Json(R"({"type": "ExponentialLR", "gamma": 0.9})"), {0.1}, "schedule");
  auto c = Scheduler::Create(Json(R"({"type": "StepLR", "step_size": 3})"), {0.1, 0.2}, "schedule");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ((*b)->LoadState((*a)->SaveState()).message(),
            "the state was saved by schedule StepLR but the configured schedule is ExponentialLR");
  EXPECT_EQ((*c)->LoadState((*a)->SaveState()).message(),
            "the state has 1 param groups but the optimizer has 2");
  EXPECT_THAT(std::string((*a)->LoadState("garbage").message()), HasSubstr("bad header"));
  std::string cut = (*a)->SaveState();
  cut.resize(cut.rfind(' '));  // the last number missing
  EXPECT_THAT(std::string((*a)->LoadState(cut).message()), HasSubstr("state ends too early"));
  EXPECT_THAT(std::string((*a)->LoadState((*a)->SaveState() + " 7").message()),
              HasSubstr("trailing data"));
}

// --- the plugin in-process ------------------------------------------------------------

// Records what every iteration used and every record published.
class Recorder : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    used.emplace_back(e.learning_rates.begin(), e.learning_rates.end());
  }
  void OnRecord(const Record& r, Control&) override {
    if (const auto* s = std::get_if<ScalarValue>(&r.value)) {
      records.push_back({r.tag, r.step, s->value});
    }
  }
  struct Rec {
    std::string tag;
    int64_t step;
    double value;
  };
  std::vector<std::vector<double>> used;  // [step][group]
  std::vector<Rec> records;
};

absl::StatusOr<std::unique_ptr<SchedulersPlugin>> MakeSchedulers(const std::string& options_json) {
  google::protobuf::Struct given;
  auto st = google::protobuf::util::JsonStringToMessage(options_json, &given);
  if (!st.ok()) return absl::InvalidArgumentError(std::string(st.message()));
  auto opts = PluginOptions::Create(SchedulersPlugin::Info().options, given, "plugin 'schedulers'");
  if (!opts.ok()) return opts.status();
  PluginContext ctx;
  ctx.name = "schedulers";
  ctx.options = *opts;
  auto p = SchedulersPlugin::Create(ctx);
  if (p.ok()) (*p)->set_hooks(HooksOf<SchedulersPlugin>());
  return p;
}

// A Session bound to a real SGD optimizer with one param group per lr.
struct Rig {
  explicit Rig(const std::vector<double>& lrs) {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    for (double lr : lrs) {
      groups.emplace_back(std::vector<at::Tensor>{at::zeros({1}).set_requires_grad(true)},
                          std::make_unique<torch::optim::SGDOptions>(lr));
    }
    optimizer = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(lrs[0]));
    session.Bind(nullptr, optimizer.get());
  }
  void Add(std::unique_ptr<SchedulersPlugin> p) {
    plugin = p.get();
    ASSERT_TRUE(session.AddPlugin(std::move(p), "schedulers").ok());
    auto r = MakePlugin<Recorder>();
    recorder = r.get();
    ASSERT_TRUE(session.AddPlugin(std::move(r), "recorder").ok());
  }
  double lr(int g) const { return optimizer->param_groups()[g].options().get_lr(); }

  std::unique_ptr<torch::optim::SGD> optimizer;
  Session session;
  SchedulersPlugin* plugin = nullptr;
  Recorder* recorder = nullptr;
};

// Steps a standalone Scheduler: the lr of group 0 after 0..n steps.
std::vector<std::vector<double>> Expected(const std::string& config, std::vector<double> lrs, int n) {
  auto s = Scheduler::Create(Json(config), lrs, "schedule");
  EXPECT_TRUE(s.ok()) << s.status();
  std::vector<std::vector<double>> out;
  if (!s.ok()) return out;
  out.push_back((*s)->lrs());
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE((*s)->Step().ok());
    out.push_back((*s)->lrs());
  }
  return out;
}

TEST(SchedulersPluginTest, OneScheduleForAllGroupsPublishesChanges) {
  const std::string sched = R"({"type": "MultiStepLR", "milestones": [2, 5], "gamma": 0.1})";
  Rig rig({0.1, 0.02});
  auto p = MakeSchedulers(absl::StrCat(R"({"schedule": )", sched, "}"));
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  RunInfo run;
  run.total_iterations = 8;
  rig.session.Begin(run);
  rig.session.BeginEpoch();
  for (int i = 0; i < 8; ++i) rig.session.EndIteration(1.0, 4);
  rig.session.EndEpoch();
  ASSERT_TRUE(rig.session.End().ok()) << rig.session.status();
  auto want = Expected(sched, {0.1, 0.02}, 8);
  ASSERT_EQ(rig.recorder->used.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(rig.recorder->used[i], want[i]) << "step " << i;
  std::vector<std::string> got;
  for (const auto& r : rig.recorder->records) {
    got.push_back(absl::StrCat(r.tag, "@", r.step, "=", r.value));
  }
  EXPECT_THAT(got, ::testing::ElementsAre(
                       "schedulers/lr/group0@0=0.1", "schedulers/lr/group1@0=0.02",
                       "schedulers/lr/group0@2=0.01", "schedulers/lr/group1@2=0.002",
                       "schedulers/lr/group0@5=0.001", "schedulers/lr/group1@5=0.0002"));
}

TEST(SchedulersPluginTest, OneSchedulePerGroupAndNullLeavesAGroupAlone) {
  Rig rig({0.1, 0.01, 0.5});
  auto p = MakeSchedulers(R"({"publish": "every_step", "groups": [
      {"type": "StepLR", "step_size": 3, "gamma": 0.5}, null,
      {"type": "SequentialLR", "milestones": [4], "schedulers": [
        {"type": "LinearLR", "start_factor": 0.25, "total_iters": 4},
        {"type": "CosineAnnealingLR", "T_max": 10}]}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  rig.session.BeginEpoch();
  for (int i = 0; i < 20; ++i) rig.session.EndIteration(1.0, 4);
  rig.session.EndEpoch();
  ASSERT_TRUE(rig.session.End().ok()) << rig.session.status();
  auto g0 = Expected(R"({"type": "StepLR", "step_size": 3, "gamma": 0.5})", {0.1}, 20);
  auto g2 = Expected(R"({"type": "SequentialLR", "milestones": [4], "schedulers": [
        {"type": "LinearLR", "start_factor": 0.25, "total_iters": 4},
        {"type": "CosineAnnealingLR", "T_max": 10}]})",
                     {0.5}, 20);
  ASSERT_EQ(rig.recorder->used.size(), 20u);
  int group1_records = 0, group0_records = 0;
  for (const auto& r : rig.recorder->records) {
    group0_records += r.tag == "schedulers/lr/group0";
    group1_records += r.tag == "schedulers/lr/group1";
  }
  EXPECT_EQ(group0_records, 21);  // every step, plus the initial value
  EXPECT_EQ(group1_records, 0);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(rig.recorder->used[i][0], g0[i][0]) << i;
    EXPECT_EQ(rig.recorder->used[i][1], 0.01) << i;
    EXPECT_EQ(rig.recorder->used[i][2], g2[i][0]) << i;
  }
}

TEST(SchedulersPluginTest, EpochIntervalStepsOncePerEpoch) {
  Rig rig({0.1});
  auto p = MakeSchedulers(
      R"({"interval": "epoch", "schedule": {"type": "StepLR", "step_size": 1, "gamma": 0.5}})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  for (int e = 0; e < 3; ++e) {
    rig.session.BeginEpoch();
    for (int i = 0; i < 4; ++i) rig.session.EndIteration(1.0, 4);
    rig.session.EndEpoch();
  }
  ASSERT_TRUE(rig.session.End().ok());
  ASSERT_EQ(rig.recorder->used.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(rig.recorder->used[i][0], 0.1 * std::pow(0.5, i / 4)) << i;
}

TEST(SchedulersPluginTest, PlateauOnValidationStepsOncePerValidation) {
  Rig rig({0.1, 0.04});
  auto p = MakeSchedulers(R"({"schedule": {"type": "ReduceLROnPlateau", "patience": 0,
      "factor": 0.5, "min_lr": [0.02, 0.0]}})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  // val/loss also arrives with every EpochEnd (the last validation's metrics)
  // and train/loss with every iteration: only validations count.
  const std::vector<double> val = {1.0, 1.0, 0.5, 0.6, 0.6};
  for (double v : val) {
    rig.session.BeginEpoch();
    for (int i = 0; i < 2; ++i) rig.session.EndIteration(3.0, 4);
    rig.session.EndValidation({{"val/loss", v}, {"val/accuracy", 0.5}});
    rig.session.EndEpoch();
  }
  ASSERT_TRUE(rig.session.End().ok());
  std::vector<double> g0, g1;
  for (size_t i = 0; i < rig.recorder->used.size(); i += 2) {
    g0.push_back(rig.recorder->used[i][0]);
    g1.push_back(rig.recorder->used[i][1]);
  }
  // best 1.0; bad -> reduce; better; bad -> reduce; bad -> reduce (group 0 to its min_lr).
  EXPECT_THAT(g0, ::testing::ElementsAre(0.1, 0.1, 0.05, 0.05, 0.025));
  EXPECT_THAT(g1, ::testing::ElementsAre(0.04, 0.04, 0.02, 0.02, 0.01));
  EXPECT_EQ(rig.lr(0), 0.02);
  EXPECT_EQ(rig.lr(1), 0.005);
  const auto& units = rig.plugin->units();
  ASSERT_EQ(units.size(), 1u);
  EXPECT_EQ(units[0].source, SchedulersPlugin::Source::kValidation);
}

TEST(SchedulersPluginTest, PlateauOnARecordOrOnTrainLoss) {
  {
    Rig rig({0.1});
    auto p = MakeSchedulers(R"({"monitor": "eval/bleu", "schedule": {"type": "ReduceLROnPlateau",
        "mode": "max", "patience": 1, "factor": 0.1}})");
    ASSERT_TRUE(p.ok()) << p.status();
    rig.Add(std::move(p).value());
    rig.session.Begin(RunInfo());
    rig.session.BeginEpoch();
    const std::vector<double> bleu = {10, 12, 11, 11, 13, 13, 13};
    for (size_t i = 0; i < bleu.size(); ++i) {
      rig.session.EndIteration(1.0, 4);
      rig.session.Publish(Record::Scalar("eval/bleu", bleu[i], static_cast<int64_t>(i)));
      rig.session.Publish(Record::Scalar("other", 0.0, static_cast<int64_t>(i)));
    }
    rig.session.EndEpoch();
    ASSERT_TRUE(rig.session.End().ok());
    // 10 best, 12 best, 11 bad(1), 11 bad(2 > 1) -> 0.01, 13 best, 13 bad, 13 bad -> 0.001.
    EXPECT_DOUBLE_EQ(rig.lr(0), 0.001);
    EXPECT_EQ(rig.plugin->units()[0].source, SchedulersPlugin::Source::kRecord);
  }
  {
    Rig rig({0.1});
    auto p = MakeSchedulers(R"({"schedule": {"type": "ReduceLROnPlateau", "monitor": "train/loss",
        "patience": 2, "threshold_mode": "abs", "threshold": 0.1}})");
    ASSERT_TRUE(p.ok()) << p.status();
    rig.Add(std::move(p).value());
    rig.session.Begin(RunInfo());
    rig.session.BeginEpoch();
    for (double loss : {2.0, 1.95, 1.92, 1.91}) rig.session.EndIteration(loss, 4);
    rig.session.EndEpoch();
    ASSERT_TRUE(rig.session.End().ok());
    EXPECT_NEAR(rig.lr(0), 0.01, 1e-17);  // three checks without a 0.1 improvement
    EXPECT_EQ(rig.plugin->units()[0].source, SchedulersPlugin::Source::kIteration);
  }
}

// A plugin that runs before `schedulers` publishes the monitored metric in
// the same OnIterationEnd round: the reduced lr is used from the next step
// on, and its record says so (it was stamped one step early).
class BleuPublisher : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control& c) override {
    static const double kBleu[] = {10, 12, 11, 11, 13, 13, 13};
    c.Publish(Record::Scalar("eval/bleu", kBleu[e.step % 7], e.step));
  }
};

TEST(SchedulersPluginTest, APlateauRecordFromAnEarlierPluginIsStampedAtTheNextStep) {
  Rig rig({0.1});
  ASSERT_TRUE(rig.session.AddPlugin(MakePlugin<BleuPublisher>(), "bleu", /*priority=*/-1).ok());
  auto p = MakeSchedulers(R"({"monitor": "eval/bleu", "schedule": {"type": "ReduceLROnPlateau",
      "mode": "max", "patience": 1, "factor": 0.1}})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  rig.session.BeginEpoch();
  for (int i = 0; i < 7; ++i) rig.session.EndIteration(1.0, 4);
  rig.session.EndEpoch();
  ASSERT_TRUE(rig.session.End().ok());
  std::vector<std::pair<int64_t, double>> lr_records;
  for (const auto& r : rig.recorder->records) {
    if (r.tag == "schedulers/lr/group0") lr_records.emplace_back(r.step, r.value);
  }
  // Initial lr at step 0; reduced after the checks of steps 3 and 6, so used
  // from steps 4 and 7.
  ASSERT_EQ(lr_records.size(), 3u);
  EXPECT_EQ(lr_records[0].first, 0);
  EXPECT_EQ(lr_records[1].first, 4);
  EXPECT_NEAR(lr_records[1].second, 0.01, 1e-15);
  EXPECT_EQ(lr_records[2].first, 7);
}

// Another plugin (health, on a plateau) asks for a reduction with a text
// record "reduce_lr: <why>" on "schedulers/requests": ReduceLROnPlateau
// applies its factor and min_lr once and starts its cooldown; without a
// ReduceLROnPlateau the request is refused once, in words.
// A Rig (one group, lr 0.1) with the schedulers plugin made from `options`,
// begun and in its first epoch.
std::unique_ptr<Rig> BegunRig(const std::string& options) {
  auto p = MakeSchedulers(options);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return nullptr;
  auto rig = std::make_unique<Rig>(std::vector<double>{0.1});
  rig->Add(std::move(p).value());
  rig->session.Begin(RunInfo());
  rig->session.BeginEpoch();
  return rig;
}

TEST(SchedulersPluginTest, AReduceLrRequestReducesOnceAndNamesWhy) {
  {
    std::unique_ptr<Rig> rig = BegunRig(R"({"schedule": {"type": "ReduceLROnPlateau", "patience": 1000,
        "factor": 0.5, "min_lr": 0.03}})");
    ASSERT_TRUE(rig);
    ::testing::internal::CaptureStderr();
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: plateau at step 0", 0));
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.05);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: twice", 0));
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.05);  // once for a step
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: again", 1));
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.03);  // min_lr
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: at the floor", 2));
    rig->session.Publish(Record::Text("schedulers/requests", "warmup please", 2));
    rig->session.Publish(Record::Text("other/requests", "reduce_lr: not for us", 2));
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.03);
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_THAT(log, HasSubstr("lr of group 0 reduced from 0.1 to 0.05 on request: plateau at step 0"));
    EXPECT_THAT(log, HasSubstr("not reduced again on request (twice): it already reduced the lr for step 1"));
    EXPECT_THAT(log, HasSubstr("lr of group 0 reduced from 0.05 to 0.03 on request: again"));
    EXPECT_THAT(log, HasSubstr("lr of group 0 stays at 0.03 (min_lr or eps) on request: at the floor"));
    EXPECT_THAT(log, HasSubstr("ignored the request 'warmup please' on schedulers/requests"));
    EXPECT_THAT(log, Not(HasSubstr("not for us")));
    rig->session.EndEpoch();
    ::testing::internal::CaptureStderr();
    ASSERT_TRUE(rig->session.End().ok());
    // Its monitor (val/loss) never came: the end says the lr moved on requests only.
    EXPECT_THAT(::testing::internal::GetCapturedStderr(),
                HasSubstr("never appeared in this run, so its lr changed only on requests"));
  }
  {
    std::unique_ptr<Rig> rig = BegunRig(R"({"schedule": {"type": "ReduceLROnPlateau", "patience": 1000,
        "factor": 0.5, "cooldown": 2}})");
    ASSERT_TRUE(rig);
    ::testing::internal::CaptureStderr();
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: first", 0));
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: too soon", 1));
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.05);
    EXPECT_THAT(log, HasSubstr("not reduced on request (too soon): it is in its cooldown (2 more check(s))"));
    EXPECT_EQ(dynamic_cast<const internal::ReduceLROnPlateau&>(rig->plugin->units()[0].scheduler->root())
                  .cooldown_counter(), 2);
    rig->session.EndEpoch();
    ASSERT_TRUE(rig->session.End().ok());
  }
  {
    std::unique_ptr<Rig> rig = BegunRig(R"({"schedule": {"type": "StepLR", "step_size": 100}})");
    ASSERT_TRUE(rig);
    ::testing::internal::CaptureStderr();
    rig->session.EndIteration(1.0, 4);
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: plateau", 0));
    rig->session.Publish(Record::Text("schedulers/requests", "reduce_lr: plateau 2", 0));
    const std::string log = ::testing::internal::GetCapturedStderr();
    EXPECT_DOUBLE_EQ(rig->lr(0), 0.1);
    EXPECT_THAT(log, HasSubstr("asked to reduce the lr (plateau) but no ReduceLROnPlateau is configured"));
    EXPECT_THAT(log, Not(HasSubstr("plateau 2")));  // said once
    rig->session.EndEpoch();
    ASSERT_TRUE(rig->session.End().ok());
  }
}

TEST(SchedulersPluginTest, SteppingPastOneCycleTotalStepsStopsTheRun) {
  Rig rig({0.1});
  auto p = MakeSchedulers(R"({"schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 5}})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  rig.session.BeginEpoch();
  int ran = 0;
  for (int i = 0; i < 8 && !rig.session.ShouldStop(); ++i, ++ran) rig.session.EndIteration(1.0, 4);
  rig.session.EndEpoch();
  absl::Status end = rig.session.End();
  EXPECT_EQ(ran, 6);  // steps 0..4 use the cycle, step 5's scheduler.step() goes past it
  EXPECT_THAT(std::string(end.message()),
              HasSubstr("plugin 'schedulers' threw in OnIterationEnd at step 5"));
  EXPECT_THAT(std::string(end.message()),
              HasSubstr("schedule OneCycleLR: stepped past total_steps: this is step 7 (PyTorch: "
                        "\"Tried to step 7 times\") but total_steps is 5"));
}

TEST(SchedulersPluginTest, PluginOptionErrors) {
  auto both = MakeSchedulers(R"({"schedule": {"type": "ConstantLR"}, "groups": [null]})");
  EXPECT_EQ(both.status().message(), "options 'schedule' and 'groups' exclude each other: give one");
  auto none = MakeSchedulers("{}");
  EXPECT_THAT(std::string(none.status().message()),
              HasSubstr("option 'schedule' (or 'groups', one schedule per param group) is required"));
  auto interval = MakeSchedulers(R"({"interval": "batch", "schedule": {"type": "ConstantLR"}})");
  EXPECT_EQ(interval.status().message(),
            "option 'interval' must be \"iteration\" or \"epoch\", got \"batch\"");
  auto publish = MakeSchedulers(R"({"publish": "sometimes", "schedule": {"type": "ConstantLR"}})");
  EXPECT_THAT(std::string(publish.status().message()), HasSubstr("option 'publish' must be"));
  auto bad = MakeSchedulers(R"({"groups": [{"type": "ConstantLR"}, {"type": "StepLR", "step_size": 1,
      "gamma": -2}]})");
  EXPECT_EQ(bad.status().message(), "groups[1] StepLR: option 'gamma' must be >= 0, got -2");
  auto not_object = MakeSchedulers(R"({"schedule": 3})");
  EXPECT_THAT(std::string(not_object.status().message()),
              HasSubstr("plugin 'schedulers': option 'schedule'"));

  // Group counts are known at TrainBegin.
  Rig rig({0.1});
  auto p = MakeSchedulers(R"({"groups": [{"type": "ConstantLR"}, {"type": "ConstantLR"}]})");
  ASSERT_TRUE(p.ok()) << p.status();
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  absl::Status end = rig.session.End();
  EXPECT_THAT(std::string(end.message()),
              HasSubstr("option 'groups' has 2 entries but the optimizer has 1 param group"));
}

// Runs `iterations` iterations from `start`, with validation every 3 steps.
// `state` in: loaded before Begin (if not empty); out: saved at the end.
std::vector<std::vector<double>> RunPlugin(const std::string& options, std::vector<double> lrs,
                                           int64_t start, int64_t iterations, std::string* state) {
  Rig rig(lrs);
  auto p = MakeSchedulers(options);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  if (!state->empty()) {
    EXPECT_TRUE((*p)->LoadState(*state).ok());
  }
  rig.Add(std::move(p).value());
  RunInfo run;
  run.start_step = start;
  rig.session.Begin(run);
  rig.session.BeginEpoch(EpochBeginEvent{0, start, iterations});
  for (int64_t i = start; i < start + iterations; ++i) {
    const double loss = 1.0 + 0.5 * std::cos(static_cast<double>(i)) / (1 + i / 10);
    IterationEndEvent e;
    e.step = i;
    e.loss = loss;
    std::vector<double> used;
    for (int g = 0; g < static_cast<int>(lrs.size()); ++g) used.push_back(rig.lr(g));
    e.learning_rates = used;
    rig.session.EndIteration(e);
    if (i % 3 == 2) {
      Metrics m = {{"val/loss", 2.0 - std::floor(static_cast<double>(i) / 7) * 0.01}};
      rig.session.EndValidation(ValidationEndEvent{i, 0, m, 0.0});
    }
  }
  auto saved = rig.plugin->SaveState();
  EXPECT_TRUE(saved.ok());
  *state = saved.ok() ? *saved : "";
  rig.session.EndEpoch();
  EXPECT_TRUE(rig.session.End().ok()) << rig.session.status();
  return rig.recorder->used;
}

TEST(SchedulersPluginTest, SaveThenLoadIntoAFreshPluginEqualsAStraightRun) {
  const std::vector<std::string> configs = {
      R"({"schedule": {"type": "SequentialLR", "milestones": [7], "schedulers": [
          {"type": "LinearLR", "start_factor": 0.1, "total_iters": 7},
          {"type": "CosineAnnealingWarmRestarts", "T_0": 5, "T_mult": 2, "eta_min": 0.001}]}})",
      R"({"schedule": {"type": "ReduceLROnPlateau", "patience": 1, "cooldown": 2, "factor": 0.5}})",
      R"({"monitor": "train/loss", "schedule": {"type": "ReduceLROnPlateau", "patience": 3,
          "threshold": 0.05}})",
      R"({"groups": [{"type": "ChainedScheduler", "schedulers": [
          {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4},
          {"type": "ExponentialLR", "gamma": 0.97}]},
          {"type": "OneCycleLR", "max_lr": 0.3, "total_steps": 60, "three_phase": true}]})",
  };
  for (const std::string& options : configs) {
    SCOPED_TRACE(options);
    const std::vector<double> lrs = {0.1, 0.2};
    std::string none;
    auto straight = RunPlugin(options, lrs, 0, 60, &none);
    std::string state;
    auto first = RunPlugin(options, lrs, 0, 30, &state);
    ASSERT_FALSE(state.empty());
    std::string state2 = state;
    auto second = RunPlugin(options, {0.7, 0.7}, 30, 30, &state2);  // lrs replaced by the state
    ASSERT_EQ(straight.size(), 60u);
    ASSERT_EQ(first.size() + second.size(), 60u);
    for (int i = 0; i < 60; ++i) {
      EXPECT_EQ(i < 30 ? first[i] : second[i - 30], straight[i]) << "step " << i;
    }
    // The resumed run changed lrs at least once (the test means something).
    EXPECT_NE(straight.front(), straight.back());
  }
}

TEST(SchedulersPluginTest, StateOfAnotherScheduleFailsAtTrainBegin) {
  std::string state;
  RunPlugin(R"({"schedule": {"type": "StepLR", "step_size": 2}})", {0.1}, 0, 5, &state);
  Rig rig({0.1});
  auto p = MakeSchedulers(R"({"schedule": {"type": "ExponentialLR", "gamma": 0.9}})");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->LoadState(state).ok());
  EXPECT_FALSE((*p)->LoadState("something else").ok());
  rig.Add(std::move(p).value());
  rig.session.Begin(RunInfo());
  absl::Status end = rig.session.End();
  EXPECT_THAT(std::string(end.message()),
              HasSubstr("cannot restore the saved state: schedule: the state was saved by schedule "
                        "StepLR but the configured schedule is ExponentialLR"));
}

// --- end to end: the trainbus program -------------------------------------------------

// 300 samples, batch 50: 6 iterations per epoch, 2 epochs, lr 0.05 (sgd).
std::string SmallConfig(const TempDir& dir, const std::string& schedulers_options,
                        const std::string& trainer_extra = "") {
  return dir.Write("run.json", absl::StrCat(R"({
    "name": "small", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 50, "num_threads": 1)", trainer_extra, R"(},
    "dataset": {"train_samples": 300, "val_samples": 60},
    "plugins": [
      {"name": "tensorboard", "options": {"histograms_every_n": 0, "images": 0, "flush_secs": 1}},
      {"name": "schedulers", "options": )", schedulers_options, R"(}]})"));
}

// Every scalar of `tag` in the run's event files, by step.
std::map<int64_t, float> Scalars(const std::string& logdir, const std::string& tag) {
  std::map<int64_t, float> out;
  for (const auto& entry : fs::recursive_directory_iterator(logdir)) {
    if (entry.path().filename().string().find("tfevents") == std::string::npos) continue;
    auto contents = tensorboard::ReadEventFile(entry.path().string());
    EXPECT_TRUE(contents.ok()) << contents.status();
    if (!contents.ok()) continue;
    for (const auto& e : contents->events) {
      for (const auto& v : e.summary().value()) {
        if (v.tag() == tag) out[e.step()] = v.simple_value();
      }
    }
  }
  return out;
}

TEST(SchedulersEndToEndTest, WarmupThenCosineThroughTheTrainbusProgram) {
  TempDir dir;
  const std::string schedule = R"({"type": "SequentialLR", "milestones": [4], "schedulers": [
      {"type": "LinearLR", "start_factor": 0.1, "total_iters": 4},
      {"type": "CosineAnnealingLR", "T_max": 8}]})";
  std::string config =
      SmallConfig(dir, absl::StrCat(R"({"interval": "iteration", "schedule": )", schedule, "}"));
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto want = Expected(schedule, {0.05}, 12);
  // lr/group<i>: what each optimizer step used (tensorboard plugin, float32).
  auto used = Scalars(dir.path() + "/runs", "lr/group0");
  ASSERT_EQ(used.size(), 12u) << r.output;
  for (int i = 0; i < 12; ++i) {
    EXPECT_FLOAT_EQ(used[i], static_cast<float>(want[i][0])) << "step " << i;
  }
  EXPECT_FLOAT_EQ(used[0], 0.005f);   // 0.05 * start_factor
  EXPECT_FLOAT_EQ(used[4], 0.05f);    // cosine starts at the base lr
  EXPECT_FLOAT_EQ(used[8], 0.025f);   // half way down
  // schedulers/lr/group0: one record per change, at the first step that uses it.
  auto published = Scalars(dir.path() + "/runs", "schedulers/lr/group0");
  // Step 0, then a change after each step but the last: the lr after the
  // run's last step is never used, so it is not charted at step 12.
  EXPECT_EQ(published.size(), 12u);
  EXPECT_EQ(published.count(12), 0u);
  for (const auto& [step, value] : published) {
    EXPECT_FLOAT_EQ(value, static_cast<float>(want[step][0])) << "step " << step;
  }
}

TEST(SchedulersEndToEndTest, PlateauOnValidationLossThroughTheTrainbusProgram) {
  TempDir dir;
  // mode max with a 10x relative threshold: every validation after the first
  // is "bad"; patience 0 reduces at each. Validations run after steps 2, 5, 8, 11.
  std::string config = SmallConfig(
      dir,
      R"({"monitor": "val/loss", "schedule": {"type": "ReduceLROnPlateau", "mode": "max",
          "threshold": 10, "patience": 0, "factor": 0.1}})",
      R"(, "validate_every_n_iterations": 3)");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto used = Scalars(dir.path() + "/runs", "lr/group0");
  ASSERT_EQ(used.size(), 12u);
  for (int i = 0; i < 12; ++i) {
    const float want = i < 6 ? 0.05f : i < 9 ? 0.005f : 0.0005f;
    EXPECT_FLOAT_EQ(used[i], want) << "step " << i;
  }
  EXPECT_THAT(r.output, HasSubstr("[schedulers] ReduceLROnPlateau (schedule): val/loss = "));
}

TEST(SchedulersEndToEndTest, EpochIntervalThroughTheTrainbusProgram) {
  TempDir dir;
  std::string config = SmallConfig(
      dir, R"({"interval": "epoch", "schedule": {"type": "ExponentialLR", "gamma": 0.5}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto used = Scalars(dir.path() + "/runs", "lr/group0");
  ASSERT_EQ(used.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(used[i], i < 6 ? 0.05f : 0.025f) << i;
}

TEST(SchedulersEndToEndTest, BadOptionNamesThePluginTheScheduleAndTheOption) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"schedule": {"type": "SequentialLR",
      "milestones": [4], "schedulers": [{"type": "LinearLR"},
      {"type": "CosineAnnealingLR", "T_maxx": 8}]}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("plugin 'schedulers'"));
  EXPECT_THAT(r.output, HasSubstr("schedule.schedulers[1] CosineAnnealingLR: unknown option "
                                  "'T_maxx' (known: T_max, eta_min, verbose)"));
  std::string config2 = SmallConfig(dir, R"({"schedule": {"type": "StepLR", "step_size": 2,
      "gamma": -0.1}})");
  r = RunTrainbus(absl::StrCat("train --config ", config2));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("plugin 'schedulers'"));
  EXPECT_THAT(r.output, HasSubstr("schedule StepLR: option 'gamma' must be >= 0, got -0.1"));
}

TEST(SchedulersEndToEndTest, OneCyclePastTotalStepsStopsTheRunWithAClearError) {
  TempDir dir;
  std::string config = SmallConfig(
      dir, R"({"schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("plugin 'schedulers' threw in OnIterationEnd at step 10"));
  EXPECT_THAT(r.output, HasSubstr("OneCycleLR: stepped past total_steps"));
  // total_steps = the run's 12 iterations is fine (the last step() reaches it).
  std::string ok_config = SmallConfig(
      dir, R"({"schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 12,
               "anneal_strategy": "linear"}})");
  r = RunTrainbus(absl::StrCat("train --config ", ok_config));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace trainbus::schedulers
