#include "trainbus/testing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace trainbus::testing {
namespace {

constexpr char kRecorderName[] = "trainbus.testing.recorder";
constexpr int kRecorderPriority = 1'000'000;

}  // namespace

int64_t RecordingPlugin::Count(absl::string_view hook) const {
  return std::count_if(calls_.begin(), calls_.end(),
                       [&](const HookCall& c) { return c.hook == hook; });
}

std::vector<Record> RecordingPlugin::RecordsWithTag(absl::string_view tag) const {
  std::vector<Record> out;
  for (const Record& r : records_) {
    if (r.tag == tag) out.push_back(r);
  }
  return out;
}

std::vector<int64_t> RecordingPlugin::Steps(absl::string_view tag) const {
  std::vector<int64_t> out;
  for (const Record& r : records_) {
    if (r.tag == tag) out.push_back(r.step);
  }
  return out;
}

std::vector<double> RecordingPlugin::Scalars(absl::string_view tag) const {
  std::vector<double> out;
  for (const Record& r : records_) {
    if (r.tag != tag) continue;
    if (const auto* v = std::get_if<ScalarValue>(&r.value)) out.push_back(v->value);
  }
  return out;
}

std::vector<std::string> RecordingPlugin::Texts(absl::string_view tag) const {
  std::vector<std::string> out;
  for (const Record& r : records_) {
    if (r.tag != tag) continue;
    if (const auto* v = std::get_if<TextValue>(&r.value)) out.push_back(v->markdown);
  }
  return out;
}

FakeRun::FakeRun(FakeRunOptions options) : options_(std::move(options)) {
  run_.run_name = options_.run_name;
  run_.log_dir = options_.log_dir;
  run_.batch_size = options_.batch_size;
  run_.train_samples = options_.batch_size * options_.iterations_per_epoch;
  run_.epochs = options_.epochs;
  run_.rank = options_.rank;
  run_.world_size = options_.world_size;
  run_.start_step = options_.start_step;
  run_.start_epoch =
      options_.iterations_per_epoch > 0 ? options_.start_step / options_.iterations_per_epoch : 0;
  bus_.set_run_info(&run_);
  bus_.set_log_sink([this](absl::string_view line) { result_.log.emplace_back(line); });
  bus_.set_checkpoint_saver([this](const std::string& root, const std::string& name,
                                   absl::string_view reason, std::vector<std::string>) {
    result_.checkpoints.push_back(absl::StrCat(bus_step_, ": ", root, "/", name, ": ", reason));
    return absl::OkStatus();
  });
  recorder_.set_hooks(HooksOf<RecordingPlugin>());
  (void)bus_.Add(&recorder_, kRecorderName, kRecorderPriority);
  loss_ = [](int64_t step) { return 1.0 / static_cast<double>(step + 1); };
}

FakeRun::~FakeRun() = default;

void FakeRun::TakeCheckpointRequest(int64_t step) {
  if (!bus_.checkpoint_requested()) return;
  result_.checkpoint_requests.push_back(absl::StrCat(step, ": ", bus_.checkpoint_reason()));
  bus_.clear_checkpoint_request();
}

absl::Status FakeRun::Add(Plugin* plugin, std::string name, int priority) {
  if (ran_) return absl::FailedPreconditionError("FakeRun::Add: the run has already run");
  return bus_.Add(plugin, std::move(name), priority);
}

FakeRunResult FakeRun::Run() {
  if (ran_) {
    FakeRunResult again;
    again.status = absl::FailedPreconditionError("FakeRun::Run() runs once; make a new FakeRun");
    return again;
  }
  ran_ = true;
  const int64_t per_epoch = options_.iterations_per_epoch;
  if (per_epoch < 1 || options_.epochs < 0 || options_.start_step % per_epoch != 0) {
    result_.status = absl::InvalidArgumentError(absl::StrCat(
        "FakeRun: iterations_per_epoch must be >= 1 and start_step (", options_.start_step,
        ") a multiple of it (", per_epoch, ")"));
    return result_;
  }

  bus_.Setup(SetupEvent{&run_});
  run_.iterations_per_epoch = per_epoch;
  run_.total_iterations = per_epoch * options_.epochs;
  int64_t step = options_.start_step;
  bus_step_ = step;
  bus_.set_position(step, run_.start_epoch);
  bus_.TrainBegin(TrainBeginEvent{&run_});

  Metrics last_metrics;
  double last_loss = 0.0;
  for (int64_t epoch = run_.start_epoch; epoch < options_.epochs && !bus_.stop_requested();
       ++epoch) {
    bus_.set_position(step, epoch);
    bus_.EpochBegin(EpochBeginEvent{epoch, step, per_epoch});
    double loss_sum = 0.0;
    int64_t ran = 0;
    bool complete = true;
    for (int64_t b = 0; b < per_epoch; ++b) {
      if (bus_.stop_requested()) {  // asked in OnEpochBegin: no iteration runs
        complete = false;
        break;
      }
      bus_step_ = step;
      bus_.set_position(step, epoch);
      bus_.IterationBegin(IterationBeginEvent{step, epoch, b, options_.batch_size});
      const double loss = loss_(step);
      bus_.AfterBackward(AfterBackwardEvent{step, epoch, b, 0, 1, loss});
      bus_.BeforeOptimizerStep(BeforeOptimizerStepEvent{step, epoch, b, options_.batch_size, loss});
      // A hook that failed under the stop policy skips the step, as in a Session.
      const bool skipped = bus_.optimizer_step_skipped() ||
                           (!bus_.status().ok() && bus_.policy() == HookErrorPolicy::kStopRun);
      bus_.clear_optimizer_step_skipped();
      const std::vector<double> rates = bus_.LearningRates();
      IterationEndEvent e;
      e.step = step;
      e.epoch = epoch;
      e.batch_index = b;
      e.batch_size = options_.batch_size;
      e.loss = loss;
      e.learning_rates = rates;
      e.optimizer_step_skipped = skipped;
      bus_.IterationEnd(e);
      TakeCheckpointRequest(step);
      const std::vector<double> after = bus_.LearningRates();
      if (!after.empty()) result_.learning_rates.push_back(after[0]);
      loss_sum += loss;
      last_loss = loss;
      ++ran;
      result_.last_step = step;
      ++result_.iterations_run;
      ++step;
      if (bus_.stop_requested()) {
        complete = (b + 1 == per_epoch);
        break;
      }
    }
    if (complete && validation_ && EveryN(options_.validate_every_n_epochs, epoch)) {
      bus_.ValidationBegin(ValidationBeginEvent{step - 1, epoch});
      last_metrics = validation_(epoch);
      ValidationEndEvent v;
      v.step = step - 1;
      v.epoch = epoch;
      v.metrics = last_metrics;
      bus_.ValidationEnd(v);
      TakeCheckpointRequest(step - 1);
    }
    EpochEndEvent end;
    end.epoch = epoch;
    end.step = step - 1;
    end.iterations = ran;
    end.mean_loss = ran > 0 ? loss_sum / static_cast<double>(ran) : 0.0;
    end.complete = complete;
    end.metrics = last_metrics;
    bus_.EpochEnd(end);
    TakeCheckpointRequest(step - 1);
  }

  TrainEndEvent end;
  end.step = result_.last_step;
  end.iterations_run = result_.iterations_run;
  if (!bus_.status().ok() && bus_.policy() == HookErrorPolicy::kStopRun) {
    end.reason = EndReason::kFailed;
    bus_.Abort(AbortEvent{end.step, std::string(bus_.status().message())});
  } else if (bus_.stop_requested()) {
    end.reason = EndReason::kStopRequested;
  }
  end.stop_reason = bus_.stop_reason();
  Metrics final_metrics = last_metrics;
  final_metrics.push_back({"train/loss", last_loss});
  end.final_metrics = final_metrics;
  bus_.TrainEnd(end);
  absl::Status closed = bus_.CloseAll();
  result_.reason = end.reason;
  result_.stop_reason = end.stop_reason;
  result_.status = bus_.status().ok() ? closed : bus_.status();
  return result_;
}

}  // namespace trainbus::testing
