#include "trainbus/tensorboard/event_file_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainbus/io/file_io.h"
#include "trainbus/tensorboard/bounded_queue.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/owner_lane.h"
#include "trainbus/tensorboard/proto/event.pb.h"
#include "trainbus/tensorboard/record_framing.h"
#include "trainbus/tensorboard/scalar_event.h"
#include "trainbus/tensorboard/short_copy.h"

namespace trainbus::tensorboard {
namespace {

constexpr size_t kBufferCapacity = 256 * 1024;
// Records larger than this bypass the buffer (written with writev).
constexpr size_t kLargeRecord = kBufferCapacity / 4;
constexpr size_t kDrainBatch = 4096;
// The owner lane's bytes per record of max_queue, as many as a ring cell
// takes: room for at least as many records as the ring holds (a packed
// scalar takes 22 bytes and its tag).
constexpr size_t kLaneBytesPerRecord = 64;
// Large records (images, histograms...) wake a sleeping writer thread once
// this many of their bytes wait in the queue...
constexpr int64_t kWakeBytes = 1 << 20;
// ...and count as a full queue beyond this many (backpressure on memory).
constexpr int64_t kMaxPendingBytes = int64_t{256} << 20;
// While records keep coming, the idle writer thread naps this long and looks
// again by itself, so that a training thread's flush request needs no
// wake-up (a cross-CPU interrupt, 20-45 us on a VM) and a close finds little
// left to drain. A nap that finds nothing is followed by a sleep.
constexpr auto kNap = std::chrono::milliseconds(2);
// The file's blocks are reserved this far ahead of the writes (ReserveAhead)...
constexpr uint64_t kReserveAhead = 1 << 20;
// ...once this many bytes have been written since the last flush: giving a
// reserve back costs 61-75 us (ext4 frees the blocks), repaid by ~4 ns a
// scalar, so only some 20,000 records (~1 MiB) between two flushes pay for it.
constexpr uint64_t kReserveAfter = 1 << 20;

// OS errors read and are coded as in every trainbus write (trainbus/io).
using io::CodeForErrno;
using io::ErrnoText;

// mkdir -p. Reports the component that failed.
absl::Status MakeDirs(const std::string& dir) {
  std::string prefix;
  size_t pos = 0;
  while (pos <= dir.size()) {
    size_t next = dir.find('/', pos);
    if (next == std::string::npos) next = dir.size();
    prefix = dir.substr(0, next);
    pos = next + 1;
    if (prefix.empty() || prefix == "." || prefix == "..") continue;
    if (::mkdir(prefix.c_str(), 0777) == 0) continue;
    const int err = errno;
    struct stat st;
    if (err == EEXIST && ::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    const int shown = (err == EEXIST) ? ENOTDIR : err;
    return absl::Status(
        CodeForErrno(shown),
        absl::StrCat("cannot create TensorBoard log directory '", dir, "': ",
                     prefix == dir ? std::string() : absl::StrCat("at '", prefix, "': "),
                     ErrnoText(shown),
                     ". Choose a log_dir in a writable location (check permissions, that no "
                     "part of the path is a regular file, and free space)."));
  }
  return absl::OkStatus();
}

using io::WriteAll;

}  // namespace

class EventFileWriter::Impl {
 public:
  // Work for the writer thread; nullopt: it wrote no record (RunDeferred).
  using DeferredJob = std::function<std::optional<std::string>()>;

  struct Item {
    union {
      float value;
      std::string* payload;  // kind == kEncoded: an owned serialized Event
      DeferredJob* job;  // kind == kDeferred: owned; step holds its byte estimate
    };
    int64_t step;
    double wall_time;
    uint8_t kind;
    uint8_t tag_size;
    char tag[kInlineTagSize];
  };
  static constexpr uint8_t kScalar = 0;
  static constexpr uint8_t kEncoded = 1;
  static constexpr uint8_t kDeferred = 2;
  static_assert(sizeof(Item) <= 56, "Item must fit one cache line with its stamp");

  // An Item as the owner lane (owner_lane.h) holds it, packed: its kind,
  // then for a scalar the tag's size, value, step, wall time and tag (22
  // bytes + the tag: two or three records a cache line, against the ring's
  // one), for other kinds the pointer and Item::step (17 bytes).
  static constexpr size_t kLaneScalarFixed = 1 + 1 + 4 + 8 + 8;
  static constexpr size_t kLaneReferenceSize = 1 + 8 + 8;
  static_assert(kLaneScalarFixed + kInlineTagSize <= internal::OwnerLane::kMaxEntry &&
                    kLaneReferenceSize <= internal::OwnerLane::kMaxEntry,
                "lane entries must fit the lane's largest entry");

  Impl(std::string dir, std::string path, int fd, const EventFileWriterOptions& options,
       uint64_t initial_bytes)
      : dir_(std::move(dir)),
        path_(std::move(path)),
        options_(options),
        fd_(fd),
        queue_(std::max<size_t>(options.max_queue, 16)),
        lane_(queue_.capacity() * kLaneBytesPerRecord),
        buffer_(new char[kBufferCapacity]),
        file_offset_(initial_bytes),
        reserved_end_(initial_bytes),
        released_at_(initial_bytes) {
    ahead_ = queue_.capacity() / 8;
    wake_mask_ = ahead_ - 1;
    lane_ahead_ = lane_.capacity() / 8;
    bytes_written_.store(initial_bytes, std::memory_order_relaxed);
    records_written_.store(1, std::memory_order_relaxed);
    const double secs = std::min(std::max(options_.flush_secs, 0.01), 86400.0 * 365);
    flush_interval_ = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(secs));
    owner_pid_ = ::getpid();
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    (void)Close();
    if (thread_.joinable()) thread_.join();
  }

  // ---- producer side -------------------------------------------------------

  // The two ways in, behind one interface for Push(): the shared ring, and
  // the lane of the thread that owns it.
  enum class Pushed { kOk, kFull, kClosed };
  struct RingWay {
    Impl& w;
    template <typename Fill>  // fill(Item&)
    Pushed TryPush(Fill&& fill, bool* wake) {
      uint64_t pos;
      switch (w.queue_.TryPush(fill, &pos)) {
        case Queue::PushResult::kOk:
          // Every eighth of the ring (on the first lap the writer thread
          // then backs the ring an eighth ahead).
          *wake = (pos & w.wake_mask_) == 0;
          return Pushed::kOk;
        case Queue::PushResult::kFull: return Pushed::kFull;
        case Queue::PushResult::kClosed: break;
      }
      return Pushed::kClosed;
    }
    bool HasRoom() const { return w.queue_.HasRoom(w.ahead_); }
    bool closed() const { return w.queue_.closed(); }
  };
  struct LaneWay {
    Impl& w;
    template <typename Encode>  // encode(char* out) -> bytes written
    Pushed TryPush(Encode&& encode, bool* wake) {
      switch (w.lane_.TryPush(encode, wake)) {
        case internal::OwnerLane::PushResult::kOk: return Pushed::kOk;
        case internal::OwnerLane::PushResult::kFull: return Pushed::kFull;
        case internal::OwnerLane::PushResult::kClosed: break;
      }
      return Pushed::kClosed;
    }
    bool HasRoom() const { return w.lane_.HasRoom(w.lane_ahead_); }
    bool closed() const { return w.lane_.closed(); }
  };

  // True when the calling thread adds through the lane: it owns it, or no
  // thread does yet and it claims it now. Never the writer thread (a
  // deferred job's record), which would wait on itself for room.
  bool CallerOwnsLane() {
    if (lane_.OwnedByCaller()) return true;
    if (lane_.claimed() || OnWriterThread()) return false;
    return lane_.TryClaim();
  }

  // `bytes` > 0 marks a large record holding that many bytes of payload.
  template <typename Way, typename Fill>
  bool Push(Way way, Fill&& fill, int64_t bytes) {
    if (failed_.load(std::memory_order_relaxed)) {
      records_lost_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    bool wake = false;
    Pushed r = Pushed::kFull;
    if (bytes == 0 || pending_bytes_.load(std::memory_order_relaxed) < kMaxPendingBytes) {
      r = way.TryPush(fill, &wake);
    }
    if (r != Pushed::kOk) {
      if (r == Pushed::kClosed || way.closed()) return false;
      if (options_.on_full == QueueFullPolicy::kDrop) {
        records_dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      // A forked child's copy the fork handler did not mark (its writer was
      // being closed at the fork) has no thread to make room: refuse.
      if (::getpid() != owner_pid_) return false;
      queue_full_waits_.fetch_add(1, std::memory_order_relaxed);
      // Block until the writer thread has freed an eighth of the ring (not
      // one slot: a producer let through per slot would spin in step with the
      // writer, doubling the CPU per record). A waiting producer burns no CPU.
      auto room = [&] {
        return way.closed() || failed_.load(std::memory_order_relaxed) ||
               ((bytes == 0 || pending_bytes_.load(std::memory_order_relaxed) < kMaxPendingBytes) &&
                way.HasRoom());
      };
      for (;;) {
        Wake();
        WaitForRoom(room);
        if (failed_.load(std::memory_order_relaxed)) {
          records_lost_.fetch_add(1, std::memory_order_relaxed);
          return false;
        }
        if (bytes > 0 && pending_bytes_.load(std::memory_order_relaxed) >= kMaxPendingBytes) {
          if (way.closed()) return false;
          continue;
        }
        r = way.TryPush(fill, &wake);
        if (r == Pushed::kOk) break;
        if (r == Pushed::kClosed) return false;
      }
    }
    // The writer sleeps when idle; wake it every eighth of the ring or lane,
    // and when large records hold more than kWakeBytes.
    if (bytes > 0) {
      wake |= pending_bytes_.fetch_add(bytes, std::memory_order_relaxed) + bytes >= kWakeBytes;
    }
    if (wake) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (idle_.load(std::memory_order_relaxed) != kAwake) Wake();
    }
    return true;
  }

  bool WriteScalar(absl::string_view tag, float value, int64_t step, double wall_time) {
    if (tag.size() <= kInlineTagSize) {
      if (CallerOwnsLane()) {
        return Push(
            LaneWay{*this},
            [&](char* out) {
              const size_t n = tag.size();
              if (n > kInlineTagSize) __builtin_unreachable();  // checked above; tells GCC
              out[0] = static_cast<char>(kScalar);
              out[1] = static_cast<char>(n);
              std::memcpy(out + 2, &value, 4);
              std::memcpy(out + 6, &step, 8);
              std::memcpy(out + 14, &wall_time, 8);
              internal::CopyShort(out + kLaneScalarFixed, tag.data(), n);
              return kLaneScalarFixed + n;
            },
            0);
      }
      return Push(
          RingWay{*this},
          [&](Item& it) {
            it.value = value;
            it.step = step;
            it.wall_time = wall_time;
            it.kind = kScalar;
            const size_t n = tag.size();
            if (n > kInlineTagSize) __builtin_unreachable();  // checked above; tells GCC
            it.tag_size = static_cast<uint8_t>(n);
            internal::CopyShort(it.tag, tag.data(), n);
          },
          0);
    }
    std::string event(ScalarEventSize(wall_time, step, tag), '\0');
    EncodeScalarEvent(wall_time, step, tag, value, event.data());
    return WriteEvent(std::move(event));
  }

  bool WriteEvent(std::string serialized) {
    const int64_t bytes = static_cast<int64_t>(serialized.size()) + 1;
    auto* payload = new std::string(std::move(serialized));
    const bool ok = PushReference(kEncoded, payload, 0, bytes);
    if (!ok) delete payload;
    return ok;
  }

  bool WriteDeferred(DeferredJob build, size_t approx_bytes) {
    const int64_t bytes = static_cast<int64_t>(approx_bytes) + 1;
    auto* job = new DeferredJob(std::move(build));
    const bool ok = PushReference(kDeferred, job, bytes, bytes);
    if (!ok) delete job;
    return ok;
  }

  // Adds a record the writer thread takes ownership of: an encoded Event
  // (kEncoded, a std::string*) or a job (kDeferred, a DeferredJob*).
  // `step` is stored as Item::step.
  template <typename T>
  bool PushReference(uint8_t kind, T* pointer, int64_t step, int64_t bytes) {
    static_assert(sizeof(T*) == 8, "a reference holds a 64-bit pointer");
    if (CallerOwnsLane()) {
      return Push(
          LaneWay{*this},
          [&](char* out) {
            out[0] = static_cast<char>(kind);
            std::memcpy(out + 1, &pointer, 8);
            std::memcpy(out + 9, &step, 8);
            return kLaneReferenceSize;
          },
          bytes);
    }
    return Push(
        RingWay{*this},
        [&](Item& it) {
          if constexpr (std::is_same_v<T, std::string>) {
            it.payload = pointer;
          } else {
            it.job = pointer;
          }
          it.step = step;
          it.kind = kind;
        },
        bytes);
  }

  // Blocks a producer until room() (checked under room_mu_, which the writer
  // thread takes to notify after a drained batch, a failure or Close), or
  // 100 ms as a backstop.
  template <typename Room>
  void WaitForRoom(Room&& room) {
    std::unique_lock<std::mutex> lock(room_mu_);
    producers_waiting_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with NotifyRoom's fence
    room_cv_.wait_for(lock, std::chrono::milliseconds(100), room);
    producers_waiting_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Wakes producers blocked in WaitForRoom() (cheap when there are none).
  void NotifyRoom() {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with the waiter's fetch_add
    if (producers_waiting_.load(std::memory_order_relaxed) != 0) {
      std::lock_guard<std::mutex> lock(room_mu_);
      room_cv_.notify_all();
    }
  }

  // Wakes the writer thread, napping or asleep.
  void Wake() {
    if (idle_.exchange(kAwake, std::memory_order_seq_cst) != kAwake) Notify();
  }

  // Wakes the writer thread only if it sleeps; a napping one sees what the
  // caller stored (seq_cst) before this within kNap, by itself.
  void WakeIfAsleep() {
    uint8_t asleep = kAsleep;
    if (idle_.compare_exchange_strong(asleep, kAwake, std::memory_order_seq_cst)) Notify();
  }

  void Notify() {
    // The empty critical section orders this wake-up after a writer thread
    // that checked its predicate under mu_ (it holds mu_ until it sleeps).
    // Notifying after unlocking lets it wake without blocking on mu_ behind
    // the caller: a futex round trip the training thread would pay for.
    { std::lock_guard<std::mutex> lock(mu_); }
    wake_cv_.notify_one();
  }

  // How far the ring and the lane had been added to, or written.
  struct Positions {
    uint64_t ring = 0;
    uint64_t lane = 0;
    bool Reached(const Positions& target) const {
      return ring >= target.ring && lane >= target.lane;
    }
  };
  Positions Added() const { return {queue_.producer_position(), lane_.published()}; }

  // Asks the writer thread (which then needs waking) to flush through
  // `target`; false when there is nothing to wait for: flushed already, or
  // the thread has exited. Called with mu_ held.
  bool SetFlushTargetLocked(const Positions& target) {
    if (thread_exited_ || flushed_through_.Reached(target)) return false;
    if (flush_target_.load(std::memory_order_relaxed) < target.ring) {
      flush_target_.store(target.ring, std::memory_order_seq_cst);
    }
    if (lane_flush_target_.load(std::memory_order_relaxed) < target.lane) {
      lane_flush_target_.store(target.lane, std::memory_order_seq_cst);
    }
    return true;
  }

  // Asks the writer thread to flush everything enqueued so far; does not
  // wait, and does not touch mu_ after the wake-up (the writer takes it then).
  // A napping writer is not woken: it flushes within kNap.
  absl::Status RequestFlush() {
    if (forked()) return absl::OkStatus();  // nothing of the child's to flush
    const Positions target = Added();
    absl::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      status = StatusLocked();
      if (!SetFlushTargetLocked(target)) return status;
    }
    WakeIfAsleep();
    return status;
  }

  // Returns at once in a forked child (nothing of its own to flush), and
  // fails on the writer's own thread (a deferred job), where it would wait
  // for itself.
  absl::Status Flush() {
    if (forked() || ::getpid() != owner_pid_) return absl::OkStatus();
    if (OnWriterThread()) {
      return absl::FailedPreconditionError(
          "flush() called on the writer's own thread (from a deferred job): it would wait for "
          "itself; flush from the thread that adds the records");
    }
    const Positions target = Added();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!SetFlushTargetLocked(target)) return StatusLocked();
    }
    Wake();
    std::unique_lock<std::mutex> lock(mu_);
    flushed_cv_.wait(lock, [&] {
      return flushed_through_.Reached(target) || thread_exited_ ||
             failed_.load(std::memory_order_relaxed);
    });
    return StatusLocked();
  }

  absl::Status Close() {
    // Before close_mu_: a parent thread may have held it at the fork.
    if (forked() || ::getpid() != owner_pid_) return CloseForkedCopy();
    std::lock_guard<std::mutex> close_lock(close_mu_);
    if (!closed_.load(std::memory_order_relaxed)) {
      closed_.store(true, std::memory_order_relaxed);
      final_pos_ = queue_.Close();
      final_lane_pos_ = lane_.Close();
      closing_.store(true, std::memory_order_seq_cst);
      NotifyRoom();
      Wake();
      {
        // The writer's last write, not its thread's exit: that exit (the
        // stack's release, the kernel waking the joiner) took 50-95 us on a
        // VM; the destructor joins it, when it has usually long ended.
        std::unique_lock<std::mutex> lock(mu_);
        flushed_cv_.wait(lock, [&] { return thread_exited_; });
      }
      if (::close(fd_) != 0 && errno != EINTR) Fail(errno, "closing");
      fd_ = -1;
      const uint64_t dropped = records_dropped_.load(std::memory_order_relaxed);
      if (dropped > 0) {
        std::fprintf(stderr,
                     "[trainbus.tensorboard] WARNING: %llu record(s) were dropped from '%s' "
                     "because the queue was full (QueueFullPolicy::kDrop); raise max_queue "
                     "or use kWait to keep every record.\n",
                     static_cast<unsigned long long>(dropped), path_.c_str());
      }
    }
    return status();
  }

  // A forked child's copy of the writer has no thread (that is the
  // parent's), and the parent's threads may have held any of its mutexes at
  // the fork: it closes its copy of the file, writes nothing and takes no
  // lock.
  absl::Status CloseForkedCopy() {
    if (!closed_.exchange(true, std::memory_order_relaxed)) {
      (void)queue_.Close();
      lane_.CloseInForkedChild();
      ::close(fd_);
      fd_ = -1;
    }
    return absl::OkStatus();
  }

  // Called in a forked child by the fork handler (the child's only thread,
  // before anything else runs there): every later push is refused (returns
  // false) instead of filling a ring that no thread drains, and flush(),
  // status() and close() take none of the mutexes the parent's threads may
  // have held at the fork.
  void MarkForkedCopy() {
    forked_.store(true, std::memory_order_relaxed);
    (void)queue_.Close();
    lane_.CloseInForkedChild();
  }
  bool forked() const { return forked_.load(std::memory_order_relaxed); }
  bool OnWriterThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  absl::Status status() const {
    if (forked()) return absl::OkStatus();  // the parent's writer, not the child's
    std::lock_guard<std::mutex> lock(mu_);
    return StatusLocked();
  }

  WriterCounters counters() const {
    WriterCounters c;
    c.records_written = records_written_.load(std::memory_order_relaxed);
    c.bytes_written = bytes_written_.load(std::memory_order_relaxed);
    c.records_dropped = records_dropped_.load(std::memory_order_relaxed);
    c.records_lost = records_lost_.load(std::memory_order_relaxed);
    c.queue_full_waits = queue_full_waits_.load(std::memory_order_relaxed);
    return c;
  }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_; }
  pid_t owner_pid() const { return owner_pid_; }

 private:
  using Queue = internal::BoundedQueue<Item>;

  absl::Status StatusLocked() const {
    if (!failed_.load(std::memory_order_acquire)) {
      if (thread_exited_ && !closed_.load(std::memory_order_relaxed)) {
        return absl::InternalError(absl::StrCat("event file writer for '", path_,
                                                "' stopped unexpectedly"));
      }
      return absl::OkStatus();
    }
    const uint64_t lost = records_lost_.load(std::memory_order_relaxed);
    const uint64_t written = records_written_.load(std::memory_order_relaxed);
    // A job that failed (add_embedding's files, an encoder) says itself
    // what failed and where; a failed write names the OS error.
    const std::string cause = error_detail_.empty()
                                  ? absl::StrCat(error_what_, " failed: ", ErrnoText(error_errno_))
                                  : absl::StrCat(error_what_, " failed: ", error_detail_);
    return absl::Status(
        error_detail_.empty() ? CodeForErrno(error_errno_) : error_code_,
        absl::StrCat("TensorBoard event file '", path_, "': ", cause, ". ", lost,
                     " record(s) lost so far (not written); every later record is refused. "
                     "The ",
                     written,
                     " record(s) written before the failure are intact and readable. Free disk "
                     "space or raise the file-size limit (ulimit -f), then write to a new "
                     "SummaryWriter (a new event file)."));
  }

  // detail: the failed job's own message (errno is then unused).
  void Fail(int err, const char* what, std::string detail = "",
            absl::StatusCode code = absl::StatusCode::kInternal) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.load(std::memory_order_relaxed)) return;
    error_errno_ = err;
    error_what_ = what;
    error_detail_ = std::move(detail);
    error_code_ = code;
    failed_.store(true, std::memory_order_release);
    NotifyRoom();
    const unsigned long long lost = records_lost_.load(std::memory_order_relaxed);
    if (error_detail_.empty()) {
      std::fprintf(stderr,
                   "[trainbus.tensorboard] ERROR: %s '%s' failed: %s; %llu record(s) lost, "
                   "later records are refused. Records written before stay readable.\n",
                   what, path_.c_str(), ErrnoText(err).c_str(), lost);
    } else {
      std::fprintf(stderr,
                   "[trainbus.tensorboard] ERROR: '%s': %s failed: %s; %llu record(s) lost, "
                   "later records are refused. Records written before stay readable.\n",
                   path_.c_str(), what, error_detail_.c_str(), lost);
    }
    flushed_cv_.notify_all();
  }

  // ---- writer thread -------------------------------------------------------

  void Run() {
    auto next_flush = std::chrono::steady_clock::now() + flush_interval_;
    bool drained_since_idle = false;
    for (;;) {
      const size_t n = Drain();
      if (n > 0) {
        drained_since_idle = true;
        queue_.Release();
        // First lap only: back the ring and lane an eighth ahead of the producers.
        if (!queue_.populated()) queue_.PopulateAhead(queue_.producer_position(), ahead_);
        if (!lane_.populated() && lane_.owned()) lane_.PopulateAhead(lane_.published(), lane_ahead_);
        NotifyRoom();  // producers blocked on a full queue: there is room now
      }
      if (closing_.load(std::memory_order_acquire)) {
        if (queue_.consumer_position() < final_pos_ || lane_pos_ < final_lane_pos_) {
          if (n == 0) Relax();
          continue;
        }
        FlushFile();
        PublishFlushed();
        break;
      }
      const Positions want{flush_target_.load(std::memory_order_acquire),
                           lane_flush_target_.load(std::memory_order_acquire)};
      if (!handled_flush_.Reached(want)) {
        if (!Consumed().Reached(want)) {
          if (n == 0) Relax();
          continue;
        }
        handled_flush_ = want;
        FlushFile();
        PublishFlushed();
        next_flush = std::chrono::steady_clock::now() + flush_interval_;
        continue;
      }
      if (n >= kDrainBatch && ++busy_rounds_ % 64 != 0) continue;
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_flush) {
        FlushFile();
        PublishFlushed();
        next_flush = now + flush_interval_;
        continue;
      }
      if (n == 0) {
        // A producer claimed the next slot but has not published it yet:
        // it will not wake this thread, so wait for it here.
        if (queue_.producer_position() > queue_.consumer_position()) {
          Relax();
        } else {
          IdleWait(next_flush, /*nap=*/drained_since_idle);
          drained_since_idle = false;
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    thread_exited_ = true;
    flushed_cv_.notify_all();
  }

  // Waits for a producer that claimed a slot but has not published it yet.
  void Relax() {
    if (++relax_spins_ % 64 != 0) {
      __builtin_ia32_pause();
    } else {
      std::this_thread::yield();
    }
  }

  // Sleeps until `deadline` (the next periodic flush) or a wake-up; a nap
  // ends after kNap at the latest, and flush requests do not wake it.
  void IdleWait(std::chrono::steady_clock::time_point deadline, bool nap) {
    if (nap) deadline = std::min(deadline, std::chrono::steady_clock::now() + kNap);
    idle_.store(nap ? kNapping : kAsleep, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // Claimed slots, not published ones: a producer that claimed a wake-up
    // position after an earlier one still unpublished saw this thread awake
    // and did not wake it; the claim itself is ordered by the fences.
    auto flush_asked = [&] {
      return flush_target_.load(std::memory_order_seq_cst) > handled_flush_.ring ||
             lane_flush_target_.load(std::memory_order_seq_cst) > handled_flush_.lane;
    };
    auto pending = [&] {
      return queue_.producer_position() != queue_.consumer_position() ||
             lane_.published() != lane_pos_ || closing_.load(std::memory_order_seq_cst) ||
             flush_asked();
    };
    if (!pending()) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_cv_.wait_until(lock, deadline, [&] {
        return idle_.load(std::memory_order_seq_cst) == kAwake ||
               closing_.load(std::memory_order_seq_cst) || flush_asked();
      });
    }
    idle_.store(kAwake, std::memory_order_relaxed);
  }

  // Takes up to kDrainBatch records from the ring, then as many from the
  // lane; returns how many.
  size_t Drain() {
    size_t n = 0;
    while (n < kDrainBatch) {
      Item* it = queue_.Front();
      if (it == nullptr) break;
      Process(*it);
      queue_.Pop();
      ++n;
    }
    return n + DrainLane();
  }

  size_t DrainLane() {
    const uint64_t end = lane_.published();
    uint64_t pos = lane_pos_;
    size_t n = 0;
    for (; pos != end && n < kDrainBatch; ++n) {
      pos = lane_.SkipToEntry(pos);
      const char* entry = lane_.At(pos);
      if (entry[0] == kScalar) {
        const size_t tag_size = static_cast<uint8_t>(entry[1]);
        float value;
        int64_t step;
        double wall_time;
        std::memcpy(&value, entry + 2, 4);
        std::memcpy(&step, entry + 6, 8);
        std::memcpy(&wall_time, entry + 14, 8);
        ProcessScalar(wall_time, step, absl::string_view(entry + kLaneScalarFixed, tag_size), value);
        pos += kLaneScalarFixed + tag_size;
        continue;
      }
      Item it;
      it.kind = static_cast<uint8_t>(entry[0]);
      void* pointer;
      std::memcpy(&pointer, entry + 1, 8);
      if (it.kind == kEncoded) {
        it.payload = static_cast<std::string*>(pointer);
      } else {
        it.job = static_cast<DeferredJob*>(pointer);
      }
      std::memcpy(&it.step, entry + 9, 8);
      Process(it);
      pos += kLaneReferenceSize;
    }
    if (n > 0) {
      lane_pos_ = pos;
      lane_.Release(pos);
    }
    return n;
  }

  Positions Consumed() const { return {queue_.consumer_position(), lane_pos_}; }

  // A scalar from the ring or the lane, encoded into the buffer; framed
  // (checksummed) by WriteBuffer, for the whole batch at once.
  void ProcessScalar(double wall_time, int64_t step, absl::string_view tag, float value) {
    if (failed_local_) {
      records_lost_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (buffer_size_ + MaxScalarRecordSize(tag.size()) > kBufferCapacity) {
      WriteBuffer();
      if (failed_local_) {
        records_lost_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    buffer_size_ += EncodeUnframedScalarRecord(wall_time, step, tag, value,
                                               buffer_.get() + buffer_size_);
    ++buffer_records_;
  }

  void Process(Item& it) {
    if (it.kind == kScalar) {
      ProcessScalar(it.wall_time, it.step, absl::string_view(it.tag, it.tag_size), it.value);
      return;
    }
    std::unique_ptr<std::string> payload;
    if (it.kind == kDeferred) {
      std::unique_ptr<DeferredJob> job(it.job);
      pending_bytes_.fetch_sub(it.step, std::memory_order_relaxed);
      if (failed_local_) {
        records_lost_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      try {
        std::optional<std::string> built = (*job)();
        if (!built) return;  // work that wrote other files (add_embedding)
        payload = std::make_unique<std::string>(*std::move(built));
      } catch (const std::exception& e) {
        records_lost_.fetch_add(1, std::memory_order_relaxed);
        FailFromWriter(EINVAL, "building a record", e.what());
        return;
      }
    } else {
      payload.reset(it.payload);
      pending_bytes_.fetch_sub(static_cast<int64_t>(payload->size()) + 1,
                               std::memory_order_relaxed);
    }
    const size_t need = payload->size() + kRecordOverhead;
    if (!failed_local_ && (need > kLargeRecord || buffer_size_ + need > kBufferCapacity)) {
      WriteBuffer();
    }
    if (failed_local_) {
      records_lost_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (need > kLargeRecord) {
      WriteLarge(*payload);
      return;
    }
    char* rec = buffer_.get() + buffer_size_;
    EncodeRecordLength(payload->size(), rec);
    std::memcpy(rec + kRecordHeaderSize, payload->data(), payload->size());
    buffer_size_ += need;
    ++buffer_records_;
  }

  void WriteBuffer() {
    if (buffer_size_ == 0) return;
    FinishRecords(buffer_.get(), buffer_size_);
    ReserveAhead(buffer_size_);
    size_t done = 0;
    const int err = WriteAll(fd_, buffer_.get(), buffer_size_, &done);
    file_offset_ += done;
    bytes_written_.fetch_add(done, std::memory_order_relaxed);
    if (err == 0) {
      records_written_.fetch_add(buffer_records_, std::memory_order_relaxed);
    } else {
      size_t whole_bytes = 0;
      const size_t whole = CountWholeRecords(buffer_.get(), done, &whole_bytes);
      records_written_.fetch_add(whole, std::memory_order_relaxed);
      records_lost_.fetch_add(buffer_records_ - whole, std::memory_order_relaxed);
      CutPartialRecord(done - whole_bytes);
      FailFromWriter(err, "writing");
    }
    buffer_size_ = 0;
    buffer_records_ = 0;
  }

  void WriteLarge(const std::string& data) {
    char header[kRecordHeaderSize];
    char footer[kRecordFooterSize];
    EncodeRecordHeader(data.size(), header);
    EncodeRecordFooter(data.data(), data.size(), footer);
    struct iovec iov[3] = {{header, sizeof header},
                           {const_cast<char*>(data.data()), data.size()},
                           {footer, sizeof footer}};
    ReserveAhead(kRecordOverhead + data.size());
    size_t done = 0;
    const int err = io::WriteAllV(fd_, iov, 3, &done);
    file_offset_ += done;
    bytes_written_.fetch_add(done, std::memory_order_relaxed);
    if (err == 0) {
      records_written_.fetch_add(1, std::memory_order_relaxed);
    } else {
      records_lost_.fetch_add(1, std::memory_order_relaxed);
      CutPartialRecord(done);
      FailFromWriter(err, "writing");
    }
  }

  // Everything buffered into the file (and onto the disk with
  // fsync_on_flush), and the blocks reserved past its end given back: a
  // process that ends after a flush without closing (a second Ctrl-C, a
  // leaked writer flushed at exit) leaves none.
  void FlushFile() {
    WriteBuffer();
    MaybeFsync();
    ReleaseReserve();
  }

  // On ext4, reserves the file's blocks up to kReserveAhead past the next
  // `bytes` without changing its size (readers see nothing): ext4 then maps
  // each page a write fills instead of reserving a delayed block for it page
  // by page, and the writer thread spends 3-4 ns less a scalar
  // (docs/BENCHMARKS.md). Only once kReserveAfter bytes have been written
  // since the last flush: a run that writes less between its flushes (a
  // training run's few records an iteration) would pay more to give the
  // reserve back than the reserve saves, and its close would wait for it.
  // Other file systems are left alone (not measured; xfs reserves ahead by
  // itself; btrfs may keep a partly written extent whole). Best effort: a
  // failing fallocate (ext2/3, a full disk) stops the reserving and the
  // writes go on as before; what it reserved before failing is given back
  // like the rest. ReleaseReserve, at every flush and at close, gives the
  // rest back.
  void ReserveAhead(size_t bytes) {
    if (!reserving_ || file_offset_ + bytes <= reserved_end_) return;
    if (file_offset_ + bytes < released_at_ + kReserveAfter) return;
    if (!reserve_checked_) {
      reserve_checked_ = true;
      struct statfs fs;
      if (::fstatfs(fd_, &fs) != 0 || fs.f_type != EXT4_SUPER_MAGIC) {
        reserving_ = false;
        return;
      }
    }
    // From the file's end when the writes since the flush ran unreserved.
    const uint64_t from = std::max(reserved_end_, file_offset_);
    const uint64_t end = file_offset_ + bytes + kReserveAhead;
    if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(from),
                    static_cast<off_t>(end - from)) != 0) {
      reserving_ = false;
    }
    reserved_end_ = end;
  }

  // Frees the blocks reserved past the file's end (truncating a file to its
  // own size releases them). Best effort: they are only space.
  void ReleaseReserve() {
    if (reserved_end_ > file_offset_) (void)::ftruncate(fd_, static_cast<off_t>(file_offset_));
    reserved_end_ = file_offset_;
    released_at_ = file_offset_;
  }

  // Removes the `partial` bytes of a half-written record from the end of the
  // file, so that the file ends on a record boundary. Best effort.
  void CutPartialRecord(size_t partial) {
    if (partial == 0) return;
    const uint64_t good = file_offset_ - partial;
    if (::ftruncate(fd_, static_cast<off_t>(good)) == 0) {
      file_offset_ = good;
      reserved_end_ = good;  // the truncation freed the reserve too
      bytes_written_.fetch_sub(partial, std::memory_order_relaxed);  // no longer in the file
      ::lseek(fd_, static_cast<off_t>(good), SEEK_SET);
    }
  }

  void MaybeFsync() {
    if (!options_.fsync_on_flush || failed_local_) return;
    if (::fsync(fd_) != 0) FailFromWriter(errno, "fsync of");
  }

  void FailFromWriter(int err, const char* what, std::string detail = "") {
    failed_local_ = true;
    Fail(err, what, std::move(detail));
  }

  void PublishFlushed() {
    std::lock_guard<std::mutex> lock(mu_);
    flushed_through_ = Consumed();
    flushed_cv_.notify_all();
  }

  const std::string dir_;
  const std::string path_;
  const EventFileWriterOptions options_;
  int fd_;
  pid_t owner_pid_;
  Queue queue_;
  internal::OwnerLane lane_;
  uint64_t wake_mask_ = 0;
  uint64_t ahead_ = 0;  // cells backed with memory ahead of the consumer (first lap)
  uint64_t lane_ahead_ = 0;  // the same for the lane, in bytes
  std::chrono::steady_clock::duration flush_interval_;

  // Shared state.
  std::atomic<bool> failed_{false};
  // What the writer thread does when it has nothing to write (IdleWait).
  enum : uint8_t { kAwake, kNapping, kAsleep };
  std::atomic<uint8_t> idle_{kAwake};
  std::atomic<bool> closing_{false};
  std::atomic<uint64_t> flush_target_{0};       // ring position
  std::atomic<uint64_t> lane_flush_target_{0};  // lane position
  std::atomic<int64_t> pending_bytes_{0};  // payload bytes of queued large records
  uint64_t final_pos_ = 0;  // written before closing_ is set
  uint64_t final_lane_pos_ = 0;  // the same
  mutable std::mutex mu_;
  std::condition_variable wake_cv_;
  std::condition_variable flushed_cv_;
  std::mutex room_mu_;                          // producers blocked on a full queue
  std::condition_variable room_cv_;
  std::atomic<int> producers_waiting_{0};
  Positions flushed_through_;     // guarded by mu_
  bool thread_exited_ = false;    // guarded by mu_
  int error_errno_ = 0;           // guarded by mu_
  const char* error_what_ = "";   // guarded by mu_
  std::string error_detail_;      // guarded by mu_
  absl::StatusCode error_code_ = absl::StatusCode::kInternal;  // with error_detail_; mu_
  std::mutex close_mu_;
  std::atomic<bool> closed_{false};  // set under close_mu_

  // Counters.
  std::atomic<uint64_t> records_written_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> records_dropped_{0};
  std::atomic<uint64_t> records_lost_{0};
  std::atomic<uint64_t> queue_full_waits_{0};

  // Writer thread only.
  std::unique_ptr<char[]> buffer_;
  size_t buffer_size_ = 0;
  size_t buffer_records_ = 0;  // records in buffer_, framed by WriteBuffer
  uint64_t file_offset_;
  uint64_t reserved_end_;  // fallocate'd up to here (ReserveAhead)
  uint64_t released_at_;   // file_offset_ at the last flush (ReleaseReserve)
  bool reserving_ = true;
  bool reserve_checked_ = false;  // the file system looked at (ext4 only)
  Positions handled_flush_;
  uint64_t lane_pos_ = 0;  // the lane's next entry
  uint64_t busy_rounds_ = 0;
  uint64_t relax_spins_ = 0;
  bool failed_local_ = false;
  std::atomic<bool> forked_{false};  // set in a forked child (MarkForkedCopy)
  std::thread thread_;
};

// ---- registry of live writers, flushed at exit --------------------------------

namespace {

// Each live writer: its state kept alive for a flush of them all, the flush,
// and what a forked child does to its copy.
struct LiveWriter {
  std::shared_ptr<void> keep_alive;
  std::function<absl::Status()> flush;
  std::function<void()> mark_forked_copy;
};
struct Registry {
  std::mutex mu;
  std::unordered_map<EventFileWriter*, LiveWriter> writers;
};

Registry& GetRegistry() {
  static Registry* registry = new Registry;  // never destroyed: used at exit
  return *registry;
}

void FlushAllAtExit();

// fork(): the registry is locked across it, so the child sees every writer
// and no half-made change; the child marks each copy (lock-free) so that its
// writes are refused rather than queued for a thread it does not have.
void LockRegistryForFork() { GetRegistry().mu.lock(); }
void UnlockRegistryInParent() { GetRegistry().mu.unlock(); }
void MarkCopiesInChild() {
  Registry& r = GetRegistry();
  for (auto& [writer, live] : r.writers) live.mark_forked_copy();
  r.mu.unlock();
}

void Register(EventFileWriter* w, LiveWriter live) {
  static const bool installed = [] {
    std::atexit(FlushAllAtExit);
    pthread_atfork(LockRegistryForFork, UnlockRegistryInParent, MarkCopiesInChild);
    return true;
  }();
  (void)installed;
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.writers.emplace(w, std::move(live));
}

void Unregister(EventFileWriter* w) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.writers.erase(w);
}

}  // namespace

// This also runs on a thread of its own (the second Ctrl-C) while the
// training thread may be destroying a writer: the copies keep each writer's
// state alive until its flush returns (a Flush() racing Close() returns when
// the writer thread ends). The flushes run outside the registry lock, which
// creating a writer and fork() take, and which a deferred job may need.
namespace {
void FlushAllAtExit() {
  Registry& r = GetRegistry();
  std::vector<LiveWriter> live;
  try {
    {
      std::lock_guard<std::mutex> lock(r.mu);
      live.reserve(r.writers.size());
      for (auto& [writer, w] : r.writers) live.push_back(w);
    }
    for (LiveWriter& w : live) (void)w.flush();
  } catch (const std::exception&) {
    // Out of memory at exit or in the signal watcher: what was flushed is.
  }
}
}  // namespace

void FlushAllEventFiles() { FlushAllAtExit(); }

// ---- EventFileWriter ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EventFileWriter>> EventFileWriter::Open(
    const std::string& log_dir, const EventFileWriterOptions& options) {
  if (log_dir.empty()) {
    return absl::InvalidArgumentError("TensorBoard log directory is empty; set log_dir");
  }
  if (absl::Status s = MakeDirs(log_dir); !s.ok()) return s;

  std::string path;
  int fd = -1;
  for (int attempt = 0; attempt < 1000 && fd < 0; ++attempt) {
    path = absl::StrCat(log_dir, log_dir.back() == '/' ? "" : "/",
                        NewEventFileName(options.filename_suffix));
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    return absl::Status(
        CodeForErrno(err),
        absl::StrCat("cannot create TensorBoard event file '", path, "': ", ErrnoText(err),
                     ". Check that the log directory '", log_dir,
                     "' is writable and its file system is neither read-only nor full."));
  }

  // The first record, written and flushed before Open() returns.
  proto::Event first;
  first.set_wall_time(NowSeconds());
  first.set_file_version("brain.Event:2");
  std::string record;
  AppendRecord(first.SerializeAsString(), &record);
  size_t done = 0;
  if (const int err = WriteAll(fd, record.data(), record.size(), &done); err != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    return absl::Status(CodeForErrno(err),
                        absl::StrCat("cannot write TensorBoard event file '", path,
                                     "': ", ErrnoText(err),
                                     ". Free disk space or choose another log_dir."));
  }
  if (options.fsync_on_flush) ::fsync(fd);

  auto impl = std::make_shared<Impl>(log_dir, path, fd, options, record.size());
  std::unique_ptr<EventFileWriter> writer(new EventFileWriter(impl));
  Impl* const state = impl.get();
  Register(writer.get(),
           LiveWriter{std::move(impl),
                      [state] { return state->Flush(); },
                      [state] { state->MarkForkedCopy(); }});
  return writer;
}

EventFileWriter::EventFileWriter(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Unregistered after the close: a fork() while it closes still marks the
// child's copy (the registry's reference keeps nothing alive past this).
EventFileWriter::~EventFileWriter() {
  if (impl_->owner_pid() == ::getpid()) {
    (void)impl_->Close();
    Unregister(this);
  } else {
    // A forked child's copy has no writer thread; leave the parent's file alone.
    // (Leaked on purpose: ~Impl would join a thread the child does not have.)
    Unregister(this);
    (void)new std::shared_ptr<Impl>(std::move(impl_));
  }
}

bool EventFileWriter::WriteScalar(absl::string_view tag, float value, int64_t step,
                                  double wall_time) {
  return impl_->WriteScalar(tag, value, step, wall_time);
}

bool EventFileWriter::WriteEvent(std::string serialized_event) {
  return impl_->WriteEvent(std::move(serialized_event));
}

bool EventFileWriter::WriteDeferredEvent(std::function<std::string()> build, size_t approx_bytes) {
  return impl_->WriteDeferred([build = std::move(build)]() -> std::optional<std::string> {
    return build();
  }, approx_bytes);
}

bool EventFileWriter::RunDeferred(std::function<void()> job, size_t approx_bytes) {
  return impl_->WriteDeferred([job = std::move(job)]() -> std::optional<std::string> {
    job();
    return std::nullopt;
  }, approx_bytes);
}

absl::Status EventFileWriter::RequestFlush() { return impl_->RequestFlush(); }

absl::Status EventFileWriter::Flush() { return impl_->Flush(); }

absl::Status EventFileWriter::Close() {
  absl::Status s = impl_->Close();
  Unregister(this);
  return s;
}

absl::Status EventFileWriter::status() const { return impl_->status(); }
WriterCounters EventFileWriter::counters() const { return impl_->counters(); }
const std::string& EventFileWriter::path() const { return impl_->path(); }
const std::string& EventFileWriter::log_dir() const { return impl_->dir(); }

}  // namespace trainbus::tensorboard
