#include "trainbus/data/file_formats.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace trainbus {
namespace {

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

absl::StatusOr<IdxLayout> ParseIdx(absl::string_view bytes, int rank, const std::string& name) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (rank < 1 || bytes.size() < header || b[0] != 0 || b[1] != 0 || b[2] != 0x08 || b[3] != rank) {
    return absl::DataLossError(absl::StrCat(name, " is not an IDX file of unsigned bytes with ",
                                            rank, " dimensions (bad magic number)"));
  }
  IdxLayout layout;
  layout.data_offset = header;
  size_t count = 1;
  const size_t available = bytes.size() - header;
  for (int i = 0; i < rank; ++i) {
    layout.sizes.push_back(BigEndian32(b + 4 + 4 * i));
    const size_t d = static_cast<size_t>(layout.sizes.back());
    // Checked before multiplying: dimensions whose product wraps past 2^64
    // must not pass the size check below.
    if (d != 0 && count > available / d) {
      return absl::DataLossError(absl::StrCat(
          name, ": the header's dimensions ", absl::StrJoin(layout.sizes, " x "),
          "... need more than the ", available, " data bytes the file holds (corrupt or truncated)"));
    }
    count *= d;
  }
  if (available != count) {
    return absl::DataLossError(absl::StrCat(name, ": the header promises ", count,
                                            " bytes of data, the file holds ", available));
  }
  return layout;
}

absl::Status ParseCifarBatch(absl::string_view bytes, const std::string& name,
                             std::vector<uint8_t>* images, std::vector<int64_t>* labels) {
  if (bytes.empty() || bytes.size() % kCifarRecordBytes != 0) {
    return absl::DataLossError(absl::StrCat(name, " is not a CIFAR-10 binary batch: ", bytes.size(),
                                            " bytes is not a multiple of ", kCifarRecordBytes));
  }
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  for (size_t off = 0; off < bytes.size(); off += kCifarRecordBytes) {
    if (b[off] > 9) {
      return absl::DataLossError(absl::StrCat(name, ": label ", int{b[off]}, " at byte ", off,
                                              " is not in 0..9"));
    }
  }
  const size_t records = bytes.size() / kCifarRecordBytes;
  labels->reserve(labels->size() + records);
  images->reserve(images->size() + records * (kCifarRecordBytes - 1));
  for (size_t off = 0; off < bytes.size(); off += kCifarRecordBytes) {
    labels->push_back(b[off]);
    images->insert(images->end(), b + off + 1, b + off + kCifarRecordBytes);
  }
  return absl::OkStatus();
}

}  // namespace trainbus
