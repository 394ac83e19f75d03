// trainbus/session.h — the plugin bus for your own training loop.
//
// A Session is the bus plus its loaded plugins. The trainbus Trainer drives
// one; a LibTorch program that already has a loop drives one itself:
//
//   auto session = trainbus::Session::FromConfigFile("plugins.json");  // or Create(...)
//   if (!session.ok()) { std::cerr << session.status().message() << "\n"; return 1; }
//   (*session)->Bind(model, &optimizer);   // a holder, a shared_ptr or a Module*
//   trainbus::RunInfo run;  run.epochs = 10;  run.batch_size = 64;
//   (*session)->Begin(run);
//   for (int epoch = 0; epoch < 10 && !(*session)->ShouldStop(); ++epoch) {
//     (*session)->BeginEpoch();
//     for (auto& batch : *loader) {
//       ... forward, loss, loss.backward() ...
//       (*session)->AfterBackward(loss.item<double>());                       // optional
//       if ((*session)->BeforeOptimizerStep(loss.item<double>())) optimizer.step();
//       (*session)->EndIteration(loss.item<double>(), batch.data.size(0));
//       if ((*session)->ShouldStop()) break;
//     }
//     (*session)->EndValidation({{"val/loss", val_loss}, {"val/accuracy", acc}});
//     (*session)->EndEpoch();
//   }
//   absl::Status s = (*session)->End();   // TrainEnd, then Close() every plugin
//
// The session counts steps, epochs and batch indexes itself and reads the
// learning rates from the bound optimizer; overloads taking a full event let
// a host supply them instead. Everything runs on the calling thread; a
// Session is not thread-safe. Publish() sends a record to every sink.
//
// End() returns the run's error, if any: a hook that threw (under the stop
// policy) or a plugin whose Close() failed (e.g. a TensorBoard file that could
// not be written). It is called by the destructor if you forget.
#ifndef TRAINBUS_SESSION_H_
#define TRAINBUS_SESSION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainbus/bus.h"
#include "trainbus/checkpoint.h"
#include "trainbus/events.h"
#include "trainbus/plugin.h"
#include "trainbus/proto/run_config.pb.h"

namespace trainbus {

class PluginLoader;

class Session {
 public:
  // An empty session; add plugins with AddPlugin()/LoadPlugin().
  explicit Session(HookErrorPolicy policy = HookErrorPolicy::kStopRun);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // A session with the enabled plugins of `config` loaded. Its folder is
  // <log_root>/<name>, claimed as `trainbus train` claims it: when that holds
  // an earlier run, <name>-2, -3, ... (trainbus/run_folder.h; run().run_name
  // and log_dir() say which). config.append: use <log_root>/<name> as it is.
  // Fails on the first plugin that cannot be loaded.
  static absl::StatusOr<std::unique_ptr<Session>> Create(const config::RunConfig& config);
  // Reads a run config file (only `name`, `log_root`, `plugins`,
  // `plugin_paths` and `on_plugin_error` matter here) and calls Create().
  static absl::StatusOr<std::unique_ptr<Session>> FromConfigFile(const std::string& path);

  // Adds an in-process plugin. Use MakePlugin<T>() so only its hooks are called.
  absl::Status AddPlugin(std::unique_ptr<Plugin> plugin, std::string name, int priority = 0);
  // Loads plugin `name` from its library (see PluginLoader) and adds it. On a
  // rank other than 0 (set_rank), a plugin whose PluginInfo::capabilities say
  // it writes output is not loaded (OK is returned).
  absl::Status LoadPlugin(const config::PluginConfig& plugin,
                          const std::vector<std::string>& extra_dirs = {});

  // The run's folder handed to plugins created after this call
  // (Session::Create sets <log_root>/<name>).
  void set_log_dir(std::string dir) { log_dir_ = std::move(dir); }
  const std::string& log_dir() const { return log_dir_; }
  // This process's rank in a distributed run (0 otherwise); set before
  // loading plugins.
  void set_rank(int rank) { rank_ = rank; }

  // Makes the model and optimizer visible to plugins (may be null). Takes
  // what LibTorch code holds: a Module* (&net for a struct deriving from
  // torch::nn::Module), a module holder (torch::nn::Sequential, Linear, any
  // TORCH_MODULE type) or a std::shared_ptr to a module:
  //   session->Bind(&net, &optimizer);
  //   session->Bind(sequential, &optimizer);
  // The session does not own them: keep them alive until End() (a session
  // destroyed without End() unbinds them before it ends the run).
  void Bind(torch::nn::Module* model, torch::optim::Optimizer* optimizer);
  template <typename Holder,
            typename = decltype(static_cast<torch::nn::Module*>(std::declval<Holder&>().ptr().get()))>
  void Bind(Holder& model, torch::optim::Optimizer* optimizer) {
    Bind(static_cast<torch::nn::Module*>(model.ptr().get()), optimizer);
  }
  template <typename M>
  void Bind(const std::shared_ptr<M>& model, torch::optim::Optimizer* optimizer) {
    Bind(static_cast<torch::nn::Module*>(model.get()), optimizer);
  }

  // --- the lifecycle, in this order ---------------------------------------
  // OnSetup to every plugin (trainbus/events.h: SetupEvent). Optional: Begin()
  // calls it when the host did not. `run` is what is known before the plan.
  void Setup(RunInfo run);
  bool set_up() const { return set_up_; }
  void Begin(RunInfo run);
  void BeginEpoch();                         // epoch = previous + 1 (0 first)
  void BeginEpoch(const EpochBeginEvent& e);
  void BeginIteration(int64_t batch_size);   // optional
  // Optional, for plugins that read or change gradients (grad_clip,
  // nonfinite_guard): after loss.backward(), and just before
  // optimizer.step(). BeforeOptimizerStep() returns false when a plugin
  // skipped the step: do not call optimizer.step() then (zero the gradients
  // as usual). A loop that omits them still works; those plugins then see
  // no gradients (each says so in its README).
  void AfterBackward(double loss);
  void AfterBackward(const AfterBackwardEvent& e);
  bool BeforeOptimizerStep(double loss);
  bool BeforeOptimizerStep(const BeforeOptimizerStepEvent& e);
  // One iteration finished. Step, epoch and batch index are counted here.
  void EndIteration(double loss, int64_t batch_size, absl::Span<const Metric> metrics = {});
  void EndIteration(const IterationEndEvent& e);
  void BeginValidation();                    // optional
  void BeginValidation(const ValidationBeginEvent& e);
  void EndValidation(const Metrics& metrics);
  void EndValidation(const ValidationEndEvent& e);
  // complete: false when the run stops inside the epoch (EpochEndEvent::complete).
  void EndEpoch(bool complete = true);
  void EndEpoch(const EpochEndEvent& e);
  // Announces a failure of the host's own loop (before End()).
  void Abort(std::string message);
  // TrainEnd to every plugin, then Close() on each. Idempotent.
  absl::Status End();
  absl::Status End(const TrainEndEvent& e);

  // Restores a checkpoint (trainbus/checkpoint.h; a checkpoint folder or a
  // root holding `latest`) into the bound model and optimizer, the RNG, and
  // every plugin's LoadState(). Call after adding plugins and Bind(), before
  // Begin(); then Begin() with run.start_step = the returned next_step.
  absl::StatusOr<CheckpointState> Resume(const std::string& path);
  // Saves a checkpoint now (what Control::SaveCheckpoint does for plugins).
  absl::Status SaveCheckpoint(const std::string& root, const std::string& name,
                              absl::string_view reason,
                              std::vector<std::string> remove_after = {});
  // Extra bytes stored with every checkpoint (the Trainer stores its plan).
  void set_host_state(std::string state) { host_state_ = std::move(state); }
  // Lets the host add its own position to every checkpoint (the Trainer's
  // sample offset and batch size); called on the training thread.
  void set_position_filler(std::function<void(CheckpointState*)> filler) {
    position_filler_ = std::move(filler);
  }

  // True once a plugin, a failing hook or RequestStop() asked the run to stop.
  bool ShouldStop() const { return bus_.stop_requested(); }
  const std::string& stop_reason() const { return bus_.stop_reason(); }
  // SIGINT or SIGTERM if a signal stopped the run (interrupt.h), else 0.
  int interrupt_signal() const { return interrupt_signal_; }
  // Turns a pending Ctrl-C / SIGTERM into a stop of this run; true once the
  // run is interrupted. EndIteration calls it; a distributed host calls it
  // again before it blames another rank for a stop (the launcher signals
  // every rank, and this rank's signal may arrive a moment later).
  bool CheckInterrupt();
  // Ends this run as interrupted by `signal` that another process received
  // (a distributed host: the rank that saw the launcher's signal first stops
  // the others, which may see their own a moment later, after the run ended).
  // No-op once this run is interrupted.
  void InterruptedElsewhere(int signal, absl::string_view where);
  void RequestStop(absl::string_view reason) { bus_.RequestStop("user", reason); }
  // When a run ends other than completed (a stop request, Ctrl-C), End()
  // prints why on standard error: "[trainbus] run 'x' stopped after step 41:
  // early_stopping: ...". On by default; a host that reports the end itself
  // (the Trainer, for `trainbus train`) turns it off.
  void set_reports_end(bool on) { reports_end_ = on; }

  // Sends a record to every plugin's OnRecord().
  void Publish(Record record) { bus_.Publish(std::move(record)); }

  // The first hook failure, or OK.
  const absl::Status& status() const { return bus_.status(); }
  const RunInfo& run() const { return run_; }
  int64_t step() const { return next_step_; }  // the next iteration's step
  int64_t epoch() const { return epoch_; }
  Bus& bus() { return bus_; }

  // Plugin objects, in delivery order (for the checkpoint plugin's state).
  struct NamedPlugin {
    std::string name;
    Plugin* plugin;
  };
  std::vector<NamedPlugin> plugins() const;

 private:
  std::vector<double> CurrentLearningRates() const;
  // Effective options of each loaded plugin, by instance (PluginOptions::ToJson).
  std::map<std::string, std::string> plugin_options_;
  void KeepAbandonedPluginsAlive();
  // Publishes on the bus; checkpoints asked for during it are committed after.
  void Dispatch(const std::function<void()>& publish);
  // Hands the checkpoints taken in this round of hooks to the writer, with
  // every plugin's flush barrier.
  void CommitPendingCheckpoints();

  struct PendingCheckpoint {
    std::string root, name;
    CheckpointBlob blob;
    std::vector<std::string> remove_after;
  };
  std::vector<PendingCheckpoint> pending_checkpoints_;
  int dispatching_ = 0;

  // The loader of LoadPlugin() and what it was made for: its extra folders
  // and TRAINBUS_PLUGIN_PATH's value (unset: nullopt).
  std::unique_ptr<PluginLoader> loader_;
  std::vector<std::string> loader_dirs_;
  std::optional<std::string> loader_path_env_;

  Bus bus_;
  std::vector<std::pair<std::string, std::unique_ptr<Plugin>>> plugins_;
  std::string log_dir_;
  int rank_ = 0;
  RunInfo run_;
  bool set_up_ = false;
  bool begun_ = false;
  bool ended_ = false;
  bool reports_end_ = true;
  bool in_epoch_ = false;
  bool aborted_ = false;
  int interrupt_signal_ = 0;
  std::string interrupt_reason_;  // "trainbus: interrupted by SIGTERM", once a signal came
  // From Resume(): the position inside the epoch the checkpoint was taken in.
  int64_t resumed_epoch_ = -1;
  bool epoch_complete_ = true;  // the last epoch ended complete (or none began)
  int64_t resumed_epoch_iterations_ = 0;
  double resumed_epoch_loss_sum_ = 0.0;  // the signal that stopped the run (interrupt.h), or 0
  absl::Status end_status_;
  int64_t next_step_ = 0;
  int64_t epoch_ = -1;
  int64_t batch_index_ = 0;
  int64_t batch_size_ = 0;  // from BeginIteration(), for the gradient hooks
  int64_t epoch_iterations_ = 0;
  double epoch_loss_sum_ = 0.0;
  int64_t iterations_run_ = 0;
  Metrics last_metrics_;
  double last_loss_ = 0.0;
  std::vector<double> lrs_;  // storage behind IterationEndEvent::learning_rates
  torch::nn::Module* model_ = nullptr;
  torch::optim::Optimizer* optimizer_ = nullptr;
  std::string host_state_;
  std::function<void(CheckpointState*)> position_filler_;
  std::unique_ptr<CheckpointWriter> checkpoint_writer_;
  std::chrono::steady_clock::time_point begin_time_, epoch_time_, iteration_time_;
};

}  // namespace trainbus

#endif  // TRAINBUS_SESSION_H_
