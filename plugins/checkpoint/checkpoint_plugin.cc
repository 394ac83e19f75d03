// checkpoint: saves the whole run so that `trainbus train --resume` continues
// exactly. When: every N iterations, every N epochs, when a monitored metric
// improves ("best"), when any plugin calls Control::RequestCheckpoint(), and
// at the end. Keeps the last K plus the best; older folders are deleted once
// the new one is safely written. Files and atomicity: trainbus/checkpoint.h.
//
// It runs last (priority 1000) so the plugin states it saves already include
// this step's decisions of every other plugin.
#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "trainbus/plugin.h"
#include "trainbus/seen_names.h"

namespace trainbus::checkpoint_plugin {
namespace {

class CheckpointPlugin : public Plugin {
 public:
  static PluginInfo Info() {
    PluginInfo info{
        "checkpoint",
        "1.0.0",
        "Saves model, optimizer, position and plugin states for exact resume (--resume)",
        {{"dir", OptionType::kString, "\"\"",
          "Folder for checkpoints (default: <run folder>/checkpoints)"},
         {"every_n_iterations", OptionType::kInt, "0", "Save every N iterations (>= 0; 0: never)"},
         {"every_n_epochs", OptionType::kInt, "1", "Save every N epochs (>= 0; 0: never)"},
         {"monitor", OptionType::kString, "\"\"",
          "Also save when this metric improves (e.g. \"val/loss\"); kept as \"best\""},
         {"mode", OptionType::kString, "\"auto\"",
          "\"min\", \"max\", or \"auto\" (max for names with acc/auc/f1/precision/recall)"},
         {"keep_last", OptionType::kInt, "3", "How many of the newest checkpoints to keep (>= 1)"},
         {"save_on_end", OptionType::kBool, "true", "Save when the run ends (not when it failed)"},
         {"on_request", OptionType::kBool, "true",
          "Save when a plugin calls Control::RequestCheckpoint()"}}};
    info.default_priority = 1000;
    info.capabilities = kWritesOutput;
    return info;
  }

  static absl::StatusOr<std::unique_ptr<CheckpointPlugin>> Create(const PluginContext& ctx) {
    const PluginOptions& o = ctx.options;
    auto p = std::make_unique<CheckpointPlugin>();
    // A second instance (its own id) saves into <run folder>/<id> by default.
    const std::string folder = ctx.instance() == ctx.name ? "checkpoints" : ctx.instance();
    p->dir_ = o.GetString("dir").empty() ? (std::filesystem::path(ctx.log_dir) / folder).string()
                                         : o.GetString("dir");
    p->every_n_iterations_ = o.GetInt("every_n_iterations");
    p->every_n_epochs_ = o.GetInt("every_n_epochs");
    p->monitor_ = o.GetString("monitor");
    p->keep_last_ = o.GetInt("keep_last");
    p->save_on_end_ = o.GetBool("save_on_end");
    p->on_request_ = o.GetBool("on_request");
    if (p->every_n_iterations_ < 0 || p->every_n_epochs_ < 0) {
      return absl::InvalidArgumentError(
          "options 'every_n_iterations' and 'every_n_epochs' must be >= 0");
    }
    if (p->keep_last_ < 1 || p->keep_last_ > 10000) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'keep_last' must be between 1 and 10000, got ", p->keep_last_));
    }
    const std::string mode = o.GetString("mode");
    if (mode != "min" && mode != "max" && mode != "auto") {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'mode' must be \"min\", \"max\" or \"auto\", got \"", mode, "\""));
    }
    p->maximize_ = mode == "max" || (mode == "auto" && LooksLikeHigherIsBetter(p->monitor_));
    return p;
  }

  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    if (on_request_ && control.checkpoint_requested()) {
      Save(control, e.step, "requested");
    } else if (EveryN(every_n_iterations_, e.step)) {
      Save(control, e.step, absl::StrCat("every ", every_n_iterations_, " iterations"));
    }
    if (!monitor_.empty()) {
      Saw("train/loss");
      if (monitor_ == "train/loss") Consider(control, e.step, e.loss);
      for (const Metric& m : e.metrics) {
        Saw(m.name);
        if (m.name == monitor_) Consider(control, e.step, m.value);
      }
    }
  }

  void OnValidationEnd(const ValidationEndEvent& e, Control& control) override {
    validated_ = true;
    if (monitor_.empty()) return;
    for (const Metric& m : e.metrics) Saw(m.name);
    if (auto v = FindMetric(e.metrics, monitor_)) Consider(control, e.step, *v);
  }

  void OnRecord(const Record& r, Control& control) override {
    if (monitor_.empty() || !std::holds_alternative<ScalarValue>(r.value)) return;
    Saw(r.tag);
    if (r.tag != monitor_) return;
    Consider(control, r.step, std::get<ScalarValue>(r.value).value);
  }

  void OnEpochEnd(const EpochEndEvent& e, Control& control) override {
    if (EveryN(every_n_epochs_, e.epoch)) {
      Save(control, e.step, absl::StrCat("end of epoch ", e.epoch + 1));
    }
  }

  void OnTrainEnd(const TrainEndEvent& e, Control& control) override {
    if (save_on_end_ && e.reason != EndReason::kFailed && e.step >= 0) {
      Save(control, e.step, absl::StrCat("end of run (", EndReasonName(e.reason), ")"));
    }
    // A typo in `monitor` would otherwise pass in silence: no best checkpoint.
    // (A resumed run that ended before it validated had no chance to see it.)
    if (!monitor_.empty() && !monitor_seen_ && e.reason != EndReason::kFailed &&
        e.iterations_run > 0 && (validated_ || control.run().start_step == 0)) {
      control.Log(absl::StrCat("warning: option 'monitor' \"", monitor_,
                               "\" never appeared in this run, so no best checkpoint was saved; "
                               "metrics seen: ",
                               seen_.Text()));
    }
  }

  // "saved=step-00000010,step-00000020\nbest=step-00000010\nbest_value=0.25"
  absl::StatusOr<std::string> SaveState() override {
    std::string out = absl::StrCat("saved=", absl::StrJoin(saved_, ","), "\n", "best=", best_name_,
                                   "\n");
    if (has_best_) absl::StrAppend(&out, "best_value=", absl::StrFormat("%.17g", best_value_), "\n");
    return out;
  }

  absl::Status LoadState(absl::string_view state) override {
    saved_.clear();
    best_name_.clear();
    has_best_ = false;
    for (absl::string_view line : absl::StrSplit(state, '\n', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
      if (kv.first == "saved") {
        for (absl::string_view n : absl::StrSplit(kv.second, ',', absl::SkipEmpty())) {
          saved_.emplace_back(n);
        }
      } else if (kv.first == "best") {
        best_name_ = kv.second;
      } else if (kv.first == "best_value") {
        if (!absl::SimpleAtod(kv.second, &best_value_)) {
          return absl::DataLossError(absl::StrCat("bad best_value '", kv.second, "'"));
        }
        has_best_ = true;
      } else {
        return absl::DataLossError(absl::StrCat("unknown state line '", line, "'"));
      }
    }
    return absl::OkStatus();
  }

 private:
  static bool LooksLikeHigherIsBetter(const std::string& name) {
    for (const char* word : {"acc", "auc", "f1", "precision", "recall"}) {
      if (name.find(word) != std::string::npos) return true;
    }
    return false;
  }

  // Notes a metric name for the warning about a monitor that never appears.
  void Saw(const std::string& name) {
    if (name == monitor_) monitor_seen_ = true;
    if (!monitor_seen_) seen_.Note(name);
  }

  void Consider(Control& control, int64_t step, double value) {
    if (!std::isfinite(value)) return;
    const bool better = !has_best_ || (maximize_ ? value > best_value_ : value < best_value_);
    if (!better) return;
    has_best_ = true;
    best_value_ = value;
    std::string name = Save(control, step, absl::StrCat("best ", monitor_, " ", value));
    if (!name.empty()) best_name_ = name;
  }

  // Saves "step-<next step>" unless that step is already saved; returns its name.
  std::string Save(Control& control, int64_t step, const std::string& reason) {
    const std::string name = absl::StrFormat("step-%08d", step + 1);
    if (!saved_.empty() && saved_.back() == name) return name;
    saved_.push_back(name);
    // Keep the newest keep_last_, plus the best when it is older than those.
    std::vector<std::string> remove;
    auto excess = [&] {
      const int64_t n = static_cast<int64_t>(saved_.size());
      bool best_is_old = false;
      for (int64_t i = 0; i < n - keep_last_; ++i) best_is_old |= (saved_[i] == best_name_);
      return n - keep_last_ - (best_is_old ? 1 : 0);
    };
    while (excess() > 0) {
      auto oldest = saved_.begin();
      if (*oldest == best_name_) ++oldest;
      remove.push_back((std::filesystem::path(dir_) / *oldest).string());
      saved_.erase(oldest);
    }
    absl::Status s = control.SaveCheckpoint(dir_, name, reason, std::move(remove));
    if (!s.ok()) {
      // Losing checkpoints silently is not an option: the bus stops the run.
      throw std::runtime_error(absl::StrCat("saving checkpoint ", name, " failed: ", s.message()));
    }
    control.Log(absl::StrCat("saving ", dir_, "/", name, " (", reason, ")"));
    return name;
  }

  std::string dir_, monitor_;
  int64_t every_n_iterations_ = 0, every_n_epochs_ = 1, keep_last_ = 3;
  bool monitor_seen_ = false;
  bool validated_ = false;  // in this session
  SeenNames seen_;  // metric names seen, for that warning
  bool save_on_end_ = true, on_request_ = true, maximize_ = false;
  std::vector<std::string> saved_;
  std::string best_name_;
  bool has_best_ = false;
  double best_value_ = 0.0;
};

}  // namespace
}  // namespace trainbus::checkpoint_plugin

TRAINBUS_PLUGIN(trainbus::checkpoint_plugin::CheckpointPlugin)
