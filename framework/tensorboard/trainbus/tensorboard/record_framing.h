// trainbus/tensorboard/record_framing.h — TFRecord framing of event files.
//
// An event file is a sequence of records, each framed as (little-endian):
//
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] |
//   uint32 masked_crc32c(data)
//
// so every record costs kRecordOverhead (16) bytes on top of its data.
//
//   std::string file;
//   AppendRecord(event.SerializeAsString(), &file);
//
// For writers that frame in place (the event file writer reserves the header,
// encodes the data behind it, then fills header and footer):
//
//   char* rec = buffer;                      // kRecordOverhead + n bytes
//   ... encode n data bytes at rec + kRecordHeaderSize ...
//   FinishRecordInPlace(rec, n);
//
// Or for a whole batch at once, just before it is written: the checksums
// then read bytes whose stores have retired (checksumming a record right
// after encoding it made the CPU stall on loads that straddle the encoder's
// small stores, and cost two calls per record):
//
//   EncodeRecordLength(n, rec);  ... encode n data bytes at rec + kRecordHeaderSize ...
//   ... more records back to back ...
//   FinishRecords(buffer, size);
//
// DecodeRecordHeader() is the reader's side: it checks the length checksum.
// All functions are thread-safe and allocation-free (AppendRecord appends).
#ifndef TRAINBUS_TENSORBOARD_RECORD_FRAMING_H_
#define TRAINBUS_TENSORBOARD_RECORD_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include "absl/strings/string_view.h"

namespace trainbus::tensorboard {

inline constexpr size_t kRecordHeaderSize = 12;  // length + its masked CRC
inline constexpr size_t kRecordFooterSize = 4;   // masked CRC of the data
inline constexpr size_t kRecordOverhead = kRecordHeaderSize + kRecordFooterSize;

// Writes the 12-byte header for a record of `length` data bytes.
void EncodeRecordHeader(uint64_t length, char* header);

// Writes the 4-byte footer (masked CRC of `data[0, length)`).
void EncodeRecordFooter(const char* data, size_t length, char* footer);

// `record` points at kRecordHeaderSize bytes of room, then `length` data
// bytes, then kRecordFooterSize bytes of room: fills header and footer.
void FinishRecordInPlace(char* record, size_t length);

// Writes the length field of a record's header (the first 8 of its 12 bytes).
// Inline: the writer thread calls it once a scalar.
inline void EncodeRecordLength(uint64_t length, char* record) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the length is stored little-endian");
  std::memcpy(record, &length, sizeof length);
}

// `records[0, size)` holds whole records back to back, each with its length
// field written (EncodeRecordLength): fills every header's and footer's
// checksum.
void FinishRecords(char* records, size_t size);

// The number of whole records at the start of `records[0, size)` (records
// back to back with their length fields written) and, in `*whole_bytes`,
// the bytes they take: what a partial write of a batch kept intact.
size_t CountWholeRecords(const char* records, size_t size, size_t* whole_bytes);

// Appends the framed record holding `data` to `*out`.
void AppendRecord(absl::string_view data, std::string* out);

// Parses a 12-byte header. Returns false if the length checksum is wrong.
bool DecodeRecordHeader(const char* header, uint64_t* length);

// True if `footer` holds the masked CRC of `data[0, length)`.
bool CheckRecordFooter(const char* data, size_t length, const char* footer);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_RECORD_FRAMING_H_
