#include "trainbus/tensorboard/histogram.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <emmintrin.h>
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

  // Index into limits() of the bucket holding v (v finite): the first limit
  // > v, as TensorFlow counts (bucket i holds [limit i-1, limit i)); DBL_MAX
  // itself goes to the last bucket.
  inline size_t Index(double v) const { return Indexer().Index(v); }

  // A copy of what Index() reads, held in locals by the caller so that the
  // count increments cannot alias it (they are uint64_t, like size_t).
  struct Fast {
    const double* pos;
    const uint16_t* table;
    const Buckets* self;
    uint64_t base_key;
    size_t k;
    double pos_last_finite;

    // Branch-free on the common path: the sign of v is as unpredictable as
    // the data, so it selects arithmetically.
    inline size_t Index(double v) const {
      const double u = std::fabs(v);
      if (__builtin_expect(u > pos_last_finite, 0)) return self->SlowIndex(v);
      uint64_t key = Bits(u) >> kKeyShift;
      key = key < base_key ? base_key : key;  // tiny values and zero: slice 0
      const size_t j = table[key - base_key];
      const double pj = pos[j];
      const size_t lower = j + static_cast<size_t>(pj < u);   // first pos >= u
      const size_t upper = j + static_cast<size_t>(pj <= u);  // first pos > u
      // v >= 0: the positive limit pos[upper]. v < 0: the first -pos[i] > v is
      // the one of the largest i with pos[i] < u, i.e. lower - 1 (0 itself if none).
      const size_t positive = k + 1 + upper;
      const size_t negative = k - lower;
      const size_t mask = size_t{0} - static_cast<size_t>(v >= 0);
      return (positive & mask) | (negative & ~mask);
    }
  };
  Fast Indexer() const {
    return Fast{pos_.data(), table_.data(), this, base_key_, k_, pos_[k_ - 2]};
  }

  size_t SlowIndex(double v) const {
    const size_t i = static_cast<size_t>(std::upper_bound(limits_.begin(), limits_.end(), v) -
                                         limits_.begin());
    return std::min(i, limits_.size() - 1);
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

inline __m128d Load2(const double* p) { return _mm_loadu_pd(p); }
inline __m128d Load2(const float* p) {
  return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <typename T>
absl::Status Build(absl::Span<const T> values, proto::HistogramProto* out) {
  out->Clear();
  if (values.empty()) {
    return absl::InvalidArgumentError("histogram has no values; pass at least one value");
  }
  // Pass 1: exact statistics, with independent accumulators so that the
  // additions do not wait on each other. `probe` sums v - v: 0 while every
  // value is finite, NaN otherwise.
  const size_t n = values.size();
  size_t i = 0;
  double mn_all, mx_all, total_sum, total_sq, probe;
  {
    const __m128d inf = _mm_set1_pd(std::numeric_limits<double>::infinity());
    __m128d mn0 = inf, mn1 = inf;
    __m128d mx0 = _mm_sub_pd(_mm_setzero_pd(), inf), mx1 = mx0;
    __m128d s0 = _mm_setzero_pd(), s1 = s0, q0 = s0, q1 = s0, p0 = s0;
    for (; i + 4 <= n; i += 4) {
      const __m128d a = Load2(values.data() + i);
      const __m128d b = Load2(values.data() + i + 2);
      mn0 = _mm_min_pd(mn0, a);
      mn1 = _mm_min_pd(mn1, b);
      mx0 = _mm_max_pd(mx0, a);
      mx1 = _mm_max_pd(mx1, b);
      s0 = _mm_add_pd(s0, a);
      s1 = _mm_add_pd(s1, b);
      q0 = _mm_add_pd(q0, _mm_mul_pd(a, a));
      q1 = _mm_add_pd(q1, _mm_mul_pd(b, b));
      p0 = _mm_add_pd(p0, _mm_add_pd(_mm_sub_pd(a, a), _mm_sub_pd(b, b)));
    }
    double lanes[2];
    _mm_storeu_pd(lanes, _mm_min_pd(mn0, mn1));
    mn_all = std::min(lanes[0], lanes[1]);
    _mm_storeu_pd(lanes, _mm_max_pd(mx0, mx1));
    mx_all = std::max(lanes[0], lanes[1]);
    _mm_storeu_pd(lanes, _mm_add_pd(s0, s1));
    total_sum = lanes[0] + lanes[1];
    _mm_storeu_pd(lanes, _mm_add_pd(q0, q1));
    total_sq = lanes[0] + lanes[1];
    _mm_storeu_pd(lanes, p0);
    probe = lanes[0] + lanes[1];
  }
  for (; i < n; ++i) {
    const double v = static_cast<double>(values[i]);
    mn_all = std::min(mn_all, v);
    mx_all = std::max(mx_all, v);
    total_sum += v;
    total_sq += v * v;
    probe += v - v;
  }
  size_t bad = 0;
  if (probe != 0.0 || !std::isfinite(total_sum) || !std::isfinite(total_sq)) {
    for (const T v : values) bad += !std::isfinite(static_cast<double>(v));
  }
  if (bad > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("histogram has ", bad, " non-finite value(s) (NaN or infinity) out of ",
                     values.size(), "; TensorBoard cannot draw them. Filter them out or log "
                     "their count as a scalar."));
  }
  // Pass 2: bucket counts. Four count arrays, so that neighbouring values in
  // the same bucket do not serialise on one memory location; 32-bit counts
  // (each array sees at most n / 4 + 1 values), so the four fit in L1 with
  // the lookup tables.
  const Buckets& b = GetBuckets();
  const Buckets::Fast index = b.Indexer();
  const size_t nb = b.size();
  std::vector<uint64_t> counts(nb, 0);
  if (n / 4 + 1 < (uint64_t{1} << 32)) {
    std::vector<uint32_t> parts(4 * nb, 0);
    uint32_t* c0 = parts.data();
    uint32_t* c1 = c0 + nb;
    uint32_t* c2 = c1 + nb;
    uint32_t* c3 = c2 + nb;
    i = 0;
    for (; i + 4 <= n; i += 4) {
      ++c0[index.Index(static_cast<double>(values[i]))];
      ++c1[index.Index(static_cast<double>(values[i + 1]))];
      ++c2[index.Index(static_cast<double>(values[i + 2]))];
      ++c3[index.Index(static_cast<double>(values[i + 3]))];
    }
    for (; i < n; ++i) ++c0[index.Index(static_cast<double>(values[i]))];
    for (size_t k = 0; k < nb; ++k) counts[k] = uint64_t{c0[k]} + c1[k] + c2[k] + c3[k];
  } else {
    for (i = 0; i < n; ++i) ++counts[index.Index(static_cast<double>(values[i]))];
  }
  size_t lo = 0, hi = counts.size() - 1;
  while (counts[lo] == 0) ++lo;
  while (counts[hi] == 0) --hi;
  out->set_min(mn_all);
  out->set_max(mx_all);
  out->set_num(static_cast<double>(values.size()));
  out->set_sum(total_sum);
  out->set_sum_squares(total_sq);
  const std::vector<double>& limits = b.limits();
  out->mutable_bucket_limit()->Reserve(static_cast<int>(hi - lo + 1));
  out->mutable_bucket()->Reserve(static_cast<int>(hi - lo + 1));
  for (size_t k = lo; k <= hi;) {
    double limit = limits[k];
    const uint64_t c = counts[k++];
    if (c == 0) {
      while (k <= hi && counts[k] == 0) limit = limits[k++];
    }
    out->add_bucket_limit(limit);
    out->add_bucket(static_cast<double>(c));
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status Check(absl::Span<const T> values) {
  if (values.empty()) {
    return absl::InvalidArgumentError("histogram has no values; pass at least one value");
  }
  // v - v is 0 for a finite v and NaN otherwise; two lanes at a time.
  const size_t n = values.size();
  size_t i = 0;
  __m128d p0 = _mm_setzero_pd(), p1 = p0;
  for (; i + 4 <= n; i += 4) {
    const __m128d a = Load2(values.data() + i);
    const __m128d b = Load2(values.data() + i + 2);
    p0 = _mm_add_pd(p0, _mm_sub_pd(a, a));
    p1 = _mm_add_pd(p1, _mm_sub_pd(b, b));
  }
  double lanes[2];
  _mm_storeu_pd(lanes, _mm_add_pd(p0, p1));
  double probe = lanes[0] + lanes[1];
  for (; i < n; ++i) probe += static_cast<double>(values[i]) - static_cast<double>(values[i]);
  if (probe == 0.0) return absl::OkStatus();
  proto::HistogramProto unused;
  return Build(values, &unused);  // names the count of bad values
}

}  // namespace

absl::Status CheckHistogramValues(absl::Span<const double> values) { return Check(values); }
absl::Status CheckHistogramValues(absl::Span<const float> values) { return Check(values); }

const std::vector<double>& DefaultHistogramBucketLimits() { return GetBuckets().limits(); }

size_t DefaultHistogramBucketIndex(double v) { return GetBuckets().Index(v); }

absl::Status BuildHistogram(absl::Span<const double> values, proto::HistogramProto* out) {
  return Build(values, out);
}

absl::Status BuildHistogram(absl::Span<const float> values, proto::HistogramProto* out) {
  return Build(values, out);
}

}  // namespace trainbus::tensorboard
