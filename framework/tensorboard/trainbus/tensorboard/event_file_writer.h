// trainbus/tensorboard/event_file_writer.h — one event file, one thread.
//
// EventFileWriter owns one event file in one directory and the background
// thread that writes it. SummaryWriter (summary_writer.h) is the API most
// code wants; use this class directly only to write pre-serialised Events.
//
//   auto w = EventFileWriter::Open("runs/exp1", {});   // StatusOr
//   if (!w.ok()) { ... w.status() names the directory and the OS error ... }
//   (*w)->WriteScalar("loss", 0.25f, /*step=*/10, NowSeconds());
//   (*w)->WriteEvent(event.SerializeAsString());
//   absl::Status s = (*w)->Flush();   // on disk (page cache; fsync optional)
//   s = (*w)->Close();
//
// How it writes:
//   - Open() creates the directory (like mkdir -p), creates a new file named
//     by NewEventFileName() (O_EXCL: two writers never share a file) and
//     writes and flushes the first record, Event{file_version:
//     "brain.Event:2"}, before returning.
//   - Write*() only enqueue. The first thread that writes (in a trainer, the
//     training thread) gets a lane of its own: a byte buffer only it fills,
//     its records packed back to back, with no locked instruction. Other
//     threads share a bounded lock-free ring (one cache line per record).
//     Scalars with tags up to kInlineTagSize bytes need no heap allocation
//     either way. Each thread's records are written in its call order. The
//     writer thread hand-encodes scalars, frames and checksums every record
//     into a 256 KiB buffer and writes it with write(2) (EINTR and short
//     writes handled) when it is full, every `flush_secs`, on Flush() and
//     on Close().
//   - Queue full: with QueueFullPolicy::kWait the caller waits for room
//     (counted in queue_full_waits); with kDrop the record is dropped
//     (counted in records_dropped) and Write*() returns false.
//
// Errors are sticky. After the first failed write (disk full, file size
// limit, I/O error) one line goes to stderr, every later Write*() returns
// false, and Flush(), Close() and status() return an error that names the
// file, the OS error, how many records were lost, and what to do. Records
// written before the failure stay readable: a partly written record is cut
// off the end of the file when the OS allows it.
//
// Thread safety: every method may be called from any number of threads.
// Close() is idempotent; the destructor calls it. At normal process exit
// (exit() or returning from main) every writer still alive, even one held in
// a static or leaked, is flushed by an atexit hook.
#ifndef TRAINBUS_TENSORBOARD_EVENT_FILE_WRITER_H_
#define TRAINBUS_TENSORBOARD_EVENT_FILE_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace trainbus::tensorboard {

// What a writer does when its queue is full.
enum class QueueFullPolicy {
  kWait,  // the caller waits until the writer thread made room (default)
  kDrop,  // the record is dropped and counted; the call returns false
};

struct EventFileWriterOptions {
  size_t max_queue = 1 << 16;  // records; rounded up to a power of two
  double flush_secs = 120.0;   // periodic flush interval
  std::string filename_suffix;
  bool fsync_on_flush = false;  // fsync(2) on Flush()/Close()/periodic flush
  QueueFullPolicy on_full = QueueFullPolicy::kWait;
};

// Counters of one writer (or, from SummaryWriter, of all its files).
struct WriterCounters {
  uint64_t records_written = 0;   // whole records handed to the OS
  uint64_t bytes_written = 0;     // bytes handed to the OS
  uint64_t records_dropped = 0;   // dropped because the queue was full (kDrop)
  uint64_t records_lost = 0;      // accepted or offered after an I/O failure
  uint64_t queue_full_waits = 0;  // calls that found the queue full and waited
  uint64_t records_rejected = 0;  // invalid input (SummaryWriter only)
};

// Flushes every event file writer alive in the process (what the atexit hook
// does), e.g. from a second Ctrl-C before the process exits at once.
void FlushAllEventFiles();

class EventFileWriter {
 public:
  // Scalars whose tag is at most this long travel through the queue without
  // touching the heap.
  static constexpr size_t kInlineTagSize = 30;

  static absl::StatusOr<std::unique_ptr<EventFileWriter>> Open(
      const std::string& log_dir, const EventFileWriterOptions& options);

  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // Enqueue one scalar Event. False if not accepted (failed, closed,
  // dropped under kDrop, or in a forked child: the writer is the parent's).
  bool WriteScalar(absl::string_view tag, float value, int64_t step, double wall_time);
  // Enqueue one serialized Event.
  bool WriteEvent(std::string serialized_event);
  // Enqueue work that makes one serialized Event, run on the writer thread
  // so that the caller does not wait for it (PNG encoding of images).
  // `build` must own everything it reads. If it throws, the record is lost
  // and the writer fails like on a write error, naming what happened.
  // `approx_bytes` (the record's expected size) drives early wake-ups.
  bool WriteDeferredEvent(std::function<std::string()> build, size_t approx_bytes);
  // Runs `job` on the writer thread, in order with the events, writing no
  // record: files that belong with the run (add_embedding's projector
  // files). A throw fails the writer like a failed write, with its message.
  bool RunDeferred(std::function<void()> job, size_t approx_bytes);

  // Returns once every record enqueued before the call is written to the
  // file (and fsync'ed if asked), or with the writer's error.
  absl::Status Flush();
  // Asks for the same flush without waiting for it; returns the sticky error
  // if the writer already failed.
  absl::Status RequestFlush();
  // Flushes and closes the file once the writer thread has written its last
  // record (the destructor joins that thread). Later writes return false.
  // In a forked child it closes the child's copy of the file and writes
  // nothing: the writer thread is the parent's.
  absl::Status Close();
  // OK, or the sticky error (with the current lost-record count).
  absl::Status status() const;

  WriterCounters counters() const;
  const std::string& path() const;  // the event file
  const std::string& log_dir() const;

 private:
  class Impl;
  explicit EventFileWriter(std::shared_ptr<Impl> impl);
  // Shared with the process's registry of live writers, so that a flush of
  // them all (exit, a second Ctrl-C) keeps a writer destroyed meanwhile
  // alive until that flush returns.
  std::shared_ptr<Impl> impl_;
};

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_EVENT_FILE_WRITER_H_
