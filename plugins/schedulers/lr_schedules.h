// lr_schedules.h — the schedules, one class per PyTorch 1.13.1 scheduler
// (schedulers plugin, internal). get_lr() is the chainable (recursive) form
// used by step(), and ClosedForm() the one used by step(epoch) (only
// SequentialLR calls it, with epoch 0 at a milestone). Expressions keep
// PyTorch's operand order so that the doubles are identical. Built by the
// factory (schedule_factory.cc) from their validated arguments.
#ifndef TRAINBUS_PLUGINS_SCHEDULERS_LR_SCHEDULES_H_
#define TRAINBUS_PLUGINS_SCHEDULERS_LR_SCHEDULES_H_

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "schedule_args.h"
#include "schedules.h"

namespace trainbus::schedulers::internal {

using google::protobuf::Value;

constexpr double kPi = 3.141592653589793;  // math.pi

// ---------------------------------------------------------------------------
// _LRScheduler: base_lrs from initial_lr, last_epoch, _step_count.
class LRBase : public Schedule {
 public:
  explicit LRBase(ParamGroups* g) : g_(g) {}

  int64_t last_epoch() const override { return last_epoch_; }
  void AdjustLastEpoch(int64_t delta) { last_epoch_ += delta; }

  // _LRScheduler.__init__ with last_epoch=-1.
  absl::Status InitBase() {
    if (!g_->has_initial_lr) {
      g_->initial_lr = g_->lr;
      g_->has_initial_lr = true;
    }
    base_lrs_ = g_->initial_lr;
    last_epoch_ = -1;
    return InitialStep();
  }
  virtual absl::Status InitialStep() {
    step_count_ = 0;
    return Step();
  }

  absl::Status Step() override {
    ++step_count_;
    ++last_epoch_;
    return ApplyLr();
  }
  absl::Status StepTo(int64_t epoch) override {
    ++step_count_;
    last_epoch_ = epoch;
    next_lrs_.clear();
    if (!ClosedForm(&next_lrs_)) return ApplyLr();
    g_->lr.swap(next_lrs_);
    return absl::OkStatus();
  }

  void Save(StateWriter& w) const override {
    w.Int(last_epoch_);
    w.Int(step_count_);
    w.Doubles(base_lrs_);
    SaveExtra(w);
  }
  absl::Status Load(StateReader& r) override {
    SCHED_RETURN_IF_ERROR(r.Int(&last_epoch_));
    SCHED_RETURN_IF_ERROR(r.Int(&step_count_));
    SCHED_RETURN_IF_ERROR(r.Doubles(&base_lrs_, g_->size()));
    return LoadExtra(r);
  }

 protected:
  virtual absl::Status GetLr(std::vector<double>* out) = 0;
  virtual bool ClosedForm(std::vector<double>* /*out*/) { return false; }
  virtual void SaveExtra(StateWriter&) const {}
  virtual absl::Status LoadExtra(StateReader&) { return absl::OkStatus(); }

  // [group['lr'] * f for group in param_groups]
  void Scaled(double f, std::vector<double>* out) const {
    out->clear();
    for (double lr : g_->lr) out->push_back(lr * f);
  }
  void Unchanged(std::vector<double>* out) const { *out = g_->lr; }

  // group['lr'] = GetLr(): written into a kept buffer, swapped in (the old
  // one is the next step's), so a step allocates nothing.
  absl::Status ApplyLr() {
    next_lrs_.clear();
    SCHED_RETURN_IF_ERROR(GetLr(&next_lrs_));
    g_->lr.swap(next_lrs_);
    return absl::OkStatus();
  }

  ParamGroups* g_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;

 private:
  std::vector<double> next_lrs_;  // GetLr's output, swapped with g_->lr
};

class StepLR : public LRBase {
 public:
  StepLR(ParamGroups* g, int64_t step_size, double gamma)
      : LRBase(g), step_size_(step_size), gamma_(gamma) {}
  const char* type() const override { return "StepLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) {
      Unchanged(out);
    } else {
      Scaled(gamma_, out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    out->clear();
    for (double b : base_lrs_) {
      out->push_back(b * std::pow(gamma_, static_cast<double>(last_epoch_ / step_size_)));
    }
    return true;
  }

 private:
  int64_t step_size_;
  double gamma_;
};

class MultiStepLR : public LRBase {
 public:
  MultiStepLR(ParamGroups* g, std::vector<int64_t> milestones, double gamma)
      : LRBase(g), milestones_(std::move(milestones)), gamma_(gamma) {}
  const char* type() const override { return "MultiStepLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    const int64_t count = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
    if (count == 0) {
      Unchanged(out);
    } else {
      Scaled(std::pow(gamma_, static_cast<double>(count)), out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    const auto n = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) -
                   milestones_.begin();
    out->clear();
    for (double b : base_lrs_) out->push_back(b * std::pow(gamma_, static_cast<double>(n)));
    return true;
  }

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

class ConstantLR : public LRBase {
 public:
  ConstantLR(ParamGroups* g, double factor, int64_t total_iters)
      : LRBase(g), factor_(factor), total_iters_(total_iters) {}
  const char* type() const override { return "ConstantLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    if (last_epoch_ == 0) {
      Scaled(factor_, out);
    } else if (last_epoch_ != total_iters_) {
      Unchanged(out);
    } else {
      Scaled(1.0 / factor_, out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    out->clear();
    const double reached = last_epoch_ >= total_iters_ ? 1.0 : 0.0;
    for (double b : base_lrs_) out->push_back(b * (factor_ + reached * (1 - factor_)));
    return true;
  }

 private:
  double factor_;
  int64_t total_iters_;
};

class LinearLR : public LRBase {
 public:
  LinearLR(ParamGroups* g, double start, double end, int64_t total_iters)
      : LRBase(g), start_(start), end_(end), total_iters_(total_iters) {}
  const char* type() const override { return "LinearLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    if (last_epoch_ == 0) {
      Scaled(start_, out);
    } else if (last_epoch_ > total_iters_) {
      Unchanged(out);
    } else {
      const double T = static_cast<double>(total_iters_);
      const double tm1 = static_cast<double>(last_epoch_ - 1);
      Scaled(1. + (end_ - start_) / (T * start_ + tm1 * (end_ - start_)), out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    out->clear();
    const double m = static_cast<double>(std::min(total_iters_, last_epoch_));
    const double T = static_cast<double>(total_iters_);
    for (double b : base_lrs_) out->push_back(b * (start_ + (end_ - start_) * m / T));
    return true;
  }

 private:
  double start_, end_;
  int64_t total_iters_;
};

class ExponentialLR : public LRBase {
 public:
  ExponentialLR(ParamGroups* g, double gamma) : LRBase(g), gamma_(gamma) {}
  const char* type() const override { return "ExponentialLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    if (last_epoch_ == 0) {
      Unchanged(out);
    } else {
      Scaled(gamma_, out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    out->clear();
    for (double b : base_lrs_) out->push_back(b * std::pow(gamma_, static_cast<double>(last_epoch_)));
    return true;
  }

 private:
  double gamma_;
};

class PolynomialLR : public LRBase {
 public:
  PolynomialLR(ParamGroups* g, int64_t total_iters, double power)
      : LRBase(g), total_iters_(total_iters), power_(power) {}
  const char* type() const override { return "PolynomialLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    if (last_epoch_ == 0 || last_epoch_ > total_iters_) {
      Unchanged(out);
    } else {
      const double T = static_cast<double>(total_iters_);
      const double t = static_cast<double>(last_epoch_);
      const double decay = std::pow((1.0 - t / T) / (1.0 - (t - 1) / T), power_);
      Scaled(decay, out);
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    out->clear();
    const double m = static_cast<double>(std::min(total_iters_, last_epoch_));
    const double T = static_cast<double>(total_iters_);
    for (double b : base_lrs_) out->push_back(b * std::pow(1.0 - m / T, power_));
    return true;
  }

 private:
  int64_t total_iters_;
  double power_;
};

inline int64_t PyMod(int64_t a, int64_t m) {  // Python's %, m > 0
  int64_t r = a % m;
  return r < 0 ? r + m : r;
}

class CosineAnnealingLR : public LRBase {
 public:
  CosineAnnealingLR(ParamGroups* g, int64_t t_max, double eta_min)
      : LRBase(g), t_max_(t_max), eta_min_(eta_min) {}
  const char* type() const override { return "CosineAnnealingLR"; }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    const double T = static_cast<double>(t_max_);
    const double t = static_cast<double>(last_epoch_);
    out->clear();
    if (last_epoch_ == 0) {
      Unchanged(out);
    } else if (step_count_ == 1 && last_epoch_ > 0) {
      for (double b : base_lrs_) {
        out->push_back(eta_min_ + (b - eta_min_) * (1 + std::cos(t * kPi / T)) / 2);
      }
    } else if (PyMod(last_epoch_ - 1 - t_max_, 2 * t_max_) == 0) {
      for (size_t i = 0; i < g_->size(); ++i) {
        out->push_back(g_->lr[i] + (base_lrs_[i] - eta_min_) * (1 - std::cos(kPi / T)) / 2);
      }
    } else {
      for (double lr : g_->lr) {
        out->push_back((1 + std::cos(kPi * t / T)) / (1 + std::cos(kPi * (t - 1) / T)) *
                           (lr - eta_min_) +
                       eta_min_);
      }
    }
    return absl::OkStatus();
  }
  bool ClosedForm(std::vector<double>* out) override {
    const double T = static_cast<double>(t_max_);
    const double t = static_cast<double>(last_epoch_);
    out->clear();
    for (double b : base_lrs_) {
      out->push_back(eta_min_ + (b - eta_min_) * (1 + std::cos(kPi * t / T)) / 2);
    }
    return true;
  }

 private:
  int64_t t_max_;
  double eta_min_;
};

class CosineAnnealingWarmRestarts : public LRBase {
 public:
  CosineAnnealingWarmRestarts(ParamGroups* g, int64_t t0, int64_t t_mult, double eta_min)
      : LRBase(g), t0_(t0), t_i_(t0), t_mult_(t_mult), eta_min_(eta_min), t_cur_(-1) {}
  const char* type() const override { return "CosineAnnealingWarmRestarts"; }

  absl::Status Step() override {
    if (last_epoch_ < 0) return StepTo(0);
    ++step_count_;
    const int64_t epoch = last_epoch_ + 1;
    t_cur_ = t_cur_ + 1;
    if (t_cur_ >= static_cast<double>(t_i_)) {
      t_cur_ = t_cur_ - static_cast<double>(t_i_);
      t_i_ = t_i_ * t_mult_;
    }
    last_epoch_ = epoch;
    return ApplyLr();
  }
  absl::Status StepTo(int64_t epoch) override {
    ++step_count_;
    if (epoch >= t0_) {
      if (t_mult_ == 1) {
        t_cur_ = static_cast<double>(epoch % t0_);
      } else {
        // int(math.log(epoch / T_0 * (T_mult - 1) + 1, T_mult))
        const double x = static_cast<double>(epoch) / static_cast<double>(t0_) *
                             static_cast<double>(t_mult_ - 1) +
                         1;
        const int64_t n = static_cast<int64_t>(std::log(x) / std::log(static_cast<double>(t_mult_)));
        int64_t mult_n = 1;
        for (int64_t k = 0; k < n; ++k) mult_n *= t_mult_;
        t_cur_ = static_cast<double>(epoch) -
                 static_cast<double>(t0_ * (mult_n - 1)) / static_cast<double>(t_mult_ - 1);
        t_i_ = t0_ * mult_n;
      }
    } else {
      t_i_ = t0_;
      t_cur_ = static_cast<double>(epoch);
    }
    last_epoch_ = epoch;
    return ApplyLr();
  }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    out->clear();
    for (double b : base_lrs_) {
      out->push_back(eta_min_ + (b - eta_min_) *
                                    (1 + std::cos(kPi * t_cur_ / static_cast<double>(t_i_))) / 2);
    }
    return absl::OkStatus();
  }
  void SaveExtra(StateWriter& w) const override {
    w.Int(t_i_);
    w.Double(t_cur_);
  }
  absl::Status LoadExtra(StateReader& r) override {
    SCHED_RETURN_IF_ERROR(r.Int(&t_i_));
    return r.Double(&t_cur_);
  }

 private:
  int64_t t0_, t_i_, t_mult_;
  double eta_min_;
  double t_cur_;
};

class CyclicLR : public LRBase {
 public:
  enum class Mode { kTriangular, kTriangular2, kExpRange };
  CyclicLR(ParamGroups* g, std::vector<double> base, std::vector<double> max, double up, double down,
           Mode mode, double gamma)
      : LRBase(g), arg_base_lrs_(std::move(base)), max_lrs_(std::move(max)), mode_(mode),
        gamma_(gamma) {
    total_size_ = up + down;
    step_ratio_ = up / total_size_;
  }
  const char* type() const override { return "CyclicLR"; }

  absl::Status Init() {
    g_->lr = arg_base_lrs_;  // group['lr'] = base_lr before _LRScheduler.__init__
    SCHED_RETURN_IF_ERROR(InitBase());
    base_lrs_ = arg_base_lrs_;
    return absl::OkStatus();
  }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    const double t = static_cast<double>(last_epoch_);
    const double cycle = std::floor(1 + t / total_size_);
    const double x = 1. + t / total_size_ - cycle;
    double scale_factor;
    if (x <= step_ratio_) {
      scale_factor = x / step_ratio_;
    } else {
      scale_factor = (x - 1) / (step_ratio_ - 1);
    }
    double scale;
    switch (mode_) {
      case Mode::kTriangular: scale = 1.; break;
      case Mode::kTriangular2: scale = 1 / std::pow(2., cycle - 1); break;
      default: scale = std::pow(gamma_, t); break;  // scale_mode 'iterations'
    }
    out->clear();
    for (size_t i = 0; i < base_lrs_.size(); ++i) {
      const double base_height = (max_lrs_[i] - base_lrs_[i]) * scale_factor;
      out->push_back(base_lrs_[i] + base_height * scale);
    }
    return absl::OkStatus();
  }

 private:
  std::vector<double> arg_base_lrs_, max_lrs_;
  Mode mode_;
  double gamma_;
  double total_size_ = 0, step_ratio_ = 0;
};

class OneCycleLR : public LRBase {
 public:
  struct Phase {
    double end_step;
    int start_lr, end_lr;  // 0 initial_lr, 1 max_lr, 2 min_lr
  };
  OneCycleLR(ParamGroups* g, std::vector<double> max_lrs, int64_t total_steps, double pct_start,
             bool cos, double div_factor, double final_div_factor, bool three_phase)
      : LRBase(g), max_lrs_(std::move(max_lrs)), total_steps_(total_steps), cos_(cos),
        div_factor_(div_factor), final_div_factor_(final_div_factor) {
    const double N = static_cast<double>(total_steps);
    if (three_phase) {
      phases_ = {{static_cast<double>(pct_start * N) - 1, 0, 1},
                 {static_cast<double>(2 * pct_start * N) - 2, 1, 0},
                 {N - 1, 0, 2}};
    } else {
      phases_ = {{static_cast<double>(pct_start * N) - 1, 0, 1}, {N - 1, 1, 2}};
    }
  }
  const char* type() const override { return "OneCycleLR"; }
  const std::vector<Phase>& phases() const { return phases_; }

  absl::Status Init() {
    const size_t n = g_->size();
    g_->initial_lr.resize(n);
    g_->max_lr.resize(n);
    g_->min_lr.resize(n);
    for (size_t i = 0; i < n; ++i) {
      g_->initial_lr[i] = max_lrs_[i] / div_factor_;
      g_->max_lr[i] = max_lrs_[i];
      g_->min_lr[i] = g_->initial_lr[i] / final_div_factor_;
    }
    g_->has_initial_lr = true;
    return InitBase();
  }

 protected:
  absl::Status GetLr(std::vector<double>* out) override {
    const int64_t step_num = last_epoch_;
    if (step_num > total_steps_) {
      return absl::OutOfRangeError(absl::StrCat(
          "OneCycleLR: stepped past total_steps: this is step ", step_num + 1,
          " (PyTorch: \"Tried to step ", step_num + 1, " times\") but total_steps is ",
          total_steps_, "; raise total_steps (or epochs/steps_per_epoch) to cover the run"));
    }
    const double s = static_cast<double>(step_num);
    out->clear();
    for (size_t g = 0; g < g_->size(); ++g) {
      double start_step = 0;
      double computed = 0;
      for (size_t i = 0; i < phases_.size(); ++i) {
        const double end_step = phases_[i].end_step;
        if (s <= end_step || i == phases_.size() - 1) {
          const double pct = (s - start_step) / (end_step - start_step);
          computed = Anneal(GroupValue(phases_[i].start_lr, g), GroupValue(phases_[i].end_lr, g), pct);
          break;
        }
        start_step = phases_[i].end_step;
      }
      out->push_back(computed);
    }
    return absl::OkStatus();
  }

 private:
  double GroupValue(int which, size_t g) const {
    return which == 0 ? g_->initial_lr[g] : which == 1 ? g_->max_lr[g] : g_->min_lr[g];
  }
  double Anneal(double start, double end, double pct) const {
    if (cos_) {
      const double cos_out = std::cos(kPi * pct) + 1;
      return end + (start - end) / 2.0 * cos_out;
    }
    return (end - start) * pct + start;
  }
  std::vector<double> max_lrs_;
  int64_t total_steps_;
  bool cos_;
  double div_factor_, final_div_factor_;
  std::vector<Phase> phases_;
};

class ReduceLROnPlateau : public Schedule {
 public:
  ReduceLROnPlateau(ParamGroups* g, bool max_mode, double factor, int64_t patience, double threshold,
                    bool abs_mode, int64_t cooldown, std::vector<double> min_lrs, double eps)
      : g_(g), max_mode_(max_mode), factor_(factor), patience_(patience), threshold_(threshold),
        abs_mode_(abs_mode), cooldown_(cooldown), min_lrs_(std::move(min_lrs)), eps_(eps) {
    best_ = max_mode_ ? -std::numeric_limits<double>::infinity()
                      : std::numeric_limits<double>::infinity();
  }
  const char* type() const override { return "ReduceLROnPlateau"; }
  bool needs_metric() const override { return true; }
  int64_t last_epoch() const override { return last_epoch_; }
  absl::Status Step() override {
    return absl::FailedPreconditionError(
        "ReduceLROnPlateau steps on a metric (StepWithMetric), not on its own");
  }
  absl::Status StepTo(int64_t) override { return Step(); }

  absl::Status StepWithMetric(double current) override {
    last_epoch_ = last_epoch_ + 1;
    if (IsBetter(current, best_)) {
      best_ = current;
      num_bad_epochs_ = 0;
    } else {
      num_bad_epochs_ += 1;
    }
    if (cooldown_counter_ > 0) {
      cooldown_counter_ -= 1;
      num_bad_epochs_ = 0;
    }
    if (num_bad_epochs_ > patience_) Reduce();
    return absl::OkStatus();
  }
  // Refused (FailedPrecondition, nothing changes) during the cooldown.
  absl::Status ReduceNow() override {
    if (cooldown_counter_ > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "it is in its cooldown (", cooldown_counter_, " more check(s))"));
    }
    Reduce();
    return absl::OkStatus();
  }

  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }

  void Save(StateWriter& w) const override {
    w.Int(last_epoch_);
    w.Double(best_);
    w.Int(num_bad_epochs_);
    w.Int(cooldown_counter_);
  }
  absl::Status Load(StateReader& r) override {
    SCHED_RETURN_IF_ERROR(r.Int(&last_epoch_));
    SCHED_RETURN_IF_ERROR(r.Double(&best_));
    SCHED_RETURN_IF_ERROR(r.Int(&num_bad_epochs_));
    return r.Int(&cooldown_counter_);
  }

 private:
  // PyTorch's _reduce_lr, then the cooldown starts.
  void Reduce() {
    for (size_t i = 0; i < g_->size(); ++i) {
      const double old_lr = g_->lr[i];
      const double new_lr = std::max(old_lr * factor_, min_lrs_[i]);
      if (old_lr - new_lr > eps_) g_->lr[i] = new_lr;
    }
    cooldown_counter_ = cooldown_;
    num_bad_epochs_ = 0;
  }
  bool IsBetter(double a, double best) const {
    if (!max_mode_ && !abs_mode_) {
      const double rel_epsilon = 1. - threshold_;
      return a < best * rel_epsilon;
    }
    if (!max_mode_ && abs_mode_) return a < best - threshold_;
    if (max_mode_ && !abs_mode_) {
      const double rel_epsilon = threshold_ + 1.;
      return a > best * rel_epsilon;
    }
    return a > best + threshold_;
  }
  ParamGroups* g_;
  bool max_mode_;
  double factor_;
  int64_t patience_;
  double threshold_;
  bool abs_mode_;
  int64_t cooldown_;
  std::vector<double> min_lrs_;
  double eps_;
  double best_;
  int64_t last_epoch_ = 0;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
};

// Schedules made of other schedules (SequentialLR, ChainedScheduler): the
// signature lists the children's; the state is the parent's counter, then
// each child's.
template <class Child>
inline std::string CompositeSignature(const char* type, const std::vector<std::unique_ptr<Child>>& children) {
  std::vector<std::string> parts;
  for (const auto& c : children) parts.push_back(c->Signature());
  return absl::StrCat(type, "(", absl::StrJoin(parts, ","), ")");
}
template <class Child>
inline void SaveComposite(StateWriter& w, int64_t counter, const std::vector<std::unique_ptr<Child>>& children) {
  w.Int(counter);
  for (const auto& c : children) c->Save(w);
}
template <class Child>
inline absl::Status LoadComposite(StateReader& r, int64_t* counter,
                           std::vector<std::unique_ptr<Child>>& children) {
  SCHED_RETURN_IF_ERROR(r.Int(counter));
  for (auto& c : children) SCHED_RETURN_IF_ERROR(c->Load(r));
  return absl::OkStatus();
}

class SequentialLR : public Schedule {
 public:
  SequentialLR(ParamGroups* g, std::vector<std::unique_ptr<LRBase>> children,
               std::vector<int64_t> milestones)
      : g_(g), children_(std::move(children)), milestones_(std::move(milestones)) {}
  const char* type() const override { return "SequentialLR"; }
  int64_t last_epoch() const override { return last_epoch_; }

  absl::Status Init() {
    last_epoch_ = 0;  // last_epoch + 1
    g_->lr = g_->initial_lr;
    for (auto& c : children_) c->AdjustLastEpoch(-1);
    return children_[0]->InitialStep();
  }
  absl::Status Step() override {
    last_epoch_ += 1;
    const size_t idx = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) -
                       milestones_.begin();
    if (idx > 0 && milestones_[idx - 1] == last_epoch_) return children_[idx]->StepTo(0);
    return children_[idx]->Step();
  }
  absl::Status StepTo(int64_t) override {
    return absl::UnimplementedError("SequentialLR cannot be stepped to an epoch");
  }
  std::string Signature() const override { return CompositeSignature(type(), children_); }
  void Save(StateWriter& w) const override { SaveComposite(w, last_epoch_, children_); }
  absl::Status Load(StateReader& r) override { return LoadComposite(r, &last_epoch_, children_); }

 private:
  ParamGroups* g_;
  std::vector<std::unique_ptr<LRBase>> children_;
  std::vector<int64_t> milestones_;
  int64_t last_epoch_ = 0;
};

class ChainedScheduler : public Schedule {
 public:
  explicit ChainedScheduler(std::vector<std::unique_ptr<Schedule>> children)
      : children_(std::move(children)) {}
  const char* type() const override { return "ChainedScheduler"; }
  int64_t last_epoch() const override { return steps_; }
  absl::Status Step() override {
    for (auto& c : children_) SCHED_RETURN_IF_ERROR(c->Step());
    ++steps_;
    return absl::OkStatus();
  }
  absl::Status StepTo(int64_t) override {
    return absl::UnimplementedError("ChainedScheduler cannot be stepped to an epoch");
  }
  std::string Signature() const override { return CompositeSignature(type(), children_); }
  void Save(StateWriter& w) const override { SaveComposite(w, steps_, children_); }
  absl::Status Load(StateReader& r) override { return LoadComposite(r, &steps_, children_); }

 private:
  std::vector<std::unique_ptr<Schedule>> children_;
  int64_t steps_ = 0;
};

}  // namespace trainbus::schedulers::internal

#endif  // TRAINBUS_PLUGINS_SCHEDULERS_LR_SCHEDULES_H_
