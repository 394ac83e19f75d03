// The tensor layer of the writer: at::Tensor in, the plain forms of
// summaries.h out.
#include "trainbus/tensorboard/tensor_summaries.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace trainbus::tensorboard {

at::Tensor ToHost(const at::Tensor& t) { return t.detach().to(at::kCPU).resolve_neg(); }
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
  return ToHost(t).reshape({-1}).to(at::kDouble).contiguous();
}

absl::Span<const double> Doubles(const at::Tensor& flat) {
  return absl::MakeConstSpan(flat.data_ptr<double>(), static_cast<size_t>(flat.numel()));
}

}  // namespace

absl::StatusOr<at::Tensor> HistogramValues(absl::string_view tag, const at::Tensor& values) {
  if (!values.defined()) return Invalid("histogram", tag, "the tensor is undefined");
  // The common case (a float or double CPU tensor in one block: weights,
  // gradients, activations) is read in place. detach, to and reshape are
  // each a dispatched op costing about 2 us, a third of bucketing 10,000
  // values.
  if ((values.scalar_type() == at::kFloat || values.scalar_type() == at::kDouble) &&
      values.device().is_cpu() && values.layout() == at::kStrided && values.is_contiguous() &&
      !values.is_neg()) {
    return values;
  }
  at::Tensor t = ToHost(values).reshape({-1});
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

namespace {

// PyTorch's conversion of a floating-point image, in one pass over a
// contiguous float copy instead of five dispatched ops and their temporaries
// (nan_to_num, to, mul, clamp, to): FloatToImageByte (summaries.h).
at::Tensor FloatImageBytes(const at::Tensor& t) {
  const at::Tensor f = t.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(f.sizes(), at::TensorOptions().dtype(at::kByte));
  const float* in = f.data_ptr<float>();
  uint8_t* bytes = out.data_ptr<uint8_t>();
  for (int64_t i = 0, n = f.numel(); i < n; ++i) bytes[i] = FloatToImageByte(in[i]);
  return out;
}

// A uint8 copy of an image tensor in any of the dtypes images accept.
absl::StatusOr<at::Tensor> ImageBytes(absl::string_view kind, absl::string_view tag, at::Tensor t) {
  if (t.scalar_type() == at::kByte) return t;
  if (at::isFloatingType(t.scalar_type())) return FloatImageBytes(t);
  if (t.scalar_type() == at::kBool) return t.to(at::kByte).mul(255);
  return UnsupportedDtype(kind, tag, t, "uint8 (0-255) or floating point (0-1)");
}

absl::Status CheckChannels(absl::string_view kind, absl::string_view tag, int64_t c,
                           absl::string_view layout, const at::Tensor& original) {
  if (c == 1 || c == 3 || c == 4) return absl::OkStatus();
  return Invalid(kind, tag,
                 absl::StrCat(c, " channel(s) in layout ", layout, " (shape ",
                              ShapeText(original),
                              "); an image needs 1 (gray), 3 (RGB) or 4 (RGBA) channels. If "
                              "the channels are elsewhere, pass the matching layout."));
}

// Tiles NHWC uint8 images `cols` to a row onto a black canvas, in one copy.
absl::StatusOr<ImageCanvas> Tile(absl::string_view kind, absl::string_view tag,
                                 const at::Tensor& nhwc, int64_t cols) {
  const int64_t n = nhwc.size(0), h = nhwc.size(1), w = nhwc.size(2), c = nhwc.size(3);
  const int64_t rows = (n + cols - 1) / cols;
  ImageCanvas canvas;
  canvas.height = rows * h;
  canvas.width = cols * w;
  canvas.channels = c;
  if (canvas.height > std::numeric_limits<int32_t>::max() / 4 ||
      canvas.width > std::numeric_limits<int32_t>::max() / 4) {
    return Invalid(kind, tag, absl::StrCat("image too large: ", ShapeText(nhwc), " in ", rows,
                                           " x ", cols, " tiles"));
  }
  // The canvas owns its pixels (it may be encoded later, on another thread,
  // after the caller changed its tensor). Row by row with memcpy: a copy_ op
  // per image cost ~10 us each, most of a 16-image grid's time.
  canvas.pixels.assign(static_cast<size_t>(canvas.height * canvas.width * c), 0);
  const at::Tensor src = nhwc.contiguous();
  const uint8_t* in = src.data_ptr<uint8_t>();
  const size_t row_bytes = static_cast<size_t>(w * c);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = i / cols, x = i % cols;
    for (int64_t r = 0; r < h; ++r) {
      std::memcpy(&canvas.pixels[static_cast<size_t>(((y * h + r) * canvas.width + x * w) * c)],
                  in + (i * h + r) * w * c, row_bytes);
    }
  }
  return canvas;
}

}  // namespace

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
  at::Tensor t = ToHost(image);
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
  if (absl::Status s = CheckChannels("image", tag, t.size(3), layout, image); !s.ok()) return s;
  if (t.size(0) <= 0 || t.size(1) <= 0 || t.size(2) <= 0) {
    return Invalid("image", tag, absl::StrCat("empty image, shape ", ShapeText(image)));
  }
  absl::StatusOr<at::Tensor> bytes = ImageBytes("image", tag, t);
  if (!bytes.ok()) return bytes.status();
  // One image, or a grid of min(N, 8) columns.
  return Tile("image", tag, *bytes, std::min<int64_t>(t.size(0), 8));
}

absl::StatusOr<ImageCanvas> TileImages(absl::string_view tag, const at::Tensor& images,
                                       absl::string_view layout_in, int64_t columns) {
  const std::string layout = absl::AsciiStrToUpper(layout_in);
  if (!images.defined()) return Invalid("image", tag, "the tensor is undefined");
  if ((layout != "NCHW" && layout != "NHWC") || images.dim() != 4) {
    return Invalid("image", tag,
                   absl::StrCat("expected a batch of images, layout \"NCHW\" or \"NHWC\", got \"",
                                layout_in, "\" and shape ", ShapeText(images)));
  }
  at::Tensor t = ToHost(images);
  if (layout == "NCHW") t = t.permute({0, 2, 3, 1});
  if (absl::Status s = CheckChannels("image", tag, t.size(3), layout, images); !s.ok()) return s;
  if (t.size(0) <= 0 || t.size(1) <= 0 || t.size(2) <= 0 || columns <= 0) {
    return Invalid("image", tag, absl::StrCat("empty images, shape ", ShapeText(images)));
  }
  absl::StatusOr<at::Tensor> bytes = ImageBytes("image", tag, t);
  if (!bytes.ok()) return bytes.status();
  return Tile("image", tag, *bytes, columns);
}

absl::StatusOr<VideoCanvas> PrepareVideo(absl::string_view tag, const at::Tensor& video,
                                         double fps, absl::string_view layout_in) {
  if (!video.defined()) return Invalid("video", tag, "the tensor is undefined");
  const std::string layout = absl::AsciiStrToUpper(layout_in);
  if (layout != "NTCHW" && layout != "TCHW") {
    return Invalid("video", tag,
                   absl::StrCat("unknown layout \"", layout_in,
                                "\"; use \"NTCHW\" (a batch of videos) or \"TCHW\" (one video)"));
  }
  if (video.dim() != static_cast<int64_t>(layout.size())) {
    return Invalid("video", tag,
                   absl::StrCat("layout ", layout, " needs a ", layout.size(),
                                "-D tensor, got shape ", ShapeText(video)));
  }
  at::Tensor v = ToHost(video);
  if (layout == "TCHW") v = v.unsqueeze(0);
  const int64_t n = v.size(0), frames = v.size(1), c = v.size(2), h = v.size(3), w = v.size(4);
  if (absl::Status s = CheckChannels("video", tag, c, layout, video); !s.ok()) return s;
  if (n <= 0 || frames <= 0 || h <= 0 || w <= 0) {
    return Invalid("video", tag, absl::StrCat("empty video, shape ", ShapeText(video)));
  }
  absl::StatusOr<at::Tensor> bytes = ImageBytes("video", tag, v);
  if (!bytes.ok()) return bytes.status();
  // PyTorch's grid: pad the batch to a power of two, then
  // 2^floor((bit_length(N) - 1) / 2) rows.
  int64_t padded = 1;
  while (padded < n) padded *= 2;
  int bit_length = 0;
  for (int64_t x = n; x > 0; x >>= 1) ++bit_length;
  const int64_t rows = int64_t{1} << ((bit_length - 1) / 2);
  const int64_t cols = padded / rows;
  at::Tensor grid = *bytes;
  if (padded > n) {
    grid = at::cat({grid, at::zeros({padded - n, frames, c, h, w}, grid.options())}, 0);
  }
  // [rows, cols, T, C, H, W] -> [T, rows, H, cols, W, C] -> [T, rows*H, cols*W, C]
  grid = grid.reshape({rows, cols, frames, c, h, w})
             .permute({2, 0, 4, 1, 5, 3})
             .reshape({frames, rows * h, cols * w, c})
             .contiguous();
  return CopyVideo(tag,
                   VideoPixels{absl::MakeConstSpan(grid.data_ptr<uint8_t>(),
                                                   static_cast<size_t>(grid.numel())),
                               frames, rows * h, cols * w, c},
                   fps);
}

absl::StatusOr<proto::Summary> MeshSummary(absl::string_view tag, const at::Tensor& vertices,
                                           const at::Tensor& colors, const at::Tensor& faces,
                                           std::string config_json) {
  // what: "vertices", "faces" or "colors"; rows: what the middle dimension counts.
  auto check_shape = [&](const at::Tensor& t, const char* what, const char* rows) {
    return t.dim() == 3 && t.size(2) == 3
               ? absl::OkStatus()
               : Invalid("mesh", tag, absl::StrCat(what, " must have shape [batch, ", rows,
                                                   ", 3], got ", ShapeText(t)));
  };
  if (!vertices.defined()) return Invalid("mesh", tag, "vertices: the tensor is undefined");
  if (absl::Status s = check_shape(vertices, "vertices", "vertices"); !s.ok()) return s;
  if (!at::isFloatingType(vertices.scalar_type())) {
    return UnsupportedDtype("mesh", tag, vertices, "floating point vertices");
  }
  MeshData mesh;
  mesh.batch = vertices.size(0);
  mesh.num_vertices = vertices.size(1);
  mesh.config_json = std::move(config_json);
  const at::Tensor v = ToHost(vertices).to(at::kFloat).contiguous();
  mesh.vertices = absl::MakeConstSpan(v.data_ptr<float>(), static_cast<size_t>(v.numel()));
  at::Tensor f, c;
  if (faces.defined()) {
    if (absl::Status s = check_shape(faces, "faces", "faces"); !s.ok()) return s;
    if (!at::isIntegralType(faces.scalar_type(), false) || faces.size(0) != mesh.batch) {
      return Invalid("mesh", tag,
                     absl::StrCat("faces must be integer vertex indices [", mesh.batch,
                                  ", faces, 3], got ", ShapeText(faces), " ",
                                  std::string(c10::toString(faces.scalar_type()))));
    }
    f = ToHost(faces).to(at::kInt).contiguous();
    mesh.num_faces = f.size(1);
    mesh.faces = absl::MakeConstSpan(f.data_ptr<int32_t>(), static_cast<size_t>(f.numel()));
  }
  if (colors.defined()) {
    if (absl::Status s = check_shape(colors, "colors", "vertices"); !s.ok()) return s;
    if (colors.size(0) != mesh.batch || colors.size(1) != mesh.num_vertices) {
      return Invalid("mesh", tag,
                     absl::StrCat("colors must have one r, g, b per vertex, shape [", mesh.batch,
                                  ", ", mesh.num_vertices, ", 3], got ", ShapeText(colors)));
    }
    absl::StatusOr<at::Tensor> bytes = ImageBytes("mesh", tag, ToHost(colors));
    if (!bytes.ok()) return bytes.status();
    c = bytes->contiguous();
    mesh.colors = absl::MakeConstSpan(c.data_ptr<uint8_t>(), static_cast<size_t>(c.numel()));
  }
  return MeshSummary(tag, mesh);
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
  at::Tensor t = ToHost(samples);
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
