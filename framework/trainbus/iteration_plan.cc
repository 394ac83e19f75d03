#include "trainbus/iteration_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace trainbus {

absl::StatusOr<IterationPlan> PlanIterations(int64_t samples, int64_t batch_size, int64_t epochs,
                                             bool drop_last, std::optional<int64_t> max_iterations) {
  if (samples <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("the training set is empty (", samples, " samples)"));
  }
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be > 0, got ", batch_size));
  }
  if (epochs <= 0) return absl::InvalidArgumentError(absl::StrCat("epochs must be > 0, got ", epochs));
  if (max_iterations && *max_iterations <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_iterations must be > 0, got ", *max_iterations));
  }
  IterationPlan p;
  p.samples = samples;
  p.batch_size = batch_size;
  p.drop_last = drop_last;
  p.iterations_per_epoch = drop_last ? samples / batch_size : (samples + batch_size - 1) / batch_size;
  if (p.iterations_per_epoch == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size ", batch_size, " is larger than the ", samples,
        " training samples and drop_last is set: no iteration would run. Lower batch_size or "
        "unset drop_last."));
  }
  int64_t remainder = samples % batch_size;
  p.last_batch_size = (drop_last || remainder == 0) ? batch_size : remainder;
  const int64_t samples_per_epoch =
      drop_last ? p.iterations_per_epoch * batch_size : samples;
  p.total_iterations = p.iterations_per_epoch * epochs;
  p.epochs = epochs;
  p.samples_seen = samples_per_epoch * epochs;
  if (max_iterations && *max_iterations < p.total_iterations) {
    p.total_iterations = *max_iterations;
    p.epochs = (p.total_iterations + p.iterations_per_epoch - 1) / p.iterations_per_epoch;
    int64_t full_epochs = p.total_iterations / p.iterations_per_epoch;
    int64_t extra = p.total_iterations % p.iterations_per_epoch;  // iterations of a partial epoch
    p.samples_seen = full_epochs * samples_per_epoch + extra * batch_size;
  }
  return p;
}

std::string IterationPlan::ToString() const {
  return absl::StrCat(samples, " samples, batch ", batch_size, drop_last ? " (drop_last)" : "",
                      " -> ", iterations_per_epoch, " iterations/epoch x ", epochs,
                      epochs == 1 ? " epoch" : " epochs", " = ", total_iterations,
                      " iterations, ", samples_seen, " samples seen");
}

}  // namespace trainbus
