// trainbus/tensorboard/summary_writer.h — write TensorBoard logs from C++.
//
// SummaryWriter is named after torch.utils.tensorboard.SummaryWriter and its
// methods keep PyTorch's names (add_scalar, add_histogram, add_image, ...),
// so code and habits carry over. It writes the files TensorBoard reads
// (tensorboard --logdir runs), fast, from any number of threads, and never
// loses data silently.
//
// Two libraries, one class:
//   - trainbus::tensorboard_core (pkg-config: trainbus-tensorboard) needs no
//     LibTorch: scalars, text, hparams, custom scalars, and histograms,
//     images, PR curves and audio from plain arrays. A program that only
//     logs numbers links this and starts in milliseconds.
//   - trainbus::tensorboard adds the at::Tensor overloads below (marked
//     "tensor layer"); it links LibTorch. This header only declares at::Tensor,
//     so including it costs no LibTorch headers either way.
//
// Quick start:
//
//   #include "trainbus/tensorboard/summary_writer.h"
//   namespace tb = trainbus::tensorboard;
//
//   tb::SummaryWriterOptions opt;
//   opt.log_dir = "runs/exp1";                // default: runs/<MonDD_HH-MM-SS>_<host><comment>
//   auto writer = tb::SummaryWriter::Create(opt);
//   if (!writer.ok()) { std::cerr << writer.status() << "\n"; return 1; }
//   tb::SummaryWriter& w = **writer;
//   for (int64_t step = 0; step < 1000; ++step) {
//     w.add_scalar("loss/train", loss, step);
//     w.add_scalars("loss", {{"train", l1}, {"val", l2}}, step);
//     if (step % 100 == 0) w.add_histogram("fc1/weight", fc1->weight, step);
//   }
//   w.add_image("samples", images, step, "NCHW");   // a grid of N images
//   w.add_hparams({{"lr", 0.1}, {"opt", std::string("sgd")}},
//                 {{"loss/val", final_val}}, /*step=*/999);
//   absl::Status s = w.close();                     // or let the destructor close
//
// Creating: Create() makes the directory (mkdir -p), a new event file named
//   events.out.tfevents.<unix secs>.<host>.<pid>.<n><filename_suffix>
// and writes its first record (file_version "brain.Event:2") before it
// returns, so a bad directory is reported at once, naming the directory and
// the OS error. Two writers in one directory write two files.
// With purge_step set, the file then gets Event{step: purge_step,
// file_version} and Event{step: purge_step, session_log: START}, as PyTorch
// writes: TensorBoard's Python loader then discards the points at steps >=
// purge_step that an interrupted earlier session left behind. It ignores the
// *first* START of a run (TensorBoard >= 2.5), so give every session of a run
// a purge_step, 0 for the first; the Rust loader instead replaces a tag's
// points at steps >= a repeated step. For a result every reader agrees on,
// rewind the run first (rewind.h), as the tensorboard plugin does.
//
// Each add_* call returns at once: it builds the summary on the calling thread
// (scalars: just copies tag, value, step and time) and enqueues it. A
// background thread per event file frames, checksums and writes large
// buffered chunks. add_scalar costs tens of nanoseconds and does not touch
// the heap for tags up to 30 bytes.
//
// Data reaches the file every flush_secs (120 s, PyTorch's default), when the
// buffer fills, on flush() (which returns once everything added before it is
// written, or with the error), on close() and in the destructor. At normal
// process exit (exit() or returning from main) writers still alive, even in
// a static or leaked, are flushed by an atexit hook. A crash or SIGKILL
// loses only what was not yet flushed; what was flushed stays readable.
//
// Return values and errors:
//   - add_* return true if the record was accepted. false means: the input
//     is invalid (the record is rejected: last_rejection() says why, and the
//     first rejections are logged to stderr), or the writer failed or was
//     closed, or the queue was full under QueueFullPolicy::kDrop. All are
//     counted (counters()).
//   - I/O errors are sticky. After the first failed write (disk full, file
//     size limit, I/O error) one line goes to stderr, every later add_*
//     returns false, and flush(), close() and status() return an error that
//     names the file, the OS error (strerror), how many records were lost and
//     what to do. Nothing is ever reported as written that was not.
//
// Values:
//   - step is int64; wall_time is seconds since the epoch (double, sub-second
//     precision), "now" when not given (add_scalar's "now" is the kernel's
//     coarse clock, to 1-4 ms: CoarseNowSeconds() in event_file_name.h).
//   - add_scalar stores the value as float (TensorBoard stores scalars as
//     float32).
//   - add_scalars(main_tag, {series: value}) writes each series to its own
//     run directory <log_dir>/<main_tag with '/' -> '_'>_<series>, under the
//     tag main_tag, each with its own event file, exactly like PyTorch, so
//     TensorBoard draws them as lines of one chart.
//   - add_hparams writes into THIS run (PyTorch writes into a new sub-run
//     named by a timestamp): the hparams experiment, session start and end
//     records, then each metric as a scalar at `step`. The hparams dashboard
//     therefore links the run's own curves (a metric named like an existing
//     tag, e.g. "loss/val", shows that curve's last value). Pass the last
//     step of the run: TensorBoard drops the points of a tag that come after
//     a point with a smaller step. With a non-empty run_name the records go
//     to the sub-run <log_dir>/<run_name> instead, like PyTorch.
//   - add_text's tag is used as given (PyTorch appends "/text_summary").
//   - add_graph takes the forward's output, not its input (see there);
//     add_embedding writes its files into this run's directory and rewrites
//     projector_config.pbtxt whole, so a resumed run lists an embedding once.
//   - Formats of each kind are described in summaries.h.
//
// Thread safety: every method may be called concurrently from any threads.
// close() may be called more than once; add_* after close() return false.
#ifndef TRAINBUS_TENSORBOARD_SUMMARY_WRITER_H_
#define TRAINBUS_TENSORBOARD_SUMMARY_WRITER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "trainbus/summary_types.h"
#include "trainbus/tensorboard/event_file_writer.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/summaries.h"

namespace at {
class Tensor;
}  // namespace at

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace trainbus {
struct Record;
}  // namespace trainbus

namespace trainbus::tensorboard {

namespace proto {
class GraphDef;
}  // namespace proto

// How a training session ended, as the HParams dashboard shows it (the
// hparams plugin's Status values).
enum class HParamsSessionStatus { kUnknown = 0, kSuccess = 1, kFailure = 2, kRunning = 3 };

struct SummaryWriterOptions {
  using QueueFullPolicy = tensorboard::QueueFullPolicy;

  // Run directory. Empty: runs/<MonDD_HH-MM-SS>_<hostname><comment>.
  std::string log_dir;
  // Appended to the default log_dir (ignored when log_dir is set).
  std::string comment;
  // See the header comment: discard older points at steps >= purge_step.
  std::optional<int64_t> purge_step;
  // Records the queue holds (per event file), rounded up to a power of two.
  // 64 bytes each; large records (images...) hold their data until written.
  size_t max_queue = 1 << 16;
  // Seconds between periodic flushes.
  double flush_secs = 120.0;
  // Appended to event file names.
  std::string filename_suffix;
  // fsync(2) at every flush, for durability across power loss.
  bool fsync_on_flush = false;
  // Queue full: wait for room (default), or drop the record and count it.
  QueueFullPolicy on_full = QueueFullPolicy::kWait;
};

class SummaryWriter {
 public:
  // Creates the directory and the event file. Errors name the directory or
  // file, the OS error and what to do.
  static absl::StatusOr<std::unique_ptr<SummaryWriter>> Create(SummaryWriterOptions options);

  ~SummaryWriter();  // close()
  SummaryWriter(const SummaryWriter&) = delete;
  SummaryWriter& operator=(const SummaryWriter&) = delete;

  bool add_scalar(absl::string_view tag, double value, int64_t step,
                  std::optional<double> wall_time = std::nullopt);
  bool add_scalars(absl::string_view main_tag, const std::map<std::string, double>& tag_scalar_dict,
                   int64_t step, std::optional<double> wall_time = std::nullopt);
  // Tensor layer. Any shape; floating, integer or bool dtype.
  bool add_histogram(absl::string_view tag, const at::Tensor& values, int64_t step,
                     std::optional<double> wall_time = std::nullopt);
  // Floats are bucketed where they are, without a copy.
  bool add_histogram(absl::string_view tag, absl::Span<const double> values, int64_t step,
                     std::optional<double> wall_time = std::nullopt);
  bool add_histogram(absl::string_view tag, absl::Span<const float> values, int64_t step,
                     std::optional<double> wall_time = std::nullopt);
  // Statistics and buckets computed elsewhere (summaries.h: RawHistogram).
  bool add_histogram_raw(absl::string_view tag, const RawHistogram& histogram, int64_t step,
                         std::optional<double> wall_time = std::nullopt);
  // Tensor layer. layout: "CHW" (default), "HWC" or "HW". The tensor is
  // checked and copied here (bad input is refused at once); the PNG is
  // encoded on the writer thread, so the caller may reuse its tensor at once.
  bool add_image(absl::string_view tag, const at::Tensor& image, int64_t step,
                 absl::string_view layout = "CHW", std::optional<double> wall_time = std::nullopt);
  // uint8 HWC pixels (summaries.h: ImagePixels), copied here, encoded on the
  // writer thread.
  bool add_image(absl::string_view tag, const ImagePixels& image, int64_t step,
                 std::optional<double> wall_time = std::nullopt);
  // Tensor layer. A batch tiled into one grid image. layout: "NCHW"
  // (default) or "NHWC".
  bool add_images(absl::string_view tag, const at::Tensor& images, int64_t step,
                  absl::string_view layout = "NCHW",
                  std::optional<double> wall_time = std::nullopt);
  bool add_text(absl::string_view tag, absl::string_view markdown, int64_t step,
                std::optional<double> wall_time = std::nullopt);
  bool add_hparams(const HParams& hparams, const std::map<std::string, double>& metrics,
                   int64_t step, absl::string_view run_name = "");
  // The HParams dashboard's view of one training *session* of this run, for
  // programs that resume (add_hparams is PyTorch's one-shot form):
  // add_session_start at the session's first step, add_session_end at its
  // last with how it ended. Unlike add_hparams they write no experiment
  // record and no metric scalars, so TensorBoard infers the table from every
  // run's start info (the union of hparams over a log root, each run with its
  // own values) and takes the metrics from the runs' own scalar tags, never a
  // second point at the last step. A run shows "running" between the two.
  // TensorBoard keeps the first start info of a run: before resuming, rewind
  // the run (rewind.h), which removes the earlier session's records.
  bool add_session_start(const HParams& hparams, int64_t step);
  bool add_session_end(HParamsSessionStatus status, int64_t step);
  // Tensor layer.
  bool add_pr_curve(absl::string_view tag, const at::Tensor& labels, const at::Tensor& predictions,
                    int64_t step, int32_t num_thresholds = 127,
                    std::optional<double> wall_time = std::nullopt);
  bool add_pr_curve(absl::string_view tag, absl::Span<const double> labels,
                    absl::Span<const double> predictions, int64_t step,
                    int32_t num_thresholds = 127, std::optional<double> wall_time = std::nullopt);
  // Written at step 0 under the tag custom_scalars__config__.
  bool add_custom_scalars(const CustomScalarLayout& layout);
  // Tensor layer. samples in [-1, 1], shape [frames] or [frames, channels].
  bool add_audio(absl::string_view tag, const at::Tensor& samples, int64_t step,
                 double sample_rate = 44100.0, std::optional<double> wall_time = std::nullopt);
  // Interleaved float samples (summaries.h: AudioSamples).
  bool add_audio(absl::string_view tag, const AudioSamples& audio, int64_t step,
                 std::optional<double> wall_time = std::nullopt);

  // Tensor layer. A list of images of one shape, as one grid (like
  // add_images on their stack). layout: "CHW" (default), "HWC" or "HW".
  bool add_images(absl::string_view tag, const std::vector<at::Tensor>& images, int64_t step,
                  absl::string_view layout = "CHW",
                  std::optional<double> wall_time = std::nullopt);

  // Tensor layer. A video, or a batch of videos side by side, shown by the
  // Images dashboard as an animated GIF. video: [N, T, C, H, W] (layout
  // "NTCHW", PyTorch's) or [T, C, H, W] ("TCHW"); uint8 or floating in
  // [0, 1]; 1, 3 or 4 channels. Checked and copied here; GIF-encoded on the
  // writer thread.
  bool add_video(absl::string_view tag, const at::Tensor& video, int64_t step, double fps = 4.0,
                 absl::string_view layout = "NTCHW",
                 std::optional<double> wall_time = std::nullopt);
  bool add_video(absl::string_view tag, const VideoPixels& video, int64_t step, double fps = 4.0,
                 std::optional<double> wall_time = std::nullopt);

  // Tensor layer. A mesh or point cloud for the Mesh dashboard: vertices
  // [B, N, 3]; colors [B, N, 3] (uint8 or [0, 1]) and faces [B, F, 3]
  // (vertex indices) may be undefined tensors (at::Tensor()). config_json:
  // the three.js scene settings (camera, lights, material), a JSON object.
  bool add_mesh(absl::string_view tag, const at::Tensor& vertices, const at::Tensor& colors,
                const at::Tensor& faces, int64_t step, std::string config_json = "",
                std::optional<double> wall_time = std::nullopt);
  bool add_mesh(absl::string_view tag, const MeshData& mesh, int64_t step,
                std::optional<double> wall_time = std::nullopt);

  // Tensor layer. An embedding for the Projector (projector.h: the files and
  // where they go): mat [N, D], one point per row; metadata empty or one row
  // per point (EmbeddingMetadata::Labels(labels) for one column);
  // label_images nullptr or [N, C, H, W] thumbnails (layout "NCHW" or
  // "NHWC"), tiled into the sprite. Checked and copied here; the files are
  // written on the writer thread, in order with the events. A failed write
  // (naming the file and the OS error) is printed and returned by status(),
  // flush() and close(); the event file goes on.
  bool add_embedding(const at::Tensor& mat, const EmbeddingMetadata& metadata,
                     const at::Tensor* label_images, int64_t step,
                     absl::string_view tag = "default", absl::string_view layout = "NCHW");
  bool add_embedding(absl::string_view tag, ProjectorEmbedding embedding, int64_t step);

  // The model graph for the Graphs dashboard (model_graph.h), at step 0.
  // Tensor layer: `output` is what the model's forward returned for a
  // sample batch, with gradients enabled (LibTorch modules cannot be called
  // through torch::nn::Module, so, unlike PyTorch, pass the output, not the
  // input; for a Sequential, RecordModelGraph(model, input) runs it).
  bool add_graph(const torch::nn::Module& model, const at::Tensor& output);
  // A GraphDef built elsewhere (RecordModelGraph, ModelHierarchyGraph).
  bool add_graph(const proto::GraphDef& graph);
  // The graph of one forward pass on `sample_input` (RecordModelGraph), run
  // off the calling thread: a Sequential is copied here (CopyModelForGraph:
  // its parameters and the input's first sample, not a forward pass) and
  // recorded on the writer thread, on that sample repeated to the input's
  // batch size (the graph shows the input's shapes), so training goes on
  // meanwhile. A Sequential that cannot
  // be copied is recorded here; another model gives its module tree. A
  // forward pass that throws gives the module tree too, and a warning with
  // the reason on stderr. The model, its modes and the run's random numbers
  // are left as they were.
  bool record_graph(torch::nn::Module& model, const at::Tensor& sample_input);

  // Tensor layer. Dispatches a Record (trainbus/record.h) to the matching
  // add_* call. Record::wall_time 0 means now. Image records use their
  // layout ("NCHW" or "NHWC" for a grid).
  bool add_record(const Record& record);

  // Writes a serialized Event as is (no validation).
  bool add_serialized_event(std::string serialized_event);

  // Waits until everything added before the call is written (to every event
  // file of this writer, add_scalars sub-runs included), or returns the error.
  absl::Status flush();
  // Starts a flush of everything added so far and returns at once (for a
  // training thread that must not wait on disk, e.g. at every epoch end).
  // A writer thread that slept is woken; one napping between records (at
  // most 2 ms) is left to see the request when it looks again, which spares
  // the caller the wake-up. Returns the sticky error, if any.
  absl::Status request_flush();
  // Flushes and closes every event file. Idempotent.
  absl::Status close();
  // OK, or the first sticky I/O error.
  absl::Status status() const;
  // The most recent invalid-input error (OK if none).
  absl::Status last_rejection() const;

  // Summed over this writer's event files (sub-runs included).
  WriterCounters counters() const;

  const std::string& log_dir() const { return log_dir_; }
  // The run's own event file.
  const std::string& file_path() const;

 private:
  SummaryWriter(SummaryWriterOptions options, std::unique_ptr<EventFileWriter> main);
  bool Reject(const absl::Status& status);
  // Enqueues a built summary (or rejects the error) for the run's own file.
  bool Enqueue(absl::StatusOr<proto::Summary> summary, int64_t step,
               std::optional<double> wall_time);
  // Checks and copies the values; the buckets are counted on the writer thread.
  bool EnqueueHistogram(absl::string_view tag, absl::Span<const double> values, int64_t step,
                        std::optional<double> wall_time);
  bool EnqueueHistogram(absl::string_view tag, absl::Span<const float> values, int64_t step,
                        std::optional<double> wall_time);
  // Enqueues a graph that `record` builds on the writer thread, at step 0.
  bool EnqueueGraph(std::function<proto::GraphDef()> record, size_t approx_bytes);
  // Enqueues a video to be GIF-encoded on the writer thread.
  bool EnqueueVideo(absl::string_view tag, absl::StatusOr<VideoCanvas> canvas, int64_t step,
                    std::optional<double> wall_time);
  // Enqueues an image to be PNG-encoded on the writer thread.
  bool EnqueueImage(absl::string_view tag, absl::StatusOr<ImageCanvas> canvas, int64_t step,
                    std::optional<double> wall_time);
  // Applies `op` to the run's file and every sub-run's; returns the first error.
  absl::Status ForEachFile(absl::Status (EventFileWriter::*op)());
  // The writer of a sub-run directory, created on first use; nullptr (and a
  // sticky error) if it cannot be created.
  EventFileWriter* SubWriter(const std::string& dir);

  SummaryWriterOptions options_;
  std::string log_dir_;
  std::unique_ptr<EventFileWriter> main_;
  mutable std::mutex mu_;  // guards sub_, sub_error_, files_error_, last_rejection_
  std::map<std::string, std::unique_ptr<EventFileWriter>> sub_;
  absl::Status sub_error_;
  absl::Status files_error_;  // the first failed write of the Projector's files
  absl::Status last_rejection_;
  std::atomic<uint64_t> rejected_{0};
  std::atomic<bool> closed_{false};
};

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_SUMMARY_WRITER_H_
