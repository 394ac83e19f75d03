// trainbus/checkpoint_meta.h — a checkpoint's meta.pb read and checked
// without LibTorch: what LoadCheckpoint trusts before it touches a model.
// fuzz/checkpoint_meta_fuzzer.cc feeds it any bytes.
#ifndef TRAINBUS_CHECKPOINT_META_H_
#define TRAINBUS_CHECKPOINT_META_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainbus/proto/checkpoint.pb.h"

namespace trainbus {

inline constexpr uint32_t kCheckpointFormatVersion = 1;

// zlib's CRC-32 of `bytes` (any length).
uint32_t Crc32(absl::string_view bytes);

// Parses meta.pb of the checkpoint in `dir` (named in messages) and checks
// what the loader relies on: the format version (FailedPrecondition when it
// is another), file names that stay inside the folder, positions and sizes
// that are not negative (DataLoss otherwise). The epoch's loss sum may be
// nan or inf: a step nonfinite_guard skipped still counts in it.
absl::StatusOr<checkpoint::CheckpointMeta> ParseCheckpointMeta(absl::string_view bytes,
                                                               const std::string& dir);

// DataLoss unless `bytes` has the size and CRC-32 `digest` records.
absl::Status VerifyCheckpointFile(const checkpoint::FileDigest& digest, absl::string_view bytes,
                                  const std::string& dir);

}  // namespace trainbus

#endif  // TRAINBUS_CHECKPOINT_META_H_
