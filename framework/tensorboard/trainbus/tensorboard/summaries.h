// trainbus/tensorboard/summaries.h — building TensorBoard Summary protos.
//
// One function per kind of summary, each returning the Summary that an Event
// carries (or an InvalidArgument error that names the tag, says what is
// wrong with the input and what would be accepted). SummaryWriter calls
// these; use them directly to build Events yourself or to test.
//
// This header needs no LibTorch: every input is plain numbers or arrays. The
// same functions taking at::Tensor are in tensor_summaries.h.
//
//   absl::StatusOr<proto::Summary> s = HistogramSummary("weights", values);
//   if (!s.ok()) std::cerr << s.status() << "\n";
//
// What each writes (TensorBoard's formats, as PyTorch writes them):
//   ScalarSummary     Value.simple_value (float).
//   HistogramSummary  Value.histo (HistogramProto, see histogram.h).
//   ImageSummary      Value.image, PNG. Here from HWC uint8 pixels; from a
//                     tensor (tensor_summaries.h): layouts "CHW", "HWC", "HW" (one image)
//                     and "NCHW", "NHWC" (a batch, tiled into one grid like
//                     torchvision's make_grid as PyTorch uses it: min(N, 8)
//                     columns, no padding, black where the grid has no
//                     image). 1, 3 or 4 channels (gray, RGB, RGBA). uint8 as
//                     is, floating point as v * 255 clamped to [0, 255] and
//                     truncated (PyTorch's conversion; NaN becomes 0), bool as
//                     0/255.
//   TextSummary       plugin "text", a DT_STRING scalar tensor holding the
//                     markdown (rendered as markdown, not as a table). The tag
//                     is used as given (PyTorch appends "/text_summary").
//   HParamsSummary    plugin "hparams": the experiment (an HParamInfo per
//                     hparam with its type, a MetricInfo per metric), the
//                     session start info (the values) and a session end info
//                     (STATUS_SUCCESS), each under its _hparams_/ tag.
//   PrCurveSummary    plugin "pr_curves": a DT_FLOAT [6, num_thresholds]
//                     tensor, rows TP, FP, TN, FN, precision, recall, computed
//                     as torch.utils.tensorboard / TensorBoard do (see
//                     ComputePrCurve).
//   CustomScalarsSummary  plugin "custom_scalars", tag custom_scalars__config__,
//                     a DT_STRING scalar holding the serialized Layout.
//   AudioSummary      plugin "audio": a DT_STRING [1] tensor holding a 16-bit
//                     PCM WAV, encoding WAV, data_class BLOB_SEQUENCE
//                     (TensorBoard's blob-sequence form; both of its loaders
//                     serve it as audio/wav); samples in [-1, 1] (clamped),
//                     shape [frames] or [frames, channels].
//   VideoSummary      Value.image holding an animated GIF (gif_encoder.h), as
//                     PyTorch's add_video writes it: the Images dashboard
//                     plays it. colorspace is the frames' channel count.
//   MeshSummary       plugin "mesh": one value per part, tagged
//                     <tag>_VERTEX (float32 [B, N, 3]), <tag>_FACE (int32
//                     [B, F, 3]) and <tag>_COLOR (uint8 [B, N, 3]), each a
//                     tensor with the MeshPluginData (name, part, shape, the
//                     parts present, the scene's JSON config), as
//                     TensorBoard's own mesh summary writes them.
//
// Inputs are read, never modified. All functions are thread-safe.
#ifndef TRAINBUS_TENSORBOARD_SUMMARIES_H_
#define TRAINBUS_TENSORBOARD_SUMMARIES_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "trainbus/summary_types.h"
#include "trainbus/tensorboard/proto/summary.pb.h"

namespace trainbus::tensorboard {

inline constexpr char kCustomScalarsTag[] = "custom_scalars__config__";
inline constexpr char kHParamsExperimentTag[] = "_hparams_/experiment";
inline constexpr char kHParamsSessionStartTag[] = "_hparams_/session_start_info";
inline constexpr char kHParamsSessionEndTag[] = "_hparams_/session_end_info";

absl::StatusOr<proto::Summary> ScalarSummary(absl::string_view tag, double value);

// HistogramSummary's errors for `values`, without building it (one fast pass).
absl::Status CheckHistogramSummary(absl::string_view tag, absl::Span<const double> values);
absl::Status CheckHistogramSummary(absl::string_view tag, absl::Span<const float> values);

absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag,
                                                absl::Span<const double> values);
// Floats are bucketed as they are: no copy to double.
absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag,
                                                absl::Span<const float> values);

// A histogram whose statistics and buckets were computed elsewhere
// (torch.utils.tensorboard's add_histogram_raw): bucket_limits[i] is the
// upper edge of bucket i, ascending; bucket_counts the same length, >= 0;
// num the total count, min <= max.
struct RawHistogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limits, bucket_counts;
};
absl::StatusOr<proto::Summary> HistogramRawSummary(absl::string_view tag, const RawHistogram& h);

// One image as uint8 pixels in height x width x channels order (HWC, row
// major), 1, 3 or 4 channels: the form every image takes before it is
// compressed. The writer keeps its own copy (ImageCanvas) to encode later.
struct ImagePixels {
  absl::Span<const uint8_t> hwc;
  int64_t height = 0, width = 0, channels = 0;
};

// An image ready to be PNG-encoded, owning its pixels (HWC, uint8). Made by
// CopyImage here or PrepareImage (tensor_summaries.h); EncodeImageSummary
// compresses it (SummaryWriter does that on its writer thread).
struct ImageCanvas {
  std::vector<uint8_t> pixels;
  int64_t height = 0, width = 0, channels = 0;
};
absl::StatusOr<ImageCanvas> CopyImage(absl::string_view tag, const ImagePixels& image);
absl::StatusOr<proto::Summary> EncodeImageSummary(absl::string_view tag, const ImageCanvas& image);
absl::StatusOr<proto::Summary> ImageSummary(absl::string_view tag, const ImagePixels& image);

absl::StatusOr<proto::Summary> TextSummary(absl::string_view tag, absl::string_view markdown);

struct HParamsSummaries {
  proto::Summary experiment;
  proto::Summary session_start;
  proto::Summary session_end;
};
absl::StatusOr<HParamsSummaries> HParamsSummary(const HParams& hparams,
                                                const std::map<std::string, double>& metrics);
// The halves a session-based writer uses (SummaryWriter::add_session_start /
// add_session_end): the values, and how the session ended (status: the
// hparams plugin's Status, 0 unknown, 1 success, 2 failure, 3 running).
absl::StatusOr<proto::Summary> HParamsSessionStartSummary(const HParams& hparams,
                                                          double start_time_secs);
proto::Summary HParamsSessionEndSummary(int status, double end_time_secs);

// The [6, num_thresholds] PR-curve table, row-major: TP, FP, TN, FN,
// precision, recall. Prediction p falls in bucket floor(p * (n - 1)); counts
// are reverse-cumulated so column i counts predictions >= i / (n - 1);
// precision = TP / max(TP + FP, 1e-7), recall = TP / max(TP + FN, 1e-7).
// labels: 0/1 (or bool; values in [0, 1] act as weights); predictions in
// [0, 1]; the same number of elements (any shapes); num_thresholds >= 2.
absl::StatusOr<std::vector<float>> ComputePrCurve(absl::Span<const double> labels,
                                                  absl::Span<const double> predictions,
                                                  int32_t num_thresholds);
absl::StatusOr<proto::Summary> PrCurveSummary(absl::string_view tag,
                                              absl::Span<const double> labels,
                                              absl::Span<const double> predictions,
                                              int32_t num_thresholds = 127);

absl::StatusOr<proto::Summary> CustomScalarsSummary(const CustomScalarLayout& layout);

// Samples interleaved by channel (frame 0's channels, then frame 1's, ...),
// floats in [-1, 1] (clamped; nan is silence), 1-64 channels.
struct AudioSamples {
  absl::Span<const float> interleaved;
  int channels = 1;
  double sample_rate = 44100.0;
};
absl::StatusOr<proto::Summary> AudioSummary(absl::string_view tag, const AudioSamples& audio);
// The same from 16-bit PCM, interleaved.
absl::StatusOr<proto::Summary> AudioSummaryPcm16(absl::string_view tag,
                                                 absl::Span<const int16_t> interleaved,
                                                 int channels, double sample_rate);

// One value of a floating-point image as a byte, as every image and video
// path here converts it (PyTorch's conversion): v * 255 in float, clamped to
// [0, 255] and truncated; NaN is 0, +inf 255, -inf 0.
inline uint8_t FloatToImageByte(float v) {
  if (std::isnan(v)) return 0;
  return static_cast<uint8_t>(std::min(std::max(v * 255.0f, 0.0f), 255.0f));
}

// Frames of a video ready to be GIF-encoded, owning their pixels: `frames`
// images of height x width x channels uint8 (HWC) back to back, 1, 3 or 4
// channels. Made by CopyVideo here or PrepareVideo (tensor_summaries.h).
struct VideoCanvas {
  std::vector<uint8_t> pixels;
  int64_t frames = 0, height = 0, width = 0, channels = 0;
  double fps = 4.0;
};
// The plain form: frames x height x width x channels uint8 pixels.
struct VideoPixels {
  absl::Span<const uint8_t> thwc;
  int64_t frames = 0, height = 0, width = 0, channels = 0;
};
absl::StatusOr<VideoCanvas> CopyVideo(absl::string_view tag, const VideoPixels& video, double fps);
absl::StatusOr<proto::Summary> EncodeVideoSummary(absl::string_view tag, const VideoCanvas& video);

// A triangle mesh or point cloud: `batch` meshes of `num_vertices` points.
// vertices: batch x num_vertices x 3 floats (x, y, z), finite.
// faces (optional, a mesh): batch x num_faces x 3 vertex indices in
//   [0, num_vertices).
// colors (optional): batch x num_vertices x 3 uint8 (r, g, b).
// config_json: the three.js scene settings the mesh dashboard applies, a
//   JSON object such as {"camera": {"cls": "PerspectiveCamera", "fov": 75}};
//   empty for none.
struct MeshData {
  absl::Span<const float> vertices;
  absl::Span<const int32_t> faces;
  absl::Span<const uint8_t> colors;
  int64_t batch = 1, num_vertices = 0, num_faces = 0;
  std::string config_json;
};
absl::StatusOr<proto::Summary> MeshSummary(absl::string_view tag, const MeshData& mesh);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_SUMMARIES_H_
