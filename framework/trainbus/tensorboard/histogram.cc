#include "trainbus/tensorboard/histogram.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace trainbus::tensorboard {
namespace {

// Sub-octave resolution of the lookup table: 2^kMantissaBits slices per power
// of two, each narrower (ratio <= 1 + 1/64) than the 1.1 ratio between
// limits, so a slice holds at most one limit.
constexpr int kMantissaBits = 6;
constexpr int kKeyShift = 52 - kMantissaBits;

inline uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}
inline double FromBits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

class Buckets {
 public:
  Buckets() {
    // The positive limits, computed exactly as TensorFlow does (repeated
    // multiplication, so the doubles match bit for bit).
    double v = 1.0e-12;
    while (v < 1.0e20) {
      pos_.push_back(v);
      v *= 1.1;
    }
    pos_.push_back(DBL_MAX);
    k_ = pos_.size();
    limits_.reserve(2 * k_ + 1);
    for (size_t j = k_; j-- > 0;) limits_.push_back(-pos_[j]);
    limits_.push_back(0.0);
    limits_.insert(limits_.end(), pos_.begin(), pos_.end());

    base_key_ = Bits(pos_[0]) >> kKeyShift;
    const uint64_t last_key = Bits(pos_[k_ - 2]) >> kKeyShift;
    table_.resize(last_key - base_key_ + 1);
    for (uint64_t key = base_key_; key <= last_key; ++key) {
      const double a = FromBits(key << kKeyShift);
      table_[key - base_key_] = static_cast<uint16_t>(
          std::lower_bound(pos_.begin(), pos_.end(), a) - pos_.begin());
    }
  }

  const std::vector<double>& limits() const { return limits_; }
  size_t size() const { return limits_.size(); }

  // First j with pos[j] >= u (lower) or pos[j] > u (upper), for u > 0.
  inline size_t PosLower(double u) const {
    if (u <= pos_[0]) return 0;
    if (u > pos_[k_ - 2]) return k_ - 1;
    const size_t j = table_[(Bits(u) >> kKeyShift) - base_key_];
    return pos_[j] >= u ? j : j + 1;
  }
  inline size_t PosUpper(double u) const {
    if (u < pos_[0]) return 0;
    if (u >= pos_[k_ - 2]) return u >= pos_[k_ - 1] ? k_ : k_ - 1;
    const size_t j = table_[(Bits(u) >> kKeyShift) - base_key_];
    return pos_[j] > u ? j : j + 1;
  }

  // Index into limits() of the first limit >= v (v finite).
  inline size_t Index(double v) const {
    if (v > 0) return k_ + 1 + PosLower(v);
    if (v == 0) return k_;
    // Negative: the smallest -pos[j] >= v is the largest j with pos[j] <= -v.
    const size_t up = PosUpper(-v);
    return up == 0 ? k_ : k_ - up;
  }

 private:
  std::vector<double> pos_;
  std::vector<double> limits_;
  std::vector<uint16_t> table_;
  uint64_t base_key_ = 0;
  size_t k_ = 0;
};

const Buckets& GetBuckets() {
  static const Buckets* buckets = new Buckets;
  return *buckets;
}

template <typename T>
absl::Status Build(absl::Span<const T> values, proto::HistogramProto* out) {
  out->Clear();
  if (values.empty()) {
    return absl::InvalidArgumentError("histogram has no values; pass at least one value");
  }
  const Buckets& b = GetBuckets();
  std::vector<uint64_t> counts(b.size(), 0);
  double mn = std::numeric_limits<double>::infinity();
  double mx = -mn;
  double sum = 0, sum_sq = 0;
  size_t bad = 0;
  for (const T tv : values) {
    const double v = static_cast<double>(tv);
    if (!std::isfinite(v)) {
      ++bad;
      continue;
    }
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    sum += v;
    sum_sq += v * v;
    ++counts[b.Index(v)];
  }
  if (bad > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram has ", bad, " non-finite value(s) (NaN or infinity) out of ",
                     values.size(), "; TensorBoard cannot draw them. Filter them out or log "
                     "their count as a scalar."));
  }
  size_t lo = 0, hi = counts.size() - 1;
  while (counts[lo] == 0) ++lo;
  while (counts[hi] == 0) --hi;
  out->set_min(mn);
  out->set_max(mx);
  out->set_num(static_cast<double>(values.size()));
  out->set_sum(sum);
  out->set_sum_squares(sum_sq);
  const std::vector<double>& limits = b.limits();
  for (size_t i = lo; i <= hi;) {
    double limit = limits[i];
    const uint64_t c = counts[i++];
    if (c == 0) {
      while (i <= hi && counts[i] == 0) limit = limits[i++];
    }
    out->add_bucket_limit(limit);
    out->add_bucket(static_cast<double>(c));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<double>& DefaultHistogramBucketLimits() { return GetBuckets().limits(); }

size_t DefaultHistogramBucketIndex(double v) { return GetBuckets().Index(v); }

absl::Status BuildHistogram(absl::Span<const double> values, proto::HistogramProto* out) {
  return Build(values, out);
}

absl::Status BuildHistogram(absl::Span<const float> values, proto::HistogramProto* out) {
  return Build(values, out);
}

}  // namespace trainbus::tensorboard
