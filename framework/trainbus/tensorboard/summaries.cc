#include "trainbus/tensorboard/summaries.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/histogram.h"
#include "trainbus/tensorboard/png_encoder.h"
#include "trainbus/tensorboard/proto/hparams.pb.h"
#include "trainbus/tensorboard/proto/plugins.pb.h"
#include "trainbus/tensorboard/wav_encoder.h"

namespace trainbus::tensorboard {
namespace {

std::string ShapeText(const at::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// absl here is built without std::string_view support; bridge explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(absl::string_view kind, std::string_view tag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(kind, " '", Sv(tag), "': ", what));
}

proto::Summary::Value* AddValue(proto::Summary* s, std::string_view tag) {
  proto::Summary::Value* v = s->add_value();
  v->set_tag(std::string(tag));
  return v;
}

void SetPlugin(proto::Summary::Value* v, const char* plugin, std::string content,
               proto::DataClass data_class) {
  proto::SummaryMetadata* md = v->mutable_metadata();
  md->mutable_plugin_data()->set_plugin_name(plugin);
  md->mutable_plugin_data()->set_content(std::move(content));
  md->set_data_class(data_class);
}

void SetStringScalar(proto::TensorProto* t, std::string value) {
  t->set_dtype(proto::DT_STRING);
  t->mutable_tensor_shape();  // a scalar: present, no dims
  t->add_string_val(std::move(value));
}

}  // namespace

absl::StatusOr<proto::Summary> ScalarSummary(std::string_view tag, double value) {
  proto::Summary s;
  AddValue(&s, tag)->set_simple_value(static_cast<float>(value));
  return s;
}

absl::StatusOr<proto::Summary> HistogramSummary(std::string_view tag,
                                                absl::Span<const double> values) {
  proto::Summary s;
  absl::Status st = BuildHistogram(values, AddValue(&s, tag)->mutable_histo());
  if (!st.ok()) return Invalid("histogram", tag, st.message());
  return s;
}

absl::StatusOr<proto::Summary> HistogramSummary(std::string_view tag, const at::Tensor& values) {
  if (!values.defined()) return Invalid("histogram", tag, "the tensor is undefined");
  at::Tensor t = values.detach().to(at::kCPU).reshape({-1});
  proto::Summary s;
  proto::HistogramProto* h = AddValue(&s, tag)->mutable_histo();
  absl::Status st;
  if (t.scalar_type() == at::kFloat) {
    t = t.contiguous();
    st = BuildHistogram(absl::MakeConstSpan(t.data_ptr<float>(), t.numel()), h);
  } else if (at::isFloatingType(t.scalar_type()) || at::isIntegralType(t.scalar_type(), true)) {
    t = t.to(at::kDouble).contiguous();
    st = BuildHistogram(absl::MakeConstSpan(t.data_ptr<double>(), t.numel()), h);
  } else {
    return Invalid("histogram", tag,
                   absl::StrCat("unsupported dtype ", std::string(c10::toString(t.scalar_type())),
                                "; pass a floating, integer or bool tensor"));
  }
  if (!st.ok()) return Invalid("histogram", tag, st.message());
  return s;
}

absl::StatusOr<ImageCanvas> PrepareImage(std::string_view tag, const at::Tensor& image,
                                         std::string_view layout_in) {
  if (!image.defined()) return Invalid("image", tag, "the tensor is undefined");
  const std::string layout = absl::AsciiStrToUpper(Sv(layout_in));
  if (layout != "CHW" && layout != "HWC" && layout != "HW" && layout != "NCHW" &&
      layout != "NHWC") {
    return Invalid("image", tag,
                   absl::StrCat("unknown layout \"", Sv(layout_in),
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
    return Invalid("image", tag,
                   absl::StrCat("unsupported dtype ", std::string(c10::toString(t.scalar_type())),
                                "; pass uint8 (0-255) or floating point (0-1)"));
  }
  at::Tensor canvas;
  if (n == 1) {
    canvas = t[0].contiguous();
  } else {
    const int64_t cols = std::min<int64_t>(n, 8);
    const int64_t rows = (n + cols - 1) / cols;
    canvas = at::zeros({rows * h, cols * w, c}, at::kByte);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t y = i / cols, x = i % cols;
      canvas.slice(0, y * h, (y + 1) * h).slice(1, x * w, (x + 1) * w).copy_(t[i]);
    }
  }
  const int64_t height = canvas.size(0), width = canvas.size(1);
  if (height > std::numeric_limits<int32_t>::max() / 4 ||
      width > std::numeric_limits<int32_t>::max() / 4) {
    return Invalid("image", tag, absl::StrCat("image too large: ", ShapeText(image)));
  }
  // The canvas must not share memory with the caller's tensor: it may be
  // encoded later, on another thread, after the caller changed its tensor.
  if (canvas.storage().is_alias_of(image.storage())) canvas = canvas.clone();
  return ImageCanvas{canvas};
}

absl::StatusOr<proto::Summary> EncodeImageSummary(std::string_view tag, const ImageCanvas& image) {
  const at::Tensor& canvas = image.pixels;
  const int64_t height = canvas.size(0), width = canvas.size(1), c = canvas.size(2);
  absl::StatusOr<std::string> png = EncodePng(canvas.data_ptr<uint8_t>(), static_cast<int>(width),
                                              static_cast<int>(height), static_cast<int>(c));
  if (!png.ok()) return Invalid("image", tag, png.status().message());
  proto::Summary s;
  proto::Summary::Image* img = AddValue(&s, tag)->mutable_image();
  img->set_height(static_cast<int32_t>(height));
  img->set_width(static_cast<int32_t>(width));
  img->set_colorspace(static_cast<int32_t>(c));
  img->set_encoded_image_string(std::move(*png));
  return s;
}

absl::StatusOr<proto::Summary> ImageSummary(std::string_view tag, const at::Tensor& image,
                                            std::string_view layout) {
  absl::StatusOr<ImageCanvas> canvas = PrepareImage(tag, image, layout);
  if (!canvas.ok()) return canvas.status();
  return EncodeImageSummary(tag, *canvas);
}

absl::StatusOr<proto::Summary> TextSummary(std::string_view tag, std::string_view markdown) {
  proto::Summary s;
  proto::Summary::Value* v = AddValue(&s, tag);
  proto::TextPluginData plugin_data;
  plugin_data.set_version(0);
  SetPlugin(v, "text", plugin_data.SerializeAsString(), proto::DATA_CLASS_TENSOR);
  SetStringScalar(v->mutable_tensor(), std::string(markdown));
  return s;
}

namespace {

proto::Summary HParamsRecord(const char* tag, proto::hparams::HParamsPluginData data) {
  data.set_version(0);
  proto::Summary s;
  proto::Summary::Value* v = AddValue(&s, tag);
  SetPlugin(v, "hparams", data.SerializeAsString(), proto::DATA_CLASS_UNKNOWN);
  return s;
}

}  // namespace

absl::StatusOr<proto::Summary> HParamsSessionStartSummary(const HParams& hparams,
                                                          double start_time_secs) {
  namespace hp = proto::hparams;
  if (hparams.empty()) {
    return absl::InvalidArgumentError("hparams: no hyperparameters given; pass at least one");
  }
  hp::HParamsPluginData data;
  hp::SessionStartInfo* start = data.mutable_session_start_info();
  start->set_start_time_secs(start_time_secs);
  for (const auto& [name, value] : hparams) {
    if (name.empty()) return absl::InvalidArgumentError("hparams: an hparam has an empty name");
    google::protobuf::Value& v = (*start->mutable_hparams())[name];
    if (const double* d = std::get_if<double>(&value)) {
      v.set_number_value(*d);
    } else if (const bool* b = std::get_if<bool>(&value)) {
      v.set_bool_value(*b);
    } else {
      v.set_string_value(std::get<std::string>(value));
    }
  }
  return HParamsRecord(kHParamsSessionStartTag, std::move(data));
}

proto::Summary HParamsSessionEndSummary(int status, double end_time_secs) {
  namespace hp = proto::hparams;
  hp::HParamsPluginData data;
  data.mutable_session_end_info()->set_status(static_cast<hp::Status>(status));
  data.mutable_session_end_info()->set_end_time_secs(end_time_secs);
  return HParamsRecord(kHParamsSessionEndTag, std::move(data));
}

absl::StatusOr<HParamsSummaries> HParamsSummary(const HParams& hparams,
                                                const std::map<std::string, double>& metrics) {
  namespace hp = proto::hparams;
  const double now = NowSeconds();
  absl::StatusOr<proto::Summary> start = HParamsSessionStartSummary(hparams, now);
  if (!start.ok()) return start.status();
  hp::HParamsPluginData data;
  hp::Experiment* experiment = data.mutable_experiment();
  experiment->set_time_created_secs(now);
  for (const auto& [name, value] : hparams) {
    hp::HParamInfo* info = experiment->add_hparam_infos();
    info->set_name(name);
    info->set_type(std::holds_alternative<double>(value) ? hp::DATA_TYPE_FLOAT64
                   : std::holds_alternative<bool>(value) ? hp::DATA_TYPE_BOOL
                                                         : hp::DATA_TYPE_STRING);
  }
  for (const auto& [tag, value] : metrics) {
    (void)value;
    experiment->add_metric_infos()->mutable_name()->set_tag(tag);
  }
  HParamsSummaries out;
  out.experiment = HParamsRecord(kHParamsExperimentTag, std::move(data));
  out.session_start = *std::move(start);
  out.session_end = HParamsSessionEndSummary(hp::STATUS_SUCCESS, now);
  return out;
}

absl::StatusOr<std::vector<float>> ComputePrCurve(const at::Tensor& labels,
                                                  const at::Tensor& predictions,
                                                  int32_t num_thresholds) {
  if (num_thresholds < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_thresholds must be at least 2 (got ", num_thresholds, "); the default is 127"));
  }
  if (!labels.defined() || !predictions.defined()) {
    return absl::InvalidArgumentError("labels and predictions must be defined tensors");
  }
  if (labels.numel() != predictions.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.numel(), " element(s) (shape ", ShapeText(labels),
        ") but predictions has ", predictions.numel(), " (shape ", ShapeText(predictions),
        "); they must match one to one"));
  }
  at::Tensor l = labels.detach().to(at::kCPU).reshape({-1}).to(at::kDouble).contiguous();
  at::Tensor p = predictions.detach().to(at::kCPU).reshape({-1}).to(at::kDouble).contiguous();
  const double* lp = l.data_ptr<double>();
  const double* pp = p.data_ptr<double>();
  const int64_t count = l.numel();
  const size_t n = static_cast<size_t>(num_thresholds);
  std::vector<double> tp(n, 0.0), fp(n, 0.0);
  for (int64_t i = 0; i < count; ++i) {
    const double pred = pp[i], label = lp[i];
    if (!(pred >= 0.0 && pred <= 1.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "prediction #", i, " is ", pred, "; predictions must be probabilities in [0, 1]"));
    }
    if (!(label >= 0.0 && label <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label #", i, " is ", label, "; labels must be 0 or 1 (or bool)"));
    }
    const size_t b = static_cast<size_t>(std::floor(pred * static_cast<double>(n - 1)));
    tp[b] += label;
    fp[b] += 1.0 - label;
  }
  for (size_t i = n - 1; i-- > 0;) {
    tp[i] += tp[i + 1];
    fp[i] += fp[i + 1];
  }
  constexpr double kMinCount = 1e-7;
  std::vector<float> out(6 * n);
  for (size_t i = 0; i < n; ++i) {
    const double tn = fp[0] - fp[i];
    const double fn = tp[0] - tp[i];
    out[0 * n + i] = static_cast<float>(tp[i]);
    out[1 * n + i] = static_cast<float>(fp[i]);
    out[2 * n + i] = static_cast<float>(tn);
    out[3 * n + i] = static_cast<float>(fn);
    out[4 * n + i] = static_cast<float>(tp[i] / std::max(kMinCount, tp[i] + fp[i]));
    out[5 * n + i] = static_cast<float>(tp[i] / std::max(kMinCount, tp[i] + fn));
  }
  return out;
}

absl::StatusOr<proto::Summary> PrCurveSummary(std::string_view tag, const at::Tensor& labels,
                                              const at::Tensor& predictions,
                                              int32_t num_thresholds) {
  absl::StatusOr<std::vector<float>> table = ComputePrCurve(labels, predictions, num_thresholds);
  if (!table.ok()) return Invalid("pr_curve", tag, table.status().message());
  proto::Summary s;
  proto::Summary::Value* v = AddValue(&s, tag);
  proto::PrCurvePluginData plugin_data;
  plugin_data.set_version(0);
  plugin_data.set_num_thresholds(static_cast<uint32_t>(num_thresholds));
  SetPlugin(v, "pr_curves", plugin_data.SerializeAsString(), proto::DATA_CLASS_TENSOR);
  proto::TensorProto* t = v->mutable_tensor();
  t->set_dtype(proto::DT_FLOAT);
  t->mutable_tensor_shape()->add_dim()->set_size(6);
  t->mutable_tensor_shape()->add_dim()->set_size(num_thresholds);
  t->mutable_float_val()->Add(table->begin(), table->end());
  return s;
}

absl::StatusOr<proto::Summary> CustomScalarsSummary(const CustomScalarLayout& layout) {
  if (layout.empty()) {
    return absl::InvalidArgumentError("custom scalars: the layout has no category");
  }
  proto::Layout pb;
  for (const CustomScalarCategory& category : layout) {
    proto::Category* cat = pb.add_category();
    cat->set_title(category.title);
    cat->set_closed(category.closed);
    for (const CustomScalarChart& chart : category.charts) {
      proto::Chart* ch = cat->add_chart();
      ch->set_title(chart.title);
      if (!chart.margin_series.empty()) {
        proto::MarginChartContent* margin = ch->mutable_margin();
        for (const CustomScalarChart::MarginSeries& ms : chart.margin_series) {
          proto::MarginChartContent::Series* series = margin->add_series();
          series->set_value(ms.value);
          series->set_lower(ms.lower);
          series->set_upper(ms.upper);
        }
      } else {
        proto::MultilineChartContent* multi = ch->mutable_multiline();
        for (const std::string& tag : chart.multiline_tags) multi->add_tag(tag);
      }
    }
  }
  proto::Summary s;
  proto::Summary::Value* v = AddValue(&s, kCustomScalarsTag);
  SetPlugin(v, "custom_scalars", "", proto::DATA_CLASS_TENSOR);
  SetStringScalar(v->mutable_tensor(), pb.SerializeAsString());
  return s;
}

absl::StatusOr<proto::Summary> AudioSummary(std::string_view tag, const at::Tensor& samples,
                                            double sample_rate) {
  if (!samples.defined()) return Invalid("audio", tag, "the tensor is undefined");
  if (!(sample_rate > 0 && sample_rate < 4.3e9)) {
    return Invalid("audio", tag,
                   absl::StrCat("sample_rate must be positive (got ", sample_rate, ")"));
  }
  if (samples.dim() != 1 && samples.dim() != 2) {
    return Invalid("audio", tag,
                   absl::StrCat("samples must have shape [frames] or [frames, channels], got ",
                                ShapeText(samples)));
  }
  at::Tensor t = samples.detach().to(at::kCPU);
  if (t.dim() == 1) t = t.unsqueeze(1);
  const int64_t frames = t.size(0), channels = t.size(1);
  if (channels < 1 || channels > 64 || frames < 1) {
    return Invalid("audio", tag,
                   absl::StrCat("need at least one frame and 1-64 channels, got shape ",
                                ShapeText(samples)));
  }
  if (t.scalar_type() == at::kShort) {
    t = t.contiguous();
  } else if (at::isFloatingType(t.scalar_type())) {
    t = at::nan_to_num(t.to(at::kFloat), 0.0).clamp(-1.0, 1.0).mul(32767.0).to(at::kShort)
            .contiguous();
  } else {
    return Invalid("audio", tag,
                   absl::StrCat("unsupported dtype ", std::string(c10::toString(t.scalar_type())),
                                "; pass floating point samples in [-1, 1] (or int16 PCM)"));
  }
  const uint32_t rate = static_cast<uint32_t>(std::lround(sample_rate));
  // TensorBoard's blob-sequence form of audio, exactly what its own loader
  // turns the legacy Summary.Audio into: a DT_STRING [clips] tensor of WAV
  // files, the encoding in the plugin data, data_class BLOB_SEQUENCE. Both
  // of TensorBoard's loaders serve it as audio/wav; the legacy form is
  // served as application/octet-stream by the data server.
  proto::Summary s;
  proto::Summary::Value* v = AddValue(&s, tag);
  proto::AudioPluginData data;
  data.set_encoding(proto::AudioPluginData::WAV);
  SetPlugin(v, "audio", data.SerializeAsString(), proto::DATA_CLASS_BLOB_SEQUENCE);
  proto::TensorProto* tensor = v->mutable_tensor();
  tensor->set_dtype(proto::DT_STRING);
  tensor->mutable_tensor_shape()->add_dim()->set_size(1);
  tensor->add_string_val(EncodeWav(t.data_ptr<int16_t>(), static_cast<size_t>(frames),
                                   static_cast<int>(channels), rate));
  return s;
}

}  // namespace trainbus::tensorboard
