// trainbus/tensorboard/crc32c.h — CRC-32C (Castagnoli) checksums.
//
// TFRecord framing, and so every TensorBoard event file, protects each record
// with a *masked* CRC-32C. This header gives the checksum and the mask.
//
//   uint32_t crc = crc32c::Value(data, size);   // fastest available
//   uint32_t on_disk = crc32c::Mask(crc);        // what the file stores
//   assert(crc32c::Unmask(on_disk) == crc);
//
// Value() picks the SSE4.2 `crc32` instruction when the CPU has it (checked
// once at run time) and a portable slicing-by-8 table otherwise. Both paths
// are exposed so tests can compare them; they always agree.
//
// Extend() continues a checksum over more bytes:
//   crc32c::Extend(crc32c::Value(a, n), b, m) == crc32c::Value(ab, n + m)
//
// The polynomial is the reflected 0x82F63B78, initial value and final xor
// 0xFFFFFFFF. Check value: Value("123456789", 9) == 0xE3069283.
// All functions are thread-safe and allocation-free.
#ifndef TRAINBUS_TENSORBOARD_CRC32C_H_
#define TRAINBUS_TENSORBOARD_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace trainbus::tensorboard::crc32c {

// The CRC-32C of `data[0, n)` continued from `crc` (a previous Value()).
uint32_t Extend(uint32_t crc, const void* data, size_t n);

// The CRC-32C of `data[0, n)`.
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// The same, forcing one implementation. ValueHardware() must only be called
// when HasHardwareSupport() is true.
uint32_t ValuePortable(const void* data, size_t n);
uint32_t ValueHardware(const void* data, size_t n);
bool HasHardwareSupport();

// Extend() with the SSE4.2 `crc32` instruction, inlined into the caller: for
// hot loops over many short buffers (the event writer checksums a batch of
// ~40-byte records), where a call per checksum costs as much as the
// checksum. Call only when HasHardwareSupport() is true. Written as inline
// assembly, so callers need no -msse4.2.
inline uint32_t ExtendHardwareInline(uint32_t crc, const void* data, size_t n);

// The reflected Castagnoli polynomial.
inline constexpr uint32_t kPolynomial = 0x82F63B78u;

// Extend(), bit by bit and usable in constant expressions: for tables
// computed at compile time, far too slow for data.
constexpr uint32_t ExtendBitwise(uint32_t crc, const unsigned char* data, size_t n) {
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) {
    c ^= data[i];
    for (int bit = 0; bit < 8; ++bit) c = (c >> 1) ^ ((c & 1u) ? kPolynomial : 0u);
  }
  return ~c;
}

// TFRecord stores masked checksums (a checksum of data that itself holds
// checksums is then not weak). Mask and Unmask are inverses.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
constexpr uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
constexpr uint32_t Unmask(uint32_t masked) {
  const uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TRAINBUS_CRC32C_HAVE_SSE42 1
inline uint32_t ExtendHardwareInline(uint32_t crc, const void* data, size_t n) {
  // No alignment prologue: x86 loads 8 unaligned bytes at full speed, and
  // records are short, so byte steps to an 8-byte boundary cost more.
  const char* p = static_cast<const char*>(data);
  uint64_t c = static_cast<uint32_t>(~crc);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    asm("crc32q %1, %0" : "+r"(c) : "rm"(w));
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  if (n & 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    asm("crc32l %1, %0" : "+r"(c32) : "rm"(w));
    p += 4;
  }
  if (n & 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    asm("crc32w %1, %0" : "+r"(c32) : "rm"(w));
    p += 2;
  }
  if (n & 1) {
    const uint8_t w = static_cast<uint8_t>(*p);
    asm("crc32b %1, %0" : "+r"(c32) : "rm"(w));
  }
  return ~c32;
}
#else
inline uint32_t ExtendHardwareInline(uint32_t crc, const void* data, size_t n) {
  return Extend(crc, data, n);  // no hardware path on this platform
}
#endif

}  // namespace trainbus::tensorboard::crc32c

#endif  // TRAINBUS_TENSORBOARD_CRC32C_H_
