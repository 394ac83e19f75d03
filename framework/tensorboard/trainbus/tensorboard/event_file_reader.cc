#include "trainbus/tensorboard/event_file_reader.h"

#include <errno.h>
#include <sys/stat.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "trainbus/tensorboard/record_framing.h"

namespace trainbus::tensorboard {

absl::StatusOr<std::unique_ptr<EventFileReader>> EventFileReader::Open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  if (f == nullptr) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open event file '", path, "': ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::UnavailableError(msg);
  }
  struct stat st;
  uint64_t size = 0;
  if (::fstat(::fileno(f), &st) == 0) size = static_cast<uint64_t>(st.st_size);
  return std::unique_ptr<EventFileReader>(new EventFileReader(path, f, size));
}

EventFileReader::EventFileReader(std::string path, std::FILE* file, uint64_t size)
    : path_(std::move(path)), file_(file), file_size_(size) {}

EventFileReader::~EventFileReader() { std::fclose(file_); }

bool EventFileReader::Fail(State state, const std::string& what) {
  state_ = state;
  const char* kind = state == State::kTruncated ? "truncated"
                     : state == State::kCorrupt ? "corrupt"
                                                : "read error";
  problem_ = absl::StrCat(path_, ": ", kind, ": ", what, " at byte ", offset_);
  return false;
}

bool EventFileReader::ReadRecord(std::string* data) {
  if (state_ != State::kOk) return false;
  char header[kRecordHeaderSize];
  const size_t got = std::fread(header, 1, sizeof header, file_);
  if (got == 0) {
    if (std::ferror(file_)) return Fail(State::kIoError, std::strerror(errno));
    state_ = State::kEnd;
    return false;
  }
  if (got < sizeof header) {
    return Fail(State::kTruncated,
                absl::StrCat("record header cut short (", got, " of ", sizeof header, " bytes)"));
  }
  uint64_t length = 0;
  if (!DecodeRecordHeader(header, &length)) {
    return Fail(State::kCorrupt, "bad length checksum");
  }
  auto remaining = [&] {
    return file_size_ > offset_ + sizeof header ? file_size_ - offset_ - sizeof header : 0;
  };
  auto too_long = [&] {
    const uint64_t r = remaining();
    return length > r || r - length < kRecordFooterSize;
  };
  if (too_long()) {
    struct stat st;  // the file may have grown since it was opened
    if (::fstat(::fileno(file_), &st) == 0) file_size_ = static_cast<uint64_t>(st.st_size);
    if (too_long()) {
      return Fail(State::kTruncated,
                  absl::StrCat("record cut short (", remaining(), " of ",
                               length + kRecordFooterSize, " data+checksum bytes present)"));
    }
  }
  data->resize(length);
  char footer[kRecordFooterSize];
  if (std::fread(data->data(), 1, length, file_) != length ||
      std::fread(footer, 1, sizeof footer, file_) != sizeof footer) {
    if (std::ferror(file_)) return Fail(State::kIoError, std::strerror(errno));
    return Fail(State::kTruncated, "record cut short");
  }
  if (!CheckRecordFooter(data->data(), length, footer)) {
    return Fail(State::kCorrupt, "bad data checksum");
  }
  offset_ += sizeof header + length + kRecordFooterSize;
  return true;
}

bool EventFileReader::ReadEvent(proto::Event* event) {
  std::string data;
  const uint64_t at = offset_;
  if (!ReadRecord(&data)) return false;
  if (!event->ParseFromString(data)) {
    offset_ = at;
    return Fail(State::kCorrupt, "record does not parse as an Event");
  }
  return true;
}

absl::StatusOr<EventFileContents> ReadEventFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<EventFileReader>> reader = EventFileReader::Open(path);
  if (!reader.ok()) return reader.status();
  EventFileContents out;
  proto::Event event;
  while ((*reader)->ReadEvent(&event)) out.events.push_back(std::move(event));
  out.end = (*reader)->state();
  if (out.end != EventFileReader::State::kEnd) {
    out.problem_offset = (*reader)->offset();
    out.problem = (*reader)->problem();
  }
  return out;
}

}  // namespace trainbus::tensorboard
