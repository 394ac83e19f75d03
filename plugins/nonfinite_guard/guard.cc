// nonfinite_guard: checks, the training-state snapshot, and the plugin.
#include <cmath>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>

#include "absl/strings/str_cat.h"
#include "nonfinite_guard.h"

namespace trainbus::nonfinite_guard {
namespace {

namespace optim = torch::optim;

absl::Status Bad(absl::string_view option, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("option '", option, "' ", what));
}

// Makes `to` an independent copy of `from`: in place when the layout matches
// (no allocation), otherwise a fresh clone.
void CopyTensor(const at::Tensor& from, at::Tensor& to) {
  if (!from.defined()) {
    to = at::Tensor();
  } else if (to.defined() && !to.is_same(from) && to.sizes() == from.sizes() &&
             to.scalar_type() == from.scalar_type() && to.device() == from.device()) {
    to.copy_(from);
  } else {
    to = from.detach().clone();
  }
}

// Adam and AdamW keep the same fields in two distinct types.
template <class AdamState>
bool CopyAdamState(const AdamState& from, optim::OptimizerParamState& to) {
  auto* t = dynamic_cast<AdamState*>(&to);
  if (t == nullptr) return false;
  t->step(from.step());
  CopyTensor(from.exp_avg(), t->exp_avg());
  CopyTensor(from.exp_avg_sq(), t->exp_avg_sq());
  CopyTensor(from.max_exp_avg_sq(), t->max_exp_avg_sq());
  return true;
}

// Copies every field of a known optimizer state type; false for another type
// (or when `to` is of a different type).
bool CopyState(const optim::OptimizerParamState& from, optim::OptimizerParamState& to) {
  if (const auto* f = dynamic_cast<const optim::SGDParamState*>(&from)) {
    auto* t = dynamic_cast<optim::SGDParamState*>(&to);
    if (t == nullptr) return false;
    CopyTensor(f->momentum_buffer(), t->momentum_buffer());
    return true;
  }
  if (const auto* f = dynamic_cast<const optim::AdamParamState*>(&from)) {
    return CopyAdamState(*f, to);
  }
  if (const auto* f = dynamic_cast<const optim::AdamWParamState*>(&from)) {
    return CopyAdamState(*f, to);
  }
  if (const auto* f = dynamic_cast<const optim::AdagradParamState*>(&from)) {
    auto* t = dynamic_cast<optim::AdagradParamState*>(&to);
    if (t == nullptr) return false;
    t->step(f->step());
    CopyTensor(f->sum(), t->sum());
    return true;
  }
  if (const auto* f = dynamic_cast<const optim::RMSpropParamState*>(&from)) {
    auto* t = dynamic_cast<optim::RMSpropParamState*>(&to);
    if (t == nullptr) return false;
    t->step(f->step());
    CopyTensor(f->square_avg(), t->square_avg());
    CopyTensor(f->momentum_buffer(), t->momentum_buffer());
    CopyTensor(f->grad_avg(), t->grad_avg());
    return true;
  }
  return false;
}

std::unique_ptr<optim::OptimizerParamState> DeepClone(const optim::OptimizerParamState& s) {
  std::unique_ptr<optim::OptimizerParamState> c = s.clone();  // shares the tensors
  if (!CopyState(s, *c)) {
    throw std::runtime_error(
        "nonfinite_guard: cannot copy this optimizer's state (supported: SGD, Adam, AdamW, "
        "Adagrad, RMSprop); use action \"stop\"");
  }
  return c;
}

int64_t Bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

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

}  // namespace

std::vector<OptionSpec> OptionSpecs() {
  return {
      {"action", OptionType::kString, "\"stop\"",
       "\"stop\": stop the run; \"skip\": undo the step (restore the last good parameters, "
       "buffers and optimizer state) and go on"},
      {"check_gradients", OptionType::kBool, "true",
       "Check every parameter's gradient too, not only the loss"},
      {"every_n", OptionType::kInt, "1", "Check steps whose number is a multiple of N"},
      {"max_consecutive_skips", OptionType::kInt, "10",
       "skip: stop the run after this many skipped steps in a row (0: never)"},
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
    if (at::isfinite(g).all().item<bool>()) continue;
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

TrainingSnapshot::TrainingSnapshot() = default;
TrainingSnapshot::~TrainingSnapshot() = default;

absl::Status TrainingSnapshot::Supports(torch::optim::Optimizer* optimizer) {
  if (optimizer == nullptr || dynamic_cast<optim::SGD*>(optimizer) ||
      dynamic_cast<optim::Adam*>(optimizer) || dynamic_cast<optim::AdamW*>(optimizer) ||
      dynamic_cast<optim::Adagrad*>(optimizer) || dynamic_cast<optim::RMSprop*>(optimizer)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      "action \"skip\" must copy the optimizer's state, which it can for SGD, Adam, AdamW, "
      "Adagrad and RMSprop only; use action \"stop\" with this optimizer");
}

void TrainingSnapshot::Take(torch::nn::Module& model, torch::optim::Optimizer* optimizer) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> params = model.parameters(/*recurse=*/true);
  std::vector<at::Tensor> buffers = model.buffers(/*recurse=*/true);
  params_.resize(params.size());
  buffers_.resize(buffers.size());
  for (size_t i = 0; i < params.size(); ++i) CopyTensor(params[i], params_[i]);
  for (size_t i = 0; i < buffers.size(); ++i) CopyTensor(buffers[i], buffers_[i]);
  if (optimizer != nullptr) {
    const auto& live = optimizer->state();
    for (auto it = optimizer_state_.begin(); it != optimizer_state_.end();) {
      it = live.count(it->first) ? std::next(it) : optimizer_state_.erase(it);
    }
    for (const auto& [key, state] : live) {
      auto found = optimizer_state_.find(key);
      if (found == optimizer_state_.end() || !CopyState(*state, *found->second)) {
        optimizer_state_[key] = DeepClone(*state);
      }
    }
  }
  taken_ = true;
}

void TrainingSnapshot::Restore(torch::nn::Module& model, torch::optim::Optimizer* optimizer) const {
  if (!taken_) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> params = model.parameters(/*recurse=*/true);
  std::vector<at::Tensor> buffers = model.buffers(/*recurse=*/true);
  if (params.size() != params_.size() || buffers.size() != buffers_.size()) {
    throw std::runtime_error("nonfinite_guard: the model's parameters changed since the snapshot");
  }
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(params_[i]);
  for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(buffers_[i]);
  if (optimizer != nullptr) {
    auto& live = optimizer->state();
    // State created by the bad step (first steps create it lazily) goes.
    std::vector<std::string> extra;
    for (const auto& [key, state] : live) {
      if (!optimizer_state_.count(key)) extra.push_back(key);
    }
    for (const auto& key : extra) live.erase(key);
    for (const auto& [key, saved] : optimizer_state_) {
      auto found = live.find(key);
      if (found == live.end() || !CopyState(*saved, *found->second)) live[key] = DeepClone(*saved);
    }
  }
}

int64_t TrainingSnapshot::bytes() const {
  int64_t n = 0;
  for (const auto& t : params_) n += Bytes(t);
  for (const auto& t : buffers_) n += Bytes(t);
  for (const auto& [key, s] : optimizer_state_) {
    if (auto* x = dynamic_cast<const optim::SGDParamState*>(s.get())) {
      n += Bytes(x->momentum_buffer());
    } else if (auto* x = dynamic_cast<const optim::AdamParamState*>(s.get())) {
      n += Bytes(x->exp_avg()) + Bytes(x->exp_avg_sq()) + Bytes(x->max_exp_avg_sq());
    } else if (auto* x = dynamic_cast<const optim::AdamWParamState*>(s.get())) {
      n += Bytes(x->exp_avg()) + Bytes(x->exp_avg_sq()) + Bytes(x->max_exp_avg_sq());
    } else if (auto* x = dynamic_cast<const optim::AdagradParamState*>(s.get())) {
      n += Bytes(x->sum());
    } else if (auto* x = dynamic_cast<const optim::RMSpropParamState*>(s.get())) {
      n += Bytes(x->square_avg()) + Bytes(x->momentum_buffer()) + Bytes(x->grad_avg());
    }
  }
  return n;
}

PluginInfo NonFiniteGuardPlugin::Info() {
  return {"nonfinite_guard", "1.0.0",
          "Stops the run (or skips the step) when the loss or a gradient is nan or infinite",
          OptionSpecs(),
          /*default_priority=*/-100};  // first: later plugins see the restored step
}

absl::StatusOr<std::unique_ptr<NonFiniteGuardPlugin>> NonFiniteGuardPlugin::Create(
    const PluginContext& ctx) {
  auto config = ConfigFromOptions(ctx.options);
  if (!config.ok()) return config.status();
  return std::make_unique<NonFiniteGuardPlugin>(*config);
}

NonFiniteGuardPlugin::NonFiniteGuardPlugin(Config config) : config_(config) {}

void NonFiniteGuardPlugin::TakeSnapshot(Control& control, std::string label) {
  snapshot_.Take(*control.model(), control.optimizer());
  snapshot_label_ = std::move(label);
}

void NonFiniteGuardPlugin::OnTrainBegin(const TrainBeginEvent& e, Control& control) {
  if (config_.action == Action::kSkip) {
    if (control.model() == nullptr) {
      throw std::runtime_error(
          "action \"skip\" needs the model (and optimizer) bound to the session to undo a step; "
          "bind them or use action \"stop\"");
    }
    if (absl::Status s = TrainingSnapshot::Supports(control.optimizer()); !s.ok()) {
      throw std::runtime_error(std::string(s.message()));
    }
    TakeSnapshot(control, absl::StrCat("the start of step ", e.run ? e.run->start_step : 0));
  } else if (config_.check_gradients && control.model() == nullptr) {
    control.Log("no model is bound to the session: only the loss is checked");
    warned_no_model_ = true;
  }
}

void NonFiniteGuardPlugin::OnIterationBegin(const IterationBeginEvent& e, Control& control) {
  // The state right before this process's first step (after any resume).
  if (config_.action != Action::kSkip || began_iterations_) return;
  began_iterations_ = true;
  TakeSnapshot(control, absl::StrCat("the start of step ", e.step));
}

void NonFiniteGuardPlugin::OnIterationEnd(const IterationEndEvent& e, Control& control) {
  if (e.step % config_.every_n != 0) return;
  began_iterations_ = true;
  std::optional<std::string> problem = CheckLoss(e.loss, e.step);
  torch::nn::Module* model = control.model();
  if (!problem && config_.check_gradients && model != nullptr) {
    problem = CheckGradients(*model, e.step);
  }
  if (!problem) {
    consecutive_ = 0;
    if (config_.action == Action::kSkip) {
      TakeSnapshot(control, absl::StrCat("the end of step ", e.step));
    }
    return;
  }
  if (config_.action == Action::kStop) {
    control.Log(absl::StrCat(*problem, "; stopping the run (the optimizer step of step ", e.step,
                             " has already run, so the parameters may not be finite now)"));
    control.Publish(Record::Text("nonfinite_guard/reason", absl::StrCat("**Stopped:** ", *problem),
                                 e.step));
    control.RequestStop(*problem);
    return;
  }
  snapshot_.Restore(*model, control.optimizer());
  ++skipped_;
  ++consecutive_;
  const std::string message =
      absl::StrCat("skipped step ", e.step, " (", *problem, "): parameters, buffers and "
                   "optimizer state restored to ", snapshot_label_);
  control.Log(message);
  control.Publish(Record::Text("nonfinite_guard/skipped", message, e.step));
  control.Publish(Record::Scalar("nonfinite_guard/skipped_steps", static_cast<double>(skipped_),
                                 e.step));
  if (config_.max_consecutive_skips > 0 && consecutive_ >= config_.max_consecutive_skips) {
    const std::string reason =
        absl::StrCat(consecutive_, " steps in a row were not finite (max_consecutive_skips ",
                     config_.max_consecutive_skips, "); last: ", *problem);
    control.Log(absl::StrCat(reason, "; stopping the run"));
    control.Publish(Record::Text("nonfinite_guard/reason", absl::StrCat("**Stopped:** ", reason),
                                 e.step));
    control.RequestStop(reason);
  }
}

void NonFiniteGuardPlugin::OnTrainEnd(const TrainEndEvent&, Control& control) {
  if (skipped_ > 0) {
    control.Log(absl::StrCat("skipped ", skipped_, " step", skipped_ == 1 ? "" : "s",
                             " with a non-finite loss or gradient; the kept copy of the training "
                             "state took ",
                             snapshot_.bytes(), " bytes"));
  }
}

}  // namespace trainbus::nonfinite_guard
