#include "trainbus/tensorboard/scalar_event.h"

#include <cstring>

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
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline char* PutVarint(uint64_t v, char* p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

inline uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

struct Sizes {
  size_t value, summary, event;
};

inline Sizes ComputeSizes(double wall_time, int64_t step, size_t tag_size) {
  Sizes s;
  s.value = (tag_size ? 1 + VarintSize(tag_size) + tag_size : 0) + 5;
  s.summary = 1 + VarintSize(s.value) + s.value;
  s.event = (Bits(wall_time) ? 9 : 0) +
            (step ? 1 + VarintSize(static_cast<uint64_t>(step)) : 0) + 1 +
            VarintSize(s.summary) + s.summary;
  return s;
}

inline char* Encode(double wall_time, int64_t step, absl::string_view tag, float value,
                    const Sizes& s, char* p) {
  if (const uint64_t wt = Bits(wall_time)) {
    *p++ = static_cast<char>(kEventWallTime);
    std::memcpy(p, &wt, 8);
    p += 8;
  }
  if (step != 0) {
    *p++ = static_cast<char>(kEventStep);
    p = PutVarint(static_cast<uint64_t>(step), p);
  }
  *p++ = static_cast<char>(kEventSummary);
  p = PutVarint(s.summary, p);
  *p++ = static_cast<char>(kSummaryValue);
  p = PutVarint(s.value, p);
  if (!tag.empty()) {
    *p++ = static_cast<char>(kValueTag);
    p = PutVarint(tag.size(), p);
    std::memcpy(p, tag.data(), tag.size());
    p += tag.size();
  }
  *p++ = static_cast<char>(kValueSimple);
  std::memcpy(p, &value, 4);
  return p + 4;
}

}  // namespace

size_t ScalarEventSize(double wall_time, int64_t step, absl::string_view tag) {
  return ComputeSizes(wall_time, step, tag.size()).event;
}

size_t EncodeScalarEvent(double wall_time, int64_t step, absl::string_view tag, float value,
                         char* out) {
  const Sizes s = ComputeSizes(wall_time, step, tag.size());
  return static_cast<size_t>(Encode(wall_time, step, tag, value, s, out) - out);
}

size_t EncodeScalarRecord(double wall_time, int64_t step, absl::string_view tag, float value,
                          char* out) {
  const Sizes s = ComputeSizes(wall_time, step, tag.size());
  Encode(wall_time, step, tag, value, s, out + kRecordHeaderSize);
  FinishRecordInPlace(out, s.event);
  return kRecordOverhead + s.event;
}

}  // namespace trainbus::tensorboard
