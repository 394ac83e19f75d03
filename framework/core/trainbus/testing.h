// trainbus/testing.h — testing a plugin without a trainer, a dataset or files.
//
// Link trainbus::testing. Three helpers, for any test framework:
//
//   CreatePlugin<T>(json)  T's options from JSON text, checked against
//                          T::Info() as the loader checks a run config, then
//                          T::Create(): a test sees the errors a user sees.
//   RecordingPlugin        keeps every hook call and every record it hears.
//   FakeRun                drives plugins through a whole run on a Bus:
//                          epochs of iterations with the losses you choose,
//                          validations with the metrics you choose; it stops
//                          when a plugin asks and says how the run ended.
//
// A complete test (GoogleTest; more in examples/custom_plugin/grad_norm_test.cc),
// with a LossPrinter class (the README's plugin) in a header of its own:
//
//   auto plugin = trainbus::testing::CreatePlugin<LossPrinter>(R"({"every_n": 5})");
//   ASSERT_TRUE(plugin.ok()) << plugin.status();
//   trainbus::testing::FakeRun run;                  // 1 epoch of 10 iterations
//   ASSERT_TRUE(run.Add(plugin->get(), "loss_printer").ok());
//   run.set_loss([](int64_t step) { return 1.0 / (step + 1); });
//   trainbus::testing::FakeRunResult result = run.Run();
//   EXPECT_EQ(result.reason, trainbus::EndReason::kCompleted);
//   EXPECT_EQ(result.log, (std::vector<std::string>{"[loss_printer] loss 0.2",
//                                                  "[loss_printer] loss 0.1"}));
//
// A FakeRun binds no model or optimizer unless you Bind() them (tiny LibTorch
// modules work); without an optimizer, Control::SetLearningRate fails as it
// does in a Session with none. Control::SaveCheckpoint is recorded in
// FakeRunResult::checkpoints, not written. Hooks run on the calling thread,
// like a real run's; Close() runs on a thread of the bus's within its time
// limit, as in a real run.
#ifndef TRAINBUS_TESTING_H_
#define TRAINBUS_TESTING_H_

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "trainbus/bus.h"
#include "trainbus/events.h"
#include "trainbus/options.h"
#include "trainbus/plugin.h"
#include "trainbus/record.h"

namespace trainbus::testing {

// Creates plugin T as the loader would: options_json validated against
// T::Info().options (unknown keys, wrong types and bad defaults are errors
// naming the plugin and the key), then T::Create(). `log_dir` becomes
// PluginContext::log_dir; `id` the instance id (default: the plugin's name).
template <class T>
absl::StatusOr<std::unique_ptr<T>> CreatePlugin(absl::string_view options_json = "{}",
                                                std::string log_dir = "", std::string id = "") {
  const PluginInfo info = T::Info();
  const std::string where = "plugin '" + info.name + "'";
  if (absl::Status s = PluginOptions::CheckDefaults(info.options, where); !s.ok()) return s;
  absl::StatusOr<PluginOptions> options = PluginOptions::FromJson(info.options, options_json, where);
  if (!options.ok()) return options.status();
  PluginContext context;
  context.name = info.name;
  context.id = id.empty() ? info.name : std::move(id);
  context.options = *std::move(options);
  context.log_dir = std::move(log_dir);
  absl::StatusOr<std::unique_ptr<T>> made = absl::InternalError("Create() did not return");
  try {
    made = T::Create(context);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(where, ": Create() threw: ", e.what()));
  }
  if (!made.ok()) {
    return absl::Status(made.status().code(),
                        absl::StrCat(where, ": ", made.status().message()));
  }
  if (*made == nullptr) return absl::InternalError(where + ": Create() returned null");
  (*made)->set_hooks(HooksOf<T>());
  return made;
}

// One hook call a RecordingPlugin heard: the hook's name ("IterationEnd")
// and the step of its event (-1 for events without one: Setup, TrainBegin).
struct HookCall {
  std::string hook;
  int64_t step = -1;
  bool operator==(const HookCall& other) const {
    return hook == other.hook && step == other.step;
  }
};

// Hears every hook and every record. Add it last (the highest priority) to
// see what the plugins before it published.
class RecordingPlugin : public Plugin {
 public:
#define TRAINBUS_TESTING_RECORD_HOOK_(name, event, when) \
  void On##name(const event& e, Control&) override { Heard(#name, e); }
  TRAINBUS_LIFECYCLE_HOOKS(TRAINBUS_TESTING_RECORD_HOOK_)
#undef TRAINBUS_TESTING_RECORD_HOOK_
  void OnRecord(const Record& record, Control&) override { records_.push_back(record); }

  const std::vector<HookCall>& calls() const { return calls_; }
  const std::vector<Record>& records() const { return records_; }
  // How many times `hook` ("IterationEnd", ...) was heard.
  int64_t Count(absl::string_view hook) const;
  // The records with `tag`, in the order they were published.
  std::vector<Record> RecordsWithTag(absl::string_view tag) const;
  // The steps, and the values, of the scalar records with `tag`.
  std::vector<int64_t> Steps(absl::string_view tag) const;
  std::vector<double> Scalars(absl::string_view tag) const;
  // The texts of the text records with `tag`.
  std::vector<std::string> Texts(absl::string_view tag) const;

 private:
  template <class Event>
  void Heard(const char* hook, const Event& e) {
    if constexpr (std::is_same_v<Event, SetupEvent> || std::is_same_v<Event, TrainBeginEvent>) {
      calls_.push_back({hook, -1});
    } else {
      calls_.push_back({hook, e.step});
    }
  }

  std::vector<HookCall> calls_;
  std::vector<Record> records_;
};

struct FakeRunOptions {
  int64_t epochs = 1;
  int64_t iterations_per_epoch = 10;
  int64_t batch_size = 32;
  // Validate after every Nth epoch (trainbus::EveryN); 0: never. Needs
  // set_validation().
  int64_t validate_every_n_epochs = 1;
  // > 0: the run starts there, as a resumed run does (restore the plugins'
  // state with LoadState first). Must fall on an epoch boundary.
  int64_t start_step = 0;
  std::string run_name = "fake-run";
  std::string log_dir;  // RunInfo::log_dir
  int rank = 0;
  int world_size = 1;
};

struct FakeRunResult {
  EndReason reason = EndReason::kCompleted;
  // "<plugin>: <reason>" of the first stop request; for a hook that threw,
  // the bus's message ("plugin 'x' threw in OnIterationEnd at step 3: ...").
  std::string stop_reason;
  int64_t last_step = -1;   // the last step that ran
  int64_t iterations_run = 0;
  // The bus's first hook failure or the first Close() error; OK otherwise.
  absl::Status status;
  // Lines plugins wrote with Control::Log, as "[<plugin>] <message>", and the
  // bus's own ("[trainbus] ...": a hook that threw, a Close() error).
  std::vector<std::string> log;
  // Control::RequestCheckpoint and Control::SaveCheckpoint calls, as
  // "<step>: <reason>" and "<step>: <root>/<name>: <reason>".
  std::vector<std::string> checkpoint_requests;
  std::vector<std::string> checkpoints;
  // The learning rate of param group 0 after each step (with an optimizer bound).
  std::vector<double> learning_rates;
};

class FakeRun {
 public:
  explicit FakeRun(FakeRunOptions options = FakeRunOptions());
  ~FakeRun();
  FakeRun(const FakeRun&) = delete;
  FakeRun& operator=(const FakeRun&) = delete;

  // Adds a plugin (not owned; keep it alive until the run has ended).
  absl::Status Add(Plugin* plugin, std::string name, int priority = 0);
  // The loss of each step (default: 1 / (step + 1), a loss that improves).
  void set_loss(std::function<double(int64_t step)> loss) { loss_ = std::move(loss); }
  // The metrics of the validation after `epoch` ({"val/loss", ...}).
  void set_validation(std::function<Metrics(int64_t epoch)> validation) {
    validation_ = std::move(validation);
  }
  // Makes a model and optimizer visible to plugins (not owned).
  void Bind(torch::nn::Module* model, torch::optim::Optimizer* optimizer) {
    bus_.set_model(model);
    bus_.set_optimizer(optimizer);
  }

  // Setup, TrainBegin, the epochs, TrainEnd and Close() on every plugin.
  // Once per FakeRun.
  FakeRunResult Run();

  // Sees every hook and record (added with priority 1'000'000).
  const RecordingPlugin& recorder() const { return recorder_; }
  const RunInfo& run_info() const { return run_; }
  Bus& bus() { return bus_; }

 private:
  // Moves a pending Control::RequestCheckpoint into the result.
  void TakeCheckpointRequest(int64_t step);

  FakeRunOptions options_;
  RunInfo run_;
  Bus bus_;
  RecordingPlugin recorder_;
  std::function<double(int64_t)> loss_;
  std::function<Metrics(int64_t)> validation_;
  FakeRunResult result_;
  int64_t bus_step_ = 0;  // the step SaveCheckpoint calls are stamped with
  bool ran_ = false;
};

}  // namespace trainbus::testing

#endif  // TRAINBUS_TESTING_H_
