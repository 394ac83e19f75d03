// health: watches a run for the problems people log every iteration to catch
// (loss spikes, divergence, collapse to chance, plateaus, overfitting,
// vanishing and exploding gradients) and says so in plain words while it
// trains: one console line per finding, a findings table in TensorBoard
// (health/findings), a scalar for every signal, and a summary at the end.
// Any kind of finding can stop the run or ask for a checkpoint. README.md
// here lists the options; detectors.h holds the arithmetic.
#ifndef TRAINBUS_PLUGINS_HEALTH_HEALTH_H_
#define TRAINBUS_PLUGINS_HEALTH_HEALTH_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "detectors.h"
#include "trainbus/plugin.h"

namespace trainbus::health {

struct Config {
  int64_t spike_window = 50;
  double spike_mads = 8.0;
  int64_t divergence_window = 100;
  double divergence_rise = 0.5;
  std::string plateau_monitor = "val/loss";
  int64_t plateau_patience = 5;
  double plateau_threshold = 1e-3;
  std::string plateau_request;  // a schedulers plugin's id to ask for a reduction ("": none)
  int64_t overfit_checks = 3;
  double chance_tolerance = 0.1;
  int64_t chance_checks = 3;  // validations in a row at chance (not just an untrained start)
  int64_t chance_after = 50;  // iterations before chance is judged
  int64_t classes = 0;  // 0: from the model's outputs
  int64_t gradients_every_n = 50;
  double vanish_below = 1e-8;
  int64_t vanish_checks = 3;
  double explode_above = 1e3;
  std::set<std::string> stop_on, checkpoint_on;
};

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& options);

// One problem found: its kind (spike, divergence, chance, plateau,
// overfitting, vanishing, exploding), where, and what it means.
struct Finding {
  std::string kind;
  int64_t step = 0;
  std::string message;  // what was seen, with numbers
  std::string hint;     // what to do about it
};

class HealthPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<HealthPlugin>> Create(const PluginContext& ctx);
  HealthPlugin(Config config, std::string id);

  // Publishes a Custom Scalars category grouping its signals (the
  // tensorboard plugin writes it with the run's layout).
  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& control) override;
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override;
  void OnValidationEnd(const ValidationEndEvent& e, Control& control) override;
  void OnRecord(const Record& r, Control& control) override;
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;

  absl::StatusOr<std::string> SaveState() override;
  absl::Status LoadState(absl::string_view state) override;

  const std::vector<Finding>& findings() const { return findings_; }

 private:
  void CheckGradients(int64_t step, Control& control);
  void CheckPlateau(double value, int64_t step, Control& control);
  void Report(Finding finding, Control& control);
  std::string Table() const;

  Config config_;
  std::string prefix_;  // "<id>/"
  SpikeDetector spikes_;
  TrendDetector trend_;
  PlateauDetector plateau_;
  OverfitDetector overfit_;
  GradientWatch gradients_;
  std::vector<Finding> findings_;
  int64_t classes_ = 0;
  int64_t gradients_checked_at_ = -1;  // the step whose gradients were measured
  double dead_fraction_ = -1;          // of gradient entries exactly 0, at the last check
  double train_loss_sum_ = 0;          // since the last validation
  int64_t train_loss_count_ = 0;
  bool chance_reported_ = false;
  int64_t at_chance_ = 0;  // validations in a row at chance (from chance_after on)
  int64_t requests_sent_ = 0;     // plateau_request records published
  bool request_answered_ = false; // an lr record of that plugin followed one
};

}  // namespace trainbus::health

#endif  // TRAINBUS_PLUGINS_HEALTH_HEALTH_H_
