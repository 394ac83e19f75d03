// trainbus/data/datasets.h — in-memory image classification datasets.
//
// Every dataset is a pair of tensors held in memory: inputs [N, C, H, W]
// float32 in [0, 1] and targets [N] int64 class indexes. The trainer batches
// them itself (seeded reshuffle every epoch, exact resume positions).
//
//   - "shapes": generated at start, no download. 28x28 grayscale drawings of
//     six shapes (disk, ring, square, triangle, plus, cross) at random
//     positions, sizes and brightness, with noise. Deterministic for a seed.
//   - "mnist": the IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
//     t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) in a folder, any count
//     of samples (LibTorch's own MNIST reader accepts only the full 60000/10000).
//   - "cifar10": the binary batches (data_batch_1.bin ... data_batch_5.bin,
//     test_batch.bin) in a folder.
// Errors name the folder and the missing or malformed file.
#ifndef TRAINBUS_DATA_DATASETS_H_
#define TRAINBUS_DATA_DATASETS_H_

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "trainbus/proto/run_config.pb.h"

namespace trainbus {

struct Dataset {
  at::Tensor inputs;   // [N, C, H, W] float32 in [0, 1]
  at::Tensor targets;  // [N] int64
  int64_t num_classes = 0;
  std::vector<std::string> class_names;
  int64_t size() const { return targets.defined() ? targets.size(0) : 0; }
};

struct DatasetSplits {
  std::string name;
  Dataset train;
  Dataset val;
};

// Names of the shapes drawn by MakeShapesDataset, by class index.
const std::vector<std::string>& ShapeClassNames();

absl::StatusOr<DatasetSplits> MakeShapesDataset(int64_t train_samples, int64_t val_samples,
                                                uint64_t seed);
// `train_cap` / `val_cap` keep only the first samples (0 keeps all).
absl::StatusOr<DatasetSplits> LoadMnist(const std::string& dir, int64_t train_cap,
                                        int64_t val_cap);
absl::StatusOr<DatasetSplits> LoadCifar10(const std::string& dir, int64_t train_cap,
                                          int64_t val_cap);

// The dataset a (finalized) config asks for.
absl::StatusOr<DatasetSplits> LoadDataset(const config::DatasetConfig& config);

}  // namespace trainbus

#endif  // TRAINBUS_DATA_DATASETS_H_
