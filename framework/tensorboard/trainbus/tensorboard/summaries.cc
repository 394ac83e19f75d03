#include "trainbus/tensorboard/summaries.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/gif_encoder.h"
#include "trainbus/tensorboard/histogram.h"
#include "trainbus/tensorboard/png_encoder.h"
#include "trainbus/tensorboard/proto/hparams.pb.h"
#include "trainbus/tensorboard/proto/plugins.pb.h"
#include "trainbus/tensorboard/wav_encoder.h"

namespace trainbus::tensorboard {
namespace {


absl::Status Invalid(absl::string_view kind, absl::string_view tag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(kind, " '", tag, "': ", what));
}

proto::Summary::Value* AddValue(proto::Summary* s, absl::string_view tag) {
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

absl::StatusOr<proto::Summary> ScalarSummary(absl::string_view tag, double value) {
  proto::Summary s;
  AddValue(&s, tag)->set_simple_value(static_cast<float>(value));
  return s;
}

absl::Status CheckHistogramSummary(absl::string_view tag, absl::Span<const double> values) {
  absl::Status st = CheckHistogramValues(values);
  return st.ok() ? st : Invalid("histogram", tag, st.message());
}

absl::Status CheckHistogramSummary(absl::string_view tag, absl::Span<const float> values) {
  absl::Status st = CheckHistogramValues(values);
  return st.ok() ? st : Invalid("histogram", tag, st.message());
}

absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag,
                                                absl::Span<const double> values) {
  proto::Summary s;
  absl::Status st = BuildHistogram(values, AddValue(&s, tag)->mutable_histo());
  if (!st.ok()) return Invalid("histogram", tag, st.message());
  return s;
}

absl::StatusOr<proto::Summary> HistogramSummary(absl::string_view tag,
                                                absl::Span<const float> values) {
  proto::Summary s;
  absl::Status st = BuildHistogram(values, AddValue(&s, tag)->mutable_histo());
  if (!st.ok()) return Invalid("histogram", tag, st.message());
  return s;
}

absl::StatusOr<proto::Summary> HistogramRawSummary(absl::string_view tag, const RawHistogram& h) {
  if (h.bucket_limits.empty() || h.bucket_limits.size() != h.bucket_counts.size()) {
    return Invalid("histogram", tag,
                   absl::StrCat("bucket_limits (", h.bucket_limits.size(), ") and bucket_counts (",
                                h.bucket_counts.size(), ") must be non-empty and of one length"));
  }
  for (size_t i = 0; i < h.bucket_limits.size(); ++i) {
    if (std::isnan(h.bucket_limits[i]) || (i > 0 && h.bucket_limits[i] < h.bucket_limits[i - 1])) {
      return Invalid("histogram", tag,
                     absl::StrCat("bucket_limits must be ascending; #", i, " is ",
                                  h.bucket_limits[i]));
    }
    if (!(h.bucket_counts[i] >= 0) || std::isinf(h.bucket_counts[i])) {
      return Invalid("histogram", tag, absl::StrCat("bucket_counts #", i, " is ",
                                                    h.bucket_counts[i], "; counts are >= 0"));
    }
  }
  if (!(h.min <= h.max) || !(h.num >= 0) || !std::isfinite(h.sum) ||
      !std::isfinite(h.sum_squares)) {
    return Invalid("histogram", tag,
                   absl::StrCat("min ", h.min, ", max ", h.max, ", num ", h.num, ", sum ", h.sum,
                                ", sum_squares ", h.sum_squares,
                                ": need min <= max, num >= 0 and finite sums"));
  }
  proto::Summary s;
  proto::HistogramProto* out = AddValue(&s, tag)->mutable_histo();
  out->set_min(h.min);
  out->set_max(h.max);
  out->set_num(h.num);
  out->set_sum(h.sum);
  out->set_sum_squares(h.sum_squares);
  out->mutable_bucket_limit()->Add(h.bucket_limits.begin(), h.bucket_limits.end());
  out->mutable_bucket()->Add(h.bucket_counts.begin(), h.bucket_counts.end());
  return s;
}

absl::Status CheckImageSize(absl::string_view tag, int64_t height, int64_t width,
                            int64_t channels) {
  if (channels != 1 && channels != 3 && channels != 4) {
    return Invalid("image", tag,
                   absl::StrCat(channels, " channel(s); an image needs 1 (gray), 3 (RGB) or 4 "
                                "(RGBA) channels"));
  }
  if (height <= 0 || width <= 0) {
    return Invalid("image", tag, absl::StrCat("empty image, ", height, " x ", width));
  }
  if (height > std::numeric_limits<int32_t>::max() / 4 ||
      width > std::numeric_limits<int32_t>::max() / 4) {
    return Invalid("image", tag, absl::StrCat("image too large: ", height, " x ", width));
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageCanvas> CopyImage(absl::string_view tag, const ImagePixels& image) {
  if (absl::Status s = CheckImageSize(tag, image.height, image.width, image.channels); !s.ok()) {
    return s;
  }
  const size_t bytes = static_cast<size_t>(image.height * image.width * image.channels);
  if (image.hwc.size() != bytes) {
    return Invalid("image", tag,
                   absl::StrCat(image.hwc.size(), " bytes of pixels for ", image.height, " x ",
                                image.width, " x ", image.channels, " (", bytes, " needed)"));
  }
  return ImageCanvas{std::vector<uint8_t>(image.hwc.begin(), image.hwc.end()), image.height,
                     image.width, image.channels};
}

absl::StatusOr<proto::Summary> EncodeImageSummary(absl::string_view tag, const ImageCanvas& image) {
  const int64_t height = image.height, width = image.width, c = image.channels;
  if (absl::Status s = CheckImageSize(tag, height, width, c); !s.ok()) return s;
  if (image.pixels.size() != static_cast<size_t>(height * width * c)) {
    return Invalid("image", tag, "the canvas does not hold height x width x channels bytes");
  }
  absl::StatusOr<std::string> png = EncodePng(image.pixels.data(), static_cast<int>(width),
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

absl::StatusOr<proto::Summary> ImageSummary(absl::string_view tag, const ImagePixels& image) {
  absl::StatusOr<ImageCanvas> canvas = CopyImage(tag, image);
  if (!canvas.ok()) return canvas.status();
  return EncodeImageSummary(tag, *canvas);
}

absl::StatusOr<proto::Summary> TextSummary(absl::string_view tag, absl::string_view markdown) {
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

absl::StatusOr<std::vector<float>> ComputePrCurve(absl::Span<const double> labels,
                                                  absl::Span<const double> predictions,
                                                  int32_t num_thresholds) {
  if (num_thresholds < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_thresholds must be at least 2 (got ", num_thresholds, "); the default is 127"));
  }
  if (labels.size() != predictions.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels has ", labels.size(), " element(s) but predictions has ", predictions.size(),
        "; they must match one to one"));
  }
  const double* lp = labels.data();
  const double* pp = predictions.data();
  const int64_t count = static_cast<int64_t>(labels.size());
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

absl::StatusOr<proto::Summary> PrCurveSummary(absl::string_view tag,
                                              absl::Span<const double> labels,
                                              absl::Span<const double> predictions,
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

absl::StatusOr<proto::Summary> AudioSummaryPcm16(absl::string_view tag,
                                                 absl::Span<const int16_t> interleaved,
                                                 int channels, double sample_rate) {
  if (!(sample_rate > 0 && sample_rate < 4.3e9)) {
    return Invalid("audio", tag,
                   absl::StrCat("sample_rate must be positive (got ", sample_rate, ")"));
  }
  if (channels < 1 || channels > 64 || interleaved.empty() ||
      interleaved.size() % static_cast<size_t>(channels) != 0) {
    return Invalid("audio", tag,
                   absl::StrCat("need at least one frame and 1-64 channels, got ",
                                interleaved.size(), " sample(s) for ", channels, " channel(s)"));
  }
  const size_t frames = interleaved.size() / static_cast<size_t>(channels);
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
  tensor->add_string_val(EncodeWav(interleaved.data(), frames, channels, rate));
  return s;
}

absl::StatusOr<proto::Summary> AudioSummary(absl::string_view tag, const AudioSamples& audio) {
  // PyTorch's conversion: clamp to [-1, 1], scale by 32767, truncate; nan is 0.
  std::vector<int16_t> pcm(audio.interleaved.size());
  for (size_t i = 0; i < pcm.size(); ++i) {
    const float v = audio.interleaved[i];
    pcm[i] = std::isnan(v) ? 0 : static_cast<int16_t>(std::clamp(v, -1.0f, 1.0f) * 32767.0f);
  }
  return AudioSummaryPcm16(tag, pcm, audio.channels, audio.sample_rate);
}

absl::StatusOr<VideoCanvas> CopyVideo(absl::string_view tag, const VideoPixels& video,
                                      double fps) {
  if (video.frames < 1) return Invalid("video", tag, "no frames");
  if (absl::Status s = CheckImageSize(tag, video.height, video.width, video.channels); !s.ok()) {
    return Invalid("video", tag, s.message());
  }
  if (video.height > 65535 || video.width > 65535) {
    return Invalid("video", tag,
                   absl::StrCat("frames of ", video.width, " x ", video.height,
                                " exceed GIF's 65535 x 65535"));
  }
  if (!(fps > 0) || !std::isfinite(fps)) {
    return Invalid("video", tag, absl::StrCat("fps must be a positive number, got ", fps));
  }
  const size_t bytes =
      static_cast<size_t>(video.frames * video.height * video.width * video.channels);
  if (video.thwc.size() != bytes) {
    return Invalid("video", tag,
                   absl::StrCat("expected frames x height x width x channels = ", bytes,
                                " bytes, got ", video.thwc.size()));
  }
  VideoCanvas canvas;
  canvas.pixels.assign(video.thwc.begin(), video.thwc.end());
  canvas.frames = video.frames;
  canvas.height = video.height;
  canvas.width = video.width;
  canvas.channels = video.channels;
  canvas.fps = fps;
  return canvas;
}

absl::StatusOr<proto::Summary> EncodeVideoSummary(absl::string_view tag, const VideoCanvas& video) {
  if (video.pixels.size() !=
      static_cast<size_t>(video.frames * video.height * video.width * video.channels)) {
    return Invalid("video", tag, "the canvas does not hold frames x height x width x channels bytes");
  }
  absl::StatusOr<std::string> gif = EncodeAnimatedGif(
      video.pixels.data(), static_cast<int>(video.frames), static_cast<int>(video.height),
      static_cast<int>(video.width), static_cast<int>(video.channels), video.fps);
  if (!gif.ok()) return Invalid("video", tag, gif.status().message());
  proto::Summary s;
  proto::Summary::Image* img = AddValue(&s, tag)->mutable_image();
  img->set_height(static_cast<int32_t>(video.height));
  img->set_width(static_cast<int32_t>(video.width));
  img->set_colorspace(static_cast<int32_t>(video.channels));
  img->set_encoded_image_string(std::move(*gif));
  return s;
}

namespace {

// One part of a mesh: its tensor and its MeshPluginData.
void AddMeshPart(proto::Summary* s, absl::string_view tag, proto::MeshPluginData::ContentType part,
                 uint32_t components, int64_t batch, int64_t rows, const void* data,
                 size_t bytes, proto::DataType dtype, const std::string& config_json) {
  proto::Summary::Value* v =
      AddValue(s, absl::StrCat(tag, "_", proto::MeshPluginData::ContentType_Name(part)));
  proto::MeshPluginData md;
  md.set_version(0);
  md.set_name(std::string(tag));
  md.set_content_type(part);
  md.set_components(components);
  md.add_shape(static_cast<int32_t>(batch));
  md.add_shape(static_cast<int32_t>(rows));
  md.add_shape(3);
  md.set_json_config(config_json);
  SetPlugin(v, "mesh", md.SerializeAsString(), proto::DATA_CLASS_TENSOR);
  proto::TensorProto* t = v->mutable_tensor();
  t->set_dtype(dtype);
  for (int64_t d : {batch, rows, int64_t{3}}) t->mutable_tensor_shape()->add_dim()->set_size(d);
  t->set_tensor_content(static_cast<const char*>(data), bytes);
}

}  // namespace

absl::StatusOr<proto::Summary> MeshSummary(absl::string_view tag, const MeshData& mesh) {
  const int64_t b = mesh.batch, n = mesh.num_vertices, f = mesh.num_faces;
  if (b < 1 || n < 1 || n > std::numeric_limits<int32_t>::max() || f < 0 ||
      f > std::numeric_limits<int32_t>::max() || b > std::numeric_limits<int32_t>::max()) {
    return Invalid("mesh", tag,
                   absl::StrCat("needs at least one mesh of at least one vertex, got batch ", b,
                                ", ", n, " vertices, ", f, " faces"));
  }
  const size_t points = static_cast<size_t>(b * n * 3);
  if (mesh.vertices.size() != points) {
    return Invalid("mesh", tag,
                   absl::StrCat("vertices: expected batch x vertices x 3 = ", points,
                                " floats, got ", mesh.vertices.size()));
  }
  for (size_t i = 0; i < points; ++i) {
    if (!std::isfinite(mesh.vertices[i])) {
      return Invalid("mesh", tag,
                     absl::StrCat("vertex ", i / 3 % n, " of mesh ", i / 3 / n,
                                  " has a non-finite coordinate (", mesh.vertices[i], ")"));
    }
  }
  if (!mesh.colors.empty() && mesh.colors.size() != points) {
    return Invalid("mesh", tag,
                   absl::StrCat("colors: expected one r, g, b per vertex, batch x vertices x 3 = ",
                                points, " bytes, got ", mesh.colors.size()));
  }
  const size_t corners = static_cast<size_t>(b * f * 3);
  if (mesh.faces.size() != corners) {
    return Invalid("mesh", tag,
                   absl::StrCat("faces: expected batch x faces x 3 = ", corners,
                                " indices, got ", mesh.faces.size()));
  }
  for (size_t i = 0; i < corners; ++i) {
    if (mesh.faces[i] < 0 || mesh.faces[i] >= n) {
      return Invalid("mesh", tag,
                     absl::StrCat("face ", i / 3 % f, " of mesh ", i / 3 / f,
                                  " names vertex ", mesh.faces[i], "; vertices are 0-", n - 1));
    }
  }
  if (!mesh.config_json.empty()) {
    google::protobuf::Struct parsed;
    if (!google::protobuf::util::JsonStringToMessage(mesh.config_json, &parsed).ok()) {
      return Invalid("mesh", tag,
                     absl::StrCat("config_json is not a JSON object: ", mesh.config_json));
    }
  }
  uint32_t components = 1u << proto::MeshPluginData::VERTEX;
  if (f > 0) components |= 1u << proto::MeshPluginData::FACE;
  if (!mesh.colors.empty()) components |= 1u << proto::MeshPluginData::COLOR;
  proto::Summary s;
  AddMeshPart(&s, tag, proto::MeshPluginData::VERTEX, components, b, n, mesh.vertices.data(),
              points * sizeof(float), proto::DT_FLOAT, mesh.config_json);
  if (f > 0) {
    AddMeshPart(&s, tag, proto::MeshPluginData::FACE, components, b, f, mesh.faces.data(),
                corners * sizeof(int32_t), proto::DT_INT32, mesh.config_json);
  }
  if (!mesh.colors.empty()) {
    AddMeshPart(&s, tag, proto::MeshPluginData::COLOR, components, b, n, mesh.colors.data(),
                points, proto::DT_UINT8, mesh.config_json);
  }
  return s;
}

}  // namespace trainbus::tensorboard
