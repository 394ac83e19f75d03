// csv: writes every scalar of the run to a plain file next to the event files,
// <run folder>/scalars.csv (or .jsonl), for plotting with your own tools.
//
// Rows (wall_time, step, tag, value), the same scalars the tensorboard plugin
// writes:
//   train/loss and the iteration's metrics (train/accuracy, ...)   IterationEnd
//   lr/group<i>                                                    IterationEnd
//   val/loss, val/accuracy, ...                                    ValidationEnd
//   epoch/mean_loss                                                EpochEnd
//   every scalar record any plugin or the host publishes           OnRecord
//
// The training thread only queues rows; a thread of the plugin's own formats
// and writes them (scalar_file.h). Files are written every flush_secs, at
// every epoch end (without waiting) and at the end. A write error ends the run
// with an error naming the file and the number of rows lost.
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "scalar_file.h"
#include "trainbus/plugin.h"

namespace trainbus::csv {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}


class CsvPlugin : public Plugin {
 public:
  static PluginInfo Info() {
    return {"csv",
            "1.0.0",
            "Writes every scalar (loss, lr, validation metrics, scalar records) to a CSV or JSON "
            "lines file in the run folder",
            {{"path", OptionType::kString, "\"\"",
              "File to write (default: <run folder>/scalars.csv, or scalars.jsonl); a relative "
              "path is taken from the run folder"},
             {"format", OptionType::kString, "\"csv\"",
              "\"csv\" (wall_time,step,tag,value) or \"jsonl\" (one JSON object per line)"},
             {"flush_secs", OptionType::kDouble, "10", "Seconds between periodic writes (> 0)"},
             {"every_n", OptionType::kInt, "1",
              "Write train/loss, train metrics and lr every N iterations (>= 1)"},
             {"max_queue", OptionType::kInt, "65536",
              "Rows the queue holds before the training thread waits for the writer (1-1048576)"},
             {"records", OptionType::kBool, "true",
              "Write the scalar records other plugins publish"}},
            /*default_priority=*/0,
            /*capabilities=*/kWritesOutput};
  }

  static absl::StatusOr<std::unique_ptr<CsvPlugin>> Create(const PluginContext& ctx) {
    const PluginOptions& o = ctx.options;
    auto format = ParseFormat(o.GetString("format"));
    if (!format.ok()) return format.status();
    if (!(o.GetDouble("flush_secs") > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'flush_secs' must be > 0, got ", o.GetDouble("flush_secs")));
    }
    if (o.GetInt("every_n") < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'every_n' must be >= 1, got ", o.GetInt("every_n")));
    }
    if (o.GetInt("max_queue") < 1 || o.GetInt("max_queue") > (int64_t{1} << 20)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'max_queue' must be between 1 and 1048576 rows, got ", o.GetInt("max_queue")));
    }
    auto p = std::make_unique<CsvPlugin>();
    p->options_.format = *format;
    p->options_.flush_secs = o.GetDouble("flush_secs");
    p->options_.max_queue = static_cast<size_t>(o.GetInt("max_queue"));
    p->path_ = o.GetString("path");
    p->every_n_ = o.GetInt("every_n");
    p->records_ = o.GetBool("records");
    // A second instance (its own id) writes <id>.csv by default.
    p->stem_ = ctx.instance() == ctx.name ? "scalars" : ctx.instance();
    return p;
  }

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override {
    namespace fs = std::filesystem;
    const std::string default_name =
        stem_ + (options_.format == Format::kCsv ? ".csv" : ".jsonl");
    fs::path path = path_.empty() ? fs::path(default_name) : fs::path(path_);
    if (path.is_relative()) path = fs::path(e.run->log_dir) / path;
    options_.path = path.string();
    if (e.run->start_step > 0) {
      // A resumed run writes its steps again: the file's rows at those steps
      // (an interrupted session's) go first, so every step is in it once.
      absl::StatusOr<int64_t> removed =
          RewindScalarFile(options_.path, options_.format, e.run->start_step);
      if (!removed.ok()) throw std::runtime_error(std::string(removed.status().message()));
      if (*removed > 0) {
        control.Log(absl::StrCat("resuming at step ", e.run->start_step, ": removed ", *removed,
                                 " rows at steps >= ", e.run->start_step, " from ",
                                 options_.path));
      }
    }
    auto file = ScalarFile::Open(options_);
    // Thrown: the bus names this plugin and hook, and the run's policy applies.
    if (!file.ok()) throw std::runtime_error(std::string(file.status().message()));
    file_ = std::move(file).value();
    control.Log(absl::StrCat("writing scalars to ", file_->path()));
  }

  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    if (!file_ || !trainbus::EveryN(every_n_, e.step)) return;
    const double t = Now();
    Add(t, e.step, "train/loss", e.loss);
    for (const Metric& m : e.metrics) Add(t, e.step, m.name, m.value);
    for (size_t g = 0; g < e.learning_rates.size(); ++g) {
      Add(t, e.step, absl::StrCat("lr/group", g), e.learning_rates[g]);
    }
  }

  void OnValidationEnd(const ValidationEndEvent& e, Control&) override {
    if (!file_) return;
    const double t = Now();
    for (const Metric& m : e.metrics) Add(t, e.step, m.name, m.value);
  }

  void OnEpochEnd(const EpochEndEvent& e, Control&) override {
    if (!file_) return;
    Add(Now(), e.step, "epoch/mean_loss", e.mean_loss);
    file_->RequestFlush();  // on disk at every epoch end, without waiting
    // A failed write ends the run now rather than at the end.
    if (absl::Status s = file_->status(); !s.ok()) throw std::runtime_error(std::string(s.message()));
  }

  void OnRecord(const Record& r, Control&) override {
    if (!file_ || !records_) return;
    if (const auto* s = std::get_if<ScalarValue>(&r.value)) {
      Add(r.wall_time > 0 ? r.wall_time : Now(), r.step, r.tag, s->value);
    }
  }

  // Before a checkpoint commits, every row up to its step is in the file.
  std::function<absl::Status()> FlushForCheckpoint() override {
    if (!file_) return nullptr;
    file_->RequestFlush();
    return [f = file_.get()] { return f->Flush(); };
  }

  absl::Status Close() override {
    if (!file_) return absl::OkStatus();
    return file_->Close();
  }

 private:
  void Add(double wall_time, int64_t step, std::string tag, double value) {
    file_->Add(Row{wall_time, step, std::move(tag), value});
  }

  ScalarFileOptions options_;
  std::string stem_ = "scalars";  // default file name without extension
  std::string path_;
  int64_t every_n_ = 1;
  bool records_ = true;
  std::unique_ptr<ScalarFile> file_;
};

}  // namespace
}  // namespace trainbus::csv

TRAINBUS_PLUGIN(trainbus::csv::CsvPlugin)
