// libFuzzer target: a checkpoint's meta.pb (trainbus/checkpoint_meta.h), what
// LoadCheckpoint trusts before it touches a model. An accepted meta names
// only plain files and has no negative position; every
// file digest is then checked against the same bytes (the input itself).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "trainbus/checkpoint_meta.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto meta = trainbus::ParseCheckpointMeta(bytes, "fuzz-checkpoint");
  if (!meta.ok()) return 0;
  for (const auto& d : meta->files()) {
    if (d.name().empty() || d.name().find('/') != std::string::npos || d.name() == "..") std::abort();
    const bool matches = d.size() == size && d.crc32() == trainbus::Crc32(bytes);
    if (trainbus::VerifyCheckpointFile(d, bytes, "fuzz-checkpoint").ok() != matches) std::abort();
  }
  if (meta->next_step() < 0 || meta->epoch() < 0 || meta->sample_offset() < 0) std::abort();
  return 0;
}
