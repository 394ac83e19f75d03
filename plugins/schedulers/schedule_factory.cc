// schedule_factory.cc — builds a schedule tree from its JSON config
// (schedulers plugin): one builder per PyTorch class, found by name in a
// registry; each reads and checks its arguments (schedule_args.h) and
// constructs the schedule (lr_schedules.h).
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lr_schedules.h"
#include "schedule_args.h"
#include "schedules.h"

namespace trainbus::schedulers {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using namespace internal;  // NOLINT: the schedule classes and Args

class Builder {
 public:
  Builder(ParamGroups* g, bool validate_only) : g_(g), validate_only_(validate_only) {}

  absl::StatusOr<std::unique_ptr<Schedule>> Build(const Value& config, const std::string& where) {
    if (config.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a schedule must be an object such as {\"type\": \"StepLR\", \"step_size\": 10}, got ",
          Describe(config)));
    }
    const Struct& s = config.struct_value();
    auto it = s.fields().find("type");
    if (it == s.fields().end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": missing 'type' (one of ", absl::StrJoin(KnownScheduleTypes(), ", "), ")"));
    }
    if (it->second.kind_case() != Value::kStringValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": 'type' must be a string, got ", Describe(it->second)));
    }
    const std::string& type = it->second.string_value();
    Args a(s, absl::StrCat(where, " ", type), validate_only_, g_->size());
    a.Accept("verbose");  // PyTorch's printing flag: accepted, ignored
    auto builder = Registry().find(type);
    if (builder == Registry().end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown schedule type \"", type,
                                                     "\" (known: ",
                                                     absl::StrJoin(KnownScheduleTypes(), ", "), ")"));
    }
    return (this->*(builder->second))(a, where);
  }

  using BuildFn = absl::StatusOr<std::unique_ptr<Schedule>> (Builder::*)(Args&, const std::string&);
  // type -> builder, in the order `trainbus plugins` and messages list them.
  static const std::vector<std::pair<std::string, BuildFn>>& Ordered() {
    static const auto* const kBuilders = new std::vector<std::pair<std::string, BuildFn>>{
        {"StepLR", &Builder::BuildStepLR},
        {"MultiStepLR", &Builder::BuildMultiStepLR},
        {"ConstantLR", &Builder::BuildConstantLR},
        {"LinearLR", &Builder::BuildLinearLR},
        {"ExponentialLR", &Builder::BuildExponentialLR},
        {"PolynomialLR", &Builder::BuildPolynomialLR},
        {"CosineAnnealingLR", &Builder::BuildCosineAnnealingLR},
        {"CosineAnnealingWarmRestarts", &Builder::BuildCosineAnnealingWarmRestarts},
        {"CyclicLR", &Builder::BuildCyclicLR},
        {"OneCycleLR", &Builder::BuildOneCycleLR},
        {"ReduceLROnPlateau", &Builder::BuildReduceLROnPlateau},
        {"SequentialLR", &Builder::BuildSequentialLR},
        {"ChainedScheduler", &Builder::BuildChainedScheduler},
    };
    return *kBuilders;
  }
  static const std::map<std::string, BuildFn>& Registry() {
    static const auto* const kByName =
        new std::map<std::string, BuildFn>(Ordered().begin(), Ordered().end());
    return *kByName;
  }

 private:
  absl::StatusOr<std::unique_ptr<Schedule>> BuildStepLR(Args& a, const std::string& where) {
    (void)where;
    const int64_t step_size = a.Int("step_size", std::nullopt);
    const double gamma = a.Double("gamma", 0.1);
    a.Check(step_size >= 1, "step_size", "must be >= 1", static_cast<double>(step_size));
    a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
    return Finish<StepLR>(a, step_size, gamma);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildMultiStepLR(Args& a, const std::string& where) {
    (void)where;
    std::vector<int64_t> milestones = a.IntList("milestones");
    const double gamma = a.Double("gamma", 0.1);
    CheckMilestones(a, milestones, /*min=*/0);
    a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
    return Finish<MultiStepLR>(a, milestones, gamma);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildConstantLR(Args& a, const std::string& where) {
    (void)where;
    const double factor = a.Double("factor", 1.0 / 3);
    const int64_t total_iters = a.Int("total_iters", 5);
    a.Check(factor > 0 && factor <= 1, "factor", "must be in (0, 1]", factor);
    a.Check(total_iters >= 0, "total_iters", "must be >= 0", static_cast<double>(total_iters));
    return Finish<ConstantLR>(a, factor, total_iters);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildLinearLR(Args& a, const std::string& where) {
    (void)where;
    const double start = a.Double("start_factor", 1.0 / 3);
    const double end = a.Double("end_factor", 1.0);
    const int64_t total_iters = a.Int("total_iters", 5);
    a.Check(start > 0 && start <= 1, "start_factor", "must be in (0, 1]", start);
    a.Check(end >= 0 && end <= 1, "end_factor", "must be in [0, 1]", end);
    a.Check(total_iters >= 1, "total_iters", "must be >= 1", static_cast<double>(total_iters));
    return Finish<LinearLR>(a, start, end, total_iters);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildExponentialLR(Args& a, const std::string& where) {
    (void)where;
    const double gamma = a.Double("gamma", std::nullopt);
    a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
    return Finish<ExponentialLR>(a, gamma);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildPolynomialLR(Args& a, const std::string& where) {
    (void)where;
    const int64_t total_iters = a.Int("total_iters", 5);
    const double power = a.Double("power", 1.0);
    a.Check(total_iters >= 1, "total_iters", "must be >= 1", static_cast<double>(total_iters));
    a.Check(power >= 0, "power", "must be >= 0", power);
    return Finish<PolynomialLR>(a, total_iters, power);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildCosineAnnealingLR(Args& a, const std::string& where) {
    (void)where;
    const int64_t t_max = a.Int("T_max", std::nullopt);
    const double eta_min = a.Double("eta_min", 0.0);
    a.Check(t_max >= 1, "T_max", "must be >= 1", static_cast<double>(t_max));
    a.Check(eta_min >= 0, "eta_min", "must be >= 0", eta_min);
    return Finish<CosineAnnealingLR>(a, t_max, eta_min);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildCosineAnnealingWarmRestarts(Args& a, const std::string& where) {
    (void)where;
    const int64_t t0 = a.Int("T_0", std::nullopt);
    const int64_t t_mult = a.Int("T_mult", 1);
    const double eta_min = a.Double("eta_min", 0.0);
    a.Check(t0 >= 1, "T_0", "must be a positive integer", static_cast<double>(t0));
    a.Check(t_mult >= 1, "T_mult", "must be an integer >= 1", static_cast<double>(t_mult));
    a.Check(eta_min >= 0, "eta_min", "must be >= 0", eta_min);
    return Finish<CosineAnnealingWarmRestarts>(a, t0, t_mult, eta_min);
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildCyclicLR(Args& a, const std::string& where) {
    (void)where;
    std::vector<double> base = a.PerGroup("base_lr", std::nullopt);
    std::vector<double> max = a.PerGroup("max_lr", std::nullopt);
    const double up = a.Double("step_size_up", 2000);
    const double down = a.Double("step_size_down", up);  // None: = step_size_up
    const std::string mode = a.String("mode", "triangular", {"triangular", "triangular2", "exp_range"});
    const double gamma = a.Double("gamma", 1.0);
    a.String("scale_mode", "cycle", {"cycle", "iterations"});  // only used with a custom scale_fn
    IgnoredMomentumArgs(a);
    for (double b : base) a.Check(b >= 0, "base_lr", "must be >= 0", b);
    for (double m : max) a.Check(m >= 0, "max_lr", "must be >= 0", m);
    a.Check(up > 0, "step_size_up", "must be > 0", up);
    a.Check(down > 0, "step_size_down", "must be > 0", down);
    a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
    SCHED_RETURN_IF_ERROR(a.Finish());
    const CyclicLR::Mode m = mode == "triangular"    ? CyclicLR::Mode::kTriangular
                             : mode == "triangular2" ? CyclicLR::Mode::kTriangular2
                                                     : CyclicLR::Mode::kExpRange;
    auto sched = std::make_unique<CyclicLR>(g_, base, max, up, down, m, gamma);
    SCHED_RETURN_IF_ERROR(sched->Init());
    return std::unique_ptr<Schedule>(std::move(sched));
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildOneCycleLR(Args& a, const std::string& where) {
    (void)where;
    std::vector<double> max = a.PerGroup("max_lr", std::nullopt);
    int64_t total_steps = 0;
    const bool has_total = a.Has("total_steps");
    const bool has_epochs = a.Has("epochs"), has_spe = a.Has("steps_per_epoch");
    if (has_total) {
      total_steps = a.Int("total_steps", 0);
      a.Accept("epochs");
      a.Accept("steps_per_epoch");
      a.Check(total_steps >= 1, "total_steps", "must be a positive integer",
              static_cast<double>(total_steps));
    } else if (has_epochs && has_spe) {
      a.Accept("total_steps");
      const int64_t epochs = a.Int("epochs", 0);
      const int64_t spe = a.Int("steps_per_epoch", 0);
      a.Check(epochs >= 1, "epochs", "must be a positive integer", static_cast<double>(epochs));
      a.Check(spe >= 1, "steps_per_epoch", "must be a positive integer", static_cast<double>(spe));
      total_steps = epochs * spe;
    } else {
      a.Accept("total_steps");
      a.Accept("epochs");
      a.Accept("steps_per_epoch");
      a.FailOption("total_steps",
                   "is required (or both 'epochs' and 'steps_per_epoch'): the cycle's length");
    }
    const double pct_start = a.Double("pct_start", 0.3);
    const std::string anneal = a.String("anneal_strategy", "cos", {"cos", "linear"});
    const double div_factor = a.Double("div_factor", 25.);
    const double final_div_factor = a.Double("final_div_factor", 1e4);
    const bool three_phase = a.Bool("three_phase", false);
    IgnoredMomentumArgs(a);
    for (double m : max) a.Check(m >= 0, "max_lr", "must be >= 0", m);
    a.Check(pct_start >= 0 && pct_start <= 1, "pct_start", "must be in [0, 1]", pct_start);
    a.Check(div_factor > 0, "div_factor", "must be > 0", div_factor);
    a.Check(final_div_factor > 0, "final_div_factor", "must be > 0", final_div_factor);
    SCHED_RETURN_IF_ERROR(a.Finish());
    auto sched = std::make_unique<OneCycleLR>(g_, max, total_steps, pct_start, anneal == "cos",
                                              div_factor, final_div_factor, three_phase);
    // PyTorch divides by each phase's length (ZeroDivisionError when one is empty).
    double start = 0;
    for (const auto& p : sched->phases()) {
      if (!(p.end_step > start)) {
        return absl::InvalidArgumentError(absl::StrCat(
            a.where(), ": option 'pct_start' ", Num(pct_start), " with total_steps ", total_steps,
            " leaves a phase with no steps (pct_start * total_steps must be > 1",
            three_phase ? "" : " and < total_steps", ")"));
      }
      start = p.end_step;
    }
    SCHED_RETURN_IF_ERROR(sched->Init());
    return std::unique_ptr<Schedule>(std::move(sched));
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildReduceLROnPlateau(Args& a, const std::string& where) {
    (void)where;
    const std::string mode = a.String("mode", "min", {"min", "max"});
    const double factor = a.Double("factor", 0.1);
    const int64_t patience = a.Int("patience", 10);
    const double threshold = a.Double("threshold", 1e-4);
    const std::string threshold_mode = a.String("threshold_mode", "rel", {"rel", "abs"});
    const int64_t cooldown = a.Int("cooldown", 0);
    std::vector<double> min_lrs = a.PerGroup("min_lr", 0.0);
    const double eps = a.Double("eps", 1e-8);
    const Value* monitor = a.Find("monitor");  // read by the plugin
    if (monitor != nullptr && monitor->kind_case() != Value::kStringValue) {
      a.FailOption("monitor", absl::StrCat("must be a metric name (string), got ", Describe(*monitor)));
    }
    a.Check(factor >= 0 && factor < 1, "factor", "must be in [0, 1) (PyTorch: factor should be < 1.0)",
            factor);
    a.Check(patience >= 0, "patience", "must be >= 0", static_cast<double>(patience));
    a.Check(threshold >= 0, "threshold", "must be >= 0", threshold);
    a.Check(cooldown >= 0, "cooldown", "must be >= 0", static_cast<double>(cooldown));
    for (double m : min_lrs) a.Check(m >= 0, "min_lr", "must be >= 0", m);
    a.Check(eps >= 0, "eps", "must be >= 0", eps);
    SCHED_RETURN_IF_ERROR(a.Finish());
    return std::unique_ptr<Schedule>(std::make_unique<ReduceLROnPlateau>(
        g_, mode == "max", factor, patience, threshold, threshold_mode == "abs", cooldown,
        min_lrs, eps));
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildSequentialLR(Args& a, const std::string& where) {
    (void)where;
    const Value* list = a.Find("schedulers");
    std::vector<int64_t> milestones = a.IntList("milestones");
    SCHED_RETURN_IF_ERROR(a.Finish());
    SCHED_RETURN_IF_ERROR(CheckList(a, list));
    const auto& items = list->list_value().values();
    if (milestones.size() + 1 != static_cast<size_t>(items.size())) {
      return absl::InvalidArgumentError(absl::StrCat(
          a.where(), ": option 'milestones' must have one value fewer than 'schedulers' (",
          items.size(), " schedulers need ", items.size() - 1, " milestones), got ",
          milestones.size()));
    }
    CheckMilestones(a, milestones, /*min=*/1);
    SCHED_RETURN_IF_ERROR(a.Finish());
    std::vector<std::unique_ptr<LRBase>> children;
    for (int i = 0; i < items.size(); ++i) {
      const std::string child_where = absl::StrCat(where, ".schedulers[", i, "]");
      auto child = Build(items[i], child_where);
      if (!child.ok()) return child.status();
      auto* base = dynamic_cast<LRBase*>(child->get());
      if (base == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            child_where, " ", (*child)->type(), ": cannot be used inside SequentialLR (PyTorch 1.13 "
            "cannot step it there either); use it at the top level or in ChainedScheduler"));
      }
      child->release();
      children.emplace_back(base);
    }
    auto sched = std::make_unique<SequentialLR>(g_, std::move(children), milestones);
    SCHED_RETURN_IF_ERROR(sched->Init());
    return std::unique_ptr<Schedule>(std::move(sched));
  }
  absl::StatusOr<std::unique_ptr<Schedule>> BuildChainedScheduler(Args& a, const std::string& where) {
    (void)where;
    const Value* list = a.Find("schedulers");
    SCHED_RETURN_IF_ERROR(a.Finish());
    SCHED_RETURN_IF_ERROR(CheckList(a, list));
    std::vector<std::unique_ptr<Schedule>> children;
    const auto& items = list->list_value().values();
    for (int i = 0; i < items.size(); ++i) {
      const std::string child_where = absl::StrCat(where, ".schedulers[", i, "]");
      auto child = Build(items[i], child_where);
      if (!child.ok()) return child.status();
      if ((*child)->needs_metric()) {
        return absl::InvalidArgumentError(absl::StrCat(
            child_where, " ReduceLROnPlateau: cannot be chained (it steps on a metric); use it "
            "at the top level"));
      }
      children.push_back(std::move(child).value());
    }
    return std::unique_ptr<Schedule>(std::make_unique<ChainedScheduler>(std::move(children)));
  }

  template <class T, class... A>
  absl::StatusOr<std::unique_ptr<Schedule>> Finish(Args& a, A&&... args) {
    SCHED_RETURN_IF_ERROR(a.Finish());
    auto sched = std::make_unique<T>(g_, std::forward<A>(args)...);
    SCHED_RETURN_IF_ERROR(sched->InitBase());
    return std::unique_ptr<Schedule>(std::move(sched));
  }

  static void IgnoredMomentumArgs(Args& a) {
    // Momentum cycling does not change learning rates; not done here.
    a.Bool("cycle_momentum", true);
    for (const char* name : {"base_momentum", "max_momentum"}) {
      if (a.Has(name)) a.Double(name, 0.0); else a.Accept(name);
    }
  }

  static void CheckMilestones(Args& a, const std::vector<int64_t>& m, int64_t min) {
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i] < min) {
        a.FailOption("milestones", absl::StrCat("must be >= ", min, ", got ", m[i], " at index ", i));
        return;
      }
      if (i > 0 && m[i] <= m[i - 1]) {
        a.FailOption("milestones", absl::StrCat("must be strictly increasing, got ", m[i],
                                                " after ", m[i - 1], " at index ", i));
        return;
      }
    }
  }

  static absl::Status CheckList(Args& a, const Value* list) {
    if (list == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(a.where(), ": option 'schedulers' is required"));
    }
    if (list->kind_case() != Value::kListValue || list->list_value().values_size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(a.where(), ": option 'schedulers' must be a non-empty list of schedule "
                                  "objects, got ",
                       list->kind_case() == Value::kListValue ? "an empty list" : Describe(*list)));
    }
    return absl::OkStatus();
  }

  ParamGroups* g_;
  bool validate_only_;
};

}  // namespace

const std::vector<std::string>& KnownScheduleTypes() {
  static const auto* const kTypes = [] {
    auto* types = new std::vector<std::string>();
    for (const auto& [name, fn] : Builder::Ordered()) types->push_back(name);
    return types;
  }();
  return *kTypes;
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const Value& config,
                                                             const std::vector<double>& lrs,
                                                             absl::string_view where) {
  if (lrs.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": the optimizer has no param groups to schedule"));
  }
  std::unique_ptr<Scheduler> s(new Scheduler());
  s->groups_.lr = lrs;
  Builder b(&s->groups_, /*validate_only=*/false);
  auto root = b.Build(config, std::string(where));
  if (!root.ok()) return root.status();
  s->root_ = std::move(root).value();
  return s;
}

absl::Status Scheduler::Validate(const Value& config, absl::string_view where) {
  ParamGroups g;
  g.lr = {1.0};
  Builder b(&g, /*validate_only=*/true);
  auto root = b.Build(config, std::string(where));
  return root.status();
}

}  // namespace trainbus::schedulers
