// early_stopping: stops the run when a monitored metric stops improving.
//
// Two layers, both testable in-process:
//   - Tracker: the decision logic (values in, decisions out), no LibTorch.
//   - EarlyStoppingPlugin: the plugin; feeds the Tracker from the bus, keeps
//     the best weights (restore_best_weights), publishes records, stops.
// See README.md in this folder for the options and the exact semantics.
#ifndef TRAINBUS_PLUGINS_EARLY_STOPPING_H_
#define TRAINBUS_PLUGINS_EARLY_STOPPING_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainbus/plugin.h"
#include "trainbus/seen_names.h"

namespace trainbus::early_stopping {

enum class Mode { kMin, kMax };
enum class CheckOn { kEpoch, kValidation, kIteration };
enum class StopCause { kNone, kPatience, kStoppingThreshold, kDivergence, kNonFinite };

const char* ModeName(Mode mode);
const char* CheckOnName(CheckOn check_on);

// "auto" mode: kMax when the lower-cased name contains "acc", "auc", "f1",
// "precision" or "recall" ("accuracy" contains "acc"), otherwise kMin.
Mode AutoMode(absl::string_view monitor);

struct Config {
  std::string monitor;
  Mode mode = Mode::kMin;
  bool mode_was_auto = false;
  double min_delta = 0.0;              // >= 0, absolute
  int64_t patience = 3;                // bad checks in a row before stopping
  std::optional<double> baseline;      // the initial best when set
  CheckOn check_on = CheckOn::kEpoch;
  int64_t every_n = 1;                 // check every N epochs / validations / iterations
  int64_t start_from_epoch = 0;        // checks in earlier epochs are skipped
  int64_t start_from_step = 0;         // checks at earlier steps are skipped
  std::optional<double> stopping_threshold;
  std::optional<double> divergence_threshold;
  bool check_finite = true;            // a non-finite monitored value stops the run
  bool restore_best_weights = false;
};

// The plugin's declared options (name, type, default, help).
std::vector<OptionSpec> OptionSpecs();
// Reads and range-checks the options; errors name the option.
absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& options);

// %.6g, with "nan", "inf", "-inf".
std::string FormatValue(double v);

// The outcome of one check (or of a call that ran none: ran == false).
struct CheckResult {
  bool ran = false;            // a check took place (counted, or skipped by start_from)
  bool warmup = false;         // the check was skipped: before start_from_epoch/step
  bool improved = false;       // a new best
  StopCause stop = StopCause::kNone;
  double value = 0.0;          // the monitored value checked
  int64_t step = 0;
  int64_t epoch = 0;
  std::string reason;          // one line, set when stop != kNone
  std::string markdown;        // the same, for a text record
};

// The decision logic. Values of any metric are fed with Observe(); cadence
// points (EpochEnd, ValidationEnd, IterationEnd) make a check due. A due check
// runs as soon as the monitor has a value no earlier check has used: at once
// when there is one, otherwise when the next value arrives (then TryCheck()
// runs it). Due checks do not pile up: at most one check per cadence point and
// per new value.
class Tracker {
 public:
  explicit Tracker(Config config);

  const Config& config() const { return config_; }

  // A value of metric `name` (any name; the monitor's own refreshes it).
  void Observe(absl::string_view name, double value);

  // Cadence points: each makes a check due (when it is the configured
  // cadence and the N-th such point), then runs any due check.
  CheckResult IterationEnd(int64_t step, int64_t epoch);
  CheckResult ValidationEnd(int64_t step, int64_t epoch);
  CheckResult EpochEnd(int64_t step, int64_t epoch);
  // Runs a due check if the monitor has a fresh value (e.g. after a record).
  CheckResult TryCheck(int64_t step, int64_t epoch);

  // The best is the baseline (or +-inf) until a check improves on it.
  double best() const { return best_; }
  bool has_best() const { return has_best_; }  // a check improved
  int64_t best_step() const { return best_step_; }
  int64_t best_epoch() const { return best_epoch_; }
  int64_t wait() const { return wait_; }
  int64_t checks() const { return checks_; }
  bool stopped() const { return stopped_; }
  bool monitor_seen() const { return monitor_seen_; }
  bool check_due() const { return due_; }
  // Names observed so far (for the "monitor never appeared" warning).
  const SeenNames& seen_names() const { return seen_; }

  // Text state (one key=value per line): best, wait, best step/epoch and the
  // cadence counters. LoadState refuses a state saved for another monitor or mode.
  std::string SaveState() const;
  absl::Status LoadState(absl::string_view text);

 private:
  CheckResult Check(double value, int64_t step, int64_t epoch);
  bool Better(double a, double b) const;  // strictly better by mode
  std::string BestText() const;

  Config config_;
  double best_;
  bool has_best_ = false;
  int64_t best_step_ = -1;
  int64_t best_epoch_ = -1;
  int64_t wait_ = 0;
  int64_t checks_ = 0;
  int64_t validations_ = 0;
  bool due_ = false;
  bool fresh_ = false;
  double latest_ = 0.0;
  bool monitor_seen_ = false;
  bool stopped_ = false;
  SeenNames seen_;
};

// Named tensors <-> bytes: a small self-describing format (magic "TBT1",
// then per tensor: name, dtype, shape, raw contiguous bytes; native byte
// order). Tensors are read back on the CPU.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
std::string EncodeTensors(const NamedTensors& tensors);
absl::StatusOr<NamedTensors> DecodeTensors(absl::string_view bytes);

class EarlyStoppingPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<EarlyStoppingPlugin>> Create(const PluginContext& ctx);
  // `id`: the instance's name (PluginContext::id), the prefix of its records.
  explicit EarlyStoppingPlugin(Config config, std::string id = "early_stopping");

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override;
  void OnValidationEnd(const ValidationEndEvent& e, Control& control) override;
  void OnEpochEnd(const EpochEndEvent& e, Control& control) override;
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;
  void OnRecord(const Record& record, Control& control) override;

  absl::StatusOr<std::string> SaveState() override;
  absl::Status LoadState(absl::string_view state) override;

  const Tracker& tracker() const { return tracker_; }
  // The kept copy of the best parameters and buffers (restore_best_weights).
  const NamedTensors& best_weights() const { return best_weights_; }

 private:
  void Handle(const CheckResult& r, Control& control);
  void SnapshotWeights(Control& control);
  void RestoreWeights(Control& control);

  Tracker tracker_;
  std::string prefix_;  // "<id>/": the tags this instance publishes
  std::string best_tag_, wait_tag_;  // "<id>/best", "<id>/wait": made once, published every check
  NamedTensors best_weights_;
  bool saw_validation_ = false;
  bool warned_no_model_ = false;
};

}  // namespace trainbus::early_stopping

#endif  // TRAINBUS_PLUGINS_EARLY_STOPPING_H_
