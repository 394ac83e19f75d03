// trainbus/control.h — what a plugin may ask of the run.
//
// Every hook receives a Control&. Through it a plugin can:
//   - stop the run:           control.RequestStop("val/loss stopped improving");
//     The stop takes effect at the end of the current iteration; every
//     plugin still receives EpochEnd (if inside an epoch) and TrainEnd.
//   - steer the optimizer:    control.SetLearningRate(group, 1e-3);
//     The new rate is used from the next optimizer step on.
//   - skip a step:            control.SkipOptimizerStep("gradient is nan");
//     Only in OnBeforeOptimizerStep: the parameters stay as they were.
//   - ask for a checkpoint:   control.RequestCheckpoint("best val/accuracy");
//   - publish records:        control.Publish(Record::Scalar("x", 1.0, step));
//     or, at the current step: control.PublishScalar("x", 1.0);
//     Records reach every plugin's OnRecord() before Publish() returns.
//   - read the run:           control.model(), control.optimizer(), control.run(),
//     control.step(), control.epoch(). The model and optimizer are the live
//     objects: read them, do not replace their parameters' storage.
//   - log a line:             control.Log("restored best weights");
//     Printed as "[<plugin name>] <message>" on standard error.
//
// Each plugin gets its own Control, which knows the plugin's name: requests
// and log lines are attributed to it ("stop requested by early_stopping: ...").
// Control is valid only during the hook call that received it; it must not be
// used from another thread.
#ifndef TRAINBUS_CONTROL_H_
#define TRAINBUS_CONTROL_H_

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "trainbus/events.h"
#include "trainbus/record.h"

namespace torch {
namespace nn {
class Module;
}  // namespace nn
namespace optim {
class Optimizer;
}  // namespace optim
}  // namespace torch

namespace trainbus {

struct BatchSchedule;  // trainbus/batch_schedule.h

class Control {
 public:
  virtual ~Control() = default;

  // Asks the run to stop after the current iteration. The first reason wins;
  // later requests are ignored. Safe to call from any hook.
  virtual void RequestStop(absl::string_view reason) = 0;
  virtual bool stop_requested() const = 0;
  // "<plugin>: <reason>" of the first stop request, or empty.
  virtual const std::string& stop_reason() const = 0;

  // Number of optimizer param groups (0 when no optimizer is bound).
  virtual int num_param_groups() const = 0;
  // Current learning rate of param group `group`; 0 when out of range.
  virtual double learning_rate(int group) const = 0;
  // Sets the learning rate of param group `group` for the next step.
  // InvalidArgument for a group out of range or a negative/non-finite lr;
  // FailedPrecondition when no optimizer is bound.
  virtual absl::Status SetLearningRate(int group, double lr) = 0;

  // Changes the batch size: from the next epoch (at_next_iteration false), or
  // from the next iteration (true: the rest of the epoch is cut into batches
  // of the new size). InvalidArgument for size < 1; FailedPrecondition when
  // the host batches the data itself (a Session in a user's own loop).
  virtual absl::Status SetBatchSize(int64_t size, bool at_next_iteration) = 0;
  // Declares the batch-size schedule this plugin will apply with
  // SetBatchSize(), so the plan printed before the run and every plugin's
  // totals (RunInfo::total_iterations) follow it. Only in OnSetup, by one
  // plugin; FailedPrecondition elsewhere, a second time, or when the host
  // batches the data itself.
  virtual absl::Status SetBatchSchedule(const BatchSchedule& schedule) = 0;
  // Skips this iteration's optimizer step: the parameters and the optimizer's
  // state stay as they are, the gradients are dropped, and IterationEnd
  // reports optimizer_step_skipped. Only in OnBeforeOptimizerStep;
  // FailedPrecondition elsewhere. Later plugins still see the hook.
  virtual absl::Status SkipOptimizerStep(absl::string_view reason) = 0;
  // True once a plugin skipped this iteration's step.
  virtual bool optimizer_step_skipped() const = 0;

  // Asks the checkpoint plugin (if any) to save at the end of this iteration.
  virtual void RequestCheckpoint(absl::string_view reason) = 0;
  virtual bool checkpoint_requested() const = 0;
  // Saves the whole run to <root>/<name> (trainbus/checkpoint.h): model,
  // optimizer, position "after the current step", RNG state and every
  // plugin's SaveState(). Serialises now; writes on a background thread,
  // atomically; then deletes the folders in `remove_after`. Returns the error
  // of an earlier save, or FailedPrecondition when the host has no model.
  // The checkpoint plugin calls this; it runs last (priority 1000) so the
  // states it saves include this step's decisions of every other plugin.
  virtual absl::Status SaveCheckpoint(const std::string& root, const std::string& name,
                                      absl::string_view reason,
                                      std::vector<std::string> remove_after) = 0;

  // The model and optimizer being trained; nullptr when the host did not bind them.
  virtual torch::nn::Module* model() const = 0;
  virtual torch::optim::Optimizer* optimizer() const = 0;
  // Facts about the run (sizes, plan, log directory, hyperparameters).
  virtual const RunInfo& run() const = 0;
  // The current global step and epoch.
  virtual int64_t step() const = 0;
  virtual int64_t epoch() const = 0;

  // Publishes a record to every plugin's OnRecord(). A record with
  // wall_time 0 is stamped with the current time.
  virtual void Publish(Record record) = 0;

  // Writes "[<plugin>] <message>" to standard error.
  virtual void Log(absl::string_view message) = 0;

  // Shorthands for the records plugins publish most, stamped at step():
  // in OnIterationEnd the step that just ran, in OnValidationEnd and
  // OnEpochEnd the last step before them.
  //   control.PublishScalar("grad/norm", norm);
  void PublishScalar(absl::string_view tag, double value) {
    Publish(Record::Scalar(std::string(tag), value, step()));
  }
  void PublishText(absl::string_view tag, absl::string_view markdown) {
    Publish(Record::Text(std::string(tag), std::string(markdown), step()));
  }
};

}  // namespace trainbus

#endif  // TRAINBUS_CONTROL_H_
