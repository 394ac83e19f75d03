#include "trainbus/tensorboard/scalar_event.h"

#include <cstring>

#include "trainbus/tensorboard/short_copy.h"

namespace trainbus::tensorboard {
namespace {

// Wire keys: (field number << 3) | wire type.
constexpr uint8_t kEventWallTime = (1 << 3) | 1;  // fixed64
constexpr uint8_t kEventStep = (2 << 3) | 0;      // varint
constexpr uint8_t kEventSummary = (5 << 3) | 2;   // length-delimited
constexpr uint8_t kSummaryValue = (1 << 3) | 2;
constexpr uint8_t kValueTag = (1 << 3) | 2;
constexpr uint8_t kValueSimple = (2 << 3) | 5;  // fixed32

inline size_t VarintSize(uint64_t v) {
  // 1 byte per started group of 7 significant bits (at least one byte).
  const unsigned bits = 64 - static_cast<unsigned>(__builtin_clzll(v | 1));
  return (bits * 9 + 64) / 64;
}

inline uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

struct Sizes {
  size_t value, summary, event;
};

inline Sizes ComputeSizes(uint64_t wall_bits, int64_t step, size_t tag_size) {
  Sizes s;
  s.value = (tag_size ? 1 + VarintSize(tag_size) + tag_size : 0) + 5;
  s.summary = 1 + VarintSize(s.value) + s.value;
  s.event = (wall_bits ? 9 : 0) + (step ? 1 + VarintSize(static_cast<uint64_t>(step)) : 0) +
            1 + VarintSize(s.summary) + s.summary;
  return s;
}

inline char* PutVarint(uint64_t v, char* p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// The Event's wall_time and step fields; like protobuf, a zero is left out.
inline char* EncodeWallTimeAndStep(uint64_t wall_bits, int64_t step, char* p) {
  if (wall_bits) {
    *p++ = static_cast<char>(kEventWallTime);
    std::memcpy(p, &wall_bits, 8);
    p += 8;
  }
  if (step != 0) {
    *p++ = static_cast<char>(kEventStep);
    p = PutVarint(static_cast<uint64_t>(step), p);
  }
  return p;
}

inline char* Encode(uint64_t wall_bits, int64_t step, absl::string_view tag, float value,
                    const Sizes& s, char* p) {
  p = EncodeWallTimeAndStep(wall_bits, step, p);
  *p++ = static_cast<char>(kEventSummary);
  p = PutVarint(s.summary, p);
  *p++ = static_cast<char>(kSummaryValue);
  p = PutVarint(s.value, p);
  if (!tag.empty()) {
    *p++ = static_cast<char>(kValueTag);
    p = PutVarint(tag.size(), p);
    internal::CopyShort(p, tag.data(), tag.size());
    p += tag.size();
  }
  *p++ = static_cast<char>(kValueSimple);
  std::memcpy(p, &value, 4);
  return p + 4;
}

// Tags up to this long keep the Value and the Summary under 128 bytes: both
// lengths are then one-byte varints that depend on the tag alone, and the
// event is written front to back without sizing it first (the writer
// thread's case: queued tags have at most 30 bytes).
constexpr size_t kShortTag = 118;

inline char* EncodeShortTag(uint64_t wall_bits, int64_t step, absl::string_view tag, float value,
                            char* p) {
  const size_t n = tag.size();
  const size_t value_size = (n ? 2 + n : 0) + 5;
  p = EncodeWallTimeAndStep(wall_bits, step, p);
  p[0] = static_cast<char>(kEventSummary);
  p[1] = static_cast<char>(value_size + 2);
  p[2] = static_cast<char>(kSummaryValue);
  p[3] = static_cast<char>(value_size);
  p += 4;
  if (n) {
    p[0] = static_cast<char>(kValueTag);
    p[1] = static_cast<char>(n);
    internal::CopyShort(p + 2, tag.data(), n);
    p += 2 + n;
  }
  p[0] = static_cast<char>(kValueSimple);
  std::memcpy(p + 1, &value, 4);
  return p + 5;
}

// The event at `out`; returns its size.
inline size_t EncodeEventAt(double wall_time, int64_t step, absl::string_view tag, float value,
                            char* out) {
  const uint64_t wall_bits = Bits(wall_time);
  if (tag.size() <= kShortTag) {
    return static_cast<size_t>(EncodeShortTag(wall_bits, step, tag, value, out) - out);
  }
  const Sizes s = ComputeSizes(wall_bits, step, tag.size());
  Encode(wall_bits, step, tag, value, s, out);
  return s.event;
}

}  // namespace

size_t ScalarEventSize(double wall_time, int64_t step, absl::string_view tag) {
  return ComputeSizes(Bits(wall_time), step, tag.size()).event;
}

size_t EncodeScalarEvent(double wall_time, int64_t step, absl::string_view tag, float value,
                         char* out) {
  return EncodeEventAt(wall_time, step, tag, value, out);
}

size_t EncodeUnframedScalarRecord(double wall_time, int64_t step, absl::string_view tag,
                                  float value, char* out) {
  const size_t event = EncodeEventAt(wall_time, step, tag, value, out + kRecordHeaderSize);
  EncodeRecordLength(event, out);
  return kRecordOverhead + event;
}

size_t EncodeScalarRecord(double wall_time, int64_t step, absl::string_view tag, float value,
                          char* out) {
  const size_t size = EncodeUnframedScalarRecord(wall_time, step, tag, value, out);
  FinishRecordInPlace(out, size - kRecordOverhead);
  return size;
}

}  // namespace trainbus::tensorboard
