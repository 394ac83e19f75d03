#include "trainbus/accuracy.h"

#include <cmath>

#include <ATen/ATen.h>

namespace trainbus {
namespace {

bool HasFastPath(const at::Tensor& logits, const at::Tensor& targets) {
  return logits.device().is_cpu() && targets.device().is_cpu() &&
         logits.scalar_type() == at::kFloat && targets.scalar_type() == at::kLong &&
         logits.dim() == 2 && targets.dim() == 1 && logits.size(0) == targets.size(0) &&
         logits.size(1) > 0 && logits.is_contiguous() && targets.is_contiguous();
}

}  // namespace

int64_t CountCorrect(const at::Tensor& logits, const at::Tensor& targets) {
  if (!HasFastPath(logits, targets)) {
    return logits.argmax(1).eq(targets).sum().item<int64_t>();
  }
  const int64_t n = logits.size(0), c = logits.size(1);
  const float* row = logits.data_ptr<float>();
  const int64_t* y = targets.data_ptr<int64_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i, row += c) {
    // argmax's rules: the first maximum wins, and the first NaN beats everything.
    int64_t best = 0;
    float best_value = row[0];
    if (!std::isnan(best_value)) {
      for (int64_t j = 1; j < c; ++j) {
        if (std::isnan(row[j])) {
          best = j;
          break;
        }
        if (row[j] > best_value) {
          best = j;
          best_value = row[j];
        }
      }
    }
    correct += best == y[i];
  }
  return correct;
}

}  // namespace trainbus
