// grad_clip: options, the clipping arithmetic and the plugin.
#include "grad_clip.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "absl/strings/str_cat.h"

namespace trainbus::grad_clip {
namespace {

absl::Status Bad(absl::string_view option, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("option '", option, "' ", what));
}

}  // namespace

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& o) {
  Config c;
  c.max_norm = o.GetDouble("max_norm");
  if (!(c.max_norm >= 0) || std::isinf(c.max_norm)) {
    return Bad("max_norm", absl::StrCat("must be a finite number >= 0 (0: no norm clipping), got ",
                                        c.max_norm));
  }
  const google::protobuf::Value& norm = o.GetValue("norm_type");
  if (norm.kind_case() == google::protobuf::Value::kNumberValue && norm.number_value() > 0 &&
      std::isfinite(norm.number_value())) {
    c.norm_type = norm.number_value();
  } else if (norm.kind_case() == google::protobuf::Value::kStringValue &&
             norm.string_value() == "inf") {
    c.norm_type = std::numeric_limits<double>::infinity();
  } else {
    return Bad("norm_type", "must be a number > 0 or the string \"inf\"");
  }
  c.clip_value = o.GetDouble("clip_value");
  if (!(c.clip_value >= 0) || std::isinf(c.clip_value)) {
    return Bad("clip_value", absl::StrCat("must be a finite number >= 0 (0: no value clipping), "
                                          "got ", c.clip_value));
  }
  c.log_every_n = o.GetInt("log_every_n");
  if (c.log_every_n < 0) {
    return Bad("log_every_n", absl::StrCat("must be >= 0 (0: never), got ", c.log_every_n));
  }
  if (c.max_norm == 0 && c.clip_value == 0) {
    return absl::InvalidArgumentError(
        "set option 'max_norm' (clip by total norm) or 'clip_value' (clip by value), or both; "
        "with neither the plugin would only measure (use log-only plugins for that)");
  }
  return c;
}

double TotalGradNorm(const std::vector<at::Tensor>& params, double norm_type) {
  std::vector<at::Tensor> norms;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().detach().norm(norm_type));
  }
  if (norms.empty()) return 0.0;
  // As clip_grad_norm_: one gradient's norm as is; else the largest of the
  // per-parameter maxima (inf), or the norm of the per-parameter norms.
  if (norms.size() == 1) return norms.front().item<double>();
  if (std::isinf(norm_type)) return at::stack(norms).max().item<double>();
  return at::stack(norms).norm(norm_type).item<double>();
}

bool ClipToNorm(const std::vector<at::Tensor>& params, double total_norm, double max_norm) {
  at::Tensor first;
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) {
      first = p.grad();
      break;
    }
  }
  if (!first.defined()) return false;
  // As clip_grad_norm_ (LibTorch 1.13) computes it, in the gradients' dtype,
  // so the clipped gradients are the same bits: min(max_norm / (norm + 1e-6), 1).
  const at::Tensor norm = at::scalar_tensor(total_norm, first.options());
  const at::Tensor coef = at::clamp(max_norm / (norm + 1e-6), c10::nullopt, 1.0);
  if (coef.item<double>() >= 1.0) return false;  // x * 1 is x: nothing to do
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) p.grad().detach().mul_(coef);
  }
  return true;
}

void ClipToValue(const std::vector<at::Tensor>& params, double clip_value) {
  for (const at::Tensor& p : params) {
    if (p.grad().defined()) p.grad().detach().clamp_(-clip_value, clip_value);
  }
}

PluginInfo GradClipPlugin::Info() {
  return {"grad_clip",
          "1.0.0",
          "Clips gradients before the optimizer step (by total norm and/or by value) and logs "
          "their norm",
          {{"max_norm", OptionType::kDouble, "0",
            "Scale the gradients so their total norm is at most this (>= 0; 0: no norm clipping)"},
           {"norm_type", OptionType::kAny, "2",
            "The p of the total p-norm: a number > 0, or \"inf\" (largest absolute gradient)"},
           {"clip_value", OptionType::kDouble, "0",
            "First clamp every gradient to [-clip_value, clip_value] (>= 0; 0: no value clipping)"},
           {"log_every_n", OptionType::kInt, "1",
            "Publish grad_clip/norm (the norm before clipping) every N iterations (>= 0; 0: never)"}},
          /*default_priority=*/-50};  // after nonfinite_guard (-100), before the rest
}

absl::StatusOr<std::unique_ptr<GradClipPlugin>> GradClipPlugin::Create(const PluginContext& ctx) {
  auto config = ConfigFromOptions(ctx.options);
  if (!config.ok()) return config.status();
  return std::make_unique<GradClipPlugin>(*config, ctx.instance());
}

void GradClipPlugin::OnTrainBegin(const TrainBeginEvent&, Control& control) {
  if (control.model() == nullptr) {
    control.Log("no model is bound to the session (Session::Bind): nothing to clip");
  }
}

void GradClipPlugin::OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& control) {
  if (control.model() == nullptr || control.optimizer_step_skipped()) return;
  const std::vector<at::Tensor> params = control.model()->parameters();
  // The norm users want to see is the one before any clipping.
  const double norm = TotalGradNorm(params, config_.norm_type);
  ++steps_;
  if (trainbus::EveryN(config_.log_every_n, e.step)) {
    control.Publish(Record::Scalar(prefix_ + "norm", norm, e.step));
  }
  // Value clipping first (it also turns an inf gradient into +-clip_value);
  // the norm is then measured again.
  double clipped_norm = norm;
  if (config_.clip_value > 0) {
    ClipToValue(params, config_.clip_value);
    clipped_norm = TotalGradNorm(params, config_.norm_type);
  }
  if (config_.max_norm > 0 && std::isfinite(clipped_norm) &&
      ClipToNorm(params, clipped_norm, config_.max_norm)) {
    ++clipped_;
  }
}

void GradClipPlugin::OnTrainEnd(const TrainEndEvent&, Control& control) {
  if (steps_ > 0 && config_.max_norm > 0) {
    control.Log(absl::StrCat("scaled the gradients down in ", clipped_, " of ", steps_,
                             " steps (max_norm ", config_.max_norm, ")"));
  }
}

}  // namespace trainbus::grad_clip
