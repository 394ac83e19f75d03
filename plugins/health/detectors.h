// plugins/health/detectors.h — the health checks as plain arithmetic on the
// numbers a run produces: no LibTorch, no bus. HealthPlugin feeds them; the
// tests drive them with made-up series as well as real runs.
//
// Each detector reports a problem once when it starts and again only after
// it has gone away, so a long spell is one finding, not one per iteration.
#ifndef TRAINBUS_PLUGINS_HEALTH_DETECTORS_H_
#define TRAINBUS_PLUGINS_HEALTH_DETECTORS_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace trainbus::health {

// The median and the median absolute deviation (scaled by 1.4826, so it
// estimates a standard deviation for normal data) of `values`.
struct RobustStats {
  double median = 0.0;
  double mad = 0.0;
};
RobustStats Robust(const std::deque<double>& values);

// Loss spikes: a value more than `k` scaled MADs above the median of the
// `window` values before it (of the kSpikeWarmup or more seen so far, at
// the start). Every value enters the window (median and MAD shrug off a
// lone outlier), so after a jump to a new level the baseline follows within
// half a window; a run of spikes in a row is one spike, found at its start.
inline constexpr int64_t kSpikeWarmup = 20;
class SpikeDetector {
 public:
  SpikeDetector(int64_t window, double k) : window_(window), k_(k) {}
  // The value's distance above the median in MADs (0 below it), once the
  // window holds kSpikeWarmup values (or is full); and whether that makes it a spike.
  struct Result {
    std::optional<double> score;
    double median = 0.0;  // the window's median the value was judged against
    bool spike = false;
  };
  Result Add(double value);
  std::deque<double>& values() { return values_; }
  bool& in_spell() { return in_spell_; }

 private:
  int64_t window_;
  double k_;
  std::deque<double> values_;
  bool in_spell_ = false;  // the previous value was a spike too
};

// Divergence: over a full window, the median of its newer half is above
// the median of its older half by more than `rise` (relative): the loss has
// trended up, whether it still climbs or jumped and stayed (medians, so one
// wild batch is the spike detector's, not this one's). Reports when it
// starts; again only after it has ended (the rise fell below half of `rise`).
class TrendDetector {
 public:
  TrendDetector(int64_t window, double rise) : window_(window), rise_(rise) {}
  struct Result {
    std::optional<double> rise;  // (newer - older) / |older| of the medians, once the window is full
    bool started = false;
  };
  Result Add(double value);
  std::deque<double>& values() { return values_; }
  bool& active() { return active_; }

 private:
  int64_t window_;
  double rise_;
  std::deque<double> values_;
  bool active_ = false;
};

// Plateaus: no relative improvement beyond `threshold` over the best value
// for `patience` checks in a row. Reports when it starts; again after an
// improvement ended it.
class PlateauDetector {
 public:
  PlateauDetector(int64_t patience, double threshold, bool lower_is_better)
      : patience_(patience), threshold_(threshold), lower_is_better_(lower_is_better) {}
  // True when this check starts a plateau.
  bool Add(double value);
  int64_t checks_without_improvement() const { return stale_; }
  double best() const { return best_; }

  // State for an exact resume.
  double best_ = 0.0;
  bool has_best_ = false;
  int64_t stale_ = 0;
  bool active_ = false;

 private:
  int64_t patience_;
  double threshold_;
  bool lower_is_better_;
};

// Overfitting: the validation loss is above its best and the gap between
// validation and training loss has grown at each of `checks` validations in
// a row. Reports the step where that began; again only after the
// validation loss has reached a new best.
class OverfitDetector {
 public:
  explicit OverfitDetector(int64_t checks) : checks_(checks) {}
  // Returns the step where the widening began when this check confirms it.
  std::optional<int64_t> Add(double train_loss, double val_loss, int64_t step);

  // State for an exact resume.
  double best_val_ = 0.0;
  bool has_best_ = false;
  double last_gap_ = 0.0;
  bool has_gap_ = false;
  int64_t growing_ = 0;
  int64_t began_ = -1;
  bool active_ = false;

 private:
  int64_t checks_;
};

// Collapse to chance: a classifier whose validation loss is not below
// ln(classes) by more than `tolerance` (relative; far above it is as bad)
// and whose accuracy is below 1.5 / classes has learned nothing beyond the
// class frequencies.
bool LooksLikeChance(double loss, double accuracy, int64_t classes, double tolerance);

// Vanishing and exploding gradients of one layer: its gradient norm below
// `vanish` at `window` checks in a row, or above `explode`.
class GradientWatch {
 public:
  GradientWatch(double vanish, double explode, int64_t window)
      : vanish_(vanish), explode_(explode), window_(window) {}
  enum class Change { kNone, kVanished, kExploded };
  Change Add(const std::string& layer, double norm);

  struct Layer {
    int64_t small = 0;  // checks in a row below `vanish`
    bool vanished = false, exploded = false;
  };
  std::map<std::string, Layer>& layers() { return layers_; }

 private:
  double vanish_, explode_;
  int64_t window_;
  std::map<std::string, Layer> layers_;
};

}  // namespace trainbus::health

#endif  // TRAINBUS_PLUGINS_HEALTH_DETECTORS_H_
