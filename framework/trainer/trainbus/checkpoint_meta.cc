#include "trainbus/checkpoint_meta.h"

#include <zlib.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace trainbus {
namespace {

absl::Status Corrupt(const std::string& dir, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": meta.pb is corrupt (", what,
                                          "). Resume from an older checkpoint."));
}

}  // namespace

uint32_t Crc32(absl::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  size_t off = 0;
  while (off < bytes.size()) {
    const uInt n = static_cast<uInt>(std::min<size_t>(bytes.size() - off, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + off), n);
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

absl::StatusOr<checkpoint::CheckpointMeta> ParseCheckpointMeta(absl::string_view bytes,
                                                               const std::string& dir) {
  checkpoint::CheckpointMeta meta;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !meta.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", dir, ": meta.pb is corrupt (not a CheckpointMeta)"));
  }
  if (meta.format_version() != kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", dir, ": format version ", meta.format_version(), ", this trainbus reads version ",
        kCheckpointFormatVersion));
  }
  for (const checkpoint::FileDigest& d : meta.files()) {
    // A name is a file beside meta.pb: never a path out of the folder.
    if (d.name().empty() || d.name() == "." || d.name() == ".." ||
        d.name().find('/') != std::string::npos || d.name().find('\0') != std::string::npos) {
      return Corrupt(dir, absl::StrCat("file name '", d.name(), "' is not a plain file name"));
    }
  }
  const std::pair<const char*, int64_t> counts[] = {
      {"next_step", meta.next_step()},         {"epoch", meta.epoch()},
      {"batch_index", meta.batch_index()},     {"sample_offset", meta.sample_offset()},
      {"batch_size", meta.batch_size()},       {"epoch_iterations", meta.epoch_iterations()}};
  for (const auto& [field, value] : counts) {
    if (value < 0) return Corrupt(dir, absl::StrCat(field, " is ", value));
  }
  return meta;
}

absl::Status VerifyCheckpointFile(const checkpoint::FileDigest& digest, absl::string_view bytes,
                                  const std::string& dir) {
  if (bytes.size() != digest.size() || Crc32(bytes) != digest.crc32()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, ": ", digest.name(), " is corrupt (",
                                            bytes.size(), " bytes, expected ", digest.size(),
                                            ", or its CRC-32 differs). Resume from an older checkpoint."));
  }
  return absl::OkStatus();
}

}  // namespace trainbus
