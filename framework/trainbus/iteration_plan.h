// trainbus/iteration_plan.h — the arithmetic of epochs, batches and iterations.
//
// One iteration is one batch: forward, loss, backward, one optimizer step.
//   iterations per epoch = ceil(N / batch_size), or floor(N / batch_size)
//                          with drop_last (the smaller last batch is skipped)
//   total iterations     = iterations per epoch x epochs, capped by
//                          max_iterations when that is set
// Example: 10,000 samples, batch 200, 10 epochs -> 50 per epoch, 500 in all.
#ifndef TRAINBUS_ITERATION_PLAN_H_
#define TRAINBUS_ITERATION_PLAN_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace trainbus {

struct IterationPlan {
  int64_t samples = 0;
  int64_t batch_size = 0;
  int64_t epochs = 0;     // epochs that will run (fewer when max_iterations cuts)
  bool drop_last = false;
  int64_t iterations_per_epoch = 0;
  int64_t last_batch_size = 0;     // size of each epoch's last batch
  int64_t total_iterations = 0;
  int64_t samples_seen = 0;        // samples processed over the whole run

  // "10000 samples, batch 200 -> 50 iterations/epoch x 10 epochs = 500 iterations"
  std::string ToString() const;
};

// InvalidArgument when a size is not positive, or when drop_last leaves no
// iteration at all (batch_size > samples).
absl::StatusOr<IterationPlan> PlanIterations(int64_t samples, int64_t batch_size, int64_t epochs,
                                             bool drop_last,
                                             std::optional<int64_t> max_iterations = std::nullopt);

}  // namespace trainbus

#endif  // TRAINBUS_ITERATION_PLAN_H_
