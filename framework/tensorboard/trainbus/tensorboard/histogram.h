// trainbus/tensorboard/histogram.h — TensorFlow-compatible histograms.
//
// Builds the HistogramProto that TensorBoard's histogram and distribution
// dashboards read, with TensorFlow's default buckets:
//
//   limits: -DBL_MAX, -1e20..., ..., -1e-12, 0, 1e-12, 1.1e-12, ..., ~1e20, DBL_MAX
//
// (1e-12 growing by x1.1 up to 1e20, mirrored for negatives, 0 between; 1551
// limits). Bucket i holds the values v with limit[i-1] <= v < limit[i], as
// TensorFlow's writer counts.
// min, max, num, sum and sum_squares are exact (sums in double). Only the
// stretch from the first to the last non-empty bucket is emitted, and each
// run of empty buckets inside it is merged into one bucket, as TensorFlow's
// writer does, so a proto stays small whatever the spread of the values.
//
//   proto::HistogramProto h;
//   absl::Status s = BuildHistogram(values, &h);   // Span<const double|float>
//
// Finding a value's bucket costs one table lookup on the value's exponent and
// top mantissa bits plus one comparison (no binary search): a 10,000-value
// histogram takes a few microseconds.
//
// Errors (InvalidArgument): no values; NaN or infinite values (the message
// says how many) — TensorBoard cannot draw them and TensorFlow refuses them.
#ifndef TRAINBUS_TENSORBOARD_HISTOGRAM_H_
#define TRAINBUS_TENSORBOARD_HISTOGRAM_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "trainbus/tensorboard/proto/summary.pb.h"

namespace trainbus::tensorboard {

// TensorFlow's default bucket limits (right edges), ascending.
const std::vector<double>& DefaultHistogramBucketLimits();

// The index into DefaultHistogramBucketLimits() of the bucket holding the
// finite value `v`: the first limit > v, as TensorFlow's writer counts
// (bucket i holds [limit i-1, limit i)); DBL_MAX goes to the last bucket.
size_t DefaultHistogramBucketIndex(double v);

absl::Status BuildHistogram(absl::Span<const double> values, proto::HistogramProto* out);
absl::Status BuildHistogram(absl::Span<const float> values, proto::HistogramProto* out);

// The errors BuildHistogram would return for `values` (none, or non-finite
// ones), found in one vectorised pass (~0.3 ns a value), without building.
absl::Status CheckHistogramValues(absl::Span<const double> values);
absl::Status CheckHistogramValues(absl::Span<const float> values);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_HISTOGRAM_H_
