// libFuzzer target: MNIST's IDX files (trainbus/data/file_formats.h). The
// first byte picks the rank the reader expects (1: labels, 3: images; others
// too), the rest is the file. A parse that succeeds must describe exactly
// the bytes there are.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "trainbus/data/file_formats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int rank = 1 + data[0] % 4;
  const absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto layout = trainbus::ParseIdx(bytes, rank, "fuzz-idx");
  if (!layout.ok()) return 0;
  size_t count = 1;
  for (int64_t d : layout->sizes) count *= static_cast<size_t>(d);
  if (layout->sizes.size() != static_cast<size_t>(rank) || layout->data_offset + count != bytes.size()) {
    std::abort();  // an accepted file must be exactly header + data
  }
  return 0;
}
