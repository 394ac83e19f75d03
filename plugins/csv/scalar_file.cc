#include "scalar_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "trainbus/io/file_io.h"
#include "absl/strings/str_format.h"

namespace trainbus::csv {
namespace {

namespace fs = std::filesystem;

// Writes in chunks of about this size, and wakes up when this many rows wait.
constexpr size_t kChunkBytes = 1 << 16;
constexpr size_t kWakeRows = 4096;


}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view name) {
  if (name == "csv") return Format::kCsv;
  if (name == "jsonl") return Format::kJsonl;
  return absl::InvalidArgumentError(
      absl::StrCat("option 'format' must be \"csv\" or \"jsonl\", got \"", name, "\""));
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round trip
  if (ec != std::errc()) return absl::StrFormat("%.17g", v);
  return std::string(buf, end);
}

std::string EscapeCsvField(absl::string_view field) {
  const bool needs_quotes =
      field.find_first_of(",\"\r\n") != absl::string_view::npos ||
      (!field.empty() && (field.front() == ' ' || field.back() == ' ' || field.front() == '\t' ||
                          field.back() == '\t'));
  if (!needs_quotes) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through
        }
    }
  }
  out += '"';
  return out;
}

std::string Header(Format format) {
  return format == Format::kCsv ? "wall_time,step,tag,value\n" : "";
}

std::string FormatRow(const Row& row, Format format) {
  const std::string wall = absl::StrFormat("%.6f", row.wall_time);
  if (format == Format::kCsv) {
    return absl::StrCat(wall, ",", row.step, ",", EscapeCsvField(row.tag), ",",
                        FormatDouble(row.value), "\n");
  }
  std::string value;
  if (std::isnan(row.value)) {
    value = "NaN";
  } else if (std::isinf(row.value)) {
    value = row.value > 0 ? "Infinity" : "-Infinity";
  } else {
    value = FormatDouble(row.value);
  }
  return absl::StrCat("{\"wall_time\":", wall, ",\"step\":", row.step,
                      ",\"tag\":", JsonString(row.tag), ",\"value\":", value, "}\n");
}

// ------------------------------------------------------------- ScalarFile --

absl::StatusOr<std::unique_ptr<ScalarFile>> ScalarFile::Open(ScalarFileOptions options) {
  if (options.path.empty()) return absl::InvalidArgumentError("csv: no file path given");
  if (!(options.flush_secs > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("csv: flush_secs must be > 0, got ", options.flush_secs));
  }
  if (options.max_queue < 1) options.max_queue = 1;
  const fs::path path(options.path);
  if (path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("csv: cannot create the folder ", path.parent_path().string(), " for ",
                       options.path, ": ", ec.message()));
    }
  }
  const int fd = ::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return io::ErrnoError(errno, "csv", "open", options.path, "give the plugin's 'path' option a file it can write");
  // A new or empty file gets the header; a resumed run appends to its rows.
  struct stat st {};
  const std::string header = Header(options.format);
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 && !header.empty()) {
    if (const int err = io::WriteAll(fd, header.data(), header.size()); err != 0) {
      ::close(fd);
      return io::ErrnoError(err, "csv", "write to", options.path);
    }
  }
  return std::unique_ptr<ScalarFile>(new ScalarFile(std::move(options), fd));
}

ScalarFile::ScalarFile(ScalarFileOptions options, int fd)
    : options_(std::move(options)), fd_(fd) {
  queue_.reserve(std::min<size_t>(options_.max_queue, kWakeRows));
  writer_ = std::thread([this] { Run(); });
}

ScalarFile::~ScalarFile() { (void)Close(); }

bool ScalarFile::Add(Row row) {
  std::unique_lock<std::mutex> lock(mu_);
  if (closing_) return false;
  ++counters_.rows_added;
  if (!error_.empty()) {
    ++counters_.rows_lost;
    return false;
  }
  if (queue_.size() >= options_.max_queue) {
    ++counters_.waits_for_room;
    wake_writer_.notify_one();
    room_.wait(lock, [&] { return queue_.size() < options_.max_queue || closing_; });
    if (closing_) {
      ++counters_.rows_lost;
      return false;
    }
  }
  queue_.push_back(std::move(row));
  if (queue_.size() == std::min(kWakeRows, (options_.max_queue + 1) / 2)) {
    wake_writer_.notify_one();
  }
  return true;
}

void ScalarFile::RequestFlush() {
  std::lock_guard<std::mutex> lock(mu_);
  flush_requested_ = true;
  wake_writer_.notify_one();
}

namespace {

// The step of a row written by FormatRow, or nullopt for a header or a line
// that is not ours.
std::optional<int64_t> RowStep(absl::string_view line, Format format) {
  absl::string_view rest;
  if (format == Format::kCsv) {
    const size_t comma = line.find(',');
    if (comma == absl::string_view::npos) return std::nullopt;
    rest = line.substr(comma + 1);
    rest = rest.substr(0, rest.find(','));
  } else {
    const size_t at = line.find("\"step\":");
    if (at == absl::string_view::npos) return std::nullopt;
    rest = line.substr(at + 7);
    rest = rest.substr(0, rest.find(','));
  }
  int64_t step = 0;
  if (!absl::SimpleAtoi(rest, &step)) return std::nullopt;
  return step;
}

}  // namespace

absl::StatusOr<int64_t> RewindScalarFile(const std::string& path, Format format, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return 0;  // nothing written yet
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::string kept;
  int64_t removed = 0;
  size_t start = 0;
  while (start < content.size()) {
    const size_t end = content.find('\n', start);
    if (end == std::string::npos) {
      ++removed;  // a cut-off last line
      break;
    }
    const absl::string_view line(content.data() + start, end - start);
    const std::optional<int64_t> s = RowStep(line, format);
    if (s && *s >= step) {
      ++removed;
    } else {
      kept.append(line.data(), line.size()).push_back('\n');
    }
    start = end + 1;
  }
  if (removed == 0) return 0;
  absl::Status s = io::AtomicReplace(path, kept, /*context=*/"", path + ".rewind-tmp");
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("csv: cannot rewind ", path, " to step ", step,
                                               " (resuming a run): ", s.message()));
  }
  return removed;
}

absl::Status ScalarFile::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = counters_.rows_added;
  flush_requested_ = true;
  wake_writer_.notify_one();
  written_.wait(lock, [&] {
    return writer_done_ || counters_.rows_written + counters_.rows_lost >= target;
  });
  return StatusLocked();
}

void ScalarFile::Run() {
  using Clock = std::chrono::steady_clock;
  const auto period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.flush_secs));
  const size_t wake_rows = std::min(kWakeRows, (options_.max_queue + 1) / 2);
  auto next_flush = Clock::now() + period;
  std::vector<Row> batch;
  std::string buffer;
  uint64_t buffered_rows = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_writer_.wait_until(lock, next_flush, [&] {
      return closing_ || flush_requested_ || queue_.size() >= wake_rows;
    });
    const bool closing = closing_;
    const bool flush = closing || flush_requested_ || Clock::now() >= next_flush;
    flush_requested_ = false;
    batch.swap(queue_);
    room_.notify_all();
    lock.unlock();

    for (const Row& row : batch) buffer += FormatRow(row, options_.format);
    buffered_rows += batch.size();
    batch.clear();
    if ((flush || buffer.size() >= kChunkBytes) && buffered_rows > 0) {
      WriteChunk(buffer, buffered_rows);
      buffer.clear();
      buffered_rows = 0;
    }
    if (flush) next_flush = Clock::now() + period;

    lock.lock();
    if (closing && queue_.empty()) break;
  }
  writer_done_ = true;
  written_.notify_all();
}

void ScalarFile::WriteChunk(const std::string& data, uint64_t rows) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.empty()) {
      counters_.rows_lost += rows;
      written_.notify_all();
      return;
    }
  }
  // Where the chunk starts: a write that fails half-way is cut back to it,
  // so the file never ends in a torn row (a reader would take it for data).
  struct stat st {};
  const bool size_known = ::fstat(fd_, &st) == 0;
  size_t done = 0;
  const int err = io::WriteAll(fd_, data.data(), data.size(), &done);
  if (err != 0 && done > 0 && size_known) io::TruncateTornTail(fd_, st.st_size);
  std::lock_guard<std::mutex> lock(mu_);
  written_.notify_all();
  if (err == 0) {
    counters_.rows_written += rows;
  } else {
    // The whole chunk counts as lost: none of its rows stays in the file.
    if (error_.empty()) {
      error_ = io::ErrnoText(err);
      error_code_ = io::CodeForErrno(err);
    }
    counters_.rows_lost += rows;
  }
}

absl::Status ScalarFile::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    wake_writer_.notify_one();
    room_.notify_all();
  }
  if (writer_.joinable()) writer_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) {
    if (::close(fd_) != 0 && error_.empty()) {
      const int err = errno;
      error_ = io::ErrnoText(err);
      error_code_ = io::CodeForErrno(err);
    }
    fd_ = -1;
  }
  return StatusLocked();
}

absl::Status ScalarFile::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return StatusLocked();
}

absl::Status ScalarFile::StatusLocked() const {
  if (error_.empty()) return absl::OkStatus();
  // The code says what kind of failure it was (trainbus/io: a full disk is
  // kResourceExhausted here as in event files and checkpoints).
  return absl::Status(error_code_, absl::StrCat(
      "csv: writing ", options_.path, " failed: ", error_, "; ", counters_.rows_lost, " of ",
      counters_.rows_added, " rows ", writer_done_ ? "were" : "so far were",
      " not written (the file ends at the last whole row). Check the free space and permissions of ",
      "that folder, or set the plugin's 'path' option."));
}

ScalarFileCounters ScalarFile::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace trainbus::csv
