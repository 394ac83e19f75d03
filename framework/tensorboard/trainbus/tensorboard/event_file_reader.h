// trainbus/tensorboard/event_file_reader.h — reading event files back.
//
// Reads an event file record by record, checking both checksums of every
// record, and tells a cut-off end apart from corruption:
//
//   - truncated: the last record is cut short (the writer was killed, or is
//     still writing). TensorBoard tolerates this and waits for more; so do
//     we: state() is kTruncated, offset() is where the partial record starts.
//   - corrupt: a bad length checksum, a bad data checksum or a record that
//     does not parse as an Event. TensorBoard stops reading the file there
//     for good. state() is kCorrupt, offset() is the bad record's offset,
//     problem() names the file, the offset and what is wrong.
//
//   auto r = EventFileReader::Open(path);           // StatusOr
//   proto::Event e;
//   while ((*r)->ReadEvent(&e)) { ... }
//   if ((*r)->state() != EventFileReader::State::kEnd) std::cerr << (*r)->problem();
//
// Or all at once: ReadEventFile(path) returns the events and how reading
// ended. A reader is not thread-safe; use one per thread.
#ifndef TRAINBUS_TENSORBOARD_EVENT_FILE_READER_H_
#define TRAINBUS_TENSORBOARD_EVENT_FILE_READER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainbus/tensorboard/proto/event.pb.h"

namespace trainbus::tensorboard {

class EventFileReader {
 public:
  enum class State {
    kOk,         // more records may follow
    kEnd,        // clean end of file, on a record boundary
    kTruncated,  // the last record is cut short (tolerated)
    kCorrupt,    // bad checksum or unparsable record (reading stops)
    kIoError,    // the OS failed to read
  };

  // NotFound / PermissionDenied ... naming the file if it cannot be opened.
  static absl::StatusOr<std::unique_ptr<EventFileReader>> Open(const std::string& path);
  ~EventFileReader();
  EventFileReader(const EventFileReader&) = delete;
  EventFileReader& operator=(const EventFileReader&) = delete;

  // The next record's data (checksums checked). false at the end or at a
  // problem; state() tells which.
  bool ReadRecord(std::string* data);
  // The next record parsed as an Event (unparsable: kCorrupt).
  bool ReadEvent(proto::Event* event);

  State state() const { return state_; }
  // Offset of the next record; after a problem, of the record at fault.
  uint64_t offset() const { return offset_; }
  // "<path>: <what> at byte <offset>" for kTruncated/kCorrupt/kIoError.
  const std::string& problem() const { return problem_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }

 private:
  EventFileReader(std::string path, std::FILE* file, uint64_t size);
  bool Fail(State state, const std::string& what);

  std::string path_;
  std::FILE* file_;
  uint64_t file_size_;
  uint64_t offset_ = 0;
  State state_ = State::kOk;
  std::string problem_;
};

struct EventFileContents {
  std::vector<proto::Event> events;
  EventFileReader::State end = EventFileReader::State::kEnd;
  uint64_t problem_offset = 0;  // for kTruncated / kCorrupt / kIoError
  std::string problem;
};

// Reads every event of the file. Fails only if the file cannot be opened.
absl::StatusOr<EventFileContents> ReadEventFile(const std::string& path);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_EVENT_FILE_READER_H_
