// trainbus/accuracy.h — counting correct top-1 predictions, cheaply.
//
//   int64_t correct = trainbus::CountCorrect(logits, targets);
//
// `logits` is [N, C] (any floating type), `targets` is [N] class indices.
// The result equals `logits.argmax(1).eq(targets).sum().item<int64_t>()`,
// including its tie and NaN rules (the first maximum wins; a NaN counts as
// the maximum). For the common case, contiguous float32 logits and int64
// targets on the CPU, it reads the memory directly: about 0.3 µs for a
// 64x10 batch instead of ~5 µs for four dispatched tensor ops and a sync,
// which is most of what the trainer added to a 1 ms iteration.
#ifndef TRAINBUS_ACCURACY_H_
#define TRAINBUS_ACCURACY_H_

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace trainbus {

int64_t CountCorrect(const at::Tensor& logits, const at::Tensor& targets);

}  // namespace trainbus

#endif  // TRAINBUS_ACCURACY_H_
