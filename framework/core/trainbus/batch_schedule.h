// trainbus/batch_schedule.h — growing the batch size as training goes on, and
// the iteration plan that follows from it.
//
// "A popular strategy is to increase batch size as training progresses":
// small batches early (noisy, generalise well), larger ones later (stable,
// fast). A BatchSchedule says which batch size is used at each epoch (or
// iteration), starting from the run's trainer.batch_size:
//
//   {"interval": "epoch", "mode": "step", "milestones": [2, 4], "sizes": [128, 256]}
//       epochs 0-1: base, 2-3: 128, 4-: 256
//   {"interval": "epoch", "mode": "multiply", "factor": 2, "every": 2, "max_batch_size": 512}
//       x2 every 2 epochs, capped at 512
//   {"interval": "iteration", "mode": "linear", "start": 0, "end": 1000, "final_size": 256}
//       ramp from base at iteration 0 to 256 at iteration 1000 (rounded to round_to)
//
// With interval "epoch" the size changes at epoch starts; with "iteration"
// it may change in the middle of an epoch: the rest of the epoch is then cut
// into batches of the new size. PlanWithSchedule() walks the run the way the
// trainer will, so the printed plan and the run agree iteration for iteration.
#ifndef TRAINBUS_BATCH_SCHEDULE_H_
#define TRAINBUS_BATCH_SCHEDULE_H_

#include <cstdint>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace trainbus {

struct BatchSchedule {
  enum class Interval { kEpoch, kIteration };
  enum class Mode { kStep, kMultiply, kLinear };

  Interval interval = Interval::kEpoch;
  Mode mode = Mode::kStep;
  std::vector<int64_t> milestones;  // step: epochs/iterations where sizes[i] starts
  std::vector<int64_t> sizes;
  double factor = 2.0;              // multiply: size x factor every `every`
  int64_t every = 1;
  int64_t start = 0, end = 0;       // linear: ramp from base at start to final_size at end
  int64_t final_size = 0;
  int64_t max_batch_size = 0;       // 0: no cap
  int64_t round_to = 1;             // sizes are rounded to a multiple of this (>= 1)

  // The batch size at epoch or iteration `t` (by `interval`) for a run whose
  // configured batch size is `base`.
  int64_t At(int64_t t, int64_t base) const;
  // A t' > t before which At() keeps At(t)'s value (it may keep it longer);
  // kNever when it never changes again. Lets a plan skip the stretches where
  // the size is constant instead of walking them.
  static constexpr int64_t kNever = INT64_MAX;
  int64_t NextChange(int64_t t, int64_t base) const;
  // True when At() never decreases in t (multiply by >= 1, a linear ramp
  // upwards, steps of growing sizes), so sizes past a cap stay past it.
  bool NonDecreasing(int64_t base) const;

  // Parses the JSON object described above. `where` names it in messages,
  // e.g. "plugin 'batch_size_schedule': option 'schedule'".
  static absl::StatusOr<BatchSchedule> FromValue(const google::protobuf::Value& value,
                                                 absl::string_view where);
};

// One epoch of a plan.
struct EpochPlan {
  int64_t epoch = 0;
  int64_t first_step = 0;
  int64_t iterations = 0;
  int64_t samples = 0;           // samples processed in the epoch
  int64_t first_batch_size = 0;  // batch size of its first and last iteration
  int64_t last_batch_size = 0;
};

// The epochs of a plan as runs of epochs of the same shape: a plan of 2^62
// iterations takes as many rows as its batch size changes, not one per epoch
// (let alone per iteration). Read it like a vector of EpochPlan.
class EpochPlans {
 public:
  struct Run {
    EpochPlan first;    // the run's first epoch
    int64_t count = 0;  // epochs in the run, each shaped like `first`
  };

  size_t size() const { return static_cast<size_t>(epochs_); }
  bool empty() const { return epochs_ == 0; }
  // Epoch e of the plan, 0 <= e < size().
  EpochPlan operator[](int64_t e) const;
  EpochPlan front() const { return (*this)[0]; }
  EpochPlan back() const { return (*this)[epochs_ - 1]; }
  const std::vector<Run>& runs() const { return runs_; }

  // Appends `count` epochs shaped like `row`, the first of them `row` itself
  // (its epoch must be size(), its first_step the step after the last one's).
  void Append(const EpochPlan& row, int64_t count = 1);

 private:
  std::vector<Run> runs_;
  int64_t epochs_ = 0;
};
struct SchedulePlan {
  EpochPlans epochs;  // only the epochs that run
  int64_t total_iterations = 0;
  int64_t samples_seen = 0;  // saturates at INT64_MAX
};

// The longest plan there is: 2^62 iterations.
inline constexpr int64_t kMaxPlannedIterations = int64_t{1} << 62;

// The run as the trainer will run it: `samples` per epoch, batches of the
// scheduled size (of `base_batch` when `schedule` is null), `drop_last`
// skipping an epoch's final partial batch, at most `max_iterations`.
// Stretches of a constant batch size are computed, not walked, so any plan
// is answered at once. InvalidArgument when an epoch would run no iteration,
// or the plan is longer than kMaxPlannedIterations.
absl::StatusOr<SchedulePlan> PlanWithSchedule(int64_t samples, int64_t base_batch, int64_t epochs,
                                              bool drop_last,
                                              std::optional<int64_t> max_iterations,
                                              const BatchSchedule* schedule);

// The plan as the table `trainbus plan` and `trainbus train` print: one line
// per run of epochs with the same shape, then the totals.
std::string FormatSchedulePlan(const SchedulePlan& plan);

}  // namespace trainbus

#endif  // TRAINBUS_BATCH_SCHEDULE_H_
