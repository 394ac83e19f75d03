// schedules.h — learning-rate schedules with PyTorch 1.13.1's exact arithmetic.
//
// A port of torch.optim.lr_scheduler (the reference; see
// /work/shared/SCHEDULES.md): the same class names, argument names and
// defaults, and the same update forms step for step. Most PyTorch schedules
// are *chainable*: each step multiplies the current lr of a param group by a
// factor (StepLR, ExponentialLR, LinearLR, CosineAnnealingLR, ...) instead of
// evaluating a closed form, and several schedules built on one optimizer
// share the groups' lr. To give the same doubles, down to the last bit, this
// library keeps the same shared state (ParamGroups: lr, initial_lr, and
// OneCycleLR's max_lr/min_lr) and evaluates the same expressions in the same
// order.
//
//   ScheduleConfig from JSON:  {"type": "CosineAnnealingLR", "T_max": 1000}
//   auto s = Scheduler::Create(value, /*lrs=*/{0.1, 0.01}, "schedule");
//   (*s)->lrs();                 // lr per group for step 0 (after construction)
//   (*s)->Step();                // after each optimizer step (not ReduceLROnPlateau)
//   (*s)->StepWithMetric(loss);  // ReduceLROnPlateau
//   std::string bytes = (*s)->SaveState();   // exact resume
//
// Composite schedules (SequentialLR, ChainedScheduler) take their children as
// config objects; the children are built in order on the same groups, then the
// parent, exactly as a Python program builds them.
//
// Errors name the schedule's place in the config, its type and the option:
//   schedule.schedulers[1] CosineAnnealingLR: unknown option 'T_maxx' (known: T_max, eta_min)
#ifndef TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULES_H_
#define TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace trainbus::schedulers {

// What PyTorch keeps in optimizer.param_groups and schedules read and write.
struct ParamGroups {
  std::vector<double> lr;
  // Set by the first schedule built ("setdefault"), overwritten by OneCycleLR.
  std::vector<double> initial_lr;
  bool has_initial_lr = false;
  // Written by OneCycleLR (group['max_lr'], group['min_lr']).
  std::vector<double> max_lr, min_lr;
  size_t size() const { return lr.size(); }
};

class StateWriter;
class StateReader;

// One schedule (a PyTorch scheduler object). Built by Scheduler::Create.
class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual const char* type() const = 0;
  // scheduler.step() (all but ReduceLROnPlateau).
  virtual absl::Status Step() = 0;
  // scheduler.step(epoch): used by SequentialLR at a milestone (epoch 0).
  virtual absl::Status StepTo(int64_t epoch) = 0;
  // ReduceLROnPlateau.step(metric).
  virtual absl::Status StepWithMetric(double /*metric*/) {
    return absl::FailedPreconditionError(absl::string_view("this schedule takes no metric"));
  }
  virtual bool needs_metric() const { return false; }
  // One reduction now, asked for by another plugin that saw a plateau
  // (ReduceLROnPlateau only: its factor and min_lr, then its cooldown).
  virtual absl::Status ReduceNow() {
    return absl::FailedPreconditionError(absl::string_view("only ReduceLROnPlateau reduces on request"));
  }
  // The schedule's own step count (last_epoch).
  virtual int64_t last_epoch() const = 0;
  // "SequentialLR(LinearLR,CosineAnnealingLR)": checked when state is loaded.
  virtual std::string Signature() const { return type(); }
  virtual void Save(StateWriter& w) const = 0;
  virtual absl::Status Load(StateReader& r) = 0;
};

// A schedule tree and the param groups it drives.
class Scheduler {
 public:
  // `config` is a JSON object {"type": <PyTorch class name>, <arguments>...}.
  // `lrs` are the groups' learning rates now (PyTorch's initial_lr). `where`
  // names the config place in messages ("schedule", "groups[1]").
  // Constructing applies the schedule's first value (e.g. LinearLR's
  // start_factor), like PyTorch's constructor: see lrs().
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(const google::protobuf::Value& config,
                                                           const std::vector<double>& lrs,
                                                           absl::string_view where);
  // Checks a config without groups' lrs (lengths of per-group lists are
  // checked by Create).
  static absl::Status Validate(const google::protobuf::Value& config, absl::string_view where);

  // Learning rate of each group for the next optimizer step.
  const std::vector<double>& lrs() const { return groups_.lr; }
  // The current lrs as the optimizer has them (PyTorch's schedules read
  // group['lr']: a change made outside the schedule carries over).
  void SyncLrs(absl::Span<const double> lrs) { groups_.lr.assign(lrs.begin(), lrs.end()); }
  size_t num_groups() const { return groups_.size(); }

  bool needs_metric() const { return root_->needs_metric(); }
  absl::Status Step() { return root_->Step(); }
  absl::Status StepWithMetric(double metric) { return root_->StepWithMetric(metric); }
  absl::Status ReduceNow() { return root_->ReduceNow(); }
  int64_t last_epoch() const { return root_->last_epoch(); }
  const Schedule& root() const { return *root_; }
  std::string type() const { return root_->type(); }

  // Everything needed to continue exactly: lrs, initial lrs, every schedule's
  // counters and state. Text; doubles are printed with 17 digits.
  std::string SaveState() const;
  // Fails (naming both) if the state was saved by another schedule tree or
  // another number of groups.
  absl::Status LoadState(absl::string_view state);

 private:
  Scheduler() = default;
  ParamGroups groups_;
  std::unique_ptr<Schedule> root_;
};

// The schedule type names Create accepts, in documentation order.
const std::vector<std::string>& KnownScheduleTypes();

// Text state: whitespace-separated tokens.
class StateWriter {
 public:
  void Int(int64_t v);
  void Double(double v);
  void Word(absl::string_view w);  // no whitespace
  void Doubles(const std::vector<double>& v);
  std::string Finish() const;

 private:
  std::string out_;
};

class StateReader {
 public:
  explicit StateReader(absl::string_view text);
  absl::Status Int(int64_t* v);
  absl::Status Double(double* v);
  absl::Status Word(std::string* w);
  absl::Status Doubles(std::vector<double>* v, size_t expected_size);
  bool AtEnd();

 private:
  absl::StatusOr<std::string> Next();
  std::string text_;
  size_t pos_ = 0;
};

}  // namespace trainbus::schedulers

#endif  // TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULES_H_
