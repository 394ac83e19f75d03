// grad_norm — a trainbus plugin written the way a user writes one, built out
// of tree against the installed package (see CMakeLists.txt next to this file).
// The class is here, in a header, so that grad_norm_test.cc can create it;
// grad_norm_plugin.cc makes the library with TRAINBUS_PLUGIN.
//
// After every optimizer step (every `every_n`-th iteration) it computes the
// global gradient norm over all parameters, the way
// torch.nn.utils.clip_grad_norm_ does: the `norm_type`-norm of the vector of
// per-parameter gradient norms. It publishes
//   grad_norm/global          the global norm (scalar record)
//   grad_norm/per_parameter   the per-parameter norms (histogram record)
// which the tensorboard and csv plugins write like any other record, and it
// asks the run to stop when the norm explodes (above `max_norm`, or not
// finite). Its maximum and counters are saved with checkpoints
// (trainbus::PluginState), so a resumed run reports the maximum over the whole
// run. grad_norm_test.cc tests it with trainbus/testing.h.
#ifndef GRAD_NORM_H_
#define GRAD_NORM_H_

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>           // Tensor::norm and friends
#include <torch/nn/module.h>     // Control::model()->parameters()

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainbus/plugin.h"
#include "trainbus/plugin_state.h"

namespace grad_norm {

class GradNormPlugin : public trainbus::Plugin {
 public:
  static trainbus::PluginInfo Info() {
    using trainbus::OptionType;
    return {"grad_norm",
            "1.0.0",
            "Publishes the global gradient norm (scalar and per-parameter histogram); stops the "
            "run when it explodes",
            {{"every_n", OptionType::kInt, "1", "Measure every N iterations (>= 1; the Nth, 2Nth, ...)"},
             {"max_norm", OptionType::kDouble, "0",
              "Stop the run when the norm exceeds this (0: never; a non-finite norm always stops "
              "unless stop_on_nonfinite is false)"},
             {"norm_type", OptionType::kAny, "2",
              "The p of the p-norm: a number > 0, or \"inf\" (largest absolute gradient)"},
             {"histogram", OptionType::kBool, "true",
              "Also publish the per-parameter gradient norms as a histogram"},
             {"stop_on_nonfinite", OptionType::kBool, "true",
              "Stop the run when the norm is nan or inf"},
             {"tag", OptionType::kString, "\"grad_norm\"", "Prefix of the published tags"}}};
  }

  // Options arrive type-checked (an unknown key or a string for every_n never
  // gets here); ranges are checked here, with messages naming the option.
  static absl::StatusOr<std::unique_ptr<GradNormPlugin>> Create(
      const trainbus::PluginContext& ctx) {
    const trainbus::PluginOptions& o = ctx.options;
    auto p = std::make_unique<GradNormPlugin>();
    p->every_n_ = o.GetInt("every_n");
    if (p->every_n_ < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("option 'every_n' must be >= 1, got ", p->every_n_));
    }
    p->max_norm_ = o.GetDouble("max_norm");
    if (!(p->max_norm_ >= 0) || std::isinf(p->max_norm_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'max_norm' must be a finite number >= 0 (0: never stop), got ", p->max_norm_));
    }
    const google::protobuf::Value& norm = o.GetValue("norm_type");
    if (norm.kind_case() == google::protobuf::Value::kNumberValue) {
      p->norm_type_ = norm.number_value();
      if (!(p->norm_type_ > 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("option 'norm_type' must be > 0 or \"inf\", got ", p->norm_type_));
      }
    } else if (norm.kind_case() == google::protobuf::Value::kStringValue &&
               norm.string_value() == "inf") {
      p->norm_type_ = std::numeric_limits<double>::infinity();
    } else {
      return absl::InvalidArgumentError(
          "option 'norm_type' must be a number > 0 or the string \"inf\"");
    }
    p->histogram_ = o.GetBool("histogram");
    p->stop_on_nonfinite_ = o.GetBool("stop_on_nonfinite");
    p->tag_ = o.GetString("tag");
    if (p->tag_.empty()) return absl::InvalidArgumentError("option 'tag' must not be empty");
    return p;
  }

  void OnTrainBegin(const trainbus::TrainBeginEvent&, trainbus::Control& control) override {
    if (control.model() == nullptr) {
      control.Log("no model is bound to the run (Session::Bind): nothing to measure");
    }
  }

  // Runs on the training thread after optimizer.step(): the gradients of this
  // step are still there. A few reductions per parameter, no copies to the
  // host beyond one double each: cheap enough to do inline.
  void OnIterationEnd(const trainbus::IterationEndEvent& e,
                      trainbus::Control& control) override {
    if (control.model() == nullptr || !trainbus::EveryN(every_n_, e.step)) return;
    std::vector<double> norms;
    for (const at::Tensor& p : control.model()->parameters()) {
      const at::Tensor& g = p.grad();
      if (!g.defined()) continue;
      norms.push_back(std::isinf(norm_type_) ? g.detach().abs().max().item<double>()
                                             : g.detach().norm(norm_type_).item<double>());
    }
    if (norms.empty()) return;
    double total = 0.0;
    if (std::isinf(norm_type_)) {
      bool has_nan = false;
      for (double n : norms) {
        has_nan |= std::isnan(n);
        total = std::max(total, n);
      }
      if (has_nan) total = std::numeric_limits<double>::quiet_NaN();
    } else {
      for (double n : norms) total += std::pow(n, norm_type_);
      total = std::pow(total, 1.0 / norm_type_);
    }

    ++measured_;
    if (std::isfinite(total) && total > max_seen_) {
      max_seen_ = total;
      max_step_ = e.step;
    }
    control.PublishScalar(tag_ + "/global", total);  // at e.step
    if (histogram_) {
      control.Publish(trainbus::Record::Histogram(
          tag_ + "/per_parameter", at::tensor(norms, at::TensorOptions().dtype(at::kDouble)), e.step));
    }

    const bool nonfinite = !std::isfinite(total);
    if ((nonfinite && stop_on_nonfinite_) || (max_norm_ > 0 && total > max_norm_)) {
      ++explosions_;
      control.RequestStop(absl::StrFormat(
          "gradient norm %g at step %d (epoch %d) %s", total, e.step, e.epoch + 1,
          nonfinite ? "is not finite" : absl::StrFormat("exceeds max_norm %g", max_norm_)));
    }
  }

  void OnTrainEnd(const trainbus::TrainEndEvent&, trainbus::Control& control) override {
    if (measured_ == 0) return;
    control.Log(absl::StrFormat("%d measurements; largest gradient norm %g at step %d",
                                measured_, max_seen_, max_step_));
  }

  // State for an exact resume: named values, doubles bit for bit.
  absl::StatusOr<std::string> SaveState() override {
    trainbus::PluginState state;
    state.SetInt("measured", measured_);
    state.SetDouble("max", max_seen_);
    state.SetInt("max_step", max_step_);
    state.SetInt("explosions", explosions_);
    return state.Serialize();
  }

  absl::Status LoadState(absl::string_view bytes) override {
    absl::StatusOr<trainbus::PluginState> state = trainbus::PluginState::Parse(bytes);
    if (!state.ok()) return state.status();
    for (absl::Status s : {state->GetInt("measured", &measured_), state->GetDouble("max", &max_seen_),
                           state->GetInt("max_step", &max_step_),
                           state->GetInt("explosions", &explosions_)}) {
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // For tests: what it has seen.
  int64_t measured() const { return measured_; }
  double max_seen() const { return max_seen_; }

 private:
  int64_t every_n_ = 1;
  double max_norm_ = 0.0;
  double norm_type_ = 2.0;
  bool histogram_ = true;
  bool stop_on_nonfinite_ = true;
  std::string tag_;
  int64_t measured_ = 0;
  double max_seen_ = 0.0;
  int64_t max_step_ = -1;
  int64_t explosions_ = 0;
};

}  // namespace grad_norm

#endif  // GRAD_NORM_H_
