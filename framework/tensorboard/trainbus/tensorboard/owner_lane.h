// trainbus/tensorboard/owner_lane.h — internal: one thread's own way into a writer.
//
// The writer's second way in, beside the shared ring (bounded_queue.h). The
// first thread that logs to a writer (in a trainer, the training thread)
// claims the lane and from then on appends every record it adds, packed
// back to back (the writer decides the format: a scalar takes 22 bytes and
// its tag). Other threads use the shared ring. Each thread's
// records stay in its call order either way; records of different threads
// are written in the order the writer thread takes them.
//
// Why: with one producer a push needs no compare-and-swap, and packed
// records reach the writer thread's core in fewer cache lines than the
// ring's one line per record.
//
// Closing from another thread must still be exact: every push that
// returned kOk is below the position Close() returns, every later one gets
// kClosed. A locked instruction per push would cost what the lane saves, so
// the two sides use an asymmetric barrier. The owner marks itself busy
// around each push with plain stores; the closer refuses later pushes, then
// runs membarrier(2), which acts as a full fence on every running thread of
// the process, then waits for a push in progress to end.
//
// The process registers for that barrier once, when the library is loaded
// (owner_lane.cc): usually before main(), while it has one thread and
// registering costs microseconds. Registering in a process with more
// threads waits out an RCU grace period (13-19 ms measured here), which no
// training thread should pay on its first log call. Where the barrier is
// unavailable (Linux before 4.14, a sandbox that filters it, a forked child,
// which the registration does not carry over to) no thread claims a lane
// and every thread uses the ring.
//
// Entries never wrap: where fewer than kMaxEntry bytes are left before the
// buffer's end, producer and consumer both skip to the start of the next
// lap. The buffer comes from mmap, backed only as it is touched; on Linux
// 5.14 and later the consumer backs it ahead of the producer on the first
// lap (PopulateAhead), as the ring does.
#ifndef TRAINBUS_TENSORBOARD_OWNER_LANE_H_
#define TRAINBUS_TENSORBOARD_OWNER_LANE_H_

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

#include "trainbus/tensorboard/populate_write.h"

namespace trainbus::tensorboard::internal {

class OwnerLane {
 public:
  enum class PushResult { kOk, kFull, kClosed };
  // The largest entry a push may write.
  static constexpr size_t kMaxEntry = 64;

  // `bytes` is rounded up to a power of two, at least 16 entries.
  explicit OwnerLane(size_t bytes) {
    const size_t cap = RoundUpToPowerOfTwo(std::max(bytes, 16 * kMaxEntry));
    mask_ = cap - 1;
    mark_shift_ = __builtin_ctzll(cap) - 3;  // a wake-up mark every eighth
    void* base = ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<char*>(base);
  }
  ~OwnerLane() { ::munmap(base_, mask_ + 1); }
  OwnerLane(const OwnerLane&) = delete;
  OwnerLane& operator=(const OwnerLane&) = delete;

  size_t capacity() const { return mask_ + 1; }

  // ---- owner ---------------------------------------------------------------

  // True on the thread that claimed the lane.
  bool OwnedByCaller() const { return owner_.load(std::memory_order_relaxed) == Self(); }
  // True once a thread claimed the lane, or once it cannot be claimed.
  bool claimed() const { return owner_.load(std::memory_order_relaxed) != 0; }
  // True once a thread claimed the lane.
  bool owned() const {
    const uintptr_t owner = owner_.load(std::memory_order_relaxed);
    return owner != 0 && owner != kNobody;
  }

  // Makes the calling thread the owner if no thread is; false if another
  // thread was first or the barrier is unavailable (the lane then stays
  // unused for good). Called once per thread at most, before its first push.
  bool TryClaim() {
    if (!BarrierAvailable()) {
      uintptr_t none = 0;
      owner_.compare_exchange_strong(none, kNobody, std::memory_order_relaxed);
      return false;
    }
    uintptr_t none = 0;
    if (!owner_.compare_exchange_strong(none, Self(), std::memory_order_seq_cst)) return false;
    // A Close() that read no owner came before the claim in the single total
    // order of seq_cst operations; this load then sees its closed_ store,
    // and so does every later relaxed load in TryPush (coherence).
    (void)closed_.load(std::memory_order_seq_cst);
    return true;
  }

  // Owner only. Calls encode(char* out), which writes at most kMaxEntry
  // bytes and returns how many, and publishes them. *crossed_mark is set
  // when the lane's end passed an eighth of the buffer: time to make sure
  // the writer thread is awake.
  template <typename Encode>
  PushResult TryPush(Encode&& encode, bool* crossed_mark) {
    busy_.store(true, std::memory_order_relaxed);
    // Keeps the compiler from moving the load above the store. The CPU may
    // still do so; ordering the two is the closer's membarrier's job.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (closed_.load(std::memory_order_relaxed)) {
      busy_.store(false, std::memory_order_release);
      return PushResult::kClosed;
    }
    const uint64_t end = end_.load(std::memory_order_relaxed);  // this thread's own
    const uint64_t at = SkipToEntry(end);
    if (at + kMaxEntry - released_copy_.load(std::memory_order_relaxed) > capacity()) {
      // Acquire: the consumer is done reading what these bytes held a lap ago.
      const uint64_t released = released_.load(std::memory_order_acquire);
      released_copy_.store(released, std::memory_order_relaxed);
      if (at + kMaxEntry - released > capacity()) {
        busy_.store(false, std::memory_order_release);
        return PushResult::kFull;
      }
    }
    const uint64_t new_end = at + encode(base_ + (at & mask_));
    end_.store(new_end, std::memory_order_release);
    busy_.store(false, std::memory_order_release);
    // The first entry counts as a mark, as the ring's first cell does: the
    // writer thread wakes and backs the buffer ahead of the owner.
    *crossed_mark = end == 0 || (end >> mark_shift_) != (new_end >> mark_shift_);
    return PushResult::kOk;
  }

  // True when `bytes` more bytes of entries would not find the lane full.
  bool HasRoom(uint64_t bytes) const {
    return end_.load(std::memory_order_acquire) + bytes + kMaxEntry -
               released_.load(std::memory_order_acquire) <=
           capacity();
  }
  bool closed() const { return closed_.load(std::memory_order_acquire); }

  // ---- closer --------------------------------------------------------------

  // Refuses every later push, waits for a push in progress on the owner's
  // thread to end, and returns the end of the last accepted entry. Any
  // thread; called once.
  uint64_t Close() {
    closed_.store(true, std::memory_order_seq_cst);
    const uintptr_t owner = owner_.load(std::memory_order_seq_cst);
    if (owner != 0 && owner != kNobody && owner != Self()) {
      // After this, the owner either saw closed_ or made its busy_ store
      // visible here.
      FenceEveryThread();
      for (int spins = 0; busy_.load(std::memory_order_acquire); ++spins) {
        if (spins < 64) {
          Pause();
        } else {
          std::this_thread::yield();  // the owner was preempted mid-push
        }
      }
    }
    return end_.load(std::memory_order_acquire);
  }

  // In a forked child (its only thread): refuses later pushes, waits for
  // nothing (the owner may be a thread the child does not have).
  void CloseInForkedChild() { closed_.store(true, std::memory_order_relaxed); }

  // ---- consumer (the writer thread) -----------------------------------------

  // The end of the last published entry.
  uint64_t published() const { return end_.load(std::memory_order_acquire); }
  // The position of the entry that follows one ending at `position`.
  uint64_t SkipToEntry(uint64_t position) const {
    const uint64_t left = capacity() - (position & mask_);
    return left < kMaxEntry ? position + left : position;
  }
  const char* At(uint64_t position) const { return base_ + (position & mask_); }
  // Hands every byte before `position` back to the owner.
  void Release(uint64_t position) { released_.store(position, std::memory_order_release); }

  // Backs the buffer up to `position` + `ahead` with memory now, on this
  // thread, so that the owner does not page-fault there. Free once the whole
  // buffer is backed (after the first lap).
  void PopulateAhead(uint64_t position, uint64_t ahead) {
    if (populated_bytes_ >= capacity()) return;
    const size_t want = WholePages(std::min<uint64_t>(position + ahead, capacity()), capacity());
    if (want <= populated_bytes_) return;
    if (!PopulateWrite(base_ + populated_bytes_, want - populated_bytes_)) {
      populated_bytes_ = capacity();  // before Linux 5.14: the owner takes the faults
      return;
    }
    populated_bytes_ = want;
  }
  bool populated() const { return populated_bytes_ >= capacity(); }

 private:
  static constexpr uintptr_t kNobody = ~uintptr_t{0};  // claimed by no thread, for good

  // The calling thread's identity: its thread pointer (on x86-64 glibc the
  // value pthread_self() returns), read without a call.
  static uintptr_t Self() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__aarch64__))
    return reinterpret_cast<uintptr_t>(__builtin_thread_pointer());
#else
    return static_cast<uintptr_t>(pthread_self());
#endif
  }
  static void Pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  static size_t RoundUpToPowerOfTwo(size_t n) {
    size_t p = 1;
    while (p < n) p <<= 1;
    return p;
  }
  // True when this process registered for the barrier at load time and
  // it worked (owner_lane.cc).
  static bool BarrierAvailable();
  // membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), with fallbacks should it
  // fail although registered (owner_lane.cc).
  static void FenceEveryThread();

  char* base_ = nullptr;
  uint64_t mask_ = 0;
  unsigned mark_shift_ = 0;
  size_t populated_bytes_ = 0;  // consumer only
  std::atomic<uintptr_t> owner_{0};
  std::atomic<bool> closed_{false};
  // The owner's line: written per push, read by the consumer per batch.
  alignas(64) std::atomic<uint64_t> end_{0};
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> released_copy_{0};  // the owner's last look at released_
  // The consumer's line.
  alignas(64) std::atomic<uint64_t> released_{0};
};

}  // namespace trainbus::tensorboard::internal

#endif  // TRAINBUS_TENSORBOARD_OWNER_LANE_H_
