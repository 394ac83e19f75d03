// nonfinite_guard: a non-finite loss or gradient stops the run, or skips the
// step. See README.md in this folder.
//
// The check runs in OnBeforeOptimizerStep, when the gradients are final and
// the optimizer has not used them yet: a bad step is never applied, so
// neither action needs a copy of the training state.
//   - "stop" skips the bad step and stops the run: the parameters stay finite.
//   - "skip" skips the bad step and goes on.
// A host that does not publish BeforeOptimizerStep (a Session in a loop that
// does not call BeforeOptimizerStep()) is checked in OnIterationEnd instead,
// after the step: "stop" then says the parameters may not be finite, and
// "skip" stops, because the step cannot be undone.
#ifndef TRAINBUS_PLUGINS_NONFINITE_GUARD_H_
#define TRAINBUS_PLUGINS_NONFINITE_GUARD_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainbus/plugin.h"

namespace trainbus::nonfinite_guard {

enum class Action { kStop, kSkip };

struct Config {
  Action action = Action::kStop;
  bool check_gradients = true;
  int64_t every_n = 1;                // check every N iterations (EveryN)
  int64_t max_consecutive_skips = 10; // skip: stop after this many skips in a row (0: never)
};

std::vector<OptionSpec> OptionSpecs();
absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& options);

// "loss is nan at step 41", or nullopt when finite.
std::optional<std::string> CheckLoss(double loss, int64_t step);
// True when every value of `t` is finite (an undefined or empty tensor is).
// CPU float and double tensors in one dense block are read in one plain
// loop: LibTorch's isfinite(t).all().item() runs about five kernels, 143 us
// an iteration for the default example's six parameters on the 1996 MHz
// reference machine against 5.6 us (bench/health). A sparse tensor's stored
// values are checked the same way; other tensors use LibTorch.
bool AllFinite(const at::Tensor& t);
// "gradient of 'fc.weight' has inf at step 41 (2 of 40 values)", naming the
// first parameter (in named_parameters() order) whose gradient is not finite,
// or nullopt. Parameters without a gradient are skipped.
std::optional<std::string> CheckGradients(const torch::nn::Module& model, int64_t step);

// "buffer 'bn.running_var' has nan at step 41 (...)": a buffer (BatchNorm's
// running statistics) made non-finite by the forward pass, which skipping the
// optimizer step cannot undo; or nullopt.
std::optional<std::string> CheckBuffers(const torch::nn::Module& model, int64_t step);

class NonFiniteGuardPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<NonFiniteGuardPlugin>> Create(const PluginContext& ctx);
  // `id`: the instance's name (PluginContext::id), the prefix of its records.
  explicit NonFiniteGuardPlugin(Config config, std::string id = "nonfinite_guard");

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& control) override;
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override;
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;

  int64_t skipped_steps() const { return skipped_; }

 private:
  // The problem with this step's loss, gradients or buffers, or nullopt.
  std::optional<std::string> Check(double loss, int64_t step, Control& control) const;
  // Acts on a problem; `before_step`: found before the optimizer step ran.
  void Act(const std::string& problem, int64_t step, bool before_step, Control& control);

  Config config_;
  std::string prefix_;  // "<id>/"
  int64_t checked_before_step_ = -1;  // the last step checked in OnBeforeOptimizerStep
  int64_t skipped_ = 0;
  int64_t consecutive_ = 0;
};

}  // namespace trainbus::nonfinite_guard

#endif  // TRAINBUS_PLUGINS_NONFINITE_GUARD_H_
