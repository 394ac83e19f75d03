// grad_clip: clips gradients before the optimizer step, by their total norm
// (as torch.nn.utils.clip_grad_norm_) and/or by value (clip_grad_value_),
// and publishes the norm measured before clipping. See README.md here.
//
// It runs in OnBeforeOptimizerStep, when the gradients are final (after
// gradient accumulation, and averaged over ranks in a distributed run, so
// every rank clips alike). Value clipping comes first (it makes an inf
// gradient finite); a norm that is still not finite is not used to scale:
// scaling by it would turn every gradient into nan. nonfinite_guard, which
// runs first, decides what to do with such a step.
#ifndef TRAINBUS_PLUGINS_GRAD_CLIP_H_
#define TRAINBUS_PLUGINS_GRAD_CLIP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "trainbus/plugin.h"

namespace trainbus::grad_clip {

struct Config {
  double max_norm = 0.0;    // clip the total norm to this (0: no norm clipping)
  double norm_type = 2.0;   // p of the p-norm; +inf: the largest absolute value
  double clip_value = 0.0;  // clamp each gradient to [-v, v] first (0: none)
  int64_t log_every_n = 1;  // publish grad_clip/norm every N iterations (EveryN; 0: never)
};

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& options);

// The total `norm_type`-norm of the gradients of `params` (those that have
// one), computed the way torch::nn::utils::clip_grad_norm_ does: the norm of
// the per-parameter norms. 0 when no parameter has a gradient.
double TotalGradNorm(const std::vector<at::Tensor>& params, double norm_type);

// Scales the gradients so their total norm is at most max_norm, exactly as
// clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), at most 1, computed
// in the gradients' dtype), given the norm TotalGradNorm returned. Returns
// true when it scaled.
bool ClipToNorm(const std::vector<at::Tensor>& params, double total_norm, double max_norm);

// Clamps every gradient to [-clip_value, clip_value] (clip_grad_value_).
void ClipToValue(const std::vector<at::Tensor>& params, double clip_value);

class GradClipPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<GradClipPlugin>> Create(const PluginContext& ctx);
  // `id`: the instance's name (PluginContext::id), the prefix of its records.
  explicit GradClipPlugin(Config config, std::string id = "grad_clip")
      : config_(config), prefix_(id + "/") {}

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& control) override;
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;

  int64_t clipped_steps() const { return clipped_; }

 private:
  Config config_;
  std::string prefix_;  // "<id>/"
  int64_t steps_ = 0;    // steps measured by this process
  int64_t clipped_ = 0;  // of them, steps whose norm was scaled down
};

}  // namespace trainbus::grad_clip

#endif  // TRAINBUS_PLUGINS_GRAD_CLIP_H_
