// trainbus/events.h — what the training loop tells plugins, one struct per hook.
//
// A run is a sequence of lifecycle events published on the bus:
//
//   Setup                                 (before the plan is fixed)
//   TrainBegin
//     EpochBegin
//       IterationBegin                    (once per iteration: forward, loss,
//       AfterBackward                      backward, one optimizer step)
//       BeforeOptimizerStep
//       IterationEnd
//       ...
//       ValidationBegin  ValidationEnd    (every epoch, or every N iterations)
//     EpochEnd
//     ...
//   Abort                                 (only when the run fails)
//   TrainEnd                              (always, even after Abort)
//
// The hooks are listed once, with when each runs, in trainbus/hooks.h.
//
// Vocabulary:
//   - `step` is the global iteration count, starting at 0 for the first
//     iteration of the run and never reset between epochs. It is the x-axis of
//     every TensorBoard curve. In IterationEnd it is the step that just ran.
//   - `epoch` counts passes over the training set, starting at 0.
//   - `batch_index` is the iteration's position inside its epoch.
//
// Events are plain structs passed by const reference; they are valid only for
// the duration of the hook call. Copy what you need to keep. Spans point into
// the trainer's own storage and must not be retained.
#ifndef TRAINBUS_EVENTS_H_
#define TRAINBUS_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace trainbus {

// A named value such as {"val/accuracy", 0.93}.
struct Metric {
  std::string name;
  double value = 0.0;
};
using Metrics = std::vector<Metric>;

// "Every N" in trainbus, for every plugin and option: after the Nth, 2Nth,
// 3Nth, ... iteration (or epoch), counted from 1. With N = 5 that is steps
// 4, 9, 14, ... (step and epoch count from 0), the same iterations whose
// checkpoints are named step-00000005, step-00000010, ... ("5 iterations
// done"). N <= 0 means never. `index` is a 0-based step or epoch:
//   if (trainbus::EveryN(every_n_, e.step)) ...
inline bool EveryN(int64_t n, int64_t index) { return n > 0 && (index + 1) % n == 0; }

// Returns the value of the metric called `name`, if present.
inline std::optional<double> FindMetric(absl::Span<const Metric> metrics,
                                        absl::string_view name) {
  for (const Metric& m : metrics) {
    if (m.name == name) return m.value;
  }
  return std::nullopt;
}

// Facts about the whole run, known before the first iteration.
struct RunInfo {
  std::string run_name;            // e.g. "shapes-cnn"
  std::string log_dir;             // directory for this run's files, e.g. "runs/shapes-cnn"
  int64_t train_samples = 0;       // dataset size N (0 when unknown, e.g. embedded loops)
  int64_t batch_size = 0;          // of an iteration at the start (ranks and accumulated passes included; a schedule starts from it)
  int64_t epochs = 0;
  int64_t iterations_per_epoch = 0;  // ceil(N / batch) or floor with drop_last
  int64_t total_iterations = 0;      // per epoch x epochs, or max_iterations
  int64_t start_step = 0;            // > 0 when the run resumes from a checkpoint
  int64_t start_epoch = 0;
  uint64_t seed = 0;
  // Hyperparameters of the run as text, for hparams and logs ({"lr", "0.01"}).
  std::vector<std::pair<std::string, std::string>> hparams;
  // Distributed data-parallel runs: this process's rank and the number of
  // ranks (0 and 1 otherwise). Metrics in events are already averaged across
  // ranks; plugins that write files should do so only on rank 0.
  int rank = 0;
  int world_size = 1;
  // Gradient accumulation: each iteration runs this many forward/backward
  // passes before its one optimizer step, each over an equal share (within
  // one sample) of the iteration's samples on this process. 1: none.
  int64_t accumulate_batches = 1;
};

// Setup: the plugins exist, the plan does not yet. `run` holds what is known
// (dataset size, configured batch size, epochs, rank); iterations_per_epoch
// and total_iterations are still 0. A plugin that changes the batch size as
// the run goes declares its schedule here (Control::SetBatchSchedule) so the
// plan, and every plugin's totals, follow it.
struct SetupEvent {
  const RunInfo* run = nullptr;
};

struct TrainBeginEvent {
  const RunInfo* run = nullptr;
};

struct EpochBeginEvent {
  int64_t epoch = 0;
  int64_t step = 0;  // global step of the epoch's first iteration
  int64_t iterations = 0;  // iterations this epoch will run
};

struct IterationBeginEvent {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  int64_t batch_size = 0;
};

// After a backward pass: the gradients of this micro-batch have been added to
// the parameters' .grad(). With gradient accumulation this runs once per
// pass this process runs (micro_batch 0 .. micro_batches-1; fewer passes when
// it has fewer samples than accumulate_batches, none when it has none). The
// gradients are this process's own, scaled by the pass's share, before the
// ranks are averaged; they are final only in BeforeOptimizerStep.
struct AfterBackwardEvent {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  int64_t micro_batch = 0;
  int64_t micro_batches = 1;
  double loss = 0.0;  // this micro-batch's loss (before any scaling)
};

// Before the optimizer step: gradients are final (summed over micro-batches
// and, in a distributed run, averaged over ranks). A plugin may change them
// in place (clipping) or skip this step (Control::SkipOptimizerStep).
struct BeforeOptimizerStepEvent {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  int64_t batch_size = 0;
  double loss = 0.0;  // the iteration's loss, as IterationEndEvent will report it
};

struct IterationEndEvent {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  int64_t batch_size = 0;
  double loss = 0.0;
  // Learning rate of each optimizer param group, as used by this iteration's step.
  absl::Span<const double> learning_rates;
  // Wall time of the iteration, hooks and bookkeeping included, as the host
  // measures it: the trainer from the start of the iteration's work (after
  // its IterationBegin hooks); Session::EndIteration(loss, ...) from
  // Session::BeginIteration (or the previous EndIteration).
  double duration_seconds = 0.0;
  // The part of it that was the model's own work, when the host times it (the
  // trainer does; 0 otherwise): zero_grad, each micro-batch's forward, loss,
  // backward and reading of the loss, and the optimizer step. The rest of
  // duration_seconds is the trainer's and the plugins' (and, in a
  // distributed run, the gradients' exchange).
  double compute_seconds = 0.0;
  // Extra per-iteration metrics (e.g. "train/accuracy"); may be empty.
  absl::Span<const Metric> metrics;
  // The batch and the model's output, when the host provides them (the
  // trainer does; an embedded loop may not): inputs [B, ...], targets [B],
  // outputs [B, classes]. Read-only; null when absent.
  const at::Tensor* inputs = nullptr;
  const at::Tensor* targets = nullptr;
  const at::Tensor* outputs = nullptr;
  // True when a plugin skipped this iteration's optimizer step
  // (Control::SkipOptimizerStep): the parameters did not change.
  bool optimizer_step_skipped = false;
};

struct ValidationBeginEvent {
  int64_t step = 0;   // global step after which validation runs
  int64_t epoch = 0;
};

struct ValidationEndEvent {
  int64_t step = 0;   // global step after which validation ran
  int64_t epoch = 0;
  absl::Span<const Metric> metrics;  // e.g. "val/loss", "val/accuracy"
  double duration_seconds = 0.0;
  // The first validation samples and the model's output on them, when the
  // host provides them (the trainer: up to 1024, in the validation set's
  // order, the same samples every time): inputs [n, ...], targets [n],
  // outputs [n, classes]. Read-only; null when absent.
  const at::Tensor* inputs = nullptr;
  const at::Tensor* targets = nullptr;
  const at::Tensor* outputs = nullptr;
};

struct EpochEndEvent {
  int64_t epoch = 0;
  int64_t step = 0;  // global step of the epoch's last iteration
  int64_t iterations = 0;  // iterations the epoch ran (across a resume, all of them)
  double mean_loss = 0.0;
  // false when the run stopped inside the epoch (a stop request, Ctrl-C):
  // mean_loss then covers only part of it, and metrics are the last
  // validation's, not this epoch's.
  bool complete = true;
  double duration_seconds = 0.0;
  absl::Span<const Metric> metrics;  // last validation metrics, if any
};

// Why a run ended.
enum class EndReason {
  kCompleted,       // ran all planned iterations
  kStopRequested,   // a plugin or the user asked to stop
  kFailed,          // an error (see AbortEvent)
  kInterrupted,     // Ctrl-C or SIGTERM (interrupt.h); stopped at the end of an iteration
};

inline const char* EndReasonName(EndReason r) {
  switch (r) {
    case EndReason::kCompleted: return "completed";
    case EndReason::kStopRequested: return "stopped";
    case EndReason::kFailed: return "failed";
    case EndReason::kInterrupted: return "interrupted";
  }
  return "unknown";
}

struct AbortEvent {
  int64_t step = 0;
  std::string message;  // names what failed, e.g. "plugin 'x' threw in OnIterationEnd at step 7: ..."
};

struct TrainEndEvent {
  int64_t step = 0;            // last step that ran (-1 if none)
  int64_t iterations_run = 0;  // iterations run by this process (excludes resumed ones)
  EndReason reason = EndReason::kCompleted;
  std::string stop_reason;     // the reason given with the stop request, if any
  double duration_seconds = 0.0;
  absl::Span<const Metric> final_metrics;  // last validation metrics and final train loss
};

}  // namespace trainbus

#endif  // TRAINBUS_EVENTS_H_
