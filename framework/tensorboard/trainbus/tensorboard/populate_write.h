// trainbus/tensorboard/populate_write.h — internal: backing a buffer ahead of its writers.
//
// The writer's ring and owner lane come straight from mmap and are backed
// by the kernel only as they are touched. On their first lap the writer
// thread backs them a little ahead of the threads that fill them, so that
// those threads do not take the page faults. Both use these two pieces.
#ifndef TRAINBUS_TENSORBOARD_POPULATE_WRITE_H_
#define TRAINBUS_TENSORBOARD_POPULATE_WRITE_H_

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>

namespace trainbus::tensorboard::internal {

// `bytes` rounded up to a whole page, at most `limit` (a mapping's size).
inline size_t WholePages(size_t bytes, size_t limit) {
  constexpr size_t kPage = 4096;
  return std::min(limit, (bytes + kPage - 1) / kPage * kPage);
}

// Backs [begin, begin + length) of a private writable mapping with memory
// now, on the calling thread. False where MADV_POPULATE_WRITE is unknown
// (Linux before 5.14).
inline bool PopulateWrite(void* begin, size_t length) {
#ifdef MADV_POPULATE_WRITE
  constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
  constexpr int kMadvPopulateWrite = 23;  // Linux 5.14's value
#endif
  return ::madvise(begin, length, kMadvPopulateWrite) == 0;
}

}  // namespace trainbus::tensorboard::internal

#endif  // TRAINBUS_TENSORBOARD_POPULATE_WRITE_H_
