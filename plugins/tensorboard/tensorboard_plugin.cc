// tensorboard: writes the run as TensorBoard event files in the run's folder.
//
// What it writes (tags), each with an option to choose cadence or turn it off:
//   train/loss, train/accuracy     every loss_every_n iterations
//   lr/group<i>                    learning rate of each param group (lr_every_n)
//   time/iteration_ms, time/samples_per_second
//   val/loss, val/accuracy, ...    every validation (any metric on ValidationEnd)
//   epoch/mean_loss                every epoch
//   weights/<param>, grads/<param> histograms every histograms_every_n iterations
//   inputs                         a grid of the first batch's images, once
//   inputs/video                   the first image of each of the first
//                                  video_frames iterations, as a video, once
//                                  (at step 0, like inputs)
//   model graph                    the Graphs dashboard: the model's modules,
//                                  parameters and one forward pass's ops, once
//   val/outputs (Projector)        at the end, the model's outputs on the
//                                  first `embeddings` validation samples,
//                                  labelled, with the inputs as thumbnails
//   run/config                     the run's hyperparameters as a markdown table
//   custom_scalars layout          loss and accuracy charts (train vs val)
//   hparams                        the session's hyperparameters (at its first
//                                  step) and how it ended (at its last)
//   every record any plugin publishes (records option)
// A resumed run (RunInfo::start_step > 0) first rewinds the run's event files
// to the resume step (rewind.h: the abandoned tail and the earlier session's
// hparams records go), then writes a SessionLog START there like every
// session, so each step is on disk once and every TensorBoard loader agrees.
//
// The training thread only enqueues; the SummaryWriter's own thread writes.
// Write errors are not lost: Close() returns the writer's error and the run
// ends with it.
#include <cmath>
#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "trainbus/plugin.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/model_graph.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/rewind.h"
#include "trainbus/tensorboard/summary_writer.h"
#include "trainbus/tensorboard/tensor_summaries.h"
#include "video_frames.h"

namespace trainbus::tensorboard_plugin {
namespace {

namespace tb = trainbus::tensorboard;


class TensorBoardPlugin : public Plugin {
 public:
  static PluginInfo Info() {
    return {"tensorboard",
            "1.0.0",
            "Writes scalars, histograms, images, text, hparams and every published record as "
            "TensorBoard event files",
            {{"log_dir", OptionType::kString, "\"\"",
              "Folder for the event files (default: the run's folder, <log_root>/<name>)"},
             {"flush_secs", OptionType::kDouble, "10", "Seconds between periodic flushes (> 0)"},
             {"max_queue", OptionType::kInt, "65536", "Records the write queue holds (2-1048576, allocated up front)"},
             {"drop_when_full", OptionType::kBool, "false",
              "Drop records when the queue is full instead of waiting (counted, reported)"},
             {"loss_every_n", OptionType::kInt, "1",
              "Write train/loss and train metrics every N iterations (>= 0; 0: never)"},
             {"lr_every_n", OptionType::kInt, "1", "Write lr/group<i> every N iterations (>= 0; 0: never)"},
             {"timing_every_n", OptionType::kInt, "10",
              "Write iteration time and samples/s every N iterations (>= 0; 0: never)"},
             {"histograms_every_n", OptionType::kInt, "100",
              "Weight and gradient histograms every N iterations (>= 0; 0: never)"},
             {"images", OptionType::kInt, "16",
              "Number of input images of the first batch to show as a grid (>= 0; 0: none)"},
             {"graph", OptionType::kBool, "true",
              "Write the model graph (Graphs dashboard) at a run's first iteration: a "
              "Sequential recorded from one forward pass on the first batch in eval mode, "
              "another model as its module tree"},
             {"embeddings", OptionType::kInt, "256",
              "At the end, the model's outputs on the first N validation samples as a "
              "Projector embedding (val/outputs), labelled and with the inputs as thumbnails "
              "(0-1024; 0: none)"},
             {"video_frames", OptionType::kInt, "16",
              "A video (inputs/video) of the first input image of each of the first N "
              "iterations, written once; image inputs only (>= 0; 0: none)"},
             {"validation", OptionType::kBool, "true", "Write validation metrics"},
             {"hparams", OptionType::kBool, "true",
              "Write the run's hyperparameters and its end status to the HParams dashboard "
              "(metrics: the run's own scalars)"},
             {"layout", OptionType::kBool, "true",
              "Write a Custom Scalars layout: train vs val loss and accuracy"},
             {"records", OptionType::kBool, "true", "Write every record other plugins publish"}},
            /*default_priority=*/0,
            /*capabilities=*/kWritesOutput};
  }

  static absl::StatusOr<std::unique_ptr<TensorBoardPlugin>> Create(const PluginContext& ctx) {
    const PluginOptions& o = ctx.options;
    for (const char* name : {"loss_every_n", "lr_every_n", "timing_every_n", "histograms_every_n",
                             "images", "video_frames"}) {
      if (o.GetInt(name) < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("option '", name, "' must be >= 0, got ", o.GetInt(name)));
      }
    }
    if (o.GetInt("embeddings") < 0 || o.GetInt("embeddings") > 1024) {
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'embeddings' must be between 0 and 1024 samples (the trainer keeps the "
          "first 1024 validation samples' outputs), got ", o.GetInt("embeddings")));
    }
    if (!(o.GetDouble("flush_secs") > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'flush_secs' must be > 0, got ", o.GetDouble("flush_secs")));
    }
    // The queue is allocated up front: a bound keeps a typo from asking for terabytes.
    if (o.GetInt("max_queue") < 2 || o.GetInt("max_queue") > (int64_t{1} << 20)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'max_queue' must be between 2 and 1048576 records (allocated up front), got ",
          o.GetInt("max_queue")));
    }
    auto p = std::make_unique<TensorBoardPlugin>();
    p->options_ = o;
    // Read once: OnIterationEnd runs every iteration, an option lookup hashes its name.
    p->every_.loss = o.GetInt("loss_every_n");
    p->every_.lr = o.GetInt("lr_every_n");
    p->every_.timing = o.GetInt("timing_every_n");
    p->every_.histograms = o.GetInt("histograms_every_n");
    p->every_.images = o.GetInt("images");
    p->every_.video_frames = o.GetInt("video_frames");
    p->video_ = VideoFrames(p->every_.video_frames);
    p->write_records_ = o.GetBool("records");  // read once: OnRecord runs for every record
    p->write_validation_ = o.GetBool("validation");
    p->log_dir_ = o.GetString("log_dir");  // empty: the run's folder, known at OnTrainBegin
    return p;
  }

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override {
    const RunInfo& run = *e.run;
    tb::SummaryWriterOptions w;
    // The host's RunInfo names the run's folder (Session::Begin fills it in).
    w.log_dir = !log_dir_.empty() ? log_dir_ : run.log_dir;
    w.flush_secs = options_.GetDouble("flush_secs");
    w.max_queue = static_cast<size_t>(options_.GetInt("max_queue"));
    w.on_full = options_.GetBool("drop_when_full") ? tb::QueueFullPolicy::kDrop
                                                   : tb::QueueFullPolicy::kWait;
    // Every session writes a START (TensorBoard ignores a run's first one);
    // a resumed one first takes the files back to its step.
    w.purge_step = run.start_step;
    if (run.start_step > 0) Rewind(w.log_dir, run.start_step, control);
    auto writer = tb::SummaryWriter::Create(w);
    if (!writer.ok()) {
      // Thrown: the bus names this plugin and hook, and the run's policy applies.
      throw std::runtime_error(std::string(writer.status().message()));
    }
    writer_ = std::move(writer).value();
    control.Log(absl::StrCat("writing event files to ", writer_->log_dir()));
    start_step_ = run.start_step;
    HParams hparams;
    for (const auto& [k, v] : run.hparams) hparams[k] = HParamValueFromText(v);
    if (options_.GetBool("hparams") && !hparams.empty()) {
      hparams_written_ = writer_->add_session_start(hparams, run.start_step);
    }

    if (!run.hparams.empty()) {
      std::string table = "| hyperparameter | value |\n|---|---|\n";
      for (const auto& [k, v] : run.hparams) absl::StrAppend(&table, "| ", k, " | ", v, " |\n");
      absl::StrAppend(&table, "\n", run.train_samples, " training samples, batch ", run.batch_size,
                      ", ", run.iterations_per_epoch, " iterations per epoch, ",
                      run.total_iterations, " iterations in total.\n");
      writer_->add_text("run/config", table, run.start_step);
    }
    // The Custom Scalars layout is written once per run, by its first
    // session, when the tags it charts are known (see WriteLayout).
    layout_pending_ = options_.GetBool("layout") && run.start_step == 0;
    // The graph belongs to the run, not the session: its first session writes it.
    graph_pending_ = options_.GetBool("graph") && run.start_step == 0;
  }

  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    if (!writer_) return;
    const int64_t s = e.step;
    // One clock read for the iteration's scalars, not one each.
    const double wall = tb::CoarseNowSeconds();
    if (trainbus::EveryN(every_.loss, s)) {
      writer_->add_scalar("train/loss", e.loss, s, wall);
      if (layout_pending_) written_.insert("train/loss");
      for (const Metric& m : e.metrics) {
        writer_->add_scalar(m.name, m.value, s, wall);
        if (layout_pending_) written_.insert(m.name);
      }
    }
    if (trainbus::EveryN(every_.lr, s)) {
      while (lr_tags_.size() < e.learning_rates.size()) {
        lr_tags_.push_back(absl::StrCat("lr/group", lr_tags_.size()));
      }
      for (size_t g = 0; g < e.learning_rates.size(); ++g) {
        writer_->add_scalar(lr_tags_[g], e.learning_rates[g], s, wall);
      }
      if (layout_pending_ && !e.learning_rates.empty()) written_.insert("lr/");
    }
    if (trainbus::EveryN(every_.timing, s) && e.duration_seconds > 0) {
      writer_->add_scalar("time/iteration_ms", e.duration_seconds * 1e3, s, wall);
      writer_->add_scalar("time/samples_per_second", e.batch_size / e.duration_seconds, s, wall);
    }
    if (!images_written_ && every_.images > 0 && e.inputs != nullptr && e.inputs->dim() == 4) {
      images_written_ = true;
      const int64_t n = std::min<int64_t>(every_.images, e.inputs->size(0));
      writer_->add_images("inputs", e.inputs->slice(0, 0, n).detach(), s, "NCHW");
    }
    if (graph_pending_) WriteGraph(e, control);
    if (!video_written_ && every_.video_frames > 0 && start_step_ == 0 &&
        IsImageBatch(e.inputs)) {
      AddVideoFrame(*e.inputs);
    }
    if (trainbus::EveryN(every_.histograms, s) && control.model() != nullptr) {
      // The writer reads a parameter (or gradient) in place and copies its
      // values before returning: no detach (a dispatched op) needed.
      for (const auto& item : control.model()->named_parameters()) {
        const at::Tensor& p = item.value();
        writer_->add_histogram(absl::StrCat("weights/", item.key()), p, s);
        if (p.grad().defined()) {
          writer_->add_histogram(absl::StrCat("grads/", item.key()), p.grad(), s);
        }
      }
    }
    last_step_ = s;
  }

  void OnValidationEnd(const ValidationEndEvent& e, Control&) override {
    if (!writer_) return;
    KeepEmbedding(e);
    if (!write_validation_) return;
    for (const Metric& m : e.metrics) {
      writer_->add_scalar(m.name, m.value, e.step);
      if (layout_pending_) written_.insert(m.name);
    }
  }

  void OnEpochEnd(const EpochEndEvent& e, Control&) override {
    if (!writer_) return;
    // A partial epoch's mean is not an epoch's mean: a resume completes the
    // epoch and writes it then.
    if (e.complete) writer_->add_scalar("epoch/mean_loss", e.mean_loss, e.step);
    if (e.complete) WriteLayout();
    // On disk at every epoch end, without making the training thread wait.
    absl::Status s = writer_->request_flush();
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  }

  void OnRecord(const Record& r, Control& control) override {
    if (!writer_ || !write_records_) return;
    WarnOnASecondKind(r, control);
    // Another plugin's Custom Scalars categories join this run's one layout
    // (TensorBoard shows a run's last layout only), written with it.
    if (const auto* layout = std::get_if<CustomScalarsValue>(&r.value); layout && layout_pending_) {
      contributed_.insert(contributed_.end(), layout->layout.begin(), layout->layout.end());
      return;
    }
    if (layout_pending_ && std::holds_alternative<ScalarValue>(r.value)) written_.insert(r.tag);
    writer_->add_record(r);
  }

  void OnTrainEnd(const TrainEndEvent& e, Control&) override {
    if (!writer_) return;
    WriteLayout();
    WriteEmbedding();
    WriteVideo();
    if (hparams_written_) {
      writer_->add_session_end(SessionStatus(e), std::max(e.step, start_step_));
    }
    if (e.reason != EndReason::kCompleted) {
      writer_->add_text("run/end", absl::StrCat("Run ", EndReasonName(e.reason), " after step ",
                                                e.step, ": ", e.stop_reason),
                        std::max<int64_t>(e.step, 0));
    }
  }

  // Before a checkpoint commits, everything up to its step is in the files:
  // a kill right after it and a --resume then lose no step.
  std::function<absl::Status()> FlushForCheckpoint() override {
    if (!writer_) return nullptr;
    absl::Status s = writer_->request_flush();  // starts within 2 ms, off this thread
    if (!s.ok()) return [s] { return s; };
    return [w = writer_.get()] { return w->flush(); };
  }

  absl::Status Close() override {
    if (!writer_) return absl::OkStatus();
    return writer_->close();
  }

 private:
  // TensorBoard keeps one kind of data per tag: a text under a scalar's tag
  // hides one of them in every dashboard. Said once per tag.
  void WarnOnASecondKind(const Record& r, Control& control) {
    const char* kind = RecordKindName(r.value);  // one static string per kind
    auto [it, first] = kind_of_tag_.try_emplace(r.tag, kind);
    if (first || it->second == kind || !mixed_tags_.insert(r.tag).second) return;
    control.Log(absl::StrCat("warning: tag '", r.tag, "' was published as ", it->second,
                             " and now as ", kind,
                             " at step ", r.step, ": TensorBoard keeps one kind of data per tag "
                             "and will show only one of them; publish them under different tags"));
  }

  static bool IsImageBatch(const at::Tensor* t) {
    return t != nullptr && t->defined() && t->dim() == 4 && t->size(0) > 0 &&
           (t->size(1) == 1 || t->size(1) == 3 || t->size(1) == 4);
  }

  // Images [N, C, H, W] each scaled to [0, 1] by its own range: inputs are
  // usually normalised (mean 0, std 1), which would show as black and white.
  static at::Tensor Thumbnails(const at::Tensor& images) {
    at::Tensor x = tb::ToHost(images).to(at::kFloat);
    const at::Tensor flat = x.flatten(1);
    const at::Tensor lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
    const at::Tensor hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
    return (x - lo) / (hi - lo).clamp_min(1e-12);
  }

  // At step 0, like the `inputs` grid: it shows the run's first iterations,
  // and a resume at any later step keeps it. A run shorter than video_frames
  // writes the frames it has at its end.
  void WriteVideo() {
    if (video_written_ || video_.count() == 0) return;
    const std::vector<uint8_t> pixels = video_.ScaledPixels();
    writer_->add_video("inputs/video", video_.View(pixels), 0, 4.0);
    video_ = VideoFrames(0);
    video_written_ = true;
  }

  // A batch whose image size changed ends the video there.
  void AddVideoFrame(const at::Tensor& inputs) {
    if (!video_.Add(inputs) || video_.full()) WriteVideo();
  }

  // At the run's first iteration, from the batch it trained on. The forward
  // pass runs on a copy of the model on the writer thread (record_graph):
  // the training thread pays for the copy only.
  void WriteGraph(const IterationEndEvent& e, Control& control) {
    graph_pending_ = false;
    torch::nn::Module* model = control.model();
    if (model == nullptr) return;
    if (e.inputs == nullptr || !e.inputs->defined()) {
      writer_->add_graph(tb::ModelHierarchyGraph(*model));
      return;
    }
    writer_->record_graph(*model, *e.inputs);
  }

  // Keeps the latest validation's first samples for the Projector (copies:
  // the event's tensors live only for the hook). Thumbnails are at most
  // kThumbnailSide pixels a side, as uint8: 1024 of them stay under 13 MB and
  // their sprite under the Projector's 8192 x 8192.
  void KeepEmbedding(const ValidationEndEvent& e) {
    constexpr int64_t kThumbnailSide = 64;
    const int64_t cap = options_.GetInt("embeddings");
    if (cap == 0 || e.outputs == nullptr || e.outputs->dim() != 2) return;
    const int64_t n = std::min<int64_t>(cap, e.outputs->size(0));
    embedding_outputs_ = tb::ToHost(e.outputs->slice(0, 0, n)).to(at::kFloat).clone();
    // Class labels when the targets are class indices (not soft labels).
    const bool labelled = e.targets != nullptr && e.targets->dim() == 1 &&
                          e.targets->size(0) >= n &&
                          at::isIntegralType(e.targets->scalar_type(), /*includeBool=*/false);
    embedding_targets_ =
        labelled ? tb::ToHost(e.targets->slice(0, 0, n)).to(at::kLong).contiguous()
                 : at::Tensor();
    embedding_thumbnails_ = at::Tensor();
    if (IsImageBatch(e.inputs) && e.inputs->size(0) >= n) {
      at::Tensor thumbs = Thumbnails(e.inputs->slice(0, 0, n));
      const int64_t h = thumbs.size(2), w = thumbs.size(3);
      const double scale = std::min(1.0, static_cast<double>(kThumbnailSide) / std::max(h, w));
      if (scale < 1.0) {
        thumbs = at::adaptive_avg_pool2d(
            thumbs, {std::max<int64_t>(1, static_cast<int64_t>(h * scale)),
                     std::max<int64_t>(1, static_cast<int64_t>(w * scale))});
      }
      embedding_thumbnails_ = thumbs.mul(255.0).clamp(0.0, 255.0).to(at::kByte).contiguous();
    }
    embedding_step_ = e.step;
  }

  // The last validation's outputs, labelled with the class, the prediction
  // and whether it was right, so the Projector can colour by each.
  void WriteEmbedding() {
    if (!embedding_outputs_.defined()) return;
    tb::EmbeddingMetadata metadata;
    const at::Tensor predicted = embedding_outputs_.argmax(1).contiguous();
    const int64_t* guess = predicted.data_ptr<int64_t>();
    if (embedding_targets_.defined()) {
      metadata.header = {"label", "predicted", "correct"};
      const int64_t* label = embedding_targets_.data_ptr<int64_t>();
      for (int64_t i = 0; i < embedding_outputs_.size(0); ++i) {
        metadata.rows.push_back({std::to_string(label[i]), std::to_string(guess[i]),
                                 label[i] == guess[i] ? "yes" : "no"});
      }
    } else {
      for (int64_t i = 0; i < embedding_outputs_.size(0); ++i) {
        metadata.rows.push_back({std::to_string(guess[i])});  // one column: the prediction
      }
    }
    writer_->add_embedding(embedding_outputs_, metadata,
                           embedding_thumbnails_.defined() ? &embedding_thumbnails_ : nullptr,
                           embedding_step_, "val/outputs");
    embedding_outputs_ = at::Tensor();
  }

  // Train vs val loss, train vs val accuracy, learning rates: each chart and
  // each series only for tags this run writes, so that every one of them
  // resolves in TensorBoard (an embedded loop may have no accuracy at all).
  void WriteLayout() {
    if (!layout_pending_) return;
    layout_pending_ = false;
    std::vector<CustomScalarChart> charts;
    auto chart = [&](const char* title, std::initializer_list<const char*> tags) {
      CustomScalarChart c{title, {}, {}};
      for (const char* tag : tags) {
        if (written_.count(tag)) c.multiline_tags.push_back(absl::StrCat("^", tag, "$"));
      }
      if (!c.multiline_tags.empty()) charts.push_back(std::move(c));
    };
    chart("loss: train vs val", {"train/loss", "val/loss"});
    chart("accuracy: train vs val", {"train/accuracy", "val/accuracy"});
    if (written_.count("lr/")) charts.push_back({"learning rate", {"^lr/"}, {}});
    CustomScalarLayout layout;
    if (!charts.empty()) layout.push_back(CustomScalarCategory{"training", std::move(charts), false});
    // Contributed categories keep the regexes that match a tag written so
    // far, and the charts that keep one: every chart shows something.
    for (CustomScalarCategory& category : contributed_) {
      std::vector<CustomScalarChart> kept;
      for (CustomScalarChart& c : category.charts) {
        std::vector<std::string> resolving;
        for (const std::string& pattern : c.multiline_tags) {
          std::regex re;
          try {
            re = std::regex(pattern);
          } catch (const std::regex_error&) {
            continue;  // TensorBoard could not use it either
          }
          for (const std::string& tag : written_) {
            if (std::regex_search(tag, re)) {
              resolving.push_back(pattern);
              break;
            }
          }
        }
        c.multiline_tags = std::move(resolving);
        if (!c.multiline_tags.empty() || !c.margin_series.empty()) kept.push_back(std::move(c));
      }
      if (!kept.empty()) layout.push_back({category.title, std::move(kept), category.closed});
    }
    contributed_.clear();
    written_.clear();
    if (!layout.empty()) writer_->add_custom_scalars(layout);
  }

  // Removes what an earlier session wrote at steps >= `step` (and its hparams
  // records) from the run's event files. Failing to is not fatal: TensorBoard's
  // own purge still applies, but the user is told.
  static void Rewind(const std::string& log_dir, int64_t step, Control& control) {
    absl::StatusOr<tb::RewindReport> r = tb::RewindRun(log_dir, step);
    if (!r.ok()) {
      control.Log(absl::StrCat("warning: cannot rewind the event files to step ", step, ": ",
                               r.status().message(),
                               "; TensorBoard may show steps of the earlier session twice"));
      return;
    }
    if (r->files_rewritten > 0) {
      control.Log(absl::StrCat("resuming at step ", step, ": removed ", r->events_removed,
                               " events (steps >= ", step, " and the earlier session's hparams) "
                               "from ", r->files_rewritten, " earlier event file",
                               r->files_rewritten == 1 ? "" : "s"));
    }
    if (r->embeddings_removed > 0) {
      control.Log(absl::StrCat("resuming at step ", step, ": removed ", r->embeddings_removed,
                               " Projector embedding(s) at steps >= ", step));
    }
    for (const std::string& skipped : r->skipped) {
      control.Log(absl::StrCat("warning: not rewound (corrupt): ", skipped));
    }
  }

  // The HParams dashboard's status: a stop a plugin asked for (early
  // stopping) is a success unless training diverged (a non-finite loss).
  static tb::HParamsSessionStatus SessionStatus(const TrainEndEvent& e) {
    switch (e.reason) {
      case EndReason::kFailed: return tb::HParamsSessionStatus::kFailure;
      case EndReason::kInterrupted: return tb::HParamsSessionStatus::kUnknown;
      case EndReason::kCompleted:
      case EndReason::kStopRequested: break;
    }
    for (const Metric& m : e.final_metrics) {
      if (!std::isfinite(m.value)) return tb::HParamsSessionStatus::kFailure;
    }
    return tb::HParamsSessionStatus::kSuccess;
  }

  // "0.05" -> 0.05, "true" -> true, anything else stays text.
  static HParamValue HParamValueFromText(const std::string& text) {
    if (text == "true") return true;
    if (text == "false") return false;
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (!text.empty() && end == text.c_str() + text.size()) return v;
    return text;
  }

  PluginOptions options_;
  struct {  // the per-iteration options, read once by Create
    int64_t loss = 0, lr = 0, timing = 0, histograms = 0, images = 0, video_frames = 0;
  } every_;
  std::vector<std::string> lr_tags_;  // "lr/group<g>", made once
  std::string log_dir_;
  std::unique_ptr<tb::SummaryWriter> writer_;
  bool hparams_written_ = false;
  bool graph_pending_ = false;
  VideoFrames video_{0};  // sized by Create
  bool video_written_ = false;
  at::Tensor embedding_outputs_, embedding_targets_, embedding_thumbnails_;
  int64_t embedding_step_ = 0;
  bool layout_pending_ = false;
  // Hash tables, not trees: each record looks its tag up, in lines that are
  // cold after the model's work, and a tree walk touches one per level.
  absl::flat_hash_set<std::string> written_;  // scalar tags seen while the layout is pending
  absl::flat_hash_map<std::string, const char*> kind_of_tag_;  // published records: tag -> kind
  absl::flat_hash_set<std::string> mixed_tags_;                // tags already warned about
  CustomScalarLayout contributed_;  // other plugins' categories, written with the layout
  bool write_records_ = true, write_validation_ = true;
  bool images_written_ = false;
  int64_t start_step_ = 0;
  int64_t last_step_ = 0;
};

}  // namespace
}  // namespace trainbus::tensorboard_plugin

TRAINBUS_PLUGIN(trainbus::tensorboard_plugin::TensorBoardPlugin)
