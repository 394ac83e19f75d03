#include "trainbus/tensorboard/summary_writer.h"

#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/proto/event.pb.h"
#include "trainbus/tensorboard/summaries.h"

namespace trainbus::tensorboard {
namespace {

constexpr uint64_t kLoggedRejections = 5;

EventFileWriterOptions FileOptions(const SummaryWriterOptions& o) {
  EventFileWriterOptions f;
  f.max_queue = o.max_queue;
  f.flush_secs = o.flush_secs;
  f.filename_suffix = o.filename_suffix;
  f.fsync_on_flush = o.fsync_on_flush;
  f.on_full = o.on_full;
  return f;
}

std::string SerializeEvent(const proto::Summary& summary, int64_t step, double wall_time) {
  proto::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  *event.mutable_summary() = summary;
  return event.SerializeAsString();
}

// absl here is built without std::string_view support; bridge explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string JoinDir(const std::string& dir, std::string_view name) {
  return absl::StrCat(dir, (!dir.empty() && dir.back() == '/') ? "" : "/", Sv(name));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SummaryWriter>> SummaryWriter::Create(
    SummaryWriterOptions options) {
  if (options.log_dir.empty()) options.log_dir = DefaultLogDir(options.comment);
  absl::StatusOr<std::unique_ptr<EventFileWriter>> main =
      EventFileWriter::Open(options.log_dir, FileOptions(options));
  if (!main.ok()) return main.status();
  if (options.purge_step) {
    const double now = NowSeconds();
    proto::Event version;
    version.set_wall_time(now);
    version.set_step(*options.purge_step);
    version.set_file_version("brain.Event:2");
    proto::Event start;
    start.set_wall_time(now);
    start.set_step(*options.purge_step);
    start.mutable_session_log()->set_status(proto::SessionLog::START);
    (*main)->WriteEvent(version.SerializeAsString());
    (*main)->WriteEvent(start.SerializeAsString());
  }
  return std::unique_ptr<SummaryWriter>(new SummaryWriter(std::move(options), std::move(*main)));
}

SummaryWriter::SummaryWriter(SummaryWriterOptions options, std::unique_ptr<EventFileWriter> main)
    : options_(std::move(options)), log_dir_(options_.log_dir), main_(std::move(main)) {}

SummaryWriter::~SummaryWriter() { (void)close(); }

const std::string& SummaryWriter::file_path() const { return main_->path(); }

bool SummaryWriter::Reject(const absl::Status& status) {
  const uint64_t n = rejected_.fetch_add(1, std::memory_order_relaxed) + 1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_rejection_ = status;
  }
  if (n <= kLoggedRejections) {
    std::fprintf(stderr, "[trainbus.tensorboard] record rejected (%s): %s%s\n",
                 log_dir_.c_str(), std::string(status.message()).c_str(),
                 n == kLoggedRejections ? " (further rejections are only counted)" : "");
  }
  return false;
}

bool SummaryWriter::add_scalar(std::string_view tag, double value, int64_t step,
                               std::optional<double> wall_time) {
  return main_->WriteScalar(tag, static_cast<float>(value), step,
                            wall_time ? *wall_time : NowSeconds());
}

EventFileWriter* SummaryWriter::SubWriter(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sub_.find(dir);
  if (it != sub_.end()) return it->second.get();
  if (closed_.load(std::memory_order_acquire) || !sub_error_.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<EventFileWriter>> w =
      EventFileWriter::Open(dir, FileOptions(options_));
  if (!w.ok()) {
    sub_error_ = w.status();
    std::fprintf(stderr, "[trainbus.tensorboard] ERROR: %s\n",
                 std::string(w.status().message()).c_str());
    return nullptr;
  }
  EventFileWriter* raw = w->get();
  sub_.emplace(dir, std::move(*w));
  return raw;
}

bool SummaryWriter::add_scalars(std::string_view main_tag,
                                const std::map<std::string, double>& tag_scalar_dict,
                                int64_t step, std::optional<double> wall_time) {
  const double wt = wall_time ? *wall_time : NowSeconds();
  const std::string prefix = absl::StrReplaceAll(Sv(main_tag), {{"/", "_"}});
  bool all = true;
  for (const auto& [series, value] : tag_scalar_dict) {
    EventFileWriter* w = SubWriter(JoinDir(log_dir_, absl::StrCat(prefix, "_", series)));
    all = (w != nullptr && w->WriteScalar(main_tag, static_cast<float>(value), step, wt)) && all;
  }
  return all;
}

#define TRAINBUS_TB_ENQUEUE(summary_expr, step, wall_time)                              \
  do {                                                                                  \
    if (closed_.load(std::memory_order_relaxed)) return false;                          \
    absl::StatusOr<proto::Summary> summary_ = (summary_expr);                           \
    if (!summary_.ok()) return Reject(summary_.status());                               \
    return main_->WriteEvent(                                                           \
        SerializeEvent(*summary_, (step), (wall_time) ? *(wall_time) : NowSeconds()));  \
  } while (0)

bool SummaryWriter::add_histogram(std::string_view tag, const at::Tensor& values, int64_t step,
                                  std::optional<double> wall_time) {
  TRAINBUS_TB_ENQUEUE(HistogramSummary(tag, values), step, wall_time);
}

bool SummaryWriter::add_histogram(std::string_view tag, absl::Span<const double> values,
                                  int64_t step, std::optional<double> wall_time) {
  TRAINBUS_TB_ENQUEUE(HistogramSummary(tag, values), step, wall_time);
}

// Images are checked and laid out here (bad input is refused at once), and
// PNG-encoded on the writer thread: a 224x224 image costs ~4 ms to compress,
// which the training thread should not wait for.
bool SummaryWriter::add_image(std::string_view tag, const at::Tensor& image, int64_t step,
                              std::string_view layout, std::optional<double> wall_time) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  absl::StatusOr<ImageCanvas> canvas = PrepareImage(tag, image, layout);
  if (!canvas.ok()) return Reject(canvas.status());
  const size_t approx_bytes = static_cast<size_t>(canvas->pixels.numel()) / 2;
  const double wt = wall_time ? *wall_time : NowSeconds();
  return main_->WriteDeferredEvent(
      [tag = std::string(tag), canvas = std::move(*canvas), step, wt]() {
        absl::StatusOr<proto::Summary> summary = EncodeImageSummary(tag, canvas);
        if (!summary.ok()) throw std::runtime_error(std::string(summary.status().message()));
        return SerializeEvent(*summary, step, wt);
      },
      approx_bytes);
}

bool SummaryWriter::add_images(std::string_view tag, const at::Tensor& images, int64_t step,
                               std::string_view layout, std::optional<double> wall_time) {
  return add_image(tag, images, step, layout, wall_time);
}

bool SummaryWriter::add_text(std::string_view tag, std::string_view markdown, int64_t step,
                             std::optional<double> wall_time) {
  TRAINBUS_TB_ENQUEUE(TextSummary(tag, markdown), step, wall_time);
}

bool SummaryWriter::add_pr_curve(std::string_view tag, const at::Tensor& labels,
                                 const at::Tensor& predictions, int64_t step,
                                 int32_t num_thresholds, std::optional<double> wall_time) {
  TRAINBUS_TB_ENQUEUE(PrCurveSummary(tag, labels, predictions, num_thresholds), step, wall_time);
}

bool SummaryWriter::add_custom_scalars(const CustomScalarLayout& layout) {
  const std::optional<double> now;
  TRAINBUS_TB_ENQUEUE(CustomScalarsSummary(layout), 0, now);
}

bool SummaryWriter::add_audio(std::string_view tag, const at::Tensor& samples, int64_t step,
                              double sample_rate, std::optional<double> wall_time) {
  TRAINBUS_TB_ENQUEUE(AudioSummary(tag, samples, sample_rate), step, wall_time);
}

#undef TRAINBUS_TB_ENQUEUE

bool SummaryWriter::add_hparams(const HParams& hparams, const std::map<std::string, double>& metrics,
                                int64_t step, std::string_view run_name) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  absl::StatusOr<HParamsSummaries> s = HParamsSummary(hparams, metrics);
  if (!s.ok()) return Reject(s.status());
  EventFileWriter* w = main_.get();
  if (!run_name.empty()) {
    w = SubWriter(JoinDir(log_dir_, run_name));
    if (w == nullptr) return false;
  }
  const double now = NowSeconds();
  bool ok = w->WriteEvent(SerializeEvent(s->experiment, step, now));
  ok = w->WriteEvent(SerializeEvent(s->session_start, step, now)) && ok;
  ok = w->WriteEvent(SerializeEvent(s->session_end, step, now)) && ok;
  for (const auto& [tag, value] : metrics) {
    ok = w->WriteScalar(tag, static_cast<float>(value), step, now) && ok;
  }
  return ok;
}

bool SummaryWriter::add_session_start(const HParams& hparams, int64_t step) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  const double now = NowSeconds();
  absl::StatusOr<proto::Summary> s = HParamsSessionStartSummary(hparams, now);
  if (!s.ok()) return Reject(s.status());
  return main_->WriteEvent(SerializeEvent(*s, step, now));
}

bool SummaryWriter::add_session_end(HParamsSessionStatus status, int64_t step) {
  if (closed_.load(std::memory_order_relaxed)) return false;
  const double now = NowSeconds();
  return main_->WriteEvent(
      SerializeEvent(HParamsSessionEndSummary(static_cast<int>(status), now), step, now));
}

bool SummaryWriter::add_serialized_event(std::string serialized_event) {
  return main_->WriteEvent(std::move(serialized_event));
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

absl::Status SummaryWriter::ForEachFile(absl::Status (EventFileWriter::*op)()) {
  absl::Status first = ((*main_).*op)();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [dir, w] : sub_) {
    absl::Status s = ((*w).*op)();
    if (first.ok()) first = s;
  }
  if (first.ok()) first = sub_error_;
  return first;
}

absl::Status SummaryWriter::flush() { return ForEachFile(&EventFileWriter::Flush); }

absl::Status SummaryWriter::request_flush() { return ForEachFile(&EventFileWriter::RequestFlush); }

absl::Status SummaryWriter::close() {
  closed_.store(true, std::memory_order_release);
  return ForEachFile(&EventFileWriter::Close);
}

absl::Status SummaryWriter::status() const {
  absl::Status first = main_->status();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [dir, w] : sub_) {
    if (!first.ok()) break;
    first = w->status();
  }
  if (first.ok()) first = sub_error_;
  return first;
}

absl::Status SummaryWriter::last_rejection() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_rejection_;
}

WriterCounters SummaryWriter::counters() const {
  WriterCounters total = main_->counters();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [dir, w] : sub_) {
    const WriterCounters c = w->counters();
    total.records_written += c.records_written;
    total.bytes_written += c.bytes_written;
    total.records_dropped += c.records_dropped;
    total.records_lost += c.records_lost;
    total.queue_full_waits += c.queue_full_waits;
  }
  total.records_rejected = rejected_.load(std::memory_order_relaxed);
  return total;
}

}  // namespace trainbus::tensorboard
