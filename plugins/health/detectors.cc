#include "detectors.h"

#include <algorithm>
#include <cmath>

namespace trainbus::health {
namespace {

double Median(std::vector<double> v) {
  const size_t n = v.size();
  std::nth_element(v.begin(), v.begin() + n / 2, v.end());
  const double upper = v[n / 2];
  if (n % 2 == 1) return upper;
  return (upper + *std::max_element(v.begin(), v.begin() + n / 2)) / 2.0;
}

double MedianOf(std::deque<double>::const_iterator begin, std::deque<double>::const_iterator end) {
  return Median(std::vector<double>(begin, end));
}

}  // namespace

RobustStats Robust(const std::deque<double>& values) {
  if (values.empty()) return {};
  std::vector<double> v(values.begin(), values.end());
  RobustStats s;
  s.median = Median(v);
  for (double& x : v) x = std::fabs(x - s.median);
  s.mad = 1.4826 * Median(std::move(v));
  return s;
}

SpikeDetector::Result SpikeDetector::Add(double value) {
  Result r;
  if (!std::isfinite(value)) return r;  // the guard's job, and it would poison the window
  // Judged once the window holds enough values for a median (20, or the
  // whole window if shorter): spikes come early, with a warm-up's lr rise.
  if (static_cast<int64_t>(values_.size()) >= std::min<int64_t>(window_, kSpikeWarmup)) {
    const RobustStats s = Robust(values_);
    // A floor on the spread: a perfectly flat window would make any wobble a spike.
    const double spread = std::max(s.mad, 1e-3 * std::max(std::fabs(s.median), 1e-12));
    r.score = std::max(0.0, (value - s.median) / spread);
    r.median = s.median;
    const bool above = *r.score > k_;
    r.spike = above && !in_spell_;
    in_spell_ = above;
  }
  values_.push_back(value);
  if (static_cast<int64_t>(values_.size()) > window_) values_.pop_front();
  return r;
}

TrendDetector::Result TrendDetector::Add(double value) {
  Result r;
  if (!std::isfinite(value)) return r;
  values_.push_back(value);
  if (static_cast<int64_t>(values_.size()) > window_) values_.pop_front();
  if (static_cast<int64_t>(values_.size()) < window_) return r;
  const auto mid = values_.begin() + window_ / 2;
  const double older = MedianOf(values_.begin(), mid), newer = MedianOf(mid, values_.end());
  r.rise = (newer - older) / std::max(std::fabs(older), 1e-12);
  const bool diverging = *r.rise > rise_;
  r.started = diverging && !active_;
  if (diverging) {
    active_ = true;
  } else if (*r.rise < rise_ / 2) {
    active_ = false;  // over: a later divergence is a new finding
  }
  return r;
}

bool PlateauDetector::Add(double value) {
  if (!std::isfinite(value)) return false;
  const double margin = threshold_ * std::max(std::fabs(best_), 1e-12);
  const bool improved =
      !has_best_ || (lower_is_better_ ? value < best_ - margin : value > best_ + margin);
  if (improved) {
    best_ = value;
    has_best_ = true;
    stale_ = 0;
    active_ = false;
    return false;
  }
  ++stale_;
  if (stale_ >= patience_ && !active_) {
    active_ = true;
    return true;
  }
  return false;
}

std::optional<int64_t> OverfitDetector::Add(double train_loss, double val_loss, int64_t step) {
  if (!std::isfinite(train_loss) || !std::isfinite(val_loss)) return std::nullopt;
  const double gap = val_loss - train_loss;
  const bool worse = has_best_ && val_loss > best_val_;
  if (!has_best_ || val_loss < best_val_) {
    best_val_ = val_loss;
    has_best_ = true;
    active_ = false;  // recovered: a later spell is a new finding
  }
  if (worse && has_gap_ && gap > last_gap_) {
    if (growing_ == 0) began_ = step;
    ++growing_;
  } else {
    growing_ = 0;
    began_ = -1;
  }
  last_gap_ = gap;
  has_gap_ = true;
  if (growing_ >= checks_ && !active_) {
    active_ = true;
    return began_;
  }
  return std::nullopt;
}

bool LooksLikeChance(double loss, double accuracy, int64_t classes, double tolerance) {
  if (classes < 2 || !std::isfinite(loss)) return false;
  const double chance_loss = std::log(static_cast<double>(classes));
  return loss >= (1 - tolerance) * chance_loss &&
         accuracy < 1.5 / static_cast<double>(classes);
}

GradientWatch::Change GradientWatch::Add(const std::string& layer, double norm) {
  Layer& l = layers_[layer];
  if (!std::isfinite(norm)) return Change::kNone;  // the guard's job
  Change change = Change::kNone;
  if (explode_ > 0 && norm > explode_) {
    if (!l.exploded) change = Change::kExploded;
    l.exploded = true;
  } else {
    l.exploded = false;
  }
  if (norm < vanish_) {
    ++l.small;
    if (l.small >= window_ && !l.vanished) {
      l.vanished = true;
      change = Change::kVanished;
    }
  } else {
    l.small = 0;
    l.vanished = false;
  }
  return change;
}

}  // namespace trainbus::health
