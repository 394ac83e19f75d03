// The tensor layer of the writer: at::Tensor in, the plain forms of
// summaries.h out.
#include "trainbus/tensorboard/tensor_summaries.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace trainbus::tensorboard {
namespace {

std::string ShapeText(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}


absl::Status Invalid(absl::string_view kind, absl::string_view tag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(kind, " '", tag, "': ", what));
}

absl::Status UnsupportedDtype(absl::string_view kind, absl::string_view tag, const at::Tensor& t,
                              absl::string_view accepted) {
  return Invalid(kind, tag,
                 absl::StrCat("unsupported dtype ", std::string(c10::toString(t.scalar_type())),
                              "; pass ", accepted));
}

// The values as one contiguous CPU double tensor.
at::Tensor FlatDoubles(const at::Tensor& t) {
  return t.detach().to(at::kCPU).reshape({-1}).to(at::kDouble).contiguous();
}

absl::Span<const double> Doubles(const at::Tensor& flat) {
  return absl::MakeConstSpan(flat.data_ptr<double>(), static_cast<size_t>(flat.numel()));
}

}  // namespace

absl::StatusOr<at::Tensor> HistogramValues(absl::string_view tag, const at::Tensor& values) {
  if (!values.defined()) return Invalid("histogram", tag, "the tensor is undefined");
  at::Tensor t = values.detach().to(at::kCPU).reshape({-1});
  if (t.scalar_type() == at::kFloat) return t.contiguous();
  if (at::isFloatingType(t.scalar_type()) || at::isIntegralType(t.scalar_type(), true)) {
    return t.to(at::kDouble).contiguous();
  }
  return UnsupportedDtype("histogram", tag, t, "a floating, integer or bool tensor");
}

absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag, const at::Tensor& values) {
  absl::StatusOr<at::Tensor> t = HistogramValues(tag, values);
  if (!t.ok()) return t.status();
  if (t->scalar_type() == at::kFloat) {
    return HistogramSummary(tag, absl::MakeConstSpan(t->data_ptr<float>(), t->numel()));
  }
  return HistogramSummary(tag, Doubles(*t));
}

absl::StatusOr<ImageCanvas> PrepareImage(absl::string_view tag, const at::Tensor& image,
                                         absl::string_view layout_in) {
  if (!image.defined()) return Invalid("image", tag, "the tensor is undefined");
  const std::string layout = absl::AsciiStrToUpper(layout_in);
  if (layout != "CHW" && layout != "HWC" && layout != "HW" && layout != "NCHW" &&
      layout != "NHWC") {
    return Invalid("image", tag,
                   absl::StrCat("unknown layout \"", layout_in,
                                "\"; use \"CHW\", \"HWC\" or \"HW\" for one image, \"NCHW\" or "
                                "\"NHWC\" for a batch"));
  }
  if (image.dim() != static_cast<int64_t>(layout.size())) {
    return Invalid("image", tag,
                   absl::StrCat("layout ", layout, " needs a ", layout.size(),
                                "-D tensor, got shape ", ShapeText(image)));
  }
  at::Tensor t = image.detach().to(at::kCPU);
  if (layout == "HW") {
    t = t.unsqueeze(0).unsqueeze(-1);
  } else if (layout == "CHW") {
    t = t.permute({1, 2, 0}).unsqueeze(0);
  } else if (layout == "HWC") {
    t = t.unsqueeze(0);
  } else if (layout == "NCHW") {
    t = t.permute({0, 2, 3, 1});
  }
  // t is NHWC now.
  const int64_t n = t.size(0), h = t.size(1), w = t.size(2), c = t.size(3);
  if (c != 1 && c != 3 && c != 4) {
    return Invalid("image", tag,
                   absl::StrCat(c, " channel(s) in layout ", layout, " (shape ",
                                ShapeText(image),
                                "); an image needs 1 (gray), 3 (RGB) or 4 (RGBA) channels. If "
                                "the channels are elsewhere, pass the matching layout (\"CHW\" "
                                "or \"HWC\")."));
  }
  if (n <= 0 || h <= 0 || w <= 0) {
    return Invalid("image", tag, absl::StrCat("empty image, shape ", ShapeText(image)));
  }
  if (t.scalar_type() == at::kByte) {
    // As is.
  } else if (at::isFloatingType(t.scalar_type())) {
    t = at::nan_to_num(t.to(at::kFloat), 0.0, 255.0, 0.0).mul(255.0).clamp(0.0, 255.0).to(at::kByte);
  } else if (t.scalar_type() == at::kBool) {
    t = t.to(at::kByte).mul(255);
  } else {
    return UnsupportedDtype("image", tag, t, "uint8 (0-255) or floating point (0-1)");
  }
  // One image, or a grid of min(N, 8) columns; black where there is no image.
  const int64_t cols = std::min<int64_t>(n, 8);
  const int64_t rows = (n + cols - 1) / cols;
  ImageCanvas canvas;
  canvas.height = rows * h;
  canvas.width = cols * w;
  canvas.channels = c;
  if (canvas.height > std::numeric_limits<int32_t>::max() / 4 ||
      canvas.width > std::numeric_limits<int32_t>::max() / 4) {
    return Invalid("image", tag, absl::StrCat("image too large: ", ShapeText(image)));
  }
  // The canvas owns its pixels (it may be encoded later, on another thread,
  // after the caller changed its tensor): one copy, straight into it.
  canvas.pixels.assign(static_cast<size_t>(canvas.height * canvas.width * c), 0);
  at::Tensor out = at::from_blob(canvas.pixels.data(), {canvas.height, canvas.width, c},
                                 at::TensorOptions().dtype(at::kByte));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = i / cols, x = i % cols;
    out.slice(0, y * h, (y + 1) * h).slice(1, x * w, (x + 1) * w).copy_(t[i]);
  }
  return canvas;
}

absl::StatusOr<proto::Summary> ImageSummary(absl::string_view tag, const at::Tensor& image,
                                            absl::string_view layout) {
  absl::StatusOr<ImageCanvas> canvas = PrepareImage(tag, image, layout);
  if (!canvas.ok()) return canvas.status();
  return EncodeImageSummary(tag, *canvas);
}

absl::StatusOr<std::vector<float>> ComputePrCurve(const at::Tensor& labels,
                                                  const at::Tensor& predictions,
                                                  int32_t num_thresholds) {
  if (!labels.defined() || !predictions.defined()) {
    return absl::InvalidArgumentError("labels and predictions must be defined tensors");
  }
  if (labels.numel() != predictions.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.numel(), " element(s) (shape ", ShapeText(labels),
        ") but predictions has ", predictions.numel(), " (shape ", ShapeText(predictions),
        "); they must match one to one"));
  }
  const at::Tensor l = FlatDoubles(labels), p = FlatDoubles(predictions);
  return ComputePrCurve(Doubles(l), Doubles(p), num_thresholds);
}

absl::StatusOr<proto::Summary> PrCurveSummary(absl::string_view tag, const at::Tensor& labels,
                                              const at::Tensor& predictions,
                                              int32_t num_thresholds) {
  if (!labels.defined() || !predictions.defined() || labels.numel() != predictions.numel()) {
    absl::StatusOr<std::vector<float>> bad = ComputePrCurve(labels, predictions, num_thresholds);
    return Invalid("pr_curve", tag, bad.status().message());
  }
  const at::Tensor l = FlatDoubles(labels), p = FlatDoubles(predictions);
  return PrCurveSummary(tag, Doubles(l), Doubles(p), num_thresholds);
}

absl::StatusOr<proto::Summary> AudioSummary(absl::string_view tag, const at::Tensor& samples,
                                            double sample_rate) {
  if (!samples.defined()) return Invalid("audio", tag, "the tensor is undefined");
  if (samples.dim() != 1 && samples.dim() != 2) {
    return Invalid("audio", tag,
                   absl::StrCat("samples must have shape [frames] or [frames, channels], got ",
                                ShapeText(samples)));
  }
  at::Tensor t = samples.detach().to(at::kCPU);
  if (t.dim() == 1) t = t.unsqueeze(1);
  const int64_t channels = t.size(1);
  if (channels < 1 || channels > 64 || t.size(0) < 1) {
    return Invalid("audio", tag,
                   absl::StrCat("need at least one frame and 1-64 channels, got shape ",
                                ShapeText(samples)));
  }
  if (t.scalar_type() == at::kShort) {
    t = t.contiguous();
    return AudioSummaryPcm16(tag, absl::MakeConstSpan(t.data_ptr<int16_t>(), t.numel()),
                             static_cast<int>(channels), sample_rate);
  }
  if (at::isFloatingType(t.scalar_type())) {
    t = t.to(at::kFloat).contiguous();
    return AudioSummary(tag, AudioSamples{absl::MakeConstSpan(t.data_ptr<float>(), t.numel()),
                                          static_cast<int>(channels), sample_rate});
  }
  return UnsupportedDtype("audio", tag, t, "floating point samples in [-1, 1] (or int16 PCM)");
}

}  // namespace trainbus::tensorboard
