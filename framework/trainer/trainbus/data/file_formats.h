// trainbus/data/file_formats.h — the byte layouts of the dataset files, parsed
// without LibTorch: MNIST's IDX files and CIFAR-10's binary batches. The
// readers in datasets.cc turn the result into tensors; the fuzzers
// (fuzz/mnist_idx_fuzzer.cc, fuzz/cifar10_fuzzer.cc) feed these any bytes.
#ifndef TRAINBUS_DATA_FILE_FORMATS_H_
#define TRAINBUS_DATA_FILE_FORMATS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trainbus {

// An IDX file: magic 0x0000 08 <rank>, `rank` big-endian 32-bit sizes, then
// exactly their product of unsigned bytes.
struct IdxLayout {
  std::vector<int64_t> sizes;
  size_t data_offset = 0;  // where the bytes start
};

// DataLoss naming `name` for a wrong magic number, a wrong rank, or data
// that does not match the header (sizes are checked before they are
// multiplied, so no product wraps).
absl::StatusOr<IdxLayout> ParseIdx(absl::string_view bytes, int rank, const std::string& name);

// One CIFAR-10 binary batch: records of 1 label byte (0..9) and 3x32x32
// pixel bytes. Appends to `images` and `labels`; DataLoss naming `name`
// (and the byte) for a size that is not a whole number of records or a bad
// label, and then appends nothing.
inline constexpr size_t kCifarRecordBytes = 1 + 3 * 32 * 32;
absl::Status ParseCifarBatch(absl::string_view bytes, const std::string& name,
                             std::vector<uint8_t>* images, std::vector<int64_t>* labels);

}  // namespace trainbus

#endif  // TRAINBUS_DATA_FILE_FORMATS_H_
