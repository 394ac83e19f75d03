#include "trainbus/bus.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include <unistd.h>

#include <torch/optim/optimizer.h>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainbus/crash_report.h"

namespace trainbus {
namespace {

constexpr const char* kHookNames[kNumHooks] = {
#define TRAINBUS_HOOK_NAME_(name, event, when) "On" #name,
    TRAINBUS_HOOKS(TRAINBUS_HOOK_NAME_)
#undef TRAINBUS_HOOK_NAME_
};

constexpr const char* kHookDescriptions[kNumHooks] = {
#define TRAINBUS_HOOK_WHEN_(name, event, when) when,
    TRAINBUS_HOOKS(TRAINBUS_HOOK_WHEN_)
#undef TRAINBUS_HOOK_WHEN_
};

// Records published from inside OnRecord are delivered too, up to this depth;
// deeper nesting is a plugin loop (A publishes on B's record and vice versa).
constexpr int kMaxPublishDepth = 8;

double NowSeconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

const char* HookName(int hook_index) {
  return hook_index >= 0 && hook_index < kNumHooks ? kHookNames[hook_index] : "?";
}

const char* HookDescription(int hook_index) {
  return hook_index >= 0 && hook_index < kNumHooks ? kHookDescriptions[hook_index] : "?";
}

std::string HookMaskToString(uint32_t mask) {
  std::vector<std::string> names;
  for (int i = 0; i < kNumHooks; ++i) {
    if (mask & (1u << i)) names.emplace_back(kHookNames[i]);
  }
  return names.empty() ? "(none)" : absl::StrJoin(names, ", ");
}

// The Control a plugin sees: the bus's shared state, with requests and log
// lines attributed to the plugin.
class Bus::PluginControl final : public Control {
 public:
  PluginControl(Bus* bus, const std::string* name) : bus_(bus), name_(name) {}

  void RequestStop(absl::string_view reason) override { bus_->RequestStop(*name_, reason); }
  bool stop_requested() const override { return bus_->stop_requested_; }
  const std::string& stop_reason() const override { return bus_->stop_reason_; }

  int num_param_groups() const override {
    return bus_->optimizer_ ? static_cast<int>(bus_->optimizer_->param_groups().size()) : 0;
  }
  double learning_rate(int group) const override {
    if (group < 0 || group >= num_param_groups()) return 0.0;
    return bus_->optimizer_->param_groups()[group].options().get_lr();
  }
  absl::Status SetLearningRate(int group, double lr) override {
    if (bus_->optimizer_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SetLearningRate: no optimizer is bound to the session; call "
          "Session::Bind(model, optimizer) first"));
    }
    if (group < 0 || group >= num_param_groups()) {
      return absl::InvalidArgumentError(absl::StrCat("plugin '", *name_,
                                                     "': SetLearningRate: param group ", group,
                                                     " does not exist (the optimizer has ",
                                                     num_param_groups(), ")"));
    }
    if (!std::isfinite(lr) || lr < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "plugin '", *name_, "': SetLearningRate: lr must be finite and >= 0, got ", lr));
    }
    bus_->optimizer_->param_groups()[group].options().set_lr(lr);
    return absl::OkStatus();
  }

  absl::Status SetBatchSize(int64_t size, bool at_next_iteration) override {
    if (size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("plugin '", *name_, "': SetBatchSize: size must be >= 1, got ", size));
    }
    if (!bus_->batch_size_setter_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SetBatchSize: this host batches its data itself (a Session in "
          "your own loop); only the trainbus Trainer can change the batch size"));
    }
    return bus_->batch_size_setter_(size, at_next_iteration);
  }

  absl::Status SetBatchSchedule(const BatchSchedule& schedule) override {
    if (bus_->delivering_ != kHookIndexSetup) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SetBatchSchedule: only allowed in OnSetup (the plan is fixed "
          "before OnTrainBegin); use SetBatchSize() for a change decided during the run"));
    }
    if (!bus_->batch_schedule_setter_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SetBatchSchedule: this host batches its data itself (a Session "
          "in your own loop); only the trainbus Trainer follows a batch-size schedule"));
    }
    if (bus_->batch_schedule_set_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SetBatchSchedule: another plugin already declared the run's "
          "batch-size schedule; enable only one plugin that schedules the batch size"));
    }
    bus_->batch_schedule_set_ = true;
    return bus_->batch_schedule_setter_(schedule);
  }

  absl::Status SkipOptimizerStep(absl::string_view reason) override {
    if (bus_->delivering_ != kHookIndexBeforeOptimizerStep) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SkipOptimizerStep (", reason,
          "): only allowed in OnBeforeOptimizerStep, when the step has not run yet"));
    }
    if (!bus_->step_skipped_) {
      bus_->step_skipped_ = true;
      bus_->Log(*name_, absl::StrCat("skipped the optimizer step of step ", bus_->step_, ": ",
                                     reason));
    }
    return absl::OkStatus();
  }
  bool optimizer_step_skipped() const override { return bus_->step_skipped_; }

  void RequestCheckpoint(absl::string_view reason) override {
    if (!bus_->checkpoint_requested_) {
      bus_->checkpoint_requested_ = true;
      bus_->checkpoint_reason_ = absl::StrCat(*name_, ": ", reason);
    }
  }
  bool checkpoint_requested() const override { return bus_->checkpoint_requested_; }
  absl::Status SaveCheckpoint(const std::string& root, const std::string& name,
                              absl::string_view reason,
                              std::vector<std::string> remove_after) override {
    if (!bus_->checkpoint_saver_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "plugin '", *name_, "': SaveCheckpoint: this host cannot save checkpoints (use a "
          "Session with a bound model)"));
    }
    return bus_->checkpoint_saver_(root, name, reason, std::move(remove_after));
  }

  torch::nn::Module* model() const override { return bus_->model_; }
  torch::optim::Optimizer* optimizer() const override { return bus_->optimizer_; }
  const RunInfo& run() const override {
    static const RunInfo kEmpty;
    return bus_->run_ ? *bus_->run_ : kEmpty;
  }
  int64_t step() const override { return bus_->step_; }
  int64_t epoch() const override { return bus_->epoch_; }

  void Publish(Record record) override { bus_->Publish(std::move(record)); }
  void Log(absl::string_view message) override { bus_->Log(*name_, message); }

 private:
  Bus* bus_;
  const std::string* name_;
};

struct Bus::Entry {
  Plugin* plugin = nullptr;
  std::string name;
  int priority = 0;
  size_t order = 0;
  bool disabled = false;
  std::unique_ptr<PluginControl> control;
};

Bus::Bus(HookErrorPolicy policy) : policy_(policy) {}
Bus::~Bus() = default;

absl::Status Bus::Add(Plugin* plugin, std::string name, int priority) {
  if (plugin == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("Bus::Add: plugin '", name, "' is null"));
  }
  for (const auto& e : entries_) {
    if (e->name == name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "two plugins are named '", name,
          "'; each plugin may appear once in a run (remove the duplicate entry)"));
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->plugin = plugin;
  entry->name = std::move(name);
  entry->priority = priority;
  entry->order = entries_.size();
  entry->control = std::make_unique<PluginControl>(this, &entry->name);
  entries_.push_back(std::move(entry));
  Sort();
  return absl::OkStatus();
}

void Bus::Sort() {
  std::stable_sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a->priority != b->priority ? a->priority < b->priority : a->order < b->order;
  });
  for (int h = 0; h < kNumHooks; ++h) {
    subscribers_[h].clear();
    for (auto& e : entries_) {
      if (e->plugin->hooks() & (1u << h)) {
        subscribers_[h].push_back(
            {e->plugin, e->control.get(), e->name.c_str(), e.get(), e->disabled});
      }
    }
  }
}

template <class Event>
void Bus::Dispatch(int hook_index, void (Plugin::*fn)(const Event&, Control&), const Event& e) {
  // Only subscribers of this hook are visited: an unused hook costs nothing.
  // A record published from a hook is delivered inside it: restore after.
  if (subscribers_[hook_index].empty()) return;
  const int outer = delivering_;
  delivering_ = hook_index;
  CrashContext::HookScope crash_mark(kHookNames[hook_index], step_);
  for (const Subscriber& s : subscribers_[hook_index]) {
    if (s.disabled) continue;  // read each time: a nested delivery may set it
    crash_mark.Plugin(s.name);
    try {
      (s.plugin->*fn)(e, *s.control);
    } catch (const std::exception& ex) {
      HandleFailure(*s.entry, hook_index, ex.what());
    } catch (...) {
      HandleFailure(*s.entry, hook_index, "unknown exception (not derived from std::exception)");
    }
  }
  delivering_ = outer;
}

void Bus::HandleFailure(Entry& entry, int hook_index, absl::string_view what) {
  std::string message = absl::StrCat("plugin '", entry.name, "' threw in ", HookName(hook_index),
                                     " at step ", step_, ": ", what);
  if (policy_ == HookErrorPolicy::kDisablePlugin) {
    entry.disabled = true;
    for (std::vector<Subscriber>& list : subscribers_) {
      for (Subscriber& s : list) s.disabled |= s.entry == &entry;
    }
    Log("trainbus", absl::StrCat(message, "; plugin disabled, training continues"));
  } else {
    Log("trainbus", absl::StrCat(message, "; stopping the run"));
    if (!stop_requested_) {
      stop_requested_ = true;
      stop_reason_ = message;
    }
  }
  if (status_.ok()) status_ = absl::InternalError(message);
}

#define TRAINBUS_BUS_DELIVER_(name, event, when) \
  void Bus::name(const event& e) { Dispatch(kHookIndex##name, &Plugin::On##name, e); }
TRAINBUS_LIFECYCLE_HOOKS(TRAINBUS_BUS_DELIVER_)
#undef TRAINBUS_BUS_DELIVER_

void Bus::Publish(Record record) {
  if (record.wall_time == 0.0) record.wall_time = NowSeconds();
  if (publish_depth_ >= kMaxPublishDepth) {
    Log("trainbus", absl::StrCat("record '", record.tag, "' dropped: records published from ",
                                 "OnRecord nest deeper than ", kMaxPublishDepth,
                                 " (two plugins answering each other's records?)"));
    return;
  }
  ++publish_depth_;
  Dispatch(kHookIndexRecord, &Plugin::OnRecord, record);
  --publish_depth_;
}

namespace {

// Close() with every exception turned into a status.
absl::Status CallClose(Plugin* plugin) {
  try {
    return plugin->Close();
  } catch (const std::exception& ex) {
    return absl::InternalError(absl::StrCat("threw: ", ex.what()));
  } catch (...) {
    return absl::InternalError("threw an unknown exception (not derived from std::exception)");
  }
}

// The plugins' Close() calls, made in order on one thread of their own so
// that a hang cannot hold the run: CloseAll waits for each within the time
// limit. Shared, because that thread may outlive CloseAll. (One thread per
// plugin cost ~0.2 ms each at the end of every run.) A std::mutex, not an
// absl::Mutex: ThreadSanitizer sees it (Debian's Abseil is not built for it).
struct CloseJobs {
  std::vector<Plugin*> plugins;
  std::vector<std::string> names;  // for the crash report, which may outlive the bus
  int64_t step = 0;
  std::mutex mu;
  std::condition_variable changed;
  std::vector<absl::Status> status;  // guarded by mu
  std::vector<char> done;            // guarded by mu
  // When each Close() started (none yet: not started): its time limit
  // counts from there.
  std::vector<std::optional<std::chrono::steady_clock::time_point>> start;  // guarded by mu
  // Bumped when a Close() overran: that thread stops after it returns.
  int generation = 0;  // guarded by mu
};

// Closes jobs->plugins from `first` on, while `generation` is current.
void CloseInOrder(std::shared_ptr<CloseJobs> jobs, size_t first, int generation) {
  for (size_t i = first; i < jobs->plugins.size(); ++i) {
    {
      std::lock_guard<std::mutex> lock(jobs->mu);
      if (jobs->generation != generation) return;
      // Its time limit starts now. No wake-up: CloseAll waits for the end
      // and reads the start when its wait runs out.
      jobs->start[i] = std::chrono::steady_clock::now();
    }
    // One plugin at a time on this thread: a crash report on this thread
    // names it (this thread only: it may be abandoned inside Close()).
    CrashContext::EnterThisThread(jobs->names[i].c_str(), "Close", jobs->step);
    absl::Status s = CallClose(jobs->plugins[i]);
    CrashContext::LeaveThisThread();
    std::lock_guard<std::mutex> lock(jobs->mu);
    jobs->status[i] = std::move(s);
    jobs->done[i] = 1;
    jobs->changed.notify_all();
  }
}

// Waits, under `lock` on jobs.mu, until Close() i has returned (true) or has
// run for `limit` (false).
bool WaitForClose(CloseJobs& jobs, size_t i, absl::Duration limit,
                  std::unique_lock<std::mutex>& lock) {
  using Clock = std::chrono::steady_clock;
  const auto span = std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(limit));
  auto done = [&] { return jobs.done[i] != 0; };
  while (!done()) {
    // The closer starts Close() i as soon as the one before it returned (no
    // plugin code in between), but a new thread may start late: until the
    // start is known, wait a whole limit from now and look again.
    const Clock::time_point deadline = jobs.start[i].value_or(Clock::now()) + span;
    if (jobs.changed.wait_until(lock, deadline, done)) return true;
    if (jobs.start[i] && Clock::now() >= *jobs.start[i] + span) return false;
  }
  return true;
}

// A thread running CloseInOrder, or none when the system has no thread to give.
std::thread StartCloser(const std::shared_ptr<CloseJobs>& jobs, size_t first, int generation) {
  try {
    return std::thread(CloseInOrder, jobs, first, generation);
  } catch (const std::system_error&) {
    return std::thread();
  }
}

}  // namespace

absl::Status Bus::CloseAll() {
  auto jobs = std::make_shared<CloseJobs>();
  for (auto& entry : entries_) {
    // Plugins that kept the default Close() have nothing to close: skipping
    // them spares the closer thread's handshake, a thread wake-up each.
    if (ClosesNothing(entry->plugin->hooks())) continue;
    jobs->plugins.push_back(entry->plugin);
    jobs->names.push_back(entry->name);
  }
  const size_t n = jobs->plugins.size();
  jobs->step = step_;
  jobs->status.resize(n);
  jobs->done.assign(n, 0);
  jobs->start.resize(n);
  // Past 100 years a limit is none (and it would overflow the clock's deadline).
  const bool limited = close_timeout_ < absl::Hours(24 * 365 * 100);
  std::thread closer;
  if (limited && n > 0) closer = StartCloser(jobs, 0, 0);
  std::vector<std::string> failures;  // logged once every Close() has returned or overrun
  absl::Status first;
  for (size_t i = 0; i < n; ++i) {
    Plugin* plugin = jobs->plugins[i];
    const std::string& name = jobs->names[i];
    absl::Status s;
    if (!closer.joinable()) {
      // No time limit (or no thread): Close() runs here, in order.
      CrashContext::HookScope crash_mark("Close", step_);
      crash_mark.Plugin(name.c_str());
      s = CallClose(plugin);
    } else {
      // Held from the wait's end to the generation's bump: a Close() that
      // returns in between must not let the closer start the next one.
      std::unique_lock<std::mutex> lock(jobs->mu);
      if (WaitForClose(*jobs, i, close_timeout_, lock)) {
        s = jobs->status[i];
      } else {
        // Left running on its thread, which stops after it; a new thread
        // closes the plugins after it.
        ++jobs->generation;
        closer.detach();
        if (i + 1 < n) closer = StartCloser(jobs, i + 1, jobs->generation);
        abandoned_.push_back(plugin);
        s = absl::DeadlineExceededError(absl::StrCat(
            "did not return from Close() within ", absl::FormatDuration(close_timeout_),
            "; it was left running and whatever it had not yet written is lost. Fix the "
            "plugin's Close(), or raise the run config's plugin_close_timeout_seconds if it "
            "needs longer"));
      }
    }
    if (!s.ok()) {
      // A time-limit message reads on from the name ("plugin 'x' did not return ...").
      const char* joint =
          s.code() == absl::StatusCode::kDeadlineExceeded ? "' " : "' failed to close: ";
      failures.push_back(absl::StrCat("plugin '", name, joint, s.message()));
      if (first.ok()) first = absl::Status(s.code(), failures.back());
    }
  }
  // Every Close() has returned: the thread only returns now. Not joined:
  // its exit (the stack's release, the kernel waking a joiner) took 50-95 us
  // on a VM, and no handle outlives the close (a forked child could not join
  // it). It touches nothing but `jobs`, which it co-owns.
  if (closer.joinable()) closer.detach();
  for (const std::string& message : failures) Log("trainbus", message);
  return first;
}

void Bus::RequestStop(absl::string_view requester, absl::string_view reason) {
  if (stop_requested_) return;
  stop_requested_ = true;
  stop_reason_ = absl::StrCat(requester, ": ", reason);
}

std::vector<std::string> Bus::disabled_plugins() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) {
    if (e->disabled) out.push_back(e->name);
  }
  return out;
}

std::vector<std::string> Bus::plugin_names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->name);
  return out;
}

std::vector<double> Bus::LearningRates() const {
  std::vector<double> out;
  if (optimizer_ == nullptr) return out;
  for (auto& group : optimizer_->param_groups()) out.push_back(group.options().get_lr());
  return out;
}

void Bus::Log(absl::string_view requester, absl::string_view message) {
  std::string line = absl::StrCat("[", requester, "] ", message);
  if (log_sink_) {
    log_sink_(line);
  } else {
    // On a terminal a progress bar may be drawn on the current line (no
    // newline yet): start from column 0 and clear it, so the message gets a
    // line of its own and the bar is redrawn below it.
    // One write: std::cerr is unbuffered, so each << would be a system call.
    static const bool tty = ::isatty(STDERR_FILENO) == 1;
    std::cerr << absl::StrCat(tty ? "\r\033[K" : "", line, "\n") << std::flush;
  }
}

}  // namespace trainbus
