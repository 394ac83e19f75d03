// trainbus/tensorboard/short_copy.h — internal: memcpy of a few bytes, inline.
//
// A tag is typically 5-30 bytes. std::memcpy with a size known only at run
// time is a call into libc (through the PLT from a shared library), which on
// the scalar path cost as much as the copy. CopyShort moves 8-byte words, the
// last one overlapping the one before, and never reads or writes outside
// [src, src + n) and [dst, dst + n).
#ifndef TRAINBUS_TENSORBOARD_SHORT_COPY_H_
#define TRAINBUS_TENSORBOARD_SHORT_COPY_H_

#include <cstddef>
#include <cstring>

namespace trainbus::tensorboard::internal {

inline void CopyShort(char* dst, const char* src, size_t n) {
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8) std::memcpy(dst + i, src + i, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n > 0) {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

}  // namespace trainbus::tensorboard::internal

#endif  // TRAINBUS_TENSORBOARD_SHORT_COPY_H_
