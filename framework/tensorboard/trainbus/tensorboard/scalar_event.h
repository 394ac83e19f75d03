// trainbus/tensorboard/scalar_event.h — hand-encoded scalar Events.
//
// The writer's fast path. A scalar Event is
//   Event{wall_time, step, summary: Summary{value: [Value{tag, simple_value}]}}
// and this encoder writes exactly the bytes protobuf's own serialiser writes
// for that message (fields in number order, proto3 defaults omitted: a zero
// wall_time bit pattern, step 0 or an empty tag are not written), without a
// message object, an arena or a heap allocation. A test proves the bytes
// identical to proto::Event::SerializeAsString().
//
//   char buf[kMaxScalarRecordSizeFor(tag.size())];
//   size_t n = EncodeScalarRecord(wall_time, step, tag, value, buf);
//   write(fd, buf, n);   // a complete framed record (see record_framing.h)
//
// The value is stored as float, as TensorBoard stores every scalar.
#ifndef TRAINBUS_TENSORBOARD_SCALAR_EVENT_H_
#define TRAINBUS_TENSORBOARD_SCALAR_EVENT_H_

#include <cstddef>
#include <cstdint>
#include "absl/strings/string_view.h"

#include "trainbus/tensorboard/record_framing.h"

namespace trainbus::tensorboard {

// An upper bound of the framed record size for a tag of `tag_size` bytes.
constexpr size_t MaxScalarRecordSize(size_t tag_size) {
  // Event: wall_time 9 + step 11 + summary key/len 1+5; Summary: value
  // key/len 1+5; Value: tag 1+5+n, simple_value 5.
  return kRecordOverhead + 9 + 11 + 6 + 6 + 6 + tag_size + 5;
}

// The exact serialized size of the Event (without framing).
size_t ScalarEventSize(double wall_time, int64_t step, absl::string_view tag);

// Writes the serialized Event to `out` (ScalarEventSize() bytes), returns
// the number of bytes written.
size_t EncodeScalarEvent(double wall_time, int64_t step, absl::string_view tag, float value,
                         char* out);

// Writes the framed record (header + Event + footer) to `out`, which must
// have MaxScalarRecordSize(tag.size()) bytes of room; returns its size.
// Bytes past the returned size are not written.
size_t EncodeScalarRecord(double wall_time, int64_t step, absl::string_view tag, float value,
                          char* out);

// The same without the two checksums: writes the record's length and its
// Event, for a writer that frames a whole batch with FinishRecords() (see
// record_framing.h) just before writing it.
size_t EncodeUnframedScalarRecord(double wall_time, int64_t step, absl::string_view tag,
                                  float value, char* out);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_SCALAR_EVENT_H_
