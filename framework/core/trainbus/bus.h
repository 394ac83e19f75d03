// trainbus/bus.h — delivers events and records to plugins, in a stable order.
//
// The Bus owns nothing but the order of delivery and the run's shared control
// state. Plugins are added with a name and a priority; every hook is delivered
// synchronously, lower priority first, then in the order plugins were added.
// A plugin is called only for the hooks in its mask (Plugin::hooks()).
//
// A hook that throws is caught here. The message names plugin, hook and step
// ("plugin 'csv' threw in OnIterationEnd at step 41: disk full"), and the
// policy decides:
//   - kStopRun (default): the run stops at the end of the current iteration,
//     with that message as its error; every plugin still receives the rest of
//     the lifecycle (OnAbort, OnTrainEnd, Close) so files are closed.
//   - kDisablePlugin: the plugin receives no further hooks; the run goes on.
//     The failure is still reported by status() and at the end of the run.
//
// Close() is the one hook that may legitimately wait (a final flush, joining
// a writer thread), so it is also the one that can hang: a stalled network
// disk, a deadlock. CloseAll() therefore gives each plugin's Close() a time
// limit (close_timeout(), default 120 s). A plugin that misses it is reported
// ("plugin 'x' did not return from Close() within 2s ..."), left running on
// its own thread, and listed by abandoned_plugins(): its owner must never
// destroy it (Session keeps such plugins alive until the process exits). The
// other plugins are still closed, so their files are complete. A plugin whose
// mask has kClosesNothing (it keeps the default, empty Close()) is skipped.
//
// Most users never touch the Bus: Session and Trainer drive it. It is public
// for hosts that drive plugins in an unusual way, and for tests.
#ifndef TRAINBUS_BUS_H_
#define TRAINBUS_BUS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "trainbus/control.h"
#include "trainbus/events.h"
#include "trainbus/plugin.h"
#include "trainbus/record.h"

namespace trainbus {

enum class HookErrorPolicy { kStopRun, kDisablePlugin };

class Bus {
 public:
  explicit Bus(HookErrorPolicy policy = HookErrorPolicy::kStopRun);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Adds a plugin (not owned; must outlive the Bus). Names must be unique.
  absl::Status Add(Plugin* plugin, std::string name, int priority = 0);

  // What the run's Control reports and steers; set by the host.
  void set_run_info(const RunInfo* run) { run_ = run; }
  void set_model(torch::nn::Module* model) { model_ = model; }
  void set_optimizer(torch::optim::Optimizer* optimizer) { optimizer_ = optimizer; }
  void set_position(int64_t step, int64_t epoch) {
    step_ = step;
    epoch_ = epoch;
  }
  // Performs Control::SaveCheckpoint (set by the Session).
  using CheckpointSaver = std::function<absl::Status(
      const std::string& root, const std::string& name, absl::string_view reason,
      std::vector<std::string> remove_after)>;
  void set_checkpoint_saver(CheckpointSaver saver) { checkpoint_saver_ = std::move(saver); }
  // Performs Control::SetBatchSize (set by a host that batches, the Trainer).
  using BatchSizeSetter = std::function<absl::Status(int64_t size, bool at_next_iteration)>;
  void set_batch_size_setter(BatchSizeSetter setter) { batch_size_setter_ = std::move(setter); }
  // Performs Control::SetBatchSchedule during Setup (set by the Trainer).
  using BatchScheduleSetter = std::function<absl::Status(const BatchSchedule& schedule)>;
  void set_batch_schedule_setter(BatchScheduleSetter setter) {
    batch_schedule_setter_ = std::move(setter);
  }
  // Where Control::Log() lines go (default: standard error).
  void set_log_sink(std::function<void(absl::string_view)> sink) { log_sink_ = std::move(sink); }

  // One method per lifecycle hook of trainbus/hooks.h, delivering it to
  // the plugins that implement it: Setup(e), TrainBegin(e), ...,
  // IterationEnd(e), ..., TrainEnd(e).
#define TRAINBUS_BUS_DELIVER_(name, event, when) void name(const event& e);
  TRAINBUS_LIFECYCLE_HOOKS(TRAINBUS_BUS_DELIVER_)
#undef TRAINBUS_BUS_DELIVER_
  // Delivers a record to every plugin's OnRecord (publisher: the host).
  void Publish(Record record);
  // Calls Close() on every plugin (disabled ones too) but those whose mask
  // has kClosesNothing, in delivery order, each within close_timeout().
  // Returns the first error, each named after its plugin; all are logged. A
  // Close() past its limit is a kDeadlineExceeded error and puts the plugin
  // in abandoned_plugins().
  absl::Status CloseAll();

  // The time limit for each plugin's Close(); absl::InfiniteDuration() waits
  // forever (and runs Close() on the calling thread).
  static constexpr absl::Duration kDefaultCloseTimeout = absl::Seconds(120);
  void set_close_timeout(absl::Duration limit) { close_timeout_ = limit; }
  absl::Duration close_timeout() const { return close_timeout_; }
  // Plugins whose Close() had not returned within the limit. Their Close()
  // may still be running: do not destroy them.
  const std::vector<Plugin*>& abandoned_plugins() const { return abandoned_; }

  // Stop requests (from plugins, or from the host with requester "trainbus").
  void RequestStop(absl::string_view requester, absl::string_view reason);
  bool stop_requested() const { return stop_requested_; }
  const std::string& stop_reason() const { return stop_reason_; }
  bool checkpoint_requested() const { return checkpoint_requested_; }
  const std::string& checkpoint_reason() const { return checkpoint_reason_; }
  void clear_checkpoint_request() {
    checkpoint_requested_ = false;
    checkpoint_reason_.clear();
  }
  // Control::SkipOptimizerStep during the last BeforeOptimizerStep; the host
  // clears it once it has acted on it.
  bool optimizer_step_skipped() const { return step_skipped_; }
  void clear_optimizer_step_skipped() { step_skipped_ = false; }
  // The host skipped the step for its own reason (another rank skipped it, a
  // hook failed): IterationEnd then reports it like a plugin's skip.
  void set_optimizer_step_skipped() { step_skipped_ = true; }

  // OK, or the first hook failure (kStopRun: the run's error; kDisablePlugin:
  // reported, run continued).
  const absl::Status& status() const { return status_; }
  // Names of plugins disabled after a failure.
  std::vector<std::string> disabled_plugins() const;
  // Plugin names in delivery order.
  std::vector<std::string> plugin_names() const;
  size_t size() const { return entries_.size(); }
  HookErrorPolicy policy() const { return policy_; }
  // Whether any plugin implements the hook (kHookIndex<Name>): a host may
  // skip building an event no one receives.
  bool Listens(int hook_index) const { return !subscribers_[hook_index].empty(); }

  // Learning rates of the bound optimizer's param groups (empty if none).
  std::vector<double> LearningRates() const;

 private:
  class PluginControl;
  struct Entry;
  // One plugin in one hook's delivery list, with everything a delivery reads,
  // side by side: after the model's work these lines are cold, and one list
  // of a few lines costs fewer misses than a trip to each plugin's Entry.
  struct Subscriber {
    Plugin* plugin;
    Control* control;
    const char* name;  // the Entry's, for the crash report
    Entry* entry;
    bool disabled;  // a copy of entry->disabled, set by HandleFailure
  };

  template <class Event>
  void Dispatch(int hook_index, void (Plugin::*fn)(const Event&, Control&), const Event& e);
  void HandleFailure(Entry& entry, int hook_index, absl::string_view what);
  void Log(absl::string_view requester, absl::string_view message);
  void Sort();

  HookErrorPolicy policy_;
  absl::Duration close_timeout_ = kDefaultCloseTimeout;
  std::vector<Plugin*> abandoned_;
  std::vector<std::unique_ptr<Entry>> entries_;  // delivery order
  std::array<std::vector<Subscriber>, kNumHooks> subscribers_;  // per hook, delivery order
  const RunInfo* run_ = nullptr;
  torch::nn::Module* model_ = nullptr;
  torch::optim::Optimizer* optimizer_ = nullptr;
  int64_t step_ = 0;
  int64_t epoch_ = 0;
  bool stop_requested_ = false;
  std::string stop_reason_;
  bool checkpoint_requested_ = false;
  std::string checkpoint_reason_;
  absl::Status status_;
  int publish_depth_ = 0;
  int delivering_ = -1;  // index of the hook being delivered, -1 between hooks
  bool step_skipped_ = false;
  bool batch_schedule_set_ = false;
  std::function<void(absl::string_view)> log_sink_;
  CheckpointSaver checkpoint_saver_;
  BatchSizeSetter batch_size_setter_;
  BatchScheduleSetter batch_schedule_setter_;
};

}  // namespace trainbus

#endif  // TRAINBUS_BUS_H_
