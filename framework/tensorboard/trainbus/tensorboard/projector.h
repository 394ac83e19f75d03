// trainbus/tensorboard/projector.h — embeddings for TensorBoard's Projector.
//
// The Projector reads no event file: it reads <run>/projector_config.pbtxt,
// which names, per embedding, a TSV of the points, a TSV of their labels and
// a sprite image with one thumbnail per point. WriteProjectorEmbedding
// writes those files the way PyTorch's add_embedding lays them out:
//
//   <log_dir>/projector_config.pbtxt          every embedding of the run
//   <log_dir>/<step, 5 digits>/<tag>/tensors.tsv    one point per line
//                                      /metadata.tsv   labels (a header row
//                                                      when several columns)
//                                      /sprite.png     thumbnails, row-major
//
// The tag's '%' and '/' are written as %25 and %2f in the folder name, as
// PyTorch does; the embedding is named "<tag>:<step, 5 digits>" in the
// Projector's list. The config is read, updated and rewritten whole
// (atomically: a reader sees the old file or the new): an embedding with the
// same tag and step replaces the earlier one, and a resumed run keeps the
// earlier session's. (tensorboardX appends to the file, so a resumed run
// lists an embedding twice; PyTorch rewrites it from what its own process
// logged, so a resumed run loses the earlier session's.) Files of one run must be
// written from one process at a time (SummaryWriter does it on its writer
// thread).
#ifndef TRAINBUS_TENSORBOARD_PROJECTOR_H_
#define TRAINBUS_TENSORBOARD_PROJECTOR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "trainbus/tensorboard/summaries.h"

namespace trainbus::tensorboard {

// The labels of an embedding's points: one column (no header row) or
// several (header names the columns). Tabs and line breaks in a label are
// written as spaces, since they would split the TSV.
struct EmbeddingMetadata {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // one per point, header.size() (or 1) columns

  // One column of labels.
  static EmbeddingMetadata Labels(std::vector<std::string> labels);
  bool empty() const { return rows.empty(); }
};

// Everything one embedding writes.
struct ProjectorEmbedding {
  std::vector<float> values;  // points x dim, row-major, finite
  int64_t points = 0, dim = 0;
  EmbeddingMetadata metadata;  // empty, or one row per point
  // The thumbnails tiled row-major (TileImages), each image_width x
  // image_height; at most 8192 x 8192 pixels in all (the Projector's limit).
  std::optional<ImageCanvas> sprite;
  int64_t image_width = 0, image_height = 0;
};

// Columns of a sprite of `points` thumbnails of width x height: PyTorch's
// choice, about as many pixels across as down.
int64_t SpriteColumns(int64_t points, int64_t width, int64_t height);

// InvalidArgument naming the tag and what is wrong: no points, sizes that
// disagree, non-finite values, a metadata row count or width that does not
// match, a sprite over 8192 pixels, a negative step.
absl::Status CheckEmbedding(absl::string_view tag, int64_t step, const ProjectorEmbedding& e);

// Writes the embedding's files and its entry in the config. Errors name the
// file and the OS error (io::ErrnoError).
absl::Status WriteProjectorEmbedding(const std::string& log_dir, absl::string_view tag,
                                     int64_t step, const ProjectorEmbedding& e);

// Removes the embeddings at steps >= `step` from log_dir's config and their
// folders (a resumed run's abandoned tail; rewind.h calls it). Returns how
// many went; 0 without a config.
absl::StatusOr<int64_t> RemoveEmbeddingsFrom(const std::string& log_dir, int64_t step);

// The step in an embedding's name "<tag>:00042" (42), or -1. Inline, so
// readers of a config (inspect) need no more than this header.
inline int64_t EmbeddingStep(absl::string_view tensor_name) {
  const size_t colon = tensor_name.rfind(':');
  int64_t step = -1;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(tensor_name.substr(colon + 1), &step)) {
    return -1;
  }
  return step;
}

// The folder of an embedding, relative to log_dir: "00010/my%2ftag".
std::string EmbeddingSubdir(absl::string_view tag, int64_t step);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_PROJECTOR_H_
