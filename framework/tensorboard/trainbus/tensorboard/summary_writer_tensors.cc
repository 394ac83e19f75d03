// The tensor layer of SummaryWriter (library trainbus::tensorboard): the
// at::Tensor overloads and add_record. Each turns the tensor into the plain
// form of summaries.h (tensor_summaries.h) and enqueues it like the
// LibTorch-free methods do.
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainbus/record.h"
#include "trainbus/tensorboard/model_graph.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/summary_writer.h"
#include "trainbus/tensorboard/tensor_summaries.h"

namespace trainbus::tensorboard {

bool SummaryWriter::add_histogram(absl::string_view tag, const at::Tensor& values, int64_t step,
                                  std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  absl::StatusOr<at::Tensor> t = HistogramValues(tag, values);
  if (!t.ok()) return Reject(t.status());
  if (t->scalar_type() == at::kFloat) {
    return EnqueueHistogram(tag, absl::MakeConstSpan(t->data_ptr<float>(), t->numel()), step, wall_time);
  }
  return EnqueueHistogram(tag, absl::MakeConstSpan(t->data_ptr<double>(), t->numel()), step, wall_time);
}

bool SummaryWriter::add_image(absl::string_view tag, const at::Tensor& image, int64_t step,
                              absl::string_view layout, std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  return EnqueueImage(tag, PrepareImage(tag, image, layout), step, wall_time);
}

bool SummaryWriter::add_images(absl::string_view tag, const at::Tensor& images, int64_t step,
                               absl::string_view layout, std::optional<double> wall_time) {
  return add_image(tag, images, step, layout, wall_time);
}

bool SummaryWriter::add_images(absl::string_view tag, const std::vector<at::Tensor>& images,
                               int64_t step, absl::string_view layout,
                               std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  if (images.empty()) {
    return Reject(absl::InvalidArgumentError(
        absl::StrCat("image '", tag, "': the list of images is empty")));
  }
  for (size_t i = 0; i < images.size(); ++i) {
    if (!images[i].defined()) {
      return Reject(absl::InvalidArgumentError(
          absl::StrCat("image '", tag, "': image ", i, " of the list is an undefined tensor")));
    }
  }
  for (size_t i = 1; i < images.size(); ++i) {
    if (images[i].sizes() != images[0].sizes() ||
        images[i].scalar_type() != images[0].scalar_type() ||
        images[i].device() != images[0].device()) {
      auto describe = [](const at::Tensor& t) {
        return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "] ",
                            std::string(c10::toString(t.scalar_type())), " on ", t.device().str());
      };
      return Reject(absl::InvalidArgumentError(absl::StrCat(
          "image '", tag, "': image ", i, " of the list is ", describe(images[i]),
          "; every image must have the first one's shape, dtype and device, ",
          describe(images[0]))));
    }
  }
  const std::string one = absl::AsciiStrToUpper(layout);
  if (one != "CHW" && one != "HWC" && one != "HW") {
    return Reject(absl::InvalidArgumentError(absl::StrCat(
        "image '", tag, "': unknown layout \"", layout,
        "\" for a list of images; use \"CHW\", \"HWC\" or \"HW\" (each image's layout)")));
  }
  at::Tensor batch = at::stack(images);
  if (one == "HW") batch = batch.unsqueeze(1);
  return add_image(tag, batch, step, one == "HWC" ? "NHWC" : "NCHW", wall_time);
}

bool SummaryWriter::add_video(absl::string_view tag, const at::Tensor& video, int64_t step,
                              double fps, absl::string_view layout,
                              std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  return EnqueueVideo(tag, PrepareVideo(tag, video, fps, layout), step, wall_time);
}

bool SummaryWriter::add_mesh(absl::string_view tag, const at::Tensor& vertices,
                             const at::Tensor& colors, const at::Tensor& faces, int64_t step,
                             std::string config_json, std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  return Enqueue(MeshSummary(tag, vertices, colors, faces, std::move(config_json)), step,
                 wall_time);
}

bool SummaryWriter::add_embedding(const at::Tensor& mat, const EmbeddingMetadata& metadata,
                                  const at::Tensor* label_images, int64_t step,
                                  absl::string_view tag, absl::string_view layout) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  auto invalid = [&](absl::string_view what) {
    return Reject(absl::InvalidArgumentError(absl::StrCat("embedding '", tag, "': ", what)));
  };
  if (!mat.defined() || mat.dim() != 2) {
    return invalid(absl::StrCat("mat must be a 2-D tensor [points, dim], got ",
                                mat.defined() ? absl::StrCat("shape [", absl::StrJoin(mat.sizes(), ", "), "]")
                                              : "an undefined tensor"));
  }
  if (!at::isFloatingType(mat.scalar_type()) && !at::isIntegralType(mat.scalar_type(), true)) {
    return invalid("mat must be a floating, integer or bool tensor");
  }
  ProjectorEmbedding e;
  const at::Tensor values = ToHost(mat).to(at::kFloat).contiguous();
  e.points = values.size(0);
  e.dim = values.size(1);
  e.values.assign(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
  e.metadata = metadata;
  if (label_images != nullptr) {
    const at::Tensor& img = *label_images;
    if (!img.defined() || img.dim() != 4 || img.size(0) != e.points) {
      return invalid(absl::StrCat(
          "label_images must be [", e.points, ", C, H, W] (one image per point), got ",
          img.defined() ? absl::StrCat("shape [", absl::StrJoin(img.sizes(), ", "), "]")
                        : "an undefined tensor"));
    }
    const bool nhwc = absl::AsciiStrToUpper(layout) == "NHWC";
    e.image_height = img.size(nhwc ? 1 : 2);
    e.image_width = img.size(nhwc ? 2 : 3);
    absl::StatusOr<ImageCanvas> sprite = TileImages(
        tag, img, layout, SpriteColumns(e.points, e.image_width, e.image_height));
    if (!sprite.ok()) return Reject(sprite.status());
    e.sprite = *std::move(sprite);
  }
  return add_embedding(tag, std::move(e), step);
}

bool SummaryWriter::add_graph(const torch::nn::Module& model, const at::Tensor& output) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  absl::StatusOr<proto::GraphDef> graph = ModelGraph(model, output);
  if (!graph.ok()) return Reject(graph.status());
  return add_graph(*graph);
}

namespace {

// RecordModelGraph, or the module tree with a warning when the pass throws.
proto::GraphDef GraphOrModuleTree(torch::nn::Module& model, const at::Tensor& sample_input) {
  absl::StatusOr<proto::GraphDef> graph = RecordModelGraph(model, sample_input);
  if (graph.ok()) return *std::move(graph);
  std::fprintf(stderr, "[trainbus.tensorboard] warning: the model graph shows the module tree only: %s\n",
               std::string(graph.status().message()).c_str());
  return ModelHierarchyGraph(model);
}

}  // namespace

bool SummaryWriter::record_graph(torch::nn::Module& model, const at::Tensor& sample_input) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  if (!sample_input.defined()) {
    return Reject(absl::InvalidArgumentError("record_graph: the sample input is an undefined tensor"));
  }
  absl::StatusOr<std::shared_ptr<torch::nn::Module>> copy = CopyModelForGraph(model);
  if (!copy.ok()) {
    // Recorded here; RecordModelGraph puts back every mode it changes.
    return add_graph(GraphOrModuleTree(model, sample_input));
  }
  constexpr size_t kGraphBytes = 8 << 10;  // a few hundred bytes per node
  // The graph needs the input's shape, not every sample: one is copied here
  // (the whole batch of the trainer bench, 200 KB in fresh pages, took
  // 17-130 us) and repeated to the batch's size on the writer thread.
  // (Strided tensors only: a sparse or MKL-DNN input is copied whole, as
  // slicing and expanding it may throw, which on the writer thread would
  // fail the event file.)
  const bool one_sample = sample_input.layout() == at::kStrided && sample_input.dim() > 0 &&
                          sample_input.size(0) > 1;
  if (!one_sample) {
    return EnqueueGraph([model = *std::move(copy), input = sample_input.detach().clone()] {
      return GraphOrModuleTree(*model, input);
    }, kGraphBytes);
  }
  return EnqueueGraph([model = *std::move(copy),
                       first = sample_input.detach().slice(0, 0, 1).clone(),
                       sizes = sample_input.sizes().vec(),
                       format = sample_input.suggest_memory_format()] {
    return GraphOrModuleTree(*model, first.expand(sizes).contiguous(format));
  }, kGraphBytes);
}

bool SummaryWriter::add_pr_curve(absl::string_view tag, const at::Tensor& labels,
                                 const at::Tensor& predictions, int64_t step,
                                 int32_t num_thresholds, std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  return Enqueue(PrCurveSummary(tag, labels, predictions, num_thresholds), step, wall_time);
}

bool SummaryWriter::add_audio(absl::string_view tag, const at::Tensor& samples, int64_t step,
                              double sample_rate, std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  return Enqueue(AudioSummary(tag, samples, sample_rate), step, wall_time);
}

bool SummaryWriter::add_record(const Record& record) {
  const std::optional<double> wall =
      record.wall_time != 0.0 ? std::optional<double>(record.wall_time) : std::nullopt;
  return std::visit(
      [&](const auto& v) -> bool {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, ScalarValue>) {
          return add_scalar(record.tag, v.value, record.step, wall);
        } else if constexpr (std::is_same_v<T, HistogramValue>) {
          return add_histogram(record.tag, v.values, record.step, wall);
        } else if constexpr (std::is_same_v<T, ImageValue>) {
          return add_image(record.tag, v.image, record.step, v.layout, wall);
        } else if constexpr (std::is_same_v<T, TextValue>) {
          return add_text(record.tag, v.markdown, record.step, wall);
        } else if constexpr (std::is_same_v<T, HParamsValue>) {
          return add_hparams(v.hparams, v.metrics, record.step);
        } else if constexpr (std::is_same_v<T, PrCurveValue>) {
          return add_pr_curve(record.tag, v.labels, v.predictions, record.step, v.num_thresholds,
                              wall);
        } else if constexpr (std::is_same_v<T, CustomScalarsValue>) {
          return add_custom_scalars(v.layout);
        } else {
          static_assert(std::is_same_v<T, AudioValue>);
          return add_audio(record.tag, v.samples, record.step, v.sample_rate, wall);
        }
      },
      record.value);
}

}  // namespace trainbus::tensorboard
