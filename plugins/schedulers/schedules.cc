// schedules.cc — see schedules.h. Each class mirrors one PyTorch 1.13.1
// scheduler: get_lr() is the chainable (recursive) form used by step(), and
// ClosedForm() the one used by step(epoch) (only SequentialLR calls it, with
// epoch 0 at a milestone). Expressions keep PyTorch's operand order so that
// the doubles are identical.
#include "schedules.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace trainbus::schedulers {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr double kPi = 3.141592653589793;  // math.pi

#define SCHED_RETURN_IF_ERROR(expr)   \
  do {                                \
    absl::Status _s = (expr);         \
    if (!_s.ok()) return _s;          \
  } while (0)

std::string Describe(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue: return "null";
    case Value::kNumberValue: {
      char buf[40];
      std::snprintf(buf, sizeof(buf), "number %.17g", v.number_value());
      return buf;
    }
    case Value::kStringValue: return absl::StrCat("string \"", v.string_value(), "\"");
    case Value::kBoolValue: return v.bool_value() ? "bool true" : "bool false";
    case Value::kStructValue: return "an object";
    case Value::kListValue: return "a list";
    default: return "nothing";
  }
}

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shorter when it round-trips (0.5 rather than 0.50000000000000000).
  for (int p = 1; p <= 17; ++p) {
    char b[40];
    std::snprintf(b, sizeof(b), "%.*g", p, v);
    if (std::strtod(b, nullptr) == v) return b;
  }
  return buf;
}

// Reads one schedule object's arguments, remembering the first error.
class Args {
 public:
  Args(const Struct& s, std::string where, bool validate_only, size_t num_groups)
      : s_(s), where_(std::move(where)), validate_only_(validate_only), num_groups_(num_groups) {}

  const std::string& where() const { return where_; }
  bool ok() const { return status_.ok(); }

  void Fail(absl::string_view message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat(where_, ": ", message));
  }
  void FailOption(absl::string_view name, absl::string_view message) {
    Fail(absl::StrCat("option '", name, "' ", message));
  }

  const Value* Find(absl::string_view name) {
    known_.push_back(std::string(name));
    auto it = s_.fields().find(std::string(name));
    if (it == s_.fields().end() || it->second.kind_case() == Value::kNullValue) return nullptr;
    return &it->second;
  }
  bool Has(absl::string_view name) {
    auto it = s_.fields().find(std::string(name));
    return it != s_.fields().end() && it->second.kind_case() != Value::kNullValue;
  }

  double Double(absl::string_view name, std::optional<double> def) {
    const Value* v = Find(name);
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return def.value_or(0.0);
    }
    if (v->kind_case() != Value::kNumberValue) {
      FailOption(name, absl::StrCat("must be a number, got ", Describe(*v)));
      return def.value_or(0.0);
    }
    if (!std::isfinite(v->number_value())) {
      FailOption(name, absl::StrCat("must be finite, got ", Num(v->number_value())));
    }
    return v->number_value();
  }

  int64_t Int(absl::string_view name, std::optional<int64_t> def) {
    const Value* v = Find(name);
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return def.value_or(0);
    }
    return ToInt(name, *v, def.value_or(0));
  }

  int64_t ToInt(absl::string_view name, const Value& v, int64_t fallback) {
    if (v.kind_case() != Value::kNumberValue) {
      FailOption(name, absl::StrCat("must be an integer, got ", Describe(v)));
      return fallback;
    }
    double d = v.number_value();
    if (!(std::fabs(d) < 9.0e15) || std::floor(d) != d) {
      FailOption(name, absl::StrCat("must be an integer, got ", Num(d)));
      return fallback;
    }
    return static_cast<int64_t>(d);
  }

  bool Bool(absl::string_view name, bool def) {
    const Value* v = Find(name);
    if (v == nullptr) return def;
    if (v->kind_case() != Value::kBoolValue) {
      FailOption(name, absl::StrCat("must be true or false, got ", Describe(*v)));
      return def;
    }
    return v->bool_value();
  }

  std::string String(absl::string_view name, const std::string& def,
                     const std::vector<std::string>& allowed) {
    const Value* v = Find(name);
    if (v == nullptr) return def;
    if (v->kind_case() != Value::kStringValue) {
      FailOption(name, absl::StrCat("must be a string, got ", Describe(*v)));
      return def;
    }
    if (std::find(allowed.begin(), allowed.end(), v->string_value()) == allowed.end()) {
      FailOption(name, absl::StrCat("must be one of \"", absl::StrJoin(allowed, "\", \""),
                                    "\", got \"", v->string_value(), "\""));
      return def;
    }
    return v->string_value();
  }

  std::vector<int64_t> IntList(absl::string_view name) {
    const Value* v = Find(name);
    std::vector<int64_t> out;
    if (v == nullptr) {
      FailOption(name, "is required");
      return out;
    }
    if (v->kind_case() != Value::kListValue) {
      FailOption(name, absl::StrCat("must be a list of integers, got ", Describe(*v)));
      return out;
    }
    for (const Value& e : v->list_value().values()) out.push_back(ToInt(name, e, 0));
    return out;
  }

  // A number for every group, or a list with one number per group (PyTorch's
  // "float or list" arguments).
  std::vector<double> PerGroup(absl::string_view name, std::optional<double> def) {
    const Value* v = Find(name);
    std::vector<double> out(num_groups_, def.value_or(0.0));
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return out;
    }
    if (v->kind_case() == Value::kNumberValue) {
      if (!std::isfinite(v->number_value())) {
        FailOption(name, absl::StrCat("must be finite, got ", Num(v->number_value())));
      }
      std::fill(out.begin(), out.end(), v->number_value());
      return out;
    }
    if (v->kind_case() != Value::kListValue) {
      FailOption(name, absl::StrCat("must be a number or a list of numbers (one per param "
                                    "group), got ",
                                    Describe(*v)));
      return out;
    }
    const auto& list = v->list_value().values();
    std::vector<double> given;
    for (const Value& e : list) {
      if (e.kind_case() != Value::kNumberValue || !std::isfinite(e.number_value())) {
        FailOption(name, absl::StrCat("must be a list of finite numbers, got an element ",
                                      Describe(e)));
        return out;
      }
      given.push_back(e.number_value());
    }
    if (validate_only_) {
      if (given.empty()) FailOption(name, "must not be an empty list");
      return out;  // group count unknown yet
    }
    if (given.size() != num_groups_) {
      FailOption(name, absl::StrCat("has ", given.size(), " values but the optimizer has ",
                                    num_groups_, " param group", num_groups_ == 1 ? "" : "s"));
      return out;
    }
    return given;
  }

  void Accept(absl::string_view name) { known_.push_back(std::string(name)); }

  // Unknown keys are errors; call after reading every argument.
  absl::Status Finish() {
    // An unknown key first: a misspelt name is the likely cause of a
    // "required" error about the right one.
    for (const auto& [key, value] : s_.fields()) {
      if (key == "type") continue;
      if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
        std::vector<std::string> known = known_;
        std::sort(known.begin(), known.end());
        known.erase(std::unique(known.begin(), known.end()), known.end());
        return absl::InvalidArgumentError(absl::StrCat(where_, ": unknown option '", key,
                                                       "' (known: ", absl::StrJoin(known, ", "),
                                                       ")"));
      }
    }
    return status_;
  }

  // Range checks.
  void Check(bool ok, absl::string_view name, absl::string_view requirement, double got) {
    if (!ok) FailOption(name, absl::StrCat(requirement, ", got ", Num(got)));
  }

 private:
  const Struct& s_;
  std::string where_;
  bool validate_only_;
  size_t num_groups_;
  std::vector<std::string> known_;
  absl::Status status_;
};

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
    std::vector<double> values;
    SCHED_RETURN_IF_ERROR(GetLr(&values));
    g_->lr = std::move(values);
    return absl::OkStatus();
  }
  absl::Status StepTo(int64_t epoch) override {
    ++step_count_;
    last_epoch_ = epoch;
    std::vector<double> values;
    if (!ClosedForm(&values)) SCHED_RETURN_IF_ERROR(GetLr(&values));
    g_->lr = std::move(values);
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

  ParamGroups* g_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;
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

int64_t PyMod(int64_t a, int64_t m) {  // Python's %, m > 0
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
    return Apply();
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
    return Apply();
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
  absl::Status Apply() {
    std::vector<double> values;
    SCHED_RETURN_IF_ERROR(GetLr(&values));
    g_->lr = std::move(values);
    return absl::OkStatus();
  }
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
    if (num_bad_epochs_ > patience_) {
      for (size_t i = 0; i < g_->size(); ++i) {
        const double old_lr = g_->lr[i];
        const double new_lr = std::max(old_lr * factor_, min_lrs_[i]);
        if (old_lr - new_lr > eps_) g_->lr[i] = new_lr;
      }
      cooldown_counter_ = cooldown_;
      num_bad_epochs_ = 0;
    }
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
std::string CompositeSignature(const char* type, const std::vector<std::unique_ptr<Child>>& children) {
  std::vector<std::string> parts;
  for (const auto& c : children) parts.push_back(c->Signature());
  return absl::StrCat(type, "(", absl::StrJoin(parts, ","), ")");
}
template <class Child>
void SaveComposite(StateWriter& w, int64_t counter, const std::vector<std::unique_ptr<Child>>& children) {
  w.Int(counter);
  for (const auto& c : children) c->Save(w);
}
template <class Child>
absl::Status LoadComposite(StateReader& r, int64_t* counter,
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

// ---------------------------------------------------------------------------
// The factory.

class Builder {
 public:
  Builder(ParamGroups* g, bool validate_only) : g_(g), validate_only_(validate_only) {}

  absl::StatusOr<std::unique_ptr<Schedule>> Build(const Value& config, const std::string& where) {
    if (config.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": a schedule must be an object such as {\"type\": \"StepLR\", \"step_size\": 10}, got ",
          Describe(config)));
    }
    const Struct& s = config.struct_value();
    auto it = s.fields().find("type");
    if (it == s.fields().end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": missing 'type' (one of ", absl::StrJoin(KnownScheduleTypes(), ", "), ")"));
    }
    if (it->second.kind_case() != Value::kStringValue) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": 'type' must be a string, got ", Describe(it->second)));
    }
    const std::string& type = it->second.string_value();
    Args a(s, absl::StrCat(where, " ", type), validate_only_, g_->size());
    a.Accept("verbose");  // PyTorch's printing flag: accepted, ignored
    if (type == "StepLR") {
      const int64_t step_size = a.Int("step_size", std::nullopt);
      const double gamma = a.Double("gamma", 0.1);
      a.Check(step_size >= 1, "step_size", "must be >= 1", static_cast<double>(step_size));
      a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
      return Finish<StepLR>(a, step_size, gamma);
    }
    if (type == "MultiStepLR") {
      std::vector<int64_t> milestones = a.IntList("milestones");
      const double gamma = a.Double("gamma", 0.1);
      CheckMilestones(a, milestones, /*min=*/0);
      a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
      return Finish<MultiStepLR>(a, milestones, gamma);
    }
    if (type == "ConstantLR") {
      const double factor = a.Double("factor", 1.0 / 3);
      const int64_t total_iters = a.Int("total_iters", 5);
      a.Check(factor > 0 && factor <= 1, "factor", "must be in (0, 1]", factor);
      a.Check(total_iters >= 0, "total_iters", "must be >= 0", static_cast<double>(total_iters));
      return Finish<ConstantLR>(a, factor, total_iters);
    }
    if (type == "LinearLR") {
      const double start = a.Double("start_factor", 1.0 / 3);
      const double end = a.Double("end_factor", 1.0);
      const int64_t total_iters = a.Int("total_iters", 5);
      a.Check(start > 0 && start <= 1, "start_factor", "must be in (0, 1]", start);
      a.Check(end >= 0 && end <= 1, "end_factor", "must be in [0, 1]", end);
      a.Check(total_iters >= 1, "total_iters", "must be >= 1", static_cast<double>(total_iters));
      return Finish<LinearLR>(a, start, end, total_iters);
    }
    if (type == "ExponentialLR") {
      const double gamma = a.Double("gamma", std::nullopt);
      a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
      return Finish<ExponentialLR>(a, gamma);
    }
    if (type == "PolynomialLR") {
      const int64_t total_iters = a.Int("total_iters", 5);
      const double power = a.Double("power", 1.0);
      a.Check(total_iters >= 1, "total_iters", "must be >= 1", static_cast<double>(total_iters));
      a.Check(power >= 0, "power", "must be >= 0", power);
      return Finish<PolynomialLR>(a, total_iters, power);
    }
    if (type == "CosineAnnealingLR") {
      const int64_t t_max = a.Int("T_max", std::nullopt);
      const double eta_min = a.Double("eta_min", 0.0);
      a.Check(t_max >= 1, "T_max", "must be >= 1", static_cast<double>(t_max));
      a.Check(eta_min >= 0, "eta_min", "must be >= 0", eta_min);
      return Finish<CosineAnnealingLR>(a, t_max, eta_min);
    }
    if (type == "CosineAnnealingWarmRestarts") {
      const int64_t t0 = a.Int("T_0", std::nullopt);
      const int64_t t_mult = a.Int("T_mult", 1);
      const double eta_min = a.Double("eta_min", 0.0);
      a.Check(t0 >= 1, "T_0", "must be a positive integer", static_cast<double>(t0));
      a.Check(t_mult >= 1, "T_mult", "must be an integer >= 1", static_cast<double>(t_mult));
      a.Check(eta_min >= 0, "eta_min", "must be >= 0", eta_min);
      return Finish<CosineAnnealingWarmRestarts>(a, t0, t_mult, eta_min);
    }
    if (type == "CyclicLR") {
      std::vector<double> base = a.PerGroup("base_lr", std::nullopt);
      std::vector<double> max = a.PerGroup("max_lr", std::nullopt);
      const double up = a.Double("step_size_up", 2000);
      const double down = a.Double("step_size_down", up);  // None: = step_size_up
      const std::string mode = a.String("mode", "triangular", {"triangular", "triangular2", "exp_range"});
      const double gamma = a.Double("gamma", 1.0);
      a.String("scale_mode", "cycle", {"cycle", "iterations"});  // only used with a custom scale_fn
      IgnoredMomentumArgs(a);
      for (double b : base) a.Check(b >= 0, "base_lr", "must be >= 0", b);
      for (double m : max) a.Check(m >= 0, "max_lr", "must be >= 0", m);
      a.Check(up > 0, "step_size_up", "must be > 0", up);
      a.Check(down > 0, "step_size_down", "must be > 0", down);
      a.Check(gamma >= 0, "gamma", "must be >= 0", gamma);
      SCHED_RETURN_IF_ERROR(a.Finish());
      const CyclicLR::Mode m = mode == "triangular"    ? CyclicLR::Mode::kTriangular
                               : mode == "triangular2" ? CyclicLR::Mode::kTriangular2
                                                       : CyclicLR::Mode::kExpRange;
      auto sched = std::make_unique<CyclicLR>(g_, base, max, up, down, m, gamma);
      SCHED_RETURN_IF_ERROR(sched->Init());
      return std::unique_ptr<Schedule>(std::move(sched));
    }
    if (type == "OneCycleLR") {
      std::vector<double> max = a.PerGroup("max_lr", std::nullopt);
      int64_t total_steps = 0;
      const bool has_total = a.Has("total_steps");
      const bool has_epochs = a.Has("epochs"), has_spe = a.Has("steps_per_epoch");
      if (has_total) {
        total_steps = a.Int("total_steps", 0);
        a.Accept("epochs");
        a.Accept("steps_per_epoch");
        a.Check(total_steps >= 1, "total_steps", "must be a positive integer",
                static_cast<double>(total_steps));
      } else if (has_epochs && has_spe) {
        a.Accept("total_steps");
        const int64_t epochs = a.Int("epochs", 0);
        const int64_t spe = a.Int("steps_per_epoch", 0);
        a.Check(epochs >= 1, "epochs", "must be a positive integer", static_cast<double>(epochs));
        a.Check(spe >= 1, "steps_per_epoch", "must be a positive integer", static_cast<double>(spe));
        total_steps = epochs * spe;
      } else {
        a.Accept("total_steps");
        a.Accept("epochs");
        a.Accept("steps_per_epoch");
        a.FailOption("total_steps",
                     "is required (or both 'epochs' and 'steps_per_epoch'): the cycle's length");
      }
      const double pct_start = a.Double("pct_start", 0.3);
      const std::string anneal = a.String("anneal_strategy", "cos", {"cos", "linear"});
      const double div_factor = a.Double("div_factor", 25.);
      const double final_div_factor = a.Double("final_div_factor", 1e4);
      const bool three_phase = a.Bool("three_phase", false);
      IgnoredMomentumArgs(a);
      for (double m : max) a.Check(m >= 0, "max_lr", "must be >= 0", m);
      a.Check(pct_start >= 0 && pct_start <= 1, "pct_start", "must be in [0, 1]", pct_start);
      a.Check(div_factor > 0, "div_factor", "must be > 0", div_factor);
      a.Check(final_div_factor > 0, "final_div_factor", "must be > 0", final_div_factor);
      SCHED_RETURN_IF_ERROR(a.Finish());
      auto sched = std::make_unique<OneCycleLR>(g_, max, total_steps, pct_start, anneal == "cos",
                                                div_factor, final_div_factor, three_phase);
      // PyTorch divides by each phase's length (ZeroDivisionError when one is empty).
      double start = 0;
      for (const auto& p : sched->phases()) {
        if (!(p.end_step > start)) {
          return absl::InvalidArgumentError(absl::StrCat(
              a.where(), ": option 'pct_start' ", Num(pct_start), " with total_steps ", total_steps,
              " leaves a phase with no steps (pct_start * total_steps must be > 1",
              three_phase ? "" : " and < total_steps", ")"));
        }
        start = p.end_step;
      }
      SCHED_RETURN_IF_ERROR(sched->Init());
      return std::unique_ptr<Schedule>(std::move(sched));
    }
    if (type == "ReduceLROnPlateau") {
      const std::string mode = a.String("mode", "min", {"min", "max"});
      const double factor = a.Double("factor", 0.1);
      const int64_t patience = a.Int("patience", 10);
      const double threshold = a.Double("threshold", 1e-4);
      const std::string threshold_mode = a.String("threshold_mode", "rel", {"rel", "abs"});
      const int64_t cooldown = a.Int("cooldown", 0);
      std::vector<double> min_lrs = a.PerGroup("min_lr", 0.0);
      const double eps = a.Double("eps", 1e-8);
      const Value* monitor = a.Find("monitor");  // read by the plugin
      if (monitor != nullptr && monitor->kind_case() != Value::kStringValue) {
        a.FailOption("monitor", absl::StrCat("must be a metric name (string), got ", Describe(*monitor)));
      }
      a.Check(factor >= 0 && factor < 1, "factor", "must be in [0, 1) (PyTorch: factor should be < 1.0)",
              factor);
      a.Check(patience >= 0, "patience", "must be >= 0", static_cast<double>(patience));
      a.Check(threshold >= 0, "threshold", "must be >= 0", threshold);
      a.Check(cooldown >= 0, "cooldown", "must be >= 0", static_cast<double>(cooldown));
      for (double m : min_lrs) a.Check(m >= 0, "min_lr", "must be >= 0", m);
      a.Check(eps >= 0, "eps", "must be >= 0", eps);
      SCHED_RETURN_IF_ERROR(a.Finish());
      return std::unique_ptr<Schedule>(std::make_unique<ReduceLROnPlateau>(
          g_, mode == "max", factor, patience, threshold, threshold_mode == "abs", cooldown,
          min_lrs, eps));
    }
    if (type == "SequentialLR") {
      const Value* list = a.Find("schedulers");
      std::vector<int64_t> milestones = a.IntList("milestones");
      SCHED_RETURN_IF_ERROR(a.Finish());
      SCHED_RETURN_IF_ERROR(CheckList(a, list));
      const auto& items = list->list_value().values();
      if (milestones.size() + 1 != static_cast<size_t>(items.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            a.where(), ": option 'milestones' must have one value fewer than 'schedulers' (",
            items.size(), " schedulers need ", items.size() - 1, " milestones), got ",
            milestones.size()));
      }
      CheckMilestones(a, milestones, /*min=*/1);
      SCHED_RETURN_IF_ERROR(a.Finish());
      std::vector<std::unique_ptr<LRBase>> children;
      for (int i = 0; i < items.size(); ++i) {
        const std::string child_where = absl::StrCat(where, ".schedulers[", i, "]");
        auto child = Build(items[i], child_where);
        if (!child.ok()) return child.status();
        auto* base = dynamic_cast<LRBase*>(child->get());
        if (base == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              child_where, " ", (*child)->type(), ": cannot be used inside SequentialLR (PyTorch 1.13 "
              "cannot step it there either); use it at the top level or in ChainedScheduler"));
        }
        child->release();
        children.emplace_back(base);
      }
      auto sched = std::make_unique<SequentialLR>(g_, std::move(children), milestones);
      SCHED_RETURN_IF_ERROR(sched->Init());
      return std::unique_ptr<Schedule>(std::move(sched));
    }
    if (type == "ChainedScheduler") {
      const Value* list = a.Find("schedulers");
      SCHED_RETURN_IF_ERROR(a.Finish());
      SCHED_RETURN_IF_ERROR(CheckList(a, list));
      std::vector<std::unique_ptr<Schedule>> children;
      const auto& items = list->list_value().values();
      for (int i = 0; i < items.size(); ++i) {
        const std::string child_where = absl::StrCat(where, ".schedulers[", i, "]");
        auto child = Build(items[i], child_where);
        if (!child.ok()) return child.status();
        if ((*child)->needs_metric()) {
          return absl::InvalidArgumentError(absl::StrCat(
              child_where, " ReduceLROnPlateau: cannot be chained (it steps on a metric); use it "
              "at the top level"));
        }
        children.push_back(std::move(child).value());
      }
      return std::unique_ptr<Schedule>(std::make_unique<ChainedScheduler>(std::move(children)));
    }
    return absl::InvalidArgumentError(absl::StrCat(where, ": unknown schedule type \"", type,
                                                   "\" (known: ",
                                                   absl::StrJoin(KnownScheduleTypes(), ", "), ")"));
  }

 private:
  template <class T, class... A>
  absl::StatusOr<std::unique_ptr<Schedule>> Finish(Args& a, A&&... args) {
    SCHED_RETURN_IF_ERROR(a.Finish());
    auto sched = std::make_unique<T>(g_, std::forward<A>(args)...);
    SCHED_RETURN_IF_ERROR(sched->InitBase());
    return std::unique_ptr<Schedule>(std::move(sched));
  }

  static void IgnoredMomentumArgs(Args& a) {
    // Momentum cycling does not change learning rates; not done here.
    a.Bool("cycle_momentum", true);
    for (const char* name : {"base_momentum", "max_momentum"}) {
      if (a.Has(name)) a.Double(name, 0.0); else a.Accept(name);
    }
  }

  static void CheckMilestones(Args& a, const std::vector<int64_t>& m, int64_t min) {
    for (size_t i = 0; i < m.size(); ++i) {
      if (m[i] < min) {
        a.FailOption("milestones", absl::StrCat("must be >= ", min, ", got ", m[i], " at index ", i));
        return;
      }
      if (i > 0 && m[i] <= m[i - 1]) {
        a.FailOption("milestones", absl::StrCat("must be strictly increasing, got ", m[i],
                                                " after ", m[i - 1], " at index ", i));
        return;
      }
    }
  }

  static absl::Status CheckList(Args& a, const Value* list) {
    if (list == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(a.where(), ": option 'schedulers' is required"));
    }
    if (list->kind_case() != Value::kListValue || list->list_value().values_size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(a.where(), ": option 'schedulers' must be a non-empty list of schedule "
                                  "objects, got ",
                       list->kind_case() == Value::kListValue ? "an empty list" : Describe(*list)));
    }
    return absl::OkStatus();
  }

  ParamGroups* g_;
  bool validate_only_;
};

}  // namespace

const std::vector<std::string>& KnownScheduleTypes() {
  static const std::vector<std::string> kTypes = {
      "StepLR",         "MultiStepLR",      "ConstantLR",
      "LinearLR",       "ExponentialLR",    "PolynomialLR",
      "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
      "OneCycleLR",     "ReduceLROnPlateau", "SequentialLR",
      "ChainedScheduler"};
  return kTypes;
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(const Value& config,
                                                             const std::vector<double>& lrs,
                                                             absl::string_view where) {
  if (lrs.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, ": the optimizer has no param groups to schedule"));
  }
  std::unique_ptr<Scheduler> s(new Scheduler());
  s->groups_.lr = lrs;
  Builder b(&s->groups_, /*validate_only=*/false);
  auto root = b.Build(config, std::string(where));
  if (!root.ok()) return root.status();
  s->root_ = std::move(root).value();
  return s;
}

absl::Status Scheduler::Validate(const Value& config, absl::string_view where) {
  ParamGroups g;
  g.lr = {1.0};
  Builder b(&g, /*validate_only=*/true);
  auto root = b.Build(config, std::string(where));
  return root.status();
}

// State text: "trainbus-schedulers-state 1 <signature> <groups> <lr...> <has_initial>
// <initial...> <n_max> <max...> <n_min> <min...> <schedule tree...>".
std::string Scheduler::SaveState() const {
  StateWriter w;
  w.Word("trainbus-schedulers-state");
  w.Int(1);
  w.Word(root_->Signature());
  w.Int(static_cast<int64_t>(groups_.size()));
  w.Doubles(groups_.lr);
  w.Int(groups_.has_initial_lr ? 1 : 0);
  w.Doubles(groups_.initial_lr);
  w.Int(static_cast<int64_t>(groups_.max_lr.size()));
  w.Doubles(groups_.max_lr);
  w.Int(static_cast<int64_t>(groups_.min_lr.size()));
  w.Doubles(groups_.min_lr);
  root_->Save(w);
  return w.Finish();
}

absl::Status Scheduler::LoadState(absl::string_view state) {
  StateReader r(state);
  std::string magic, signature;
  int64_t version = 0, n = 0, has_initial = 0, n_max = 0, n_min = 0;
  SCHED_RETURN_IF_ERROR(r.Word(&magic));
  if (magic != "trainbus-schedulers-state") {
    return absl::InvalidArgumentError("not a schedulers state (bad header)");
  }
  SCHED_RETURN_IF_ERROR(r.Int(&version));
  if (version != 1) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported schedulers state version ", version));
  }
  SCHED_RETURN_IF_ERROR(r.Word(&signature));
  if (signature != root_->Signature()) {
    return absl::InvalidArgumentError(absl::StrCat("the state was saved by schedule ", signature,
                                                   " but the configured schedule is ",
                                                   root_->Signature()));
  }
  SCHED_RETURN_IF_ERROR(r.Int(&n));
  if (n != static_cast<int64_t>(groups_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the state has ", n,
                                                   " param groups but the optimizer has ",
                                                   groups_.size()));
  }
  ParamGroups g;
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.lr, n));
  SCHED_RETURN_IF_ERROR(r.Int(&has_initial));
  g.has_initial_lr = has_initial != 0;
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.initial_lr, g.has_initial_lr ? n : 0));
  SCHED_RETURN_IF_ERROR(r.Int(&n_max));
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.max_lr, n_max == 0 ? 0 : n));
  SCHED_RETURN_IF_ERROR(r.Int(&n_min));
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.min_lr, n_min == 0 ? 0 : n));
  ParamGroups saved = groups_;
  groups_ = g;  // schedules point at groups_
  absl::Status s = root_->Load(r);
  if (s.ok() && !r.AtEnd()) s = absl::InvalidArgumentError("trailing data in schedulers state");
  if (!s.ok()) {
    groups_ = saved;
    return absl::InvalidArgumentError(absl::StrCat("bad schedulers state: ", s.message()));
  }
  return absl::OkStatus();
}

// --- text state ---------------------------------------------------------------

void StateWriter::Int(int64_t v) { absl::StrAppend(&out_, out_.empty() ? "" : " ", v); }
void StateWriter::Double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  absl::StrAppend(&out_, out_.empty() ? "" : " ", buf);
}
void StateWriter::Word(absl::string_view w) { absl::StrAppend(&out_, out_.empty() ? "" : " ", w); }
void StateWriter::Doubles(const std::vector<double>& v) {
  for (double d : v) Double(d);
}
std::string StateWriter::Finish() const { return out_; }

StateReader::StateReader(absl::string_view text) : text_(text) {}

absl::StatusOr<std::string> StateReader::Next() {
  while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  if (pos_ >= text_.size()) return absl::InvalidArgumentError("state ends too early");
  size_t start = pos_;
  while (pos_ < text_.size() && !std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  return text_.substr(start, pos_ - start);
}
bool StateReader::AtEnd() {
  while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  return pos_ >= text_.size();
}
absl::Status StateReader::Word(std::string* w) {
  auto t = Next();
  if (!t.ok()) return t.status();
  *w = *t;
  return absl::OkStatus();
}
absl::Status StateReader::Int(int64_t* v) {
  auto t = Next();
  if (!t.ok()) return t.status();
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(t->c_str(), &end, 10);
  if (errno != 0 || end == t->c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat("expected an integer, got \"", *t, "\""));
  }
  *v = x;
  return absl::OkStatus();
}
absl::Status StateReader::Double(double* v) {
  auto t = Next();
  if (!t.ok()) return t.status();
  char* end = nullptr;
  double x = std::strtod(t->c_str(), &end);
  if (end == t->c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat("expected a number, got \"", *t, "\""));
  }
  *v = x;
  return absl::OkStatus();
}
absl::Status StateReader::Doubles(std::vector<double>* v, size_t expected_size) {
  v->resize(expected_size);
  for (double& d : *v) SCHED_RETURN_IF_ERROR(Double(&d));
  return absl::OkStatus();
}

}  // namespace trainbus::schedulers
