// libFuzzer target: CIFAR-10 binary batches (trainbus/data/file_formats.h).
// An accepted batch gives one label in 0..9 and 3072 pixels per record; a
// refused one appends nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/strings/string_view.h"
#include "trainbus/data/file_formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> images;
  std::vector<int64_t> labels;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::Status s = trainbus::ParseCifarBatch(bytes, "fuzz-batch", &images, &labels);
  if (!s.ok()) {
    if (!images.empty() || !labels.empty()) std::abort();
    return 0;
  }
  if (labels.size() * trainbus::kCifarRecordBytes != size ||
      images.size() != labels.size() * (trainbus::kCifarRecordBytes - 1)) {
    std::abort();
  }
  for (int64_t label : labels) {
    if (label < 0 || label > 9) std::abort();
  }
  return 0;
}
