// health: a tensor's sum of squares and its count of exact zeros, in one pass.
//
// The gradient checks measure every parameter: its gradient's norm and zero
// entries, and its weight's norm. As LibTorch ops that is three reductions
// and three item() reads per parameter, each a few microseconds of dispatch
// and set-up on tensors of a few thousand values (202 us an iteration for the
// default example's six parameters on 2026-12-05). For the dense CPU float
// and double tensors models train with, MeasureSquares reads the values once
// in a plain loop instead (a negated view's squares and zeros are its
// storage's); a sparse tensor's stored values the same way; any other tensor
// (another device or dtype, not one dense block) goes through LibTorch ops
// and gives the same answer.
//
//   const SquaresAndZeros g = MeasureSquares(param.grad());
//   const double norm = std::sqrt(g.sum_squares);   // the 2-norm
//   const double dead = double(g.zeros) / double(g.entries);
//
// Sums are accumulated in double (LibTorch's float norm may round
// differently in the last bits). A NaN or infinite entry makes sum_squares
// NaN or infinite, as it makes the norm. -0.0 counts as zero. An undefined
// tensor measures as empty.
#ifndef TRAINBUS_PLUGINS_HEALTH_TENSOR_SQUARES_H_
#define TRAINBUS_PLUGINS_HEALTH_TENSOR_SQUARES_H_

#include <cstdint>

namespace at {
class Tensor;
}

namespace trainbus::health {

struct SquaresAndZeros {
  double sum_squares = 0.0;  // the sum of |x|^2 over the entries
  int64_t zeros = 0;         // entries exactly zero
  int64_t entries = 0;       // numel()
};

SquaresAndZeros MeasureSquares(const at::Tensor& t);

}  // namespace trainbus::health

#endif  // TRAINBUS_PLUGINS_HEALTH_TENSOR_SQUARES_H_
