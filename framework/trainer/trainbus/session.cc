#include "trainbus/session.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "trainbus/config.h"
#include "trainbus/interrupt.h"
#include "trainbus/plugin_loader.h"
#include "trainbus/run_folder.h"

namespace trainbus {
namespace {

// "patience 2 -> 5, min_delta 0 -> 0.1": the options whose values differ
// between two PluginOptions::ToJson() texts.
std::string DescribeOptionChanges(const std::string& before, const std::string& after) {
  google::protobuf::Struct was, is;
  if (!google::protobuf::util::JsonStringToMessage(before, &was).ok() ||
      !google::protobuf::util::JsonStringToMessage(after, &is).ok()) {
    return before == after ? "" : absl::StrCat(before, " -> ", after);
  }
  auto text = [](const google::protobuf::Struct& s, const std::string& key) {
    auto it = s.fields().find(key);
    if (it == s.fields().end()) return std::string("(none)");
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(it->second, &json);
    return json;
  };
  std::vector<std::string> keys;
  for (const auto& [key, value] : was.fields()) keys.push_back(key);
  for (const auto& [key, value] : is.fields()) {
    if (!was.fields().count(key)) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> changes;
  for (const std::string& key : keys) {
    const std::string a = text(was, key), b = text(is, key);
    if (a != b) changes.push_back(absl::StrCat(key, " ", a, " -> ", b));
  }
  return absl::StrJoin(changes, ", ");
}

// A plugin whose options changed since the checkpoint restores a state made
// under the old ones (a best value under another monitor, a schedule's
// position under another schedule): say so, once per plugin.
void WarnAboutChangedOptions(const std::string& path,
                             const std::map<std::string, std::string>& saved,
                             const std::map<std::string, std::string>& now) {
  for (const auto& [plugin, options] : now) {
    auto it = saved.find(plugin);
    if (it == saved.end()) continue;  // a checkpoint from before options were kept
    const std::string changes = DescribeOptionChanges(it->second, options);
    if (changes.empty()) continue;
    std::cerr << "[trainbus] warning: plugin '" << plugin << "' runs with other options than "
              << "when checkpoint " << path << " was saved (" << changes
              << "); its restored state was made under the old ones\n";
  }
}

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// PyTorch's default run name: "Nov28_20-41-07_hostname".
std::string DefaultRunName() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%b%d_%H-%M-%S", &tm);
  char host[256] = "host";
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(buf, "_", host);
}

HookErrorPolicy PolicyFromConfig(const config::RunConfig& c) {
  return c.on_plugin_error() == "disable_plugin" ? HookErrorPolicy::kDisablePlugin
                                                 : HookErrorPolicy::kStopRun;
}

}  // namespace

Session::Session(HookErrorPolicy policy) : bus_(policy) {
  bus_.set_run_info(&run_);
  bus_.set_checkpoint_saver([this](const std::string& root, const std::string& name,
                                   absl::string_view reason, std::vector<std::string> remove_after) {
    return SaveCheckpoint(root, name, reason, std::move(remove_after));
  });
}

Session::~Session() {
  if (begun_ && !ended_) {
    // The host did not call End(): an early return or an exception in its
    // loop. Its model and optimizer may already be destroyed (declared after
    // the session), so plugins get none from here on; the run ends as failed,
    // and what the writers hold is still flushed.
    Bind(nullptr, nullptr);
    Abort("the session was destroyed without End() (an early return or an exception in the "
          "training loop); call End() to end a run normally");
    absl::Status s = End();
    if (!s.ok()) std::cerr << "[trainbus] session ended with an error: " << s.message() << "\n";
  }
  KeepAbandonedPluginsAlive();
}

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const config::RunConfig& config) {
  if (config.on_plugin_error() != "" && config.on_plugin_error() != "stop" &&
      config.on_plugin_error() != "disable_plugin") {
    return absl::InvalidArgumentError(absl::StrCat("on_plugin_error must be \"stop\" or ",
                                                   "\"disable_plugin\", got \"",
                                                   config.on_plugin_error(), "\""));
  }
  auto session = std::make_unique<Session>(PolicyFromConfig(config));
  if (config.has_plugin_close_timeout_seconds()) {
    const double limit = config.plugin_close_timeout_seconds();
    session->bus_.set_close_timeout(limit > 0 ? absl::Seconds(limit) : absl::InfiniteDuration());
  }
  std::string root = config.log_root().empty() ? "runs" : config.log_root();
  std::string name = config.name().empty() ? DefaultRunName() : config.name();
  // A new run gets a folder of its own, exactly as `trainbus train` does;
  // ranks other than 0 write nothing and claim nothing.
  if (!config.append() && RankFromEnvironment() == 0) {
    // A name with folders in it ("group/exp") claims its last part.
    const std::filesystem::path named(name);
    const std::string parent = (std::filesystem::path(root) / named.parent_path()).string();
    absl::StatusOr<std::string> claimed = ClaimRunFolder(parent, named.filename().string());
    if (!claimed.ok()) return claimed.status();
    name = (named.parent_path() / *claimed).string();
  }
  session->log_dir_ = (std::filesystem::path(root) / name).string();
  session->run_.run_name = name;
  session->run_.log_dir = session->log_dir_;
  std::vector<std::string> dirs(config.plugin_paths().begin(), config.plugin_paths().end());
  for (const config::PluginConfig& p : config.plugins()) {
    if (p.has_enabled() && !p.enabled()) continue;
    if (absl::Status s = session->LoadPlugin(p, dirs); !s.ok()) return s;
  }
  return session;
}

absl::StatusOr<std::unique_ptr<Session>> Session::FromConfigFile(const std::string& path) {
  auto config = LoadRunConfig(path);
  if (!config.ok()) return config.status();
  return Create(*config);
}

absl::Status Session::AddPlugin(std::unique_ptr<Plugin> plugin, std::string name, int priority) {
  if (begun_) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot add plugin '", name, "' after Begin(); add every plugin first"));
  }
  if (absl::Status s = bus_.Add(plugin.get(), name, priority); !s.ok()) return s;
  plugins_.emplace_back(std::move(name), std::move(plugin));
  return absl::OkStatus();
}

absl::Status Session::LoadPlugin(const config::PluginConfig& p,
                                 const std::vector<std::string>& extra_dirs) {
  const std::string& id = p.id().empty() ? p.name() : p.id();
  for (const auto& [instance, plugin] : plugins_) {
    if (instance == id) {
      return absl::AlreadyExistsError(absl::StrCat(
          "plugin '", id, "' is loaded twice; list it once, or give each instance its own `id`"));
    }
  }
  // One scan of the plugin folders for all of this session's plugins, while
  // the folders asked for (and TRAINBUS_PLUGIN_PATH) stay the same.
  const char* env = std::getenv("TRAINBUS_PLUGIN_PATH");
  std::optional<std::string> path_env;
  if (env != nullptr) path_env = env;
  if (loader_ == nullptr || loader_dirs_ != extra_dirs || loader_path_env_ != path_env) {
    loader_ = std::make_unique<PluginLoader>(extra_dirs);
    loader_dirs_ = extra_dirs;
    loader_path_env_ = std::move(path_env);
  }
  auto lib = loader_->Resolve(p.name(), p.library());
  if (!lib.ok()) return lib.status();
  // A plugin that writes output runs on rank 0 only (PluginInfo::capabilities).
  if (!LoadsOnRank(lib->info(), rank_)) return absl::OkStatus();
  auto plugin = PluginLoader::Create(*lib, p.name(), p.options(), log_dir_, id);
  if (!plugin.ok()) return plugin.status();
  // Its effective options go into every checkpoint, so that a resume with
  // other options says so (the restored state may not fit them).
  auto options = PluginOptions::Create(lib->info().options, p.options(), id);
  if (options.ok()) plugin_options_[id] = options->ToJson();
  return AddPlugin(std::move(plugin).value(), id,
                   p.has_priority() ? p.priority() : lib->info().default_priority);
}

void Session::Bind(torch::nn::Module* model, torch::optim::Optimizer* optimizer) {
  model_ = model;
  optimizer_ = optimizer;
  bus_.set_model(model);
  bus_.set_optimizer(optimizer);
}

absl::Status Session::SaveCheckpoint(const std::string& root, const std::string& name,
                                     absl::string_view reason,
                                     std::vector<std::string> remove_after) {
  if (model_ == nullptr) {
    return absl::FailedPreconditionError(
        "SaveCheckpoint: no model is bound to the session; call Session::Bind(model, optimizer)");
  }
  CheckpointState state;
  state.next_step = next_step_;
  state.epoch = std::max<int64_t>(epoch_, 0);
  state.batch_index = batch_index_;
  // Inside an epoch (also one a stop cut short): a resume completes it.
  state.epoch_iterations = epoch_complete_ ? 0 : epoch_iterations_;
  state.epoch_loss_sum = epoch_complete_ ? 0.0 : epoch_loss_sum_;
  state.reason = std::string(reason);
  state.host_state = host_state_;
  if (position_filler_) position_filler_(&state);
  for (const auto& [name_, plugin] : plugins_) {
    absl::StatusOr<std::string> saved;
    try {
      saved = plugin->SaveState();
    } catch (const std::exception& e) {
      saved = absl::InternalError(e.what());
    }
    if (!saved.ok()) {
      return absl::Status(saved.status().code(),
                          absl::StrCat("plugin '", name_, "' could not save its state: ",
                                       saved.status().message()));
    }
    if (!saved->empty()) state.plugin_states[name_] = *std::move(saved);
  }
  state.plugin_options = plugin_options_;
  auto blob = SerializeCheckpoint(model_, optimizer_, state);
  if (!blob.ok()) return blob.status();
  if (checkpoint_writer_ == nullptr) checkpoint_writer_ = std::make_unique<CheckpointWriter>();
  if (absl::Status earlier = checkpoint_writer_->status(); !earlier.ok()) {
    return absl::Status(earlier.code(), absl::StrCat("not written, because an earlier write "
                                                     "failed: ", earlier.message()));
  }
  pending_checkpoints_.push_back(
      {root, name, *std::move(blob), std::move(remove_after)});
  if (dispatching_ == 0) CommitPendingCheckpoints();
  return absl::OkStatus();
}

void Session::Dispatch(const std::function<void()>& publish) {
  ++dispatching_;
  publish();
  --dispatching_;
  if (dispatching_ == 0 && !pending_checkpoints_.empty()) CommitPendingCheckpoints();
}

void Session::CommitPendingCheckpoints() {
  // After the whole round of hooks: what a plugin that runs after the
  // checkpoint plugin wrote for this step is covered by the barrier too.
  // Every plugin starts writing what it holds; the checkpoint thread waits
  // for them before it commits (Plugin::FlushForCheckpoint).
  std::vector<FlushBarrier> barriers;
  for (const auto& [plugin_name, plugin] : plugins_) {
    std::function<absl::Status()> wait;
    try {
      wait = plugin->FlushForCheckpoint();
    } catch (const std::exception& e) {
      const std::string message = e.what();
      wait = [message] { return absl::InternalError(absl::StrCat("threw: ", message)); };
    }
    if (wait) barriers.push_back({plugin_name, std::move(wait)});
  }
  for (PendingCheckpoint& c : pending_checkpoints_) {
    absl::Status s = checkpoint_writer_->Save(std::move(c.root), std::move(c.name),
                                              std::move(c.blob), std::move(c.remove_after),
                                              barriers);
    if (!s.ok()) std::cerr << "[trainbus] checkpoint " << s.message() << "\n";
  }
  pending_checkpoints_.clear();
}

absl::StatusOr<CheckpointState> Session::Resume(const std::string& path) {
  if (begun_) return absl::FailedPreconditionError("Resume() must come before Begin()");
  auto state = LoadCheckpoint(path, model_, optimizer_);
  if (!state.ok()) return state.status();
  for (const auto& [name, plugin] : plugins_) {
    auto it = state->plugin_states.find(name);
    if (it == state->plugin_states.end()) continue;
    absl::Status s;
    try {
      s = plugin->LoadState(it->second);
    } catch (const std::exception& e) {
      s = absl::InternalError(e.what());
    }
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("checkpoint ", path, ": plugin '", name,
                                                 "' could not restore its state: ", s.message()));
    }
  }
  resumed_epoch_ = state->epoch;
  resumed_epoch_iterations_ = state->epoch_iterations;
  resumed_epoch_loss_sum_ = state->epoch_loss_sum;
  for (const auto& [name, bytes] : state->plugin_states) {
    bool present = false;
    for (const auto& [n, p] : plugins_) present |= (n == name);
    if (!present) {
      std::cerr << "[trainbus] checkpoint " << path << " holds state of plugin '" << name
                << "', which this run does not load; it is ignored\n";
    }
  }
  // Only plugins whose state is restored: the others start afresh anyway.
  std::map<std::string, std::string> restored_options;
  for (const auto& [name, options] : plugin_options_) {
    if (state->plugin_states.count(name)) restored_options[name] = options;
  }
  WarnAboutChangedOptions(path, state->plugin_options, restored_options);
  // Say what was restored (`trainbus plugins` says which plugins keep state).
  std::vector<std::string> restored;
  for (const auto& [name, plugin] : plugins_) {
    if (state->plugin_states.count(name)) restored.push_back(name);
  }
  std::cerr << "[trainbus] resumed at step " << state->next_step << " from " << path
            << "; restored the saved state of: "
            << (restored.empty() ? "(no plugin)" : absl::StrJoin(restored, ", ")) << "\n";
  return state;
}

std::vector<Session::NamedPlugin> Session::plugins() const {
  std::vector<NamedPlugin> out;
  for (const std::string& name : bus_.plugin_names()) {
    for (const auto& [n, p] : plugins_) {
      if (n == name) out.push_back({n, p.get()});
    }
  }
  return out;
}

std::vector<double> Session::CurrentLearningRates() const { return bus_.LearningRates(); }

void Session::Setup(RunInfo run) {
  if (set_up_ || begun_) return;
  set_up_ = true;
  if (run.log_dir.empty()) run.log_dir = log_dir_.empty() ? "runs/run" : log_dir_;
  if (run.run_name.empty()) run.run_name = run_.run_name;
  run_ = std::move(run);
  bus_.set_position(run_.start_step, std::max<int64_t>(run_.start_epoch, 0));
  Dispatch([&] { bus_.Setup(SetupEvent{&run_}); });
}

void Session::Begin(RunInfo run) {
  if (begun_) return;
  if (run.log_dir.empty()) run.log_dir = log_dir_.empty() ? "runs/run" : log_dir_;
  if (run.run_name.empty()) run.run_name = run_.run_name;
  if (!set_up_) Setup(run);
  begun_ = true;
  run_ = std::move(run);
  next_step_ = run_.start_step;
  epoch_ = run_.start_epoch - 1;
  begin_time_ = Clock::now();
  bus_.set_position(next_step_, std::max<int64_t>(epoch_, 0));
  Dispatch([&] { bus_.TrainBegin(TrainBeginEvent{&run_}); });
}

void Session::BeginEpoch() {
  EpochBeginEvent e;
  e.epoch = epoch_ + 1;
  e.step = next_step_;
  e.iterations = run_.iterations_per_epoch;
  BeginEpoch(e);
}

void Session::BeginEpoch(const EpochBeginEvent& e) {
  epoch_ = e.epoch;
  next_step_ = e.step;
  batch_index_ = 0;
  epoch_iterations_ = 0;
  epoch_loss_sum_ = 0.0;
  if (e.epoch == resumed_epoch_) {
    // The first epoch after a mid-epoch resume goes on from the checkpoint.
    epoch_iterations_ = resumed_epoch_iterations_;
    epoch_loss_sum_ = resumed_epoch_loss_sum_;
  }
  resumed_epoch_ = -1;
  in_epoch_ = true;
  epoch_complete_ = false;
  epoch_time_ = iteration_time_ = Clock::now();
  bus_.set_position(next_step_, epoch_);
  Dispatch([&] { bus_.EpochBegin(e); });
}

void Session::BeginIteration(int64_t batch_size) {
  iteration_time_ = Clock::now();
  batch_size_ = batch_size;
  bus_.clear_optimizer_step_skipped();
  IterationBeginEvent e{next_step_, std::max<int64_t>(epoch_, 0), batch_index_, batch_size};
  bus_.set_position(next_step_, e.epoch);
  // A hook inside the iteration that no plugin implements is not delivered:
  // that spares the delivery's cold cache lines (~0.2 us each in the trainer
  // bench, whose four plugins implement none of the three).
  if (!bus_.Listens(kHookIndexIterationBegin)) return;
  Dispatch([&] { bus_.IterationBegin(e); });
}

void Session::AfterBackward(double loss) {
  AfterBackwardEvent e;
  e.step = next_step_;
  e.epoch = std::max<int64_t>(epoch_, 0);
  e.batch_index = batch_index_;
  e.loss = loss;
  AfterBackward(e);
}

void Session::AfterBackward(const AfterBackwardEvent& e) {
  bus_.set_position(e.step, e.epoch);
  if (!bus_.Listens(kHookIndexAfterBackward)) return;
  Dispatch([&] { bus_.AfterBackward(e); });
}

bool Session::BeforeOptimizerStep(double loss) {
  BeforeOptimizerStepEvent e;
  e.step = next_step_;
  e.epoch = std::max<int64_t>(epoch_, 0);
  e.batch_index = batch_index_;
  e.batch_size = batch_size_;
  e.loss = loss;
  return BeforeOptimizerStep(e);
}

bool Session::BeforeOptimizerStep(const BeforeOptimizerStepEvent& e) {
  bus_.set_position(e.step, e.epoch);
  bus_.clear_optimizer_step_skipped();  // a decision is for this step only
  if (!bus_.Listens(kHookIndexBeforeOptimizerStep)) return true;
  const bool healthy = bus_.status().ok();
  Dispatch([&] { bus_.BeforeOptimizerStep(e); });
  // A hook that failed here under the stop policy may have left the
  // gradients half changed (half clipped): do not apply them.
  if (healthy && !bus_.status().ok() && bus_.policy() == HookErrorPolicy::kStopRun) {
    bus_.set_optimizer_step_skipped();
  }
  return !bus_.optimizer_step_skipped();
}

void Session::EndIteration(double loss, int64_t batch_size, absl::Span<const Metric> metrics) {
  lrs_ = CurrentLearningRates();
  IterationEndEvent e;
  e.step = next_step_;
  e.epoch = std::max<int64_t>(epoch_, 0);
  e.batch_index = batch_index_;
  e.batch_size = batch_size;
  e.loss = loss;
  e.learning_rates = lrs_;
  e.duration_seconds = SecondsSince(iteration_time_);
  e.metrics = metrics;
  EndIteration(e);
}

void Session::EndIteration(const IterationEndEvent& e) {
  // Counters first: a checkpoint saved from a hook resumes after this step.
  last_loss_ = e.loss;
  epoch_loss_sum_ += e.loss;
  ++epoch_iterations_;
  ++iterations_run_;
  next_step_ = e.step + 1;
  batch_index_ = e.batch_index + 1;
  bus_.set_position(e.step, e.epoch);
  // Ctrl-C / SIGTERM (interrupt.h): this iteration is the last one. Asked
  // before the hooks, so that they already see the stop (no lr is published
  // for a step that will not run).
  CheckInterrupt();
  if (bus_.optimizer_step_skipped() && !e.optimizer_step_skipped) {
    IterationEndEvent skipped = e;
    skipped.optimizer_step_skipped = true;
    Dispatch([&] { bus_.IterationEnd(skipped); });
  } else {
    Dispatch([&] { bus_.IterationEnd(e); });
  }
  bus_.clear_optimizer_step_skipped();
  bus_.clear_checkpoint_request();  // answered (or not) by this round of hooks
  iteration_time_ = Clock::now();
}

namespace {
std::string SignalName(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : absl::StrCat("signal ", sig);
}
}  // namespace

bool Session::CheckInterrupt() {
  if (const int sig = InterruptSignal(); sig != 0 && interrupt_signal_ == 0) {
    interrupt_signal_ = sig;
    interrupt_reason_ = absl::StrCat("trainbus: interrupted by ", SignalName(sig));
    bus_.RequestStop("trainbus", absl::StrCat("interrupted by ", SignalName(sig)));
  }
  return interrupt_signal_ != 0;
}

void Session::InterruptedElsewhere(int signal, absl::string_view where) {
  if (CheckInterrupt() || signal == 0) return;
  interrupt_signal_ = signal;
  const std::string why = absl::StrCat("interrupted by ", SignalName(signal), " (", where, ")");
  interrupt_reason_ = absl::StrCat("trainbus: ", why);
  bus_.RequestStop("trainbus", why);
}

void Session::BeginValidation() {
  BeginValidation(ValidationBeginEvent{next_step_ - 1, std::max<int64_t>(epoch_, 0)});
}

void Session::BeginValidation(const ValidationBeginEvent& e) {
  Dispatch([&] { bus_.ValidationBegin(e); });
}

void Session::EndValidation(const Metrics& metrics) {
  last_metrics_ = metrics;
  ValidationEndEvent e;
  e.step = next_step_ - 1;
  e.epoch = std::max<int64_t>(epoch_, 0);
  e.metrics = last_metrics_;
  EndValidation(e);
}

void Session::EndValidation(const ValidationEndEvent& e) {
  if (e.metrics.data() != last_metrics_.data()) {
    last_metrics_.assign(e.metrics.begin(), e.metrics.end());
  }
  Dispatch([&] { bus_.ValidationEnd(e); });
}

void Session::EndEpoch(bool complete) {
  EpochEndEvent e;
  e.complete = complete;
  e.epoch = std::max<int64_t>(epoch_, 0);
  e.step = next_step_ - 1;
  e.iterations = epoch_iterations_;
  e.mean_loss = epoch_iterations_ > 0 ? epoch_loss_sum_ / epoch_iterations_ : 0.0;
  e.duration_seconds = SecondsSince(epoch_time_);
  e.metrics = last_metrics_;
  EndEpoch(e);
}

void Session::EndEpoch(const EpochEndEvent& e) {
  in_epoch_ = false;
  epoch_complete_ = e.complete;
  Dispatch([&] { bus_.EpochEnd(e); });
}

void Session::Abort(std::string message) {
  if (aborted_) return;
  aborted_ = true;
  bus_.RequestStop("trainbus", message);
  Dispatch([&] { bus_.Abort(AbortEvent{next_step_ - 1, std::move(message)}); });
}

void Session::KeepAbandonedPluginsAlive() {
  // A plugin whose Close() missed its time limit may still be running it on
  // another thread: destroying it would pull the object out from under that
  // thread. It is kept, reachable, until the process exits.
  // Sessions may end on several threads at once: the list is shared.
  static auto* const kept_mu = new std::mutex();
  static auto* const kept = new std::vector<std::unique_ptr<Plugin>>();
  std::lock_guard<std::mutex> lock(*kept_mu);
  for (Plugin* abandoned : bus_.abandoned_plugins()) {
    for (auto& [name, owned] : plugins_) {
      if (owned.get() == abandoned) kept->push_back(std::move(owned));
    }
  }
}

absl::Status Session::End() {
  TrainEndEvent e;
  e.step = next_step_ - 1;
  e.iterations_run = iterations_run_;
  e.duration_seconds = SecondsSince(begin_time_);
  // A signal that came after the run had already stopped for another reason
  // (a launcher signals every rank; the first to see it stops the others
  // first) is what ended the run: it names the end.
  const bool stopped_before_the_signal = bus_.stop_requested() && interrupt_signal_ == 0;
  const bool late_signal = stopped_before_the_signal && CheckInterrupt();
  if (!bus_.status().ok() && bus_.policy() == HookErrorPolicy::kStopRun) {
    e.reason = EndReason::kFailed;
  } else if (aborted_) {
    e.reason = EndReason::kFailed;
  } else if (interrupt_signal_ != 0) {
    e.reason = EndReason::kInterrupted;
  } else if (bus_.stop_requested()) {
    e.reason = EndReason::kStopRequested;
  }
  e.stop_reason = late_signal ? interrupt_reason_ : bus_.stop_reason();
  return End(e);
}

absl::Status Session::End(const TrainEndEvent& event) {
  if (ended_) return end_status_;
  ended_ = true;
  if (!begun_) Begin(run_);
  // A hook failure under the stop policy ends the run: plugins hear why.
  if (!bus_.status().ok() && bus_.policy() == HookErrorPolicy::kStopRun && !aborted_) {
    aborted_ = true;
    Dispatch([&] { bus_.Abort(AbortEvent{event.step, std::string(bus_.status().message())}); });
  }
  if (in_epoch_) EndEpoch(/*complete=*/false);
  Metrics final_metrics = last_metrics_;
  final_metrics.push_back({"train/loss", last_loss_});
  TrainEndEvent e = event;
  e.final_metrics = final_metrics;
  bus_.set_position(e.step, std::max<int64_t>(epoch_, 0));
  Dispatch([&] { bus_.TrainEnd(e); });
  // Checkpoints queued up to now (the final one included) wait for the
  // plugins' files: let them commit while the plugins are still open.
  if (checkpoint_writer_ != nullptr) (void)checkpoint_writer_->Wait();
  absl::Status closed = bus_.CloseAll();
  if (checkpoint_writer_ != nullptr) {
    absl::Status written = checkpoint_writer_->Close();
    if (!written.ok()) {
      std::cerr << "[trainbus] " << written.message() << "\n";
      if (closed.ok()) closed = written;
    }
  }
  if (bus_.policy() == HookErrorPolicy::kStopRun && !bus_.status().ok()) {
    end_status_ = bus_.status();
  } else {
    end_status_ = closed;
  }
  if (reports_end_ && (e.reason == EndReason::kStopRequested || e.reason == EndReason::kInterrupted)) {
    std::cerr << "[trainbus] "
              << (run_.run_name.empty() ? std::string("the run")
                                        : absl::StrCat("run '", run_.run_name, "'"))
              << " " << EndReasonName(e.reason)
              << (e.step < 0 ? std::string(" before its first step")
                             : absl::StrCat(" after step ", e.step))
              << (e.stop_reason.empty() ? std::string() : absl::StrCat(": ", e.stop_reason))
              << "\n";
  }
  return end_status_;
}

}  // namespace trainbus
