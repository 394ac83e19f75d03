// nonfinite_guard: the checks and the plugin.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "absl/strings/str_cat.h"
#include "nonfinite_guard.h"

namespace trainbus::nonfinite_guard {
namespace {

absl::Status Bad(absl::string_view option, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("option '", option, "' ", what));
}

std::string Describe(const at::Tensor& g) {
  const int64_t nan = g.isnan().sum().item<int64_t>();
  const int64_t pos = g.isposinf().sum().item<int64_t>();
  const int64_t neg = g.isneginf().sum().item<int64_t>();
  std::string kinds;
  auto add = [&](int64_t n, absl::string_view name) {
    if (n == 0) return;
    absl::StrAppend(&kinds, kinds.empty() ? "" : " and ", name);
  };
  add(nan, "nan");
  add(pos, "inf");
  add(neg, "-inf");
  return kinds.empty() ? "non-finite values" : kinds;
}

// A float is not finite when its exponent bits are all ones: adding one to
// the lowest exponent bit then carries into the sign bit, and only then. The
// loop ORs those sums and tests the sign once: no branch per value, so the
// compiler can vectorise it (GCC does at -O3, the Release build).
template <class Bits, class T>
bool AllFiniteBits(const T* values, int64_t n, Bits exponent, Bits lowest_exponent_bit) {
  static_assert(sizeof(Bits) == sizeof(T));
  Bits any = 0;
  for (int64_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, values + i, sizeof bits);
    any |= (bits & exponent) + lowest_exponent_bit;
  }
  return (any >> (8 * sizeof(Bits) - 1)) == 0;
}

}  // namespace

bool AllFinite(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return true;
  // COO: the stored values, summed per entry as the optimizer will see them.
  if (t.is_sparse()) return AllFinite(t.coalesce()._values());
  if (t.layout() != at::kStrided) return AllFinite(t.to_dense());
  // Every value once, in any order: a dense block (channels-last too) will
  // do, and a negated view is finite where its storage is.
  const bool in_place = t.device().is_cpu() && t.is_non_overlapping_and_dense();
  if (in_place && t.scalar_type() == at::kFloat) {
    return AllFiniteBits<uint32_t>(t.data_ptr<float>(), t.numel(), 0x7f800000u, 0x00800000u);
  }
  if (in_place && t.scalar_type() == at::kDouble) {
    return AllFiniteBits<uint64_t>(t.data_ptr<double>(), t.numel(), 0x7ff0000000000000ull,
                                   0x0010000000000000ull);
  }
  return at::isfinite(t).all().item<bool>();
}

std::vector<OptionSpec> OptionSpecs() {
  return {
      {"action", OptionType::kString, "\"stop\"",
       "\"stop\": skip the bad step and stop the run; \"skip\": skip the bad step (the "
       "optimizer never applies it) and go on"},
      {"check_gradients", OptionType::kBool, "true",
       "Check every parameter's gradient too, not only the loss"},
      {"every_n", OptionType::kInt, "1", "Check every N iterations (>= 1; the Nth, 2Nth, ...)"},
      {"max_consecutive_skips", OptionType::kInt, "10",
       "skip: stop the run after this many skipped steps in a row (>= 0; 0: never)"},
  };
}

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& o) {
  Config c;
  const std::string action = o.GetString("action");
  if (action == "stop") {
    c.action = Action::kStop;
  } else if (action == "skip") {
    c.action = Action::kSkip;
  } else {
    return Bad("action", absl::StrCat("must be \"stop\" or \"skip\", got \"", action, "\""));
  }
  c.check_gradients = o.GetBool("check_gradients");
  c.every_n = o.GetInt("every_n");
  if (c.every_n <= 0) return Bad("every_n", absl::StrCat("must be > 0, got ", c.every_n));
  c.max_consecutive_skips = o.GetInt("max_consecutive_skips");
  if (c.max_consecutive_skips < 0) {
    return Bad("max_consecutive_skips",
               absl::StrCat("must be >= 0, got ", c.max_consecutive_skips));
  }
  return c;
}

std::optional<std::string> CheckLoss(double loss, int64_t step) {
  if (std::isfinite(loss)) return std::nullopt;
  return absl::StrCat("loss is ", std::isnan(loss) ? "nan" : (loss > 0 ? "inf" : "-inf"),
                      " at step ", step);
}

std::optional<std::string> CheckGradients(const torch::nn::Module& model, int64_t step) {
  std::optional<std::string> first;
  int64_t more = 0;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const at::Tensor& g = item.value().grad();
    if (!g.defined() || !at::is_floating_point(g)) continue;
    if (AllFinite(g)) continue;
    if (first) {
      ++more;
      continue;
    }
    const int64_t bad = g.numel() - at::isfinite(g).sum().item<int64_t>();
    first = absl::StrCat("gradient of '", item.key(), "' has ", Describe(g), " at step ", step,
                         " (", bad, " of ", g.numel(), " values)");
  }
  if (first && more > 0) {
    absl::StrAppend(&*first, "; ", more, " more parameter", more == 1 ? " has" : "s have",
                    " non-finite gradients");
  }
  return first;
}

std::optional<std::string> CheckBuffers(const torch::nn::Module& model, int64_t step) {
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    const at::Tensor& b = item.value();
    if (!b.defined() || !at::is_floating_point(b) || AllFinite(b)) continue;
    const int64_t bad = b.numel() - at::isfinite(b).sum().item<int64_t>();
    return absl::StrCat("buffer '", item.key(), "' has ", Describe(b), " at step ", step, " (",
                        bad, " of ", b.numel(), " values)");
  }
  return std::nullopt;
}

PluginInfo NonFiniteGuardPlugin::Info() {
  return {"nonfinite_guard", "1.0.0",
          "Skips the optimizer step, and stops the run or goes on, when the loss or a gradient is nan or inf",
          OptionSpecs(),
          /*default_priority=*/-100};  // first: before grad_clip and the rest
}

absl::StatusOr<std::unique_ptr<NonFiniteGuardPlugin>> NonFiniteGuardPlugin::Create(
    const PluginContext& ctx) {
  auto config = ConfigFromOptions(ctx.options);
  if (!config.ok()) return config.status();
  return std::make_unique<NonFiniteGuardPlugin>(*config, ctx.instance());
}

NonFiniteGuardPlugin::NonFiniteGuardPlugin(Config config, std::string id)
    : config_(config), prefix_(absl::StrCat(id, "/")) {}

void NonFiniteGuardPlugin::OnTrainBegin(const TrainBeginEvent&, Control& control) {
  if (config_.check_gradients && control.model() == nullptr) {
    control.Log("no model is bound to the session: only the loss is checked");
  }
}

std::optional<std::string> NonFiniteGuardPlugin::Check(double loss, int64_t step,
                                                       Control& control) const {
  std::optional<std::string> problem = CheckLoss(loss, step);
  const torch::nn::Module* model = control.model();
  if (!problem && config_.check_gradients && model != nullptr) {
    problem = CheckGradients(*model, step);
  }
  return problem;
}

void NonFiniteGuardPlugin::OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e,
                                                 Control& control) {
  checked_before_step_ = e.step;
  if (!trainbus::EveryN(config_.every_n, e.step)) return;
  if (std::optional<std::string> problem = Check(e.loss, e.step, control)) {
    Act(*problem, e.step, /*before_step=*/true, control);
  } else {
    consecutive_ = 0;
  }
}

void NonFiniteGuardPlugin::OnIterationEnd(const IterationEndEvent& e, Control& control) {
  // Checked before the step already, unless the host does not publish
  // BeforeOptimizerStep: then check here, after the step.
  if (checked_before_step_ == e.step || !trainbus::EveryN(config_.every_n, e.step)) return;
  if (std::optional<std::string> problem = Check(e.loss, e.step, control)) {
    Act(*problem, e.step, /*before_step=*/false, control);
  } else {
    consecutive_ = 0;
  }
}

void NonFiniteGuardPlugin::Act(const std::string& problem, int64_t step, bool before_step,
                               Control& control) {
  auto stop = [&](const std::string& reason, absl::string_view note) {
    control.Log(absl::StrCat(reason, "; stopping the run", note));
    control.Publish(Record::Text(prefix_ + "reason", absl::StrCat("**Stopped:** ", reason),
                                 step));
    control.RequestStop(reason);
  };
  if (!before_step) {
    stop(problem, absl::StrCat(" (this host does not call Session::BeforeOptimizerStep(), so the "
                               "optimizer step of step ", step, " has already run and the "
                               "parameters may not be finite now)"));
    return;
  }
  if (absl::Status s = control.SkipOptimizerStep(problem); !s.ok()) {
    throw std::runtime_error(std::string(s.message()));
  }
  if (config_.action == Action::kStop) {
    stop(problem, " (its optimizer step was skipped: the parameters are still finite)");
    return;
  }
  // The forward pass may have written non-finite running statistics, which
  // skipping the update cannot undo: going on would train a broken model.
  if (const torch::nn::Module* model = control.model()) {
    if (std::optional<std::string> buffer = CheckBuffers(*model, step)) {
      stop(absl::StrCat(problem, "; ", *buffer), " (a skip cannot undo a buffer's update)");
      return;
    }
  }
  ++skipped_;
  ++consecutive_;
  const std::string message = absl::StrCat("skipped step ", step, " (", problem,
                                           "): its optimizer step did not run");
  control.Publish(Record::Text(prefix_ + "skipped", message, step));
  control.Publish(Record::Scalar(prefix_ + "skipped_steps", static_cast<double>(skipped_),
                                 step));
  if (config_.max_consecutive_skips > 0 && consecutive_ >= config_.max_consecutive_skips) {
    stop(absl::StrCat(consecutive_, " steps in a row were not finite (max_consecutive_skips ",
                      config_.max_consecutive_skips, "); last: ", problem),
         "");
  }
}

void NonFiniteGuardPlugin::OnTrainEnd(const TrainEndEvent&, Control& control) {
  if (skipped_ > 0) {
    control.Log(absl::StrCat("skipped ", skipped_, " step", skipped_ == 1 ? "" : "s",
                             " with a non-finite loss or gradient"));
  }
}

}  // namespace trainbus::nonfinite_guard
