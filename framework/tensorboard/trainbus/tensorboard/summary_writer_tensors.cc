// The tensor layer of SummaryWriter (library trainbus::tensorboard): the
// at::Tensor overloads and add_record. Each turns the tensor into the plain
// form of summaries.h (tensor_summaries.h) and enqueues it like the
// LibTorch-free methods do.
#include <type_traits>
#include <variant>

#include <ATen/core/Tensor.h>

#include "trainbus/record.h"
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
