#include "trainbus/tensorboard/crc32c.h"

#include <array>
#include <cstring>

namespace trainbus::tensorboard::crc32c {
namespace {

// kTables[k][b]: the CRC of byte b followed by k zero bytes (slicing-by-8).
struct Tables {
  uint32_t t[8][256];
};

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? kPolynomial : 0u);
    tables.t[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    for (int k = 1; k < 8; ++k) {
      const uint32_t prev = tables.t[k - 1][b];
      tables.t[k][b] = (prev >> 8) ^ tables.t[0][prev & 0xFFu];
    }
  }
  return tables;
}

constexpr Tables kTables = MakeTables();

inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // x86-64 and every platform we build for are little-endian
}

uint32_t ExtendPortable(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  // Byte at a time up to 8-byte alignment, then 8 bytes per step.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    c = (c >> 8) ^ kTables.t[0][(c ^ *p++) & 0xFFu];
    --n;
  }
  while (n >= 8) {
    const uint64_t v = LoadLE64(p) ^ c;
    c = kTables.t[7][v & 0xFF] ^ kTables.t[6][(v >> 8) & 0xFF] ^
        kTables.t[5][(v >> 16) & 0xFF] ^ kTables.t[4][(v >> 24) & 0xFF] ^
        kTables.t[3][(v >> 32) & 0xFF] ^ kTables.t[2][(v >> 40) & 0xFF] ^
        kTables.t[1][(v >> 48) & 0xFF] ^ kTables.t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables.t[0][(c ^ *p++) & 0xFFu];
  return ~c;
}

bool DetectHardware() {
#ifdef TRAINBUS_CRC32C_HAVE_SSE42
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

const bool kHasHardware = DetectHardware();

}  // namespace

bool HasHardwareSupport() { return kHasHardware; }

uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
#ifdef TRAINBUS_CRC32C_HAVE_SSE42
  if (kHasHardware) return ExtendHardwareInline(crc, p, n);
#endif
  return ExtendPortable(crc, p, n);
}

uint32_t ValuePortable(const void* data, size_t n) {
  return ExtendPortable(0, static_cast<const uint8_t*>(data), n);
}

uint32_t ValueHardware(const void* data, size_t n) {
#ifdef TRAINBUS_CRC32C_HAVE_SSE42
  return ExtendHardwareInline(0, data, n);
#else
  return ExtendPortable(0, static_cast<const uint8_t*>(data), n);
#endif
}

}  // namespace trainbus::tensorboard::crc32c
