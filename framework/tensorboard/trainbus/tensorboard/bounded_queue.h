// trainbus/tensorboard/bounded_queue.h — internal: the writer's ring buffer.
//
// A bounded multi-producer, single-consumer ring. A producer claims a slot
// with one CAS on the enqueue position (after checking that the consumer has
// released it) and publishes it by stamping the cell with its position, a
// release store; the single consumer reads cells in order and hands slots
// back in batches through one released position. Only producers write cells,
// so a record crosses between cores once (Vyukov's bounded queue, where the
// consumer also stamps every cell, moves each cache line twice). No locks,
// no allocation after construction.
//
// Extras over the classic design:
//   - Close() sets a bit in the enqueue position with one atomic OR. Every
//     push that claimed a slot before it is in [0, returned position), every
//     later push fails with kClosed: the consumer knows exactly what to
//     drain, and nothing accepted is ever left behind.
//   - The consumer works in place: Front() / Pop(), no copy out.
//   - A cell is published for position p when its stamp is p + 1; cells
//     store the stamp relative to their index (stamp - index), so the
//     all-zero memory is the valid empty queue and a stamp from an earlier
//     lap never matches. The cells come straight
//     from mmap: the kernel hands out zero pages only when a cell is first
//     touched, so a writer with the default 65,536-record queue (4 MiB)
//     starts without 1,024 page faults and uses the memory it needs.
//   - PopulateAhead() lets the consumer take those first-lap page faults a
//     little ahead of the producers (MADV_POPULATE_WRITE), so that a
//     producer's first pass over the ring does not stall for microseconds a
//     page, while a writer that logs little still backs little.
//
// Cells are one cache line each (T must fit in 56 bytes, and be trivially
// constructible and destructible: cells are raw zeroed memory).
#ifndef TRAINBUS_TENSORBOARD_BOUNDED_QUEUE_H_
#define TRAINBUS_TENSORBOARD_BOUNDED_QUEUE_H_

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "trainbus/tensorboard/populate_write.h"

namespace trainbus::tensorboard::internal {

template <typename T>
class BoundedQueue {
 public:
  enum class PushResult { kOk, kFull, kClosed };

  // `capacity` is rounded up to a power of two, at least 2.
  explicit BoundedQueue(size_t capacity) {
    size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    mask_ = cap - 1;
    bytes_ = cap * sizeof(Cell);
    void* cells = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (cells == MAP_FAILED) throw std::bad_alloc();
    cells_ = static_cast<Cell*>(cells);
  }
  ~BoundedQueue() { ::munmap(cells_, bytes_); }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  size_t capacity() const { return mask_ + 1; }

  // Claims a slot, calls fill(T&) on it and publishes it. On kOk, *position
  // is the slot's position in the queue's total order.
  template <typename Fill>
  PushResult TryPush(Fill&& fill, uint64_t* position) {
    uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
    for (;;) {
      if (pos & kClosedBit) return PushResult::kClosed;
      // Acquire: the consumer is done reading what the slot held a lap ago.
      // The producers' copy of released_ sits in the line they CAS anyway;
      // the consumer's line is read only when the copy says full. A
      // released position beyond `pos` means `pos` is stale: reload it.
      const uint64_t copy = released_copy_.load(std::memory_order_acquire);
      if (static_cast<int64_t>(pos - copy) < 0) {
        pos = enqueue_pos_.load(std::memory_order_relaxed);
        continue;
      }
      if (pos - copy > mask_) {
        const uint64_t released = released_.load(std::memory_order_acquire);
        if (static_cast<int64_t>(pos - released) < 0) {
          pos = enqueue_pos_.load(std::memory_order_relaxed);
          continue;
        }
        if (pos - released > mask_) return PushResult::kFull;
        released_copy_.store(released, std::memory_order_release);
      }
      if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
        // Ask for the line of a cell a few pushes ahead now. The next CAS is
        // a locked instruction, which waits for this push's stores: if the
        // cell's line had to be fetched from the consumer's core then, every
        // push would wait a cross-core miss.
        PrefetchForWrite(&cells_[(pos + kPrefetchAhead) & mask_]);
        Cell& cell = cells_[pos & mask_];
        fill(cell.data);
        cell.relative_stamp.store(pos + 1 - (pos & mask_), std::memory_order_release);
        *position = pos;
        return PushResult::kOk;
      }
    }
  }

  // True when `n` more pushes would not find the queue full (a hint: other
  // producers may take the slots first).
  bool HasRoom(uint64_t n = 1) const {
    const uint64_t pos = enqueue_pos_.load(std::memory_order_acquire) & ~kClosedBit;
    return pos + n - released_.load(std::memory_order_acquire) <= mask_ + 1;
  }

  // Consumer only: backs the cells up to position + `ahead` with memory now,
  // on this thread, so that producers do not page-fault there. Free once the
  // whole ring is backed (after the first lap).
  void PopulateAhead(uint64_t position, uint64_t ahead) {
    if (populated_bytes_ >= bytes_) return;
    const uint64_t want_cells = std::min<uint64_t>(position + ahead, mask_ + 1);
    const size_t want = WholePages(want_cells * sizeof(Cell), bytes_);
    if (want <= populated_bytes_) return;
    char* begin = reinterpret_cast<char*>(cells_) + populated_bytes_;
    if (!PopulateWrite(begin, want - populated_bytes_)) {
      // Before Linux 5.14: touch each page with an atomic no-op on the
      // stamp of its first cell (race-free with the producers).
      constexpr size_t kPage = 4096;
      for (size_t b = populated_bytes_; b < want; b += kPage) {
        reinterpret_cast<Cell*>(reinterpret_cast<char*>(cells_) + b)
            ->relative_stamp.fetch_add(0, std::memory_order_relaxed);
      }
    }
    populated_bytes_ = want;
  }

  // Consumer only: true once every cell is backed (after the first lap).
  bool populated() const { return populated_bytes_ >= bytes_; }

  // Consumer only: the next published item, or nullptr.
  T* Front() {
    const Cell& cell = cells_[dequeue_pos_ & mask_];
    const uint64_t stamp = cell.relative_stamp.load(std::memory_order_acquire) + (dequeue_pos_ & mask_);
    if (stamp != dequeue_pos_ + 1) return nullptr;
    return &cells_[dequeue_pos_ & mask_].data;
  }
  // Consumer only: done with the item Front() returned. Its slot goes back
  // to the producers with the next Release(), at the latest 64 pops later.
  void Pop() {
    ++dequeue_pos_;
    if ((dequeue_pos_ & 63) == 0) Release();
  }
  // Consumer only: hands every popped slot back to the producers now.
  void Release() { released_.store(dequeue_pos_, std::memory_order_release); }
  // Consumer only: how many items were popped so far.
  uint64_t consumer_position() const { return dequeue_pos_; }

  // How many slots were claimed so far (published or about to be).
  uint64_t producer_position() const {
    return enqueue_pos_.load(std::memory_order_acquire) & ~kClosedBit;
  }

  // Refuses all later pushes; returns the number of slots ever claimed.
  uint64_t Close() {
    return enqueue_pos_.fetch_or(kClosedBit, std::memory_order_acq_rel) & ~kClosedBit;
  }
  bool closed() const { return enqueue_pos_.load(std::memory_order_acquire) & kClosedBit; }

 private:
  static constexpr uint64_t kClosedBit = uint64_t{1} << 63;
  static constexpr uint64_t kPrefetchAhead = 8;
  // PREFETCHW: fetch the line in the exclusive state, ready for stores
  // (__builtin_prefetch emits a read prefetch without -mprfchw). CPUs
  // without it execute it as a no-op.
  static void PrefetchForWrite(const void* p) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
    __builtin_prefetch(p, 1);
#endif
  }

  struct alignas(64) Cell {
    std::atomic<uint64_t> relative_stamp;  // published position + 1, minus the cell's index
    T data;
  };
  static_assert(sizeof(T) <= 56, "queue items must fit a cache line with their stamp");
  static_assert(std::is_trivially_default_constructible_v<T> && std::is_trivially_destructible_v<T>,
                "queue items live in raw zeroed memory");
  static_assert(std::is_trivially_default_constructible_v<std::atomic<uint64_t>>);

  Cell* cells_ = nullptr;
  size_t bytes_ = 0;
  uint64_t mask_ = 0;
  alignas(64) std::atomic<uint64_t> enqueue_pos_{0};
  std::atomic<uint64_t> released_copy_{0};  // producers' last look at released_ (may lag)
  alignas(64) std::atomic<uint64_t> released_{0};  // every slot before it is free again
  alignas(64) uint64_t dequeue_pos_ = 0;
  size_t populated_bytes_ = 0;  // consumer only
};

}  // namespace trainbus::tensorboard::internal

#endif  // TRAINBUS_TENSORBOARD_BOUNDED_QUEUE_H_
