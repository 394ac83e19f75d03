// trainbus/record.h — tagged summaries that anyone can publish on the bus.
//
// A Record is one value for one tag at one step: a scalar, a histogram, an
// image, text, hyperparameters, a PR curve, a custom-scalars layout or audio.
// The trainer, plugins and user code publish records with Control::Publish()
// (or Session::Publish()); every plugin that implements OnRecord() receives
// every record, synchronously, on the publishing thread. Sinks such as the
// TensorBoard writer and the CSV writer turn records into files.
//
// The same value types are taken by trainbus::tensorboard::SummaryWriter, so
// a record maps one-to-one onto a SummaryWriter call.
//
// Example (inside a plugin hook):
//   control.Publish(trainbus::Record::Scalar("grad/norm", norm, event.step));
//   control.Publish(trainbus::Record::Text("notes", "**restarted**", step));
//
// Tensors in a record are shared (at::Tensor is reference counted). A sink
// that keeps a tensor beyond the hook call keeps it alive; publishers must
// not modify a tensor in place after publishing it (publish a clone()).
#ifndef TRAINBUS_RECORD_H_
#define TRAINBUS_RECORD_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <ATen/core/Tensor.h>

#include "trainbus/summary_types.h"

namespace trainbus {

struct ScalarValue { double value = 0.0; };
// Values to bucket (any shape, any floating or integer dtype).
struct HistogramValue { at::Tensor values; };
// One image, CHW or HWC (see `layout`), float in [0, 1] or uint8.
// With layout "NCHW" a batch is tiled into one grid image.
struct ImageValue {
  at::Tensor image;
  std::string layout = "CHW";
};
struct TextValue { std::string markdown; };
struct HParamsValue {
  HParams hparams;
  std::map<std::string, double> metrics;  // final metric values, by tag
};
struct PrCurveValue {
  at::Tensor labels;       // 0/1 (or bool), any shape
  at::Tensor predictions;  // probabilities in [0, 1], same number of elements
  int32_t num_thresholds = 127;
};
struct CustomScalarsValue { CustomScalarLayout layout; };
// Samples in [-1, 1], shape [frames] or [frames, channels].
struct AudioValue {
  at::Tensor samples;
  double sample_rate = 44100.0;
};

using RecordValue =
    std::variant<ScalarValue, HistogramValue, ImageValue, TextValue, HParamsValue,
                 PrCurveValue, CustomScalarsValue, AudioValue>;

struct Record {
  std::string tag;
  int64_t step = 0;
  double wall_time = 0.0;  // seconds since the epoch; 0 means "now" at the sink
  RecordValue value;

  static Record Scalar(std::string tag, double v, int64_t step) {
    return Record{std::move(tag), step, 0.0, ScalarValue{v}};
  }
  static Record Histogram(std::string tag, at::Tensor values, int64_t step) {
    return Record{std::move(tag), step, 0.0, HistogramValue{std::move(values)}};
  }
  static Record Image(std::string tag, at::Tensor image, int64_t step,
                      std::string layout = "CHW") {
    return Record{std::move(tag), step, 0.0, ImageValue{std::move(image), std::move(layout)}};
  }
  static Record Text(std::string tag, std::string markdown, int64_t step) {
    return Record{std::move(tag), step, 0.0, TextValue{std::move(markdown)}};
  }
};

// Short lowercase name of the record's kind: "scalar", "histogram", ...
inline const char* RecordKindName(const RecordValue& v) {
  static constexpr const char* kNames[] = {"scalar", "histogram", "image",         "text",
                                           "hparams", "pr_curve", "custom_scalars", "audio"};
  return kNames[v.index()];
}

}  // namespace trainbus

#endif  // TRAINBUS_RECORD_H_
