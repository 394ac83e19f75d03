// trainbus/tensorboard/tensor_summaries.h — the summaries of summaries.h,
// from LibTorch tensors.
//
// The tensor layer of the writer (library trainbus::tensorboard): each
// function checks the tensor, brings it to the CPU as the plain form
// summaries.h takes (floats or doubles, HWC uint8 pixels, interleaved
// samples) and calls the LibTorch-free builder. Tensors may live on any
// device and have any strides; they are read, never modified.
//
//   absl::StatusOr<proto::Summary> s = ImageSummary("input", img, "CHW");
//
// Image layouts: "CHW", "HWC", "HW" (one image) and "NCHW", "NHWC" (a batch,
// tiled into one grid like torchvision's make_grid as PyTorch uses it:
// min(N, 8) columns, no padding, black where the grid has no image). 1, 3 or
// 4 channels. uint8 as is, floating point as v * 255 clamped to [0, 255] and
// truncated (PyTorch's conversion; NaN becomes 0), bool as 0/255.
#ifndef TRAINBUS_TENSORBOARD_TENSOR_SUMMARIES_H_
#define TRAINBUS_TENSORBOARD_TENSOR_SUMMARIES_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "trainbus/tensorboard/summaries.h"

namespace trainbus::tensorboard {

// `t` detached, on the CPU, and with a negative view resolved: a tensor whose
// data_ptr() holds its values (a negative view's memory holds -x).
at::Tensor ToHost(const at::Tensor& t);

// Any shape; floating, integer or bool dtype. float32 is bucketed in place.
absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag, const at::Tensor& values);
// The values a histogram of `values` counts: a contiguous CPU tensor of
// float (as given) or double (every other floating, integer or bool dtype),
// to be read as numel() values from data_ptr() (a float or double CPU tensor
// that is already contiguous is returned as it is, in its shape); or the
// error HistogramSummary would return for it.
absl::StatusOr<at::Tensor> HistogramValues(absl::string_view tag, const at::Tensor& values);

// Checks the tensor and lays it out as one HWC uint8 canvas (a grid for a
// batch) that owns its memory, in one copy.
absl::StatusOr<ImageCanvas> PrepareImage(absl::string_view tag, const at::Tensor& image,
                                         absl::string_view layout = "CHW");
absl::StatusOr<proto::Summary> ImageSummary(absl::string_view tag, const at::Tensor& image,
                                            absl::string_view layout = "CHW");

// A batch of images tiled `columns` to a row (black where the grid has no
// image): the sprite of an embedding. images: NCHW or NHWC.
absl::StatusOr<ImageCanvas> TileImages(absl::string_view tag, const at::Tensor& images,
                                       absl::string_view layout, int64_t columns);

// Videos: [N, T, C, H, W] ("NTCHW", PyTorch's add_video) or [T, C, H, W]
// ("TCHW", one video); uint8, floating point in [0, 1] or bool, 1, 3 or 4
// channels. N videos play side by side, in PyTorch's grid: N padded with
// black videos to a power of two, 2^floor((bit_length(N) - 1) / 2) rows.
absl::StatusOr<VideoCanvas> PrepareVideo(absl::string_view tag, const at::Tensor& video,
                                         double fps, absl::string_view layout = "NTCHW");

// vertices [B, N, 3] (floating), faces [B, F, 3] (integer) and colors
// [B, N, 3] (uint8, or floating in [0, 1]); faces and colors may be
// undefined tensors.
absl::StatusOr<proto::Summary> MeshSummary(absl::string_view tag, const at::Tensor& vertices,
                                           const at::Tensor& colors, const at::Tensor& faces,
                                           std::string config_json = "");

// labels 0/1 (or bool), predictions in [0, 1]: the same number of elements.
absl::StatusOr<std::vector<float>> ComputePrCurve(const at::Tensor& labels,
                                                  const at::Tensor& predictions,
                                                  int32_t num_thresholds);
absl::StatusOr<proto::Summary> PrCurveSummary(absl::string_view tag, const at::Tensor& labels,
                                              const at::Tensor& predictions,
                                              int32_t num_thresholds = 127);

// Samples in [-1, 1] (floating) or int16 PCM, shape [frames] or [frames, channels].
absl::StatusOr<proto::Summary> AudioSummary(absl::string_view tag, const at::Tensor& samples,
                                            double sample_rate);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_TENSOR_SUMMARIES_H_
