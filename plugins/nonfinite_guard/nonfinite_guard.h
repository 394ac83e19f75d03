// nonfinite_guard: a non-finite loss or gradient stops the run, or skips the
// step by restoring the last good state. See README.md in this folder.
//
// The hooks run after optimizer.step(): by the time OnIterationEnd sees a
// non-finite gradient it has already been applied to the parameters (and to
// the optimizer's momentum / Adam moments). So:
//   - "stop" is exact about *which* step and tensor went bad, but the live
//     parameters may already be non-finite when the run stops.
//   - "skip" restores a snapshot (parameters, buffers, optimizer state) taken
//     after the last step that passed the check; keeping it costs one extra
//     copy of all of these, refreshed (copy_, no allocation) every checked step.
#ifndef TRAINBUS_PLUGINS_NONFINITE_GUARD_H_
#define TRAINBUS_PLUGINS_NONFINITE_GUARD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainbus/plugin.h"

namespace torch::optim {
class OptimizerParamState;
}  // namespace torch::optim

namespace trainbus::nonfinite_guard {

enum class Action { kStop, kSkip };

struct Config {
  Action action = Action::kStop;
  bool check_gradients = true;
  int64_t every_n = 1;                // check steps with step % every_n == 0
  int64_t max_consecutive_skips = 10; // skip: stop after this many skips in a row (0: never)
};

std::vector<OptionSpec> OptionSpecs();
absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& options);

// "loss is nan at step 41", or nullopt when finite.
std::optional<std::string> CheckLoss(double loss, int64_t step);
// "gradient of 'fc.weight' has inf at step 41 (2 of 40 values)", naming the
// first parameter (in named_parameters() order) whose gradient is not finite,
// or nullopt. Parameters without a gradient are skipped.
std::optional<std::string> CheckGradients(const torch::nn::Module& model, int64_t step);

// A deep copy of a model's parameters and buffers and of its optimizer's
// per-parameter state (SGD, Adam, AdamW, Adagrad, RMSprop).
class TrainingSnapshot {
 public:
  TrainingSnapshot();
  ~TrainingSnapshot();
  // OK when the optimizer's state can be copied (null: parameters only).
  static absl::Status Supports(torch::optim::Optimizer* optimizer);

  // Copies the current state in (reusing its tensors when shapes match).
  void Take(torch::nn::Module& model, torch::optim::Optimizer* optimizer);
  // Copies the kept state back into the live model and optimizer.
  void Restore(torch::nn::Module& model, torch::optim::Optimizer* optimizer) const;
  bool empty() const { return !taken_; }
  // Bytes held by the copy (parameters + buffers + optimizer state).
  int64_t bytes() const;

 private:
  bool taken_ = false;
  std::vector<at::Tensor> params_, buffers_;
  std::map<std::string, std::unique_ptr<torch::optim::OptimizerParamState>> optimizer_state_;
};

class NonFiniteGuardPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<NonFiniteGuardPlugin>> Create(const PluginContext& ctx);
  explicit NonFiniteGuardPlugin(Config config);

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnIterationBegin(const IterationBeginEvent& e, Control& control) override;
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override;
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;

  int64_t skipped_steps() const { return skipped_; }
  const TrainingSnapshot& snapshot() const { return snapshot_; }

 private:
  void TakeSnapshot(Control& control, std::string label);

  Config config_;
  TrainingSnapshot snapshot_;
  std::string snapshot_label_;  // "the end of step 40" / "the start of step 0"
  bool began_iterations_ = false;
  bool warned_no_model_ = false;
  int64_t skipped_ = 0;
  int64_t consecutive_ = 0;
};

}  // namespace trainbus::nonfinite_guard

#endif  // TRAINBUS_PLUGINS_NONFINITE_GUARD_H_
