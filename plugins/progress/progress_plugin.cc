// progress: a console progress bar per epoch and a summary line per epoch.
//
// On a terminal the bar is redrawn in place (at most every refresh_seconds);
// when the output is a file or a pipe, a plain line is printed every
// line_every_seconds (or every_n_iterations) so logs stay readable.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "progress_format.h"
#include "trainbus/plugin.h"

namespace trainbus::progress {
namespace {

using Clock = std::chrono::steady_clock;

class ProgressPlugin : public Plugin {
 public:
  static PluginInfo Info() {
    return {"progress",
            "1.0.0",
            "Console progress bar per epoch, with loss, lr, speed and ETA, and an epoch summary",
            {{"stream", OptionType::kString, "\"stdout\"", "Where to print: \"stdout\" or \"stderr\""},
             {"mode", OptionType::kString, "\"auto\"",
              "\"auto\" (redraw on a terminal, lines otherwise), \"tty\" or \"lines\""},
             {"bar_width", OptionType::kInt, "30", "Width of the bar in characters (0-200)"},
             {"refresh_seconds", OptionType::kDouble, "0.1",
              "Terminal: minimum seconds between redraws (>= 0)"},
             {"line_every_seconds", OptionType::kDouble, "10",
              "Lines mode: seconds between progress lines (>= 0)"},
             {"every_n_iterations", OptionType::kInt, "0",
              "Lines mode: print every N iterations instead of by time (>= 0; 0: by time)"},
             {"loss_window", OptionType::kInt, "20",
              "Shown loss is the mean of the last N iterations (1-1000000)"}},
            /*default_priority=*/0,
            /*capabilities=*/kWritesOutput};
  }

  static absl::StatusOr<std::unique_ptr<ProgressPlugin>> Create(const PluginContext& ctx) {
    const auto& o = ctx.options;
    std::string stream = o.GetString("stream"), mode = o.GetString("mode");
    if (stream != "stderr" && stream != "stdout") {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'stream' must be \"stderr\" or \"stdout\", got \"", stream, "\""));
    }
    if (mode != "auto" && mode != "tty" && mode != "lines") {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'mode' must be \"auto\", \"tty\" or \"lines\", got \"", mode, "\""));
    }
    if (o.GetInt("bar_width") < 0 || o.GetInt("bar_width") > 200) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'bar_width' must be in [0, 200], got ", o.GetInt("bar_width")));
    }
    if (o.GetDouble("refresh_seconds") < 0 || o.GetDouble("line_every_seconds") < 0 ||
        o.GetInt("every_n_iterations") < 0 || o.GetInt("loss_window") < 1 ||
        o.GetInt("loss_window") > 1000000) {
      return absl::InvalidArgumentError(
          "options 'refresh_seconds', 'line_every_seconds' and 'every_n_iterations' must be >= 0 "
          "and 'loss_window' between 1 and 1000000");
    }
    auto p = std::make_unique<ProgressPlugin>();
    p->out_ = stream == "stdout" ? stdout : stderr;
    p->tty_ = mode == "tty" || (mode == "auto" && isatty(fileno(p->out_)));
    p->bar_width_ = static_cast<int>(o.GetInt("bar_width"));
    p->refresh_ = o.GetDouble("refresh_seconds");
    p->line_every_ = o.GetDouble("line_every_seconds");
    p->every_n_ = o.GetInt("every_n_iterations");
    p->window_ = static_cast<size_t>(o.GetInt("loss_window"));
    return p;
  }

  void OnTrainBegin(const TrainBeginEvent& e, Control&) override { epochs_ = e.run->epochs; }

  void OnEpochBegin(const EpochBeginEvent& e, Control&) override {
    epoch_ = e.epoch;
    total_ = e.iterations;
    done_ = 0;
    losses_.clear();
    loss_sum_ = 0;
    epoch_start_ = last_print_ = Clock::now();
  }

  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    ++done_;
    losses_.push_back(e.loss);
    loss_sum_ += e.loss;
    if (losses_.size() > window_) {
      loss_sum_ -= losses_.front();
      losses_.pop_front();
    }
    const auto now = Clock::now();
    const double since_print = Seconds(last_print_, now);
    const bool last = total_ > 0 && done_ >= total_;
    bool print;
    if (tty_) {
      print = since_print >= refresh_ || done_ == 1 || last;
    } else if (every_n_ > 0) {
      print = trainbus::EveryN(every_n_, e.step);  // the run's Nth, 2Nth, ... iteration
    } else {
      print = since_print >= line_every_;
    }
    if (!print) return;
    last_print_ = now;
    ProgressLine line;
    line.epoch = epoch_;
    line.epochs = epochs_;
    line.done = done_;
    line.total = total_;
    line.step = e.step;
    const double elapsed = Seconds(epoch_start_, now);
    line.its_per_second = elapsed > 0 ? done_ / elapsed : 0;
    line.loss = loss_sum_ / losses_.size();
    if (!e.learning_rates.empty()) line.lr = e.learning_rates[0];
    line.eta_seconds = line.its_per_second > 0 ? (total_ - done_) / line.its_per_second : -1;
    std::string text = FormatProgress(line, bar_width_);
    if (tty_) {
      std::fprintf(out_, "\r%s\033[K", text.c_str());
      drawn_ = true;
    } else {
      std::fprintf(out_, "%s\n", text.c_str());
    }
    std::fflush(out_);
  }

  void OnEpochEnd(const EpochEndEvent& e, Control&) override {
    EndBar();
    // A stopped epoch's metrics are an earlier validation's: leave them out.
    std::string text = FormatEpochSummary(e.epoch, epochs_, e.iterations, e.duration_seconds,
                                          e.mean_loss, e.complete ? e.metrics : absl::Span<const Metric>(),
                                          e.complete);
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
  }

  void OnTrainEnd(const TrainEndEvent& e, Control&) override {
    EndBar();
    if (e.reason != EndReason::kCompleted) {
      std::fprintf(out_, "run %s after step %lld: %s\n", EndReasonName(e.reason),
                   static_cast<long long>(e.step), e.stop_reason.c_str());
      std::fflush(out_);
    }
  }

 private:
  static double Seconds(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  void EndBar() {
    if (drawn_) std::fputc('\n', out_);
    drawn_ = false;
  }

  FILE* out_ = stderr;
  bool tty_ = false;
  bool drawn_ = false;
  int bar_width_ = 30;
  double refresh_ = 0.1, line_every_ = 10;
  int64_t every_n_ = 0;
  size_t window_ = 20;
  int64_t epochs_ = 0, epoch_ = 0, total_ = 0, done_ = 0;
  std::deque<double> losses_;
  double loss_sum_ = 0;
  Clock::time_point epoch_start_, last_print_;
};

}  // namespace
}  // namespace trainbus::progress

TRAINBUS_PLUGIN(trainbus::progress::ProgressPlugin)
