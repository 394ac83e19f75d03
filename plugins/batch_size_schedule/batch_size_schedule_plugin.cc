// batch_size_schedule: grows the batch size as training goes on (per epoch or
// per iteration; step, multiply or linear ramp; see trainbus/batch_schedule.h),
// optionally scaling each param group's learning rate with it (the linear
// scaling rule: lr = base_lr x batch / base_batch), and logs the batch size
// as the scalar train/batch_size beside the loss.
//
// In OnSetup it declares its schedule (Control::SetBatchSchedule), so the
// plan the trainer prints and every plugin's totals follow it; at run time it
// asks for each change with Control::SetBatchSize(), and the trainer
// re-batches at the next epoch or iteration.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "trainbus/batch_schedule.h"
#include "trainbus/plugin.h"

namespace trainbus::batch_size_schedule {
namespace {

class BatchSizeSchedulePlugin : public Plugin {
 public:
  static PluginInfo Info() {
    return {"batch_size_schedule",
            "1.0.0",
            "Grows the batch size per epoch or iteration, optionally scaling the lr with it",
            {{"schedule", OptionType::kObject, "",
              "The schedule: {\"interval\": \"epoch\"|\"iteration\", \"mode\": \"step\"|"
              "\"multiply\"|\"linear\", ...} (README: batch_size_schedule)"},
             {"scale_lr", OptionType::kBool, "false",
              "Scale each group's lr with the batch size (lr = base_lr x batch / base_batch)"},
             {"log", OptionType::kBool, "true", "Publish train/batch_size every iteration"}}};
  }

  static absl::StatusOr<std::unique_ptr<BatchSizeSchedulePlugin>> Create(const PluginContext& ctx) {
    if (!ctx.options.Has("schedule")) {
      return absl::InvalidArgumentError(
          "option 'schedule' is required, e.g. {\"mode\": \"multiply\", \"factor\": 2, \"every\": 2}");
    }
    auto schedule = BatchSchedule::FromValue(ctx.options.GetValue("schedule"), "option 'schedule'");
    if (!schedule.ok()) return schedule.status();
    auto p = std::make_unique<BatchSizeSchedulePlugin>();
    p->schedule_ = *schedule;
    p->scale_lr_ = ctx.options.GetBool("scale_lr");
    p->log_ = ctx.options.GetBool("log");
    return p;
  }

  void OnSetup(const SetupEvent&, Control& control) override {
    absl::Status s = control.SetBatchSchedule(schedule_);
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  }

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override {
    base_ = e.run->batch_size;
    if (current_ == 0) current_ = schedule_.At(0, base_);  // not restored from a checkpoint
    if (e.run->train_samples > 0) current_ = std::min(current_, e.run->train_samples);
    if (base_lrs_.empty()) {  // restored from a checkpoint otherwise
      for (int g = 0; g < control.num_param_groups(); ++g) {
        base_lrs_.push_back(control.learning_rate(g));
      }
    }
    if (scale_lr_) ScaleLr(control, current_);
  }

  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    if (log_) {
      control.Publish(Record::Scalar("train/batch_size", static_cast<double>(e.batch_size), e.step));
    }
    if (schedule_.interval == BatchSchedule::Interval::kIteration) Apply(control, e.step + 1, true);
  }

  void OnEpochEnd(const EpochEndEvent& e, Control& control) override {
    if (schedule_.interval == BatchSchedule::Interval::kEpoch) Apply(control, e.epoch + 1, false);
  }

  // "<current batch size> <base lr of group 0> <base lr of group 1> ..."
  absl::StatusOr<std::string> SaveState() override {
    std::string out = absl::StrCat(current_);
    for (double lr : base_lrs_) absl::StrAppend(&out, " ", absl::StrFormat("%.17g", lr));
    return out;
  }
  absl::Status LoadState(absl::string_view state) override {
    std::vector<absl::string_view> parts = absl::StrSplit(state, ' ', absl::SkipEmpty());
    base_lrs_.clear();
    bool ok = !parts.empty() && absl::SimpleAtoi(parts[0], &current_) && current_ >= 1;
    for (size_t i = 1; ok && i < parts.size(); ++i) {
      double lr = 0;
      ok = absl::SimpleAtod(parts[i], &lr);
      base_lrs_.push_back(lr);
    }
    if (!ok) return absl::DataLossError(absl::StrCat("bad batch size state '", state, "'"));
    return absl::OkStatus();
  }

 private:
  void Apply(Control& control, int64_t t, bool at_next_iteration) {
    int64_t next = schedule_.At(t, base_);
    // A batch is at most the training set (the trainer cuts it there): say
    // so, and scale the lr by the batch that really runs.
    if (control.run().train_samples > 0) next = std::min(next, control.run().train_samples);
    if (next == current_) return;
    absl::Status s = control.SetBatchSize(next, at_next_iteration);
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    control.Log(absl::StrCat("batch size ", current_, " -> ", next,
                             at_next_iteration ? " from the next iteration" : " from the next epoch"));
    current_ = next;
    if (scale_lr_) ScaleLr(control, next);
  }

  void ScaleLr(Control& control, int64_t batch) {
    for (int g = 0; g < static_cast<int>(base_lrs_.size()); ++g) {
      absl::Status s = control.SetLearningRate(g, base_lrs_[g] * batch / base_);
      if (!s.ok()) throw std::runtime_error(std::string(s.message()));
    }
  }

  BatchSchedule schedule_;
  bool scale_lr_ = false, log_ = true;
  int64_t base_ = 0, current_ = 0;
  std::vector<double> base_lrs_;
};

}  // namespace
}  // namespace trainbus::batch_size_schedule

TRAINBUS_PLUGIN(trainbus::batch_size_schedule::BatchSizeSchedulePlugin)
