#include "tensor_squares.h"

#include <ATen/ATen.h>

namespace trainbus::health {
namespace {

// Four independent sums: the loop's additions overlap instead of waiting on
// one another, and the result does not depend on the compiler's choices.
template <class T>
SquaresAndZeros Scan(const T* v, int64_t n) {
  double sums[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t zeros = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int k = 0; k < 4; ++k) {
      const double x = static_cast<double>(v[i + k]);
      sums[k] += x * x;
      zeros += x == 0.0;
    }
  }
  for (; i < n; ++i) {
    const double x = static_cast<double>(v[i]);
    sums[0] += x * x;
    zeros += x == 0.0;
  }
  return {(sums[0] + sums[1]) + (sums[2] + sums[3]), zeros, n};
}

}  // namespace

SquaresAndZeros MeasureSquares(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  if (t.is_sparse()) {
    // A sparse gradient (an Embedding with sparse=true): its stored values,
    // summed per entry (coalesce), and every entry not stored is a zero.
    const at::Tensor c = t.detach().coalesce();
    SquaresAndZeros stored = MeasureSquares(c._values());
    stored.zeros += t.numel() - stored.entries;
    stored.entries = t.numel();
    return stored;
  }
  // Every value once, in any order: a dense block (channels-last too) will do.
  const bool in_place = t.device().is_cpu() && t.layout() == at::kStrided &&
                        t.is_non_overlapping_and_dense();
  if (in_place && t.scalar_type() == at::kFloat) return Scan(t.data_ptr<float>(), t.numel());
  if (in_place && t.scalar_type() == at::kDouble) return Scan(t.data_ptr<double>(), t.numel());
  const at::Tensor d = t.layout() == at::kStrided ? t.detach() : t.detach().to_dense();
  // In double, as the loop sums (a half norm would round to 3 digits).
  const double norm = d.to(d.is_complex() ? at::kComplexDouble : at::kDouble).norm().item<double>();
  return {norm * norm, (d == 0).sum().item<int64_t>(), d.numel()};
}

}  // namespace trainbus::health
