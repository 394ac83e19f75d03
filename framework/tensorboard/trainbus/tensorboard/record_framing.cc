#include "trainbus/tensorboard/record_framing.h"

#include <cstring>

#include "trainbus/tensorboard/crc32c.h"

namespace trainbus::tensorboard {
namespace {

inline void StoreLE32(uint32_t v, char* p) { std::memcpy(p, &v, 4); }
inline void StoreLE64(uint64_t v, char* p) { std::memcpy(p, &v, 8); }
inline uint32_t LoadLE32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t LoadLE64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "record framing assumes a little-endian host");

// The masked checksums of the length fields of records under 256 bytes (every
// scalar's), computed at compile time: the writer thread looks them up
// instead of checksumming 8 bytes per record.
struct LengthChecksums {
  uint32_t masked[256];
};
constexpr LengthChecksums MakeLengthChecksums() {
  LengthChecksums table{};
  for (unsigned length = 0; length < 256; ++length) {
    const unsigned char field[8] = {static_cast<unsigned char>(length)};  // little-endian
    table.masked[length] = crc32c::Mask(crc32c::ExtendBitwise(0, field, 8));
  }
  return table;
}
constexpr LengthChecksums kLengthChecksums = MakeLengthChecksums();

inline uint32_t MaskedLengthChecksum(uint64_t length, const char* header) {
  if (length < 256) return kLengthChecksums.masked[length];
  return crc32c::Mask(crc32c::Value(header, 8));
}

}  // namespace

void EncodeRecordHeader(uint64_t length, char* header) {
  StoreLE64(length, header);
  StoreLE32(MaskedLengthChecksum(length, header), header + 8);
}

void EncodeRecordFooter(const char* data, size_t length, char* footer) {
  StoreLE32(crc32c::Mask(crc32c::Value(data, length)), footer);
}

void FinishRecordInPlace(char* record, size_t length) {
  EncodeRecordHeader(length, record);
  EncodeRecordFooter(record + kRecordHeaderSize, length,
                     record + kRecordHeaderSize + length);
}

void FinishRecords(char* records, size_t size) {
  if (!crc32c::HasHardwareSupport()) {
    for (size_t at = 0; at < size;) {
      const uint64_t length = LoadLE64(records + at);
      FinishRecordInPlace(records + at, length);
      at += kRecordOverhead + length;
    }
    return;
  }
  // The same with the data checksum inlined: two calls per ~50-byte record
  // cost as much as its checksums. (A length of 256 or more, rare here, still
  // makes the call.)
  for (size_t at = 0; at < size;) {
    char* record = records + at;
    const uint64_t length = LoadLE64(record);
    StoreLE32(MaskedLengthChecksum(length, record), record + 8);
    char* data = record + kRecordHeaderSize;
    StoreLE32(crc32c::Mask(crc32c::ExtendHardwareInline(0, data, length)), data + length);
    at += kRecordOverhead + length;
  }
}

size_t CountWholeRecords(const char* records, size_t size, size_t* whole_bytes) {
  size_t count = 0;
  size_t at = 0;
  while (size - at >= kRecordOverhead) {
    const uint64_t record = kRecordOverhead + LoadLE64(records + at);
    if (record > size - at) break;
    at += record;
    ++count;
  }
  *whole_bytes = at;
  return count;
}

void AppendRecord(absl::string_view data, std::string* out) {
  const size_t start = out->size();
  out->resize(start + kRecordOverhead + data.size());
  char* rec = out->data() + start;
  if (!data.empty()) std::memcpy(rec + kRecordHeaderSize, data.data(), data.size());
  FinishRecordInPlace(rec, data.size());
}

bool DecodeRecordHeader(const char* header, uint64_t* length) {
  if (crc32c::Unmask(LoadLE32(header + 8)) != crc32c::Value(header, 8)) return false;
  *length = LoadLE64(header);
  return true;
}

bool CheckRecordFooter(const char* data, size_t length, const char* footer) {
  return crc32c::Unmask(LoadLE32(footer)) == crc32c::Value(data, length);
}

}  // namespace trainbus::tensorboard
