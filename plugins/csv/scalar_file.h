// plugins/csv/scalar_file.h — the csv plugin's file writer: scalar rows as
// CSV or JSON lines, written by a background thread.
//
//   ScalarFileOptions o;  o.path = "runs/x/scalars.csv";
//   auto file = ScalarFile::Open(o);            // creates folders, opens for append
//   (*file)->Add({wall_time, step, "train/loss", 0.31});   // never touches the disk
//   (*file)->RequestFlush();                    // returns at once
//   absl::Status s = (*file)->Close();          // drains, writes, closes; the first error
//
// The calling thread only copies the row into a bounded queue. The writer
// thread formats rows and writes them with write(2) in large chunks: every
// flush_secs, when a chunk is full, on RequestFlush() and on Close(). When
// the queue is full (the disk is max_queue rows behind), Add() waits for room
// and counts the wait; rows are never dropped silently.
//
// Errors are sticky and never lost: after the first failed write, the rows
// not written are counted, later rows are counted as lost too, and Close()
// (and status()) return an error naming the file, the OS error and the number
// of rows lost.
//
// Formats:
//   csv:   header "wall_time,step,tag,value", one row per line; the tag is
//          quoted when it holds a comma, a quote, a line break or leading or
//          trailing spaces ("" inside quotes), RFC 4180. The header is written
//          only when the file is new or empty, so a resumed run appends.
//   jsonl: {"wall_time":1700000000.123456,"step":3,"tag":"train/loss","value":0.25}
//          per line. Non-finite values are written NaN, Infinity, -Infinity,
//          as Python's json module writes and reads them.
// Values are written with the fewest digits that read back to the same
// double; wall_time with microseconds.
#ifndef TRAINBUS_PLUGINS_CSV_SCALAR_FILE_H_
#define TRAINBUS_PLUGINS_CSV_SCALAR_FILE_H_

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trainbus::csv {

enum class Format { kCsv, kJsonl };

// "csv" or "jsonl"; InvalidArgument otherwise.
absl::StatusOr<Format> ParseFormat(absl::string_view name);

struct Row {
  double wall_time = 0.0;  // seconds since the Unix epoch
  int64_t step = 0;
  std::string tag;
  double value = 0.0;
};

// The header line ("" for jsonl), with its newline.
std::string Header(Format format);
// One line, with its newline.
std::string FormatRow(const Row& row, Format format);
// Takes a file back to `step` before a resumed run appends to it: rewrites
// it (temporary file, fsync, rename) without the rows at steps >= `step`,
// which the resumed run writes again, and without a cut-off last line (a
// killed writer). A missing file is fine. Returns the number of rows removed;
// errors name the file and the OS error.
absl::StatusOr<int64_t> RewindScalarFile(const std::string& path, Format format, int64_t step);

// A CSV field, quoted when needed (RFC 4180).
std::string EscapeCsvField(absl::string_view field);
// A JSON string literal, quotes included.
std::string JsonString(absl::string_view text);
// Shortest round-trip text of a double: "0.1", "1e-07", "nan", "inf", "-inf".
std::string FormatDouble(double v);

struct ScalarFileOptions {
  std::string path;
  Format format = Format::kCsv;
  double flush_secs = 10.0;
  size_t max_queue = 65536;  // rows
};

struct ScalarFileCounters {
  uint64_t rows_added = 0;
  uint64_t rows_written = 0;
  uint64_t rows_lost = 0;     // not written because of a write error
  uint64_t waits_for_room = 0;  // Add() calls that waited for the writer
};

class ScalarFile {
 public:
  // Creates the parent folders and opens `path` for appending. Errors name
  // the path and the OS error.
  static absl::StatusOr<std::unique_ptr<ScalarFile>> Open(ScalarFileOptions options);
  ~ScalarFile();  // Close()
  ScalarFile(const ScalarFile&) = delete;
  ScalarFile& operator=(const ScalarFile&) = delete;

  // Queues a row; false after Close(). Waits only while the queue is full.
  bool Add(Row row);
  // Asks the writer to write what is queued, without waiting.
  void RequestFlush();
  // Waits until every row added before the call is written (or counted as
  // lost); returns the sticky error, if any. Any thread.
  absl::Status Flush();
  // Writes everything queued, closes the file and joins the writer.
  // Idempotent; returns the first error.
  absl::Status Close();
  // OK, or the sticky write error.
  absl::Status status() const;
  ScalarFileCounters counters() const;
  const std::string& path() const { return options_.path; }

 private:
  ScalarFile(ScalarFileOptions options, int fd);
  void Run();
  // Writes `data` (holding `rows` rows) fully, or records the sticky error.
  void WriteChunk(const std::string& data, uint64_t rows);
  absl::Status StatusLocked() const;

  const ScalarFileOptions options_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable wake_writer_;  // rows queued, flush requested, closing
  std::condition_variable room_;         // the writer took the queue
  std::condition_variable written_;      // rows were written (or lost), or the writer ended
  bool writer_done_ = false;
  std::vector<Row> queue_;
  bool flush_requested_ = false;
  bool closing_ = false;
  std::string error_;  // the OS error of the first failed write; empty: none
  absl::StatusCode error_code_ = absl::StatusCode::kInternal;  // io::CodeForErrno of it
  ScalarFileCounters counters_;
  std::thread writer_;
};

}  // namespace trainbus::csv

#endif  // TRAINBUS_PLUGINS_CSV_SCALAR_FILE_H_
