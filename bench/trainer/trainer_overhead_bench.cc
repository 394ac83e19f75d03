// Trainer overhead: the same model, data, seed and number of iterations
// trained by a bare hand-written LibTorch loop and by trainbus::Trainer with
// the progress, tensorboard, schedulers and early_stopping plugins.
//
//   scripts/bench.sh   (or build-bench/bench/trainer/trainer_overhead_bench
//                       --benchmark_repetitions=10 --benchmark_enable_random_interleaving=true)
//
// The model: an MLP 784 -> 16 -> 6 on the 28x28 "shapes" data, batch 64,
// SGD (lr 0.05, momentum 0.9) with StepLR(100, 0.9), one LibTorch thread:
// about a millisecond per iteration on the 2-core reference machine.
// Both variants run kEpochs x 63 = 315 iterations; no validation in either.
//
// Each variant checks its work: the bare loop's losses must equal the
// trainer's bit for bit (same initial weights, batches, schedule), and the
// trainer must run every planned iteration (early stopping never fires).
//
// Variants (manual time: only the training loop / Trainer::Run() is timed;
// building the trainer, loading plugins and generating data are not):
//   BM_BareLoop              forward, cross_entropy, backward, step, loss.item()
//   BM_Trainer               trainbus::Trainer + the four plugins, each next batch
//                            gathered on the trainer's prefetch thread
//                            (trainbus/data/batch_prefetcher.h; the default with
//                            one LibTorch thread on two or more CPUs)
//   BM_BareLoopWithAccuracy  the bare loop plus a per-iteration train/accuracy
//                            written with tensor ops, as a user would
//   BM_TrainerNoPlugins      trainbus::Trainer, no plugins
//   BM_Paired*               the bare loop and one variant back to back in
//                            every iteration; counter `ratio` (see Paired());
//                            BM_PairedBareLoop pairs the bare loop with itself:
//                            the noise floor of `ratio`.
//   BM_PairedTrainerInlineBatches  the trainer + 4 plugins with
//                            trainer.prefetch_batches off: every batch gathered
//                            on the training thread, as the bare loop does, so
//                            that the time added outside the model's work is
//                            the trainer's and the plugins' bookkeeping alone
//   BM_PairedTrainerClocked  the trainer + 4 plugins with two clock plugins
//                            around theirs: where its extra time went, inside
//                            the real run (the plugins' time per hook, the
//                            session's start and end), at the clocks' cost.
// And the trainer's added work measured directly, piece by piece:
//   BM_AccuracyMetric/0|1    train/accuracy with tensor ops | CountCorrect
//   BM_PluginsPerIteration/0 the four plugins' hooks per iteration, in a tight loop
//   BM_PluginsPerIteration/1 the same between training steps, and what they cost the next step
//   BM_PluginsStartAndEnd    the four plugins' per-run start and end
#include <ATen/CPUGeneratorImpl.h>
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "trainbus/accuracy.h"
#include "trainbus/config.h"
#include "trainbus/data/datasets.h"
#include "trainbus/trainer.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// TRAINBUS_OVERHEAD_HIDDEN=N and TRAINBUS_OVERHEAD_EPOCHS=E override the
// hidden width (16: ~0.8 ms an iteration here) and the epochs (5); scripts/bench.sh
// trainer-large runs a model of >= 10 ms an iteration with them.
int64_t FromEnv(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoll(v) > 0 ? std::atoll(v) : fallback;
}
const int64_t kHidden = FromEnv("TRAINBUS_OVERHEAD_HIDDEN", 16);
const int64_t kEpochs = FromEnv("TRAINBUS_OVERHEAD_EPOCHS", 5);
constexpr int64_t kBatch = 64;
constexpr uint64_t kSeed = 42;
constexpr double kLr = 0.05, kMomentum = 0.9;
constexpr int64_t kStepSize = 100;
constexpr double kGamma = 0.9;

// The run config, built in code. $LOG_ROOT is a fresh temporary folder.
constexpr char kConfigTemplate[] = R"json({
  "name": "overhead",
  "log_root": "$LOG_ROOT",
  "trainer": {"epochs": $EPOCHS, "batch_size": $BATCH, "seed": $SEED, "num_threads": 1,
              "validate_every_n_epochs": 0},
  "model": {"type": "mlp", "hidden": [$HIDDEN]},
  "dataset": {"type": "shapes", "train_samples": 4000, "val_samples": 64, "seed": 7},
  "optimizer": {"type": "sgd", "lr": $LR, "momentum": $MOMENTUM},
  "plugins": [
    {"name": "progress", "options": {"mode": "lines", "stream": "stderr",
                                     "line_every_seconds": 1e9}},
    {"name": "tensorboard"},
    {"name": "schedulers", "options": {"schedule": {"type": "StepLR",
                                                    "step_size": $STEP_SIZE, "gamma": $GAMMA}}},
    {"name": "early_stopping", "options": {"monitor": "train/loss", "check_on": "iteration",
                                           "patience": 1000000}}
  ]
})json";

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "trainer_overhead_bench: %s\n", what.c_str());
  std::exit(1);
}

// TRAINBUS_OVERHEAD_ONLY=<plugin> keeps just that plugin in the trainer
// variants (a per-plugin breakdown). The loss checks are then skipped:
// without the scheduler the losses differ.
const char* OnlyPlugin() {
  static const char* const only = std::getenv("TRAINBUS_OVERHEAD_ONLY");
  return only;
}

// `prefetch`: trainer.prefetch_batches; unset, the trainer's default (on
// here: one LibTorch thread leaves a core free).
trainbus::config::RunConfig MakeConfig(const std::string& log_root, bool with_plugins,
                                       std::optional<bool> prefetch = std::nullopt) {
  const std::string text = absl::StrReplaceAll(
      kConfigTemplate, {{"$LOG_ROOT", log_root},
                        {"$EPOCHS", absl::StrCat(kEpochs)},
                        {"$BATCH", absl::StrCat(kBatch)},
                        {"$SEED", absl::StrCat(kSeed)},
                        {"$HIDDEN", absl::StrCat(kHidden)},
                        {"$LR", absl::StrCat(kLr)},
                        {"$MOMENTUM", absl::StrCat(kMomentum)},
                        {"$STEP_SIZE", absl::StrCat(kStepSize)},
                        {"$GAMMA", absl::StrCat(kGamma)}});
  auto config = trainbus::ParseRunConfig(text, "json", "trainer_overhead_bench");
  if (!config.ok()) Die(std::string(config.status().message()));
  if (!with_plugins) config->clear_plugins();
  if (prefetch) config->mutable_trainer()->set_prefetch_batches(*prefetch);
  if (const char* only = OnlyPlugin(); only != nullptr && with_plugins) {
    auto* plugins = config->mutable_plugins();
    for (int i = plugins->size() - 1; i >= 0; --i) {
      if (plugins->Get(i).name() != only) plugins->DeleteSubrange(i, 1);
    }
  }
  if (absl::Status s = trainbus::FinalizeRunConfig(&*config, "trainer_overhead_bench"); !s.ok()) {
    Die(std::string(s.message()));
  }
  return *config;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/trainbus_overhead_XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The training data, exactly what the trainer loads for the same config.
const trainbus::Dataset& TrainData() {
  static const trainbus::Dataset data = [] {
    auto splits = trainbus::LoadDataset(MakeConfig("/tmp", false).dataset());
    if (!splits.ok()) Die(std::string(splits.status().message()));
    return splits->train;
  }();
  return data;
}

// The trainer's losses of one run, for the bit-for-bit check of the bare loop.
std::vector<double>& ReferenceLosses() {
  static std::vector<double> losses;
  return losses;
}

// The bare loop's model and optimizer, as a user writes them: the same
// initial weights as the trainer's "mlp" (seeded, built in order with
// push_back: the arguments of a variadic constructor are evaluated in an
// unspecified order, which would change the weights).
struct BareModel {
  BareModel() {
    const trainbus::Dataset& data = TrainData();
    at::set_num_threads(1);
    torch::manual_seed(kSeed);
    model->push_back(torch::nn::Flatten());
    model->push_back(torch::nn::Linear(data.inputs[0].numel(), kHidden));
    model->push_back(torch::nn::ReLU());
    model->push_back(torch::nn::Linear(kHidden, data.num_classes));
    optimizer = std::make_unique<torch::optim::SGD>(
        model->parameters(), torch::optim::SGDOptions(kLr).momentum(kMomentum));
  }
  torch::nn::Sequential model;
  std::unique_ptr<torch::optim::SGD> optimizer;
};

// The training thread's CPU time: unlike wall time it leaves out other
// processes and our own background threads (the TensorBoard writer), so
// it shows what the trainer adds on the training thread itself with far
// less noise on a shared machine.
double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
// The training thread's CPU seconds of the last RunBareLoop / RunTrainer.
double last_thread_cpu = 0.0;

// The training thread's page faults and context switches (voluntary and
// not): kernel work for a loop that a user-space profile does not show, and
// time the thread was off the CPU.
struct KernelCounts {
  double page_faults = 0, switches = 0;
  KernelCounts& operator+=(const KernelCounts& o) {
    page_faults += o.page_faults;
    switches += o.switches;
    return *this;
  }
};
KernelCounts ThreadKernelCounts() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return {static_cast<double>(u.ru_minflt + u.ru_majflt),
          static_cast<double>(u.ru_nvcsw + u.ru_nivcsw)};
}
KernelCounts KernelCountsSince(const KernelCounts& start) {
  const KernelCounts now = ThreadKernelCounts();
  return {now.page_faults - start.page_faults, now.switches - start.switches};
}
// The counts of the last RunBareLoop / RunTrainer.
KernelCounts last_kernel;

// Where one run's time went (see Paired's counters).
//   model:   the model's own work: zero_grad through backward and
//            loss.item(), and the optimizer step (the bare loop reads the
//            loss before the step, as the trainer does). The same LibTorch
//            calls timed the same way in both loops: in the trainer by the
//            trainer itself (IterationEndEvent::compute_seconds), so that
//            its bookkeeping between them (CountCorrect, reading the lrs,
//            building the events) counts in `added_ms`, not here. (Until
//            12-06 the trainer's model time was the intervals between the
//            hooks, which hold that bookkeeping: `added_ms` read 4-6 us an
//            iteration low.)
//   hooks:   the config's plugins' time in each hook, in the real run: the
//            bench puts a plugin before them (RunClockHead) and one after
//            them (RunClockTail); tail minus head is theirs.
//   iteration_end_us: the plugins' IterationEnd time, iteration by iteration.
//   model_us: the model's work, iteration by iteration.
//   pass_us, step_us: below.
//   begin, end: Run() up to the first TrainBegin hook, and from the last
//            TrainEnd hook to Run()'s return (the session's own start and end).
struct RunTimes {
  double model = 0.0;
  double hooks[trainbus::kNumHooks] = {};
  double begin = 0.0, end = 0.0;
  std::vector<double> iteration_end_us;
  std::vector<double> model_us;
  // The model's work in its two parts: zero_grad through loss.item(), and
  // the optimizer step. In the trainer, the intervals between the hooks
  // around them: IterationBegin to AfterBackward, BeforeOptimizerStep to
  // IterationEnd (so with the trainer's bookkeeping in between).
  std::vector<double> pass_us, step_us;
};
RunTimes last_run;
double Now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// `values` sorted in place, for Quantile: sorted once, read at several q.
const std::vector<double>& Sorted(std::vector<double>* values) {
  std::sort(values->begin(), values->end());
  return *values;
}
// The q-quantile (0 <= q <= 1) of `sorted`; 0 when empty.
double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  return sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
}

// A hand-written LibTorch loop, as a user writes it. Returns the seconds of
// the training loop; `losses` gets every iteration's loss.
double RunBareLoop(bool with_accuracy, std::vector<double>* losses) {
  const trainbus::Dataset& data = TrainData();
  BareModel bare;
  torch::nn::Sequential& model = bare.model;
  torch::optim::SGD& optimizer = *bare.optimizer;

  const int64_t n = data.size();
  const int64_t per_epoch = (n + kBatch - 1) / kBatch;
  losses->clear();
  losses->reserve(static_cast<size_t>(per_epoch * kEpochs));
  double accuracy_sum = 0.0;
  int64_t step = 0;
  last_run = RunTimes();
  last_run.model_us.reserve(static_cast<size_t>(per_epoch * kEpochs));
  last_run.pass_us.reserve(static_cast<size_t>(per_epoch * kEpochs));
  last_run.step_us.reserve(static_cast<size_t>(per_epoch * kEpochs));
  const KernelCounts kernel_start = ThreadKernelCounts();
  const double cpu_start = ThreadCpuSeconds();
  const auto start = Clock::now();
  for (int64_t epoch = 0; epoch < kEpochs; ++epoch) {
    at::Generator gen = at::detail::createCPUGenerator(kSeed * 1000003ull + epoch);
    const at::Tensor order = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    for (int64_t b = 0; b < per_epoch; ++b) {
      const int64_t lo = b * kBatch, hi = std::min(n, lo + kBatch);
      const at::Tensor idx = order.slice(0, lo, hi);
      const at::Tensor x = data.inputs.index_select(0, idx);
      const at::Tensor y = data.targets.index_select(0, idx);
      const double t0 = Now();
      optimizer.zero_grad();
      at::Tensor logits = model->forward(x);
      at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      loss.backward();
      losses->push_back(loss.item<double>());
      const double t1 = Now();
      optimizer.step();
      const double t2 = Now();
      const double model = t2 - t0;
      last_run.model += model;
      last_run.model_us.push_back(model * 1e6);
      last_run.pass_us.push_back((t1 - t0) * 1e6);
      last_run.step_us.push_back((t2 - t1) * 1e6);
      if (with_accuracy) {
        accuracy_sum += logits.argmax(1).eq(y).to(at::kDouble).mean().item<double>();
      }
      ++step;
      if (step % kStepSize == 0) {  // StepLR, PyTorch's chainable form
        for (auto& group : optimizer.param_groups()) {
          group.options().set_lr(group.options().get_lr() * kGamma);
        }
      }
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  last_thread_cpu = ThreadCpuSeconds() - cpu_start;
  last_kernel = KernelCountsSince(kernel_start);
  benchmark::DoNotOptimize(accuracy_sum);
  return seconds;
}

// Keeps every iteration's loss for the bit-for-bit check (the trainer itself
// keeps only the last: its memory does not grow with the run), and the
// model's work the trainer timed (RunTimes::model). Two push_backs into
// reserved memory per iteration, as the bare loop makes: nanoseconds of ~1 ms.
class LossRecorder : public trainbus::Plugin {
 public:
  explicit LossRecorder(std::vector<double>* losses) : losses_(losses) {}
  void OnIterationEnd(const trainbus::IterationEndEvent& e, trainbus::Control&) override {
    losses_->push_back(e.loss);
    last_run.model += e.compute_seconds;
    last_run.model_us.push_back(e.compute_seconds * 1e6);
  }

 private:
  std::vector<double>* losses_;
};

// The two plugins around the config's (RunTimes). (The model's work is what
// the trainer timed around the same LibTorch calls as the bare loop,
// IterationEndEvent::compute_seconds, kept by LossRecorder.) The intervals between the hooks,
// from the tail's IterationBegin to the head's AfterBackward and from the
// tail's BeforeOptimizerStep to the head's IterationEnd, hold that work and
// the trainer's bookkeeping around it (pass_us, step_us).
struct RunClock {
  double hook_start = 0.0, model_start = 0.0;
};
RunClock run_clock;
// Only BM_PairedTrainerClocked runs them, so that the other trainer
// variants count no bench instrument as the trainer's. (What they cost is
// within the noise: in one interleaved run, 23:13 UTC 12-06, the trainer
// added +1.24 % without them and +1.27 % with them; two sequential probes
// before it had read 1.2-1.4 ms a run.)
class RunClockHead : public trainbus::Plugin {
 public:
#define TRAINBUS_HEAD_(name, event, when)                                       \
  void On##name(const trainbus::event&, trainbus::Control&) override {         \
    run_clock.hook_start = Now();                                              \
    if (trainbus::kHookIndex##name == trainbus::kHookIndexTrainBegin) {        \
      last_run.begin += run_clock.hook_start;                                  \
    }                                                                          \
    if (trainbus::kHookIndex##name == trainbus::kHookIndexAfterBackward ||     \
        trainbus::kHookIndex##name == trainbus::kHookIndexIterationEnd) {      \
      (trainbus::kHookIndex##name == trainbus::kHookIndexAfterBackward         \
           ? last_run.pass_us                                                  \
           : last_run.step_us)                                                 \
          .push_back((run_clock.hook_start - run_clock.model_start) * 1e6);    \
    }                                                                          \
  }
  TRAINBUS_LIFECYCLE_HOOKS(TRAINBUS_HEAD_)
#undef TRAINBUS_HEAD_
};
class RunClockTail : public trainbus::Plugin {
 public:
#define TRAINBUS_TAIL_(name, event, when)                                              \
  void On##name(const trainbus::event&, trainbus::Control&) override {                \
    const double now = Now();                                                         \
    last_run.hooks[trainbus::kHookIndex##name] += now - run_clock.hook_start;         \
    if (trainbus::kHookIndex##name == trainbus::kHookIndexIterationEnd) {             \
      last_run.iteration_end_us.push_back((now - run_clock.hook_start) * 1e6);        \
    }                                                                                 \
    run_clock.model_start = now;                                                      \
    if (trainbus::kHookIndex##name == trainbus::kHookIndexTrainEnd) last_run.end -= now; \
  }
  TRAINBUS_LIFECYCLE_HOOKS(TRAINBUS_TAIL_)
#undef TRAINBUS_TAIL_
};

// Batches the last RunTrainer took from its prefetch thread.
double last_prefetched = 0;

double RunTrainer(bool with_plugins, bool with_clocks, std::vector<double>* losses,
                  std::optional<bool> prefetch = std::nullopt) {
  TempDir dir;
  const trainbus::config::RunConfig config = MakeConfig(dir.path(), with_plugins, prefetch);
  // The trainer loads the config's plugins into the session it is given.
  trainbus::config::RunConfig session_config = config;
  session_config.clear_plugins();
  auto session = trainbus::Session::Create(session_config);
  if (!session.ok()) Die(std::string(session.status().message()));
  losses->clear();
  losses->reserve(4096);
  if (absl::Status s = (*session)->AddPlugin(trainbus::MakePlugin<LossRecorder>(losses), "losses");
      !s.ok()) {
    Die(std::string(s.message()));
  }
  if (with_clocks) {
    if (absl::Status s = (*session)->AddPlugin(trainbus::MakePlugin<RunClockHead>(), "clock_head");
        !s.ok()) {
      Die(std::string(s.message()));
    }
  }
  auto trainer = trainbus::Trainer::Create(config, *std::move(session));
  if (!trainer.ok()) Die(std::string(trainer.status().message()));
  if (with_clocks) {
    if (absl::Status s =
            (*trainer)->session().AddPlugin(trainbus::MakePlugin<RunClockTail>(), "clock_tail");
        !s.ok()) {
      Die(std::string(s.message()));
    }
  }
  last_run = RunTimes();
  last_run.iteration_end_us.reserve(4096);
  last_run.model_us.reserve(4096);
  last_run.pass_us.reserve(4096);
  last_run.step_us.reserve(4096);
  run_clock = RunClock();
  const KernelCounts kernel_start = ThreadKernelCounts();
  const double cpu_start = ThreadCpuSeconds();
  const auto start = Clock::now();
  last_run.begin = -Now();
  auto result = (*trainer)->Run();
  last_run.end += Now();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  last_thread_cpu = ThreadCpuSeconds() - cpu_start;
  last_kernel = KernelCountsSince(kernel_start);
  if (!result.ok()) Die(std::string(result.status().message()));
  if (result->reason != trainbus::EndReason::kCompleted ||
      result->iterations_run != (*trainer)->plan().total_iterations) {
    Die(absl::StrCat("the trainer stopped after ", result->iterations_run, " of ",
                     (*trainer)->plan().total_iterations, " iterations: ", result->stop_reason));
  }
  // Asked for: all but each epoch's first batch came from the prefetch thread.
  if (prefetch.value_or(false) && result->prefetched_batches != result->iterations_run - kEpochs) {
    Die(absl::StrCat("the trainer took ", result->prefetched_batches, " of ",
                     result->iterations_run, " batches from its prefetch thread, not ",
                     result->iterations_run - kEpochs));
  }
  last_prefetched = static_cast<double>(result->prefetched_batches);
  return seconds;
}

void CheckSameLosses(const std::vector<double>& losses, const char* variant) {
  std::vector<double>& ref = ReferenceLosses();
  if (ref.empty()) {
    RunTrainer(/*with_plugins=*/true, /*with_clocks=*/false, &ref);
  }
  if (losses.size() != ref.size()) {
    Die(absl::StrCat(variant, ": ", losses.size(), " iterations, the trainer ran ", ref.size()));
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    if (losses[i] != ref[i]) {
      Die(absl::StrCat(variant, ": loss of step ", i, " is ", losses[i], ", the trainer's ", ref[i],
                       " (not the same work)"));
    }
  }
}

// Manual time of one run, and its microseconds per training iteration
// (averaged over the benchmark's runs by Finish()).
void Report(benchmark::State& state, double seconds, size_t iterations, double* us_sum) {
  state.SetIterationTime(seconds);
  *us_sum += seconds * 1e6 / static_cast<double>(iterations);
}
void Finish(benchmark::State& state, double us_sum) {
  state.counters["us_per_it"] = benchmark::Counter(us_sum, benchmark::Counter::kAvgIterations);
}

// The variants, as functions of the same shape.
// The trainer variants prefetch batches, as they do by default on the
// reference machine (one LibTorch thread plus the prefetch thread on two
// CPUs); set explicitly, so that a machine where the default is off fails
// the run's check instead of measuring something else.
double TrainerWithPlugins(std::vector<double>* losses) { return RunTrainer(true, false, losses, true); }
double TrainerWithInlineBatches(std::vector<double>* losses) {
  return RunTrainer(true, false, losses, /*prefetch=*/false);
}
double TrainerWithPluginsAndClocks(std::vector<double>* losses) {
  return RunTrainer(true, true, losses, true);
}
double Bare(std::vector<double>* losses) { return RunBareLoop(false, losses); }
double TrainerWithoutPlugins(std::vector<double>* losses) {
  return RunTrainer(false, false, losses, true);
}
double BareWithAccuracy(std::vector<double>* losses) { return RunBareLoop(true, losses); }

// One variant alone: its manual time and microseconds per iteration.
void Single(benchmark::State& state, double (*variant)(std::vector<double>*), const char* name,
            bool same_losses) {
  std::vector<double> losses;
  double us = 0;
  for (auto _ : state) {
    const double seconds = variant(&losses);
    Report(state, seconds, losses.size(), &us);
  }
  Finish(state, us);
  if (OnlyPlugin() != nullptr) return;
  if (same_losses) {
    CheckSameLosses(losses, name);
  } else if (losses.size() != static_cast<size_t>(kEpochs * ((4000 + kBatch - 1) / kBatch))) {
    // Without the schedulers plugin the lr stays constant: other losses. Check the count only.
    Die(absl::StrCat(name, ": wrong number of iterations"));
  }
}

// Paired: each benchmark iteration runs the bare loop and the other variant
// back to back (alternating which goes first), so both see the same machine
// load; `ratio` = the variant's time / the bare loop's, over the pairs of one
// repetition. On a shared machine this is the number to trust: the medians of
// the unpaired variants drift with the load between their repetitions.
//
// And where the variant's extra time went, per run (averaged over the pairs):
//   model_ratio       the model's own work (RunTimes::model), variant / bare:
//                     near 1, or the same LibTorch calls ran slower
//   model_p50_ratio, model_p10_ratio: the same for one iteration's model
//                     work at its median and 10th percentile over the pairs
//   pass_p50_ratio, step_p50_ratio: the model work's two parts at their
//                     medians: zero_grad through loss.item() (the trainer's
//                     also holds its accuracy count and the AfterBackward
//                     event), and the optimizer step (with the IterationEnd
//                     event); bare_pass_us_p50 and bare_step_us_p50 their size
//   bare_page_faults, variant_page_faults, bare_switches, variant_switches:
//                     the training thread's page faults and context switches
//                     per run (getrusage): kernel time and time off the CPU
//   added_ms          the variant's time outside the model's work minus the
//                     bare loop's: what the variant added (with prefetched
//                     batches, less the gathers it took off the training
//                     thread; what reading a batch gathered on the other
//                     core costs the model's work is in model_ratio)
//   prefetched_batches the batches a trainer variant took from its prefetch
//                     thread, per run
//   plugins_ms        the part of added_ms inside the plugins' hooks, and
//   plugins_<Hook>_ms that part hook by hook (trainer variants; without
//                     plugins they show the two clock plugins' own floor)
//   iteration_end_us_p50, _p90: one iteration's IterationEnd in the plugins
//   session_begin_ms, session_end_ms: the trainer's Run() before the first
//                     hook and after the last (RunTimes::begin, end)
void Paired(benchmark::State& state, double (*other)(std::vector<double>*), const char* name,
            bool same_losses) {
  std::vector<double> bare_losses, other_losses;
  double bare = 0.0, variant = 0.0, bare_cpu = 0.0, variant_cpu = 0.0, variant_prefetched = 0.0;
  RunTimes bare_times, variant_times;
  KernelCounts bare_kernel, variant_kernel;
  auto add = [&](RunTimes* sum) {
    (sum == &bare_times ? bare_kernel : variant_kernel) += last_kernel;
    sum->model += last_run.model;
    for (int h = 0; h < trainbus::kNumHooks; ++h) sum->hooks[h] += last_run.hooks[h];
    sum->begin += last_run.begin;
    sum->end += last_run.end;
    sum->iteration_end_us.insert(sum->iteration_end_us.end(), last_run.iteration_end_us.begin(),
                                 last_run.iteration_end_us.end());
    sum->model_us.insert(sum->model_us.end(), last_run.model_us.begin(), last_run.model_us.end());
    sum->pass_us.insert(sum->pass_us.end(), last_run.pass_us.begin(), last_run.pass_us.end());
    sum->step_us.insert(sum->step_us.end(), last_run.step_us.begin(), last_run.step_us.end());
  };
  bool variant_first = false;
  for (auto _ : state) {
    double b, v, b_cpu, v_cpu;
    last_prefetched = 0;  // set by a trainer variant
    if (variant_first) {
      v = other(&other_losses);
      v_cpu = last_thread_cpu;
      add(&variant_times);
      b = RunBareLoop(false, &bare_losses);
      b_cpu = last_thread_cpu;
      add(&bare_times);
    } else {
      b = RunBareLoop(false, &bare_losses);
      b_cpu = last_thread_cpu;
      add(&bare_times);
      v = other(&other_losses);
      v_cpu = last_thread_cpu;
      add(&variant_times);
    }
    bare_cpu += b_cpu;
    variant_cpu += v_cpu;
    variant_prefetched += last_prefetched;
    variant_first = !variant_first;
    bare += b;
    variant += v;
    state.SetIterationTime(b + v);
  }
  if (OnlyPlugin() == nullptr) {
    if (same_losses) CheckSameLosses(other_losses, name);
    CheckSameLosses(bare_losses, name);
  }
  auto per_run = [](double count) {
    return benchmark::Counter(count, benchmark::Counter::kAvgIterations);
  };
  auto per_run_ms = [&](double seconds) { return per_run(seconds * 1e3); };
  state.counters["bare_ms"] = per_run_ms(bare);
  state.counters["variant_ms"] = per_run_ms(variant);
  state.counters["ratio"] = variant / bare;
  state.counters["cpu_ratio"] = variant_cpu / bare_cpu;
  state.counters["model_ratio"] = variant_times.model / bare_times.model;
  // One iteration's model work at its median and 10th percentile: other
  // processes only ever add time, so these move less with the machine's
  // load than the sum behind model_ratio.
  const std::vector<double>& variant_model_us = Sorted(&variant_times.model_us);
  const std::vector<double>& bare_model_us = Sorted(&bare_times.model_us);
  state.counters["model_p50_ratio"] =
      Quantile(variant_model_us, 0.5) / Quantile(bare_model_us, 0.5);
  state.counters["model_p10_ratio"] =
      Quantile(variant_model_us, 0.1) / Quantile(bare_model_us, 0.1);
  // The two parts of one iteration's model work, at their medians.
  const std::vector<double>& bare_pass_us = Sorted(&bare_times.pass_us);
  const std::vector<double>& bare_step_us = Sorted(&bare_times.step_us);
  state.counters["bare_pass_us_p50"] = Quantile(bare_pass_us, 0.5);
  state.counters["bare_step_us_p50"] = Quantile(bare_step_us, 0.5);
  state.counters["pass_p50_ratio"] =
      Quantile(Sorted(&variant_times.pass_us), 0.5) / Quantile(bare_pass_us, 0.5);
  state.counters["step_p50_ratio"] =
      Quantile(Sorted(&variant_times.step_us), 0.5) / Quantile(bare_step_us, 0.5);
  state.counters["bare_page_faults"] = per_run(bare_kernel.page_faults);
  state.counters["variant_page_faults"] = per_run(variant_kernel.page_faults);
  state.counters["bare_switches"] = per_run(bare_kernel.switches);
  state.counters["variant_switches"] = per_run(variant_kernel.switches);
  state.counters["added_ms"] = per_run_ms((variant - variant_times.model) - (bare - bare_times.model));
  if (variant_prefetched > 0) state.counters["prefetched_batches"] = per_run(variant_prefetched);
  double plugins = 0.0;
  for (int h = 0; h < trainbus::kNumHooks; ++h) {
    plugins += variant_times.hooks[h];
    // The hooks a trainer run delivers (the same in every repetition).
    if (variant_times.hooks[h] > 0) {
      state.counters[absl::StrCat("plugins_", trainbus::HookName(h), "_ms")] =
          per_run_ms(variant_times.hooks[h]);
    }
  }
  if (!variant_times.iteration_end_us.empty()) {
    const std::vector<double>& us = Sorted(&variant_times.iteration_end_us);
    state.counters["plugins_ms"] = per_run_ms(plugins);
    state.counters["session_begin_ms"] = per_run_ms(variant_times.begin);
    state.counters["session_end_ms"] = per_run_ms(variant_times.end);
    state.counters["iteration_end_us_p50"] = Quantile(us, 0.5);
    state.counters["iteration_end_us_p90"] = Quantile(us, 0.9);
  }
}

void BM_BareLoop(benchmark::State& state) { Single(state, Bare, "BM_BareLoop", true); }
void BM_BareLoopWithAccuracy(benchmark::State& state) {
  Single(state, BareWithAccuracy, "BM_BareLoopWithAccuracy", true);
}
void BM_Trainer(benchmark::State& state) { Single(state, TrainerWithPlugins, "BM_Trainer", true); }
void BM_TrainerNoPlugins(benchmark::State& state) {
  Single(state, TrainerWithoutPlugins, "BM_TrainerNoPlugins", false);
}

void BM_PairedTrainer(benchmark::State& state) {
  Paired(state, TrainerWithPlugins, "BM_PairedTrainer", true);
}
void BM_PairedTrainerInlineBatches(benchmark::State& state) {
  Paired(state, TrainerWithInlineBatches, "BM_PairedTrainerInlineBatches", true);
}
void BM_PairedTrainerNoPlugins(benchmark::State& state) {
  Paired(state, TrainerWithoutPlugins, "BM_PairedTrainerNoPlugins", false);
}
// The trainer + 4 plugins with the clock plugins around them: where the
// time went (Paired's counters), at the clock plugins' own cost.
void BM_PairedTrainerClocked(benchmark::State& state) {
  Paired(state, TrainerWithPluginsAndClocks, "BM_PairedTrainerClocked", true);
}
// The bare loop paired with itself: the noise floor of `ratio` (it should be
// 1.000; its spread is how far apart two identical runs land on this machine).
void BM_PairedBareLoop(benchmark::State& state) { Paired(state, Bare, "BM_PairedBareLoop", true); }
void BM_PairedBareLoopWithAccuracy(benchmark::State& state) {
  Paired(state, BareWithAccuracy, "BM_PairedBareLoopWithAccuracy", true);
}

// The trainer's added work per iteration, measured directly (many
// iterations, stable medians even on a busy machine):
// BM_AccuracyMetric/0: train/accuracy as a user writes it with tensor ops;
// BM_AccuracyMetric/1: trainbus::CountCorrect, what the trainer computes.
void BM_AccuracyMetric(benchmark::State& state) {
  at::set_num_threads(1);
  torch::manual_seed(kSeed);
  const at::Tensor logits = torch::randn({kBatch, 6});
  const at::Tensor y = torch::randint(0, 6, {kBatch}, at::TensorOptions().dtype(at::kLong));
  const bool fast = state.range(0) == 1;
  for (auto _ : state) {
    if (fast) {
      benchmark::DoNotOptimize(static_cast<double>(trainbus::CountCorrect(logits, y)) / kBatch);
    } else {
      benchmark::DoNotOptimize(logits.argmax(1).eq(y).to(at::kDouble).mean().item<double>());
    }
  }
}
BENCHMARK(BM_AccuracyMetric)->Arg(0)->Arg(1);

// BM_PluginsStartAndEnd: the per-run fixed cost of the four plugins, i.e.
// what Trainer::Run() spends in Session::Begin (OnTrainBegin: event file,
// writer thread, run text, layout), the first iteration (the input image
// grid) and Session::End (OnTrainEnd, hparams, Close: the final flush).
// Loading the plugin libraries happens in Trainer::Create and is not timed,
// as in the trainer variants.
void BM_PluginsStartAndEnd(benchmark::State& state) {
  const trainbus::Dataset& data = TrainData();
  const at::Tensor x = data.inputs.slice(0, 0, kBatch);
  const at::Tensor y = data.targets.slice(0, 0, kBatch);
  const at::Tensor logits = torch::zeros({kBatch, data.num_classes});
  BareModel bare;
  torch::nn::Sequential& model = bare.model;
  torch::optim::SGD& optimizer = *bare.optimizer;
  std::optional<TempDir> dir;
  for (auto _ : state) {
    state.PauseTiming();
    dir.reset();  // the previous run's files, removed untimed
    dir.emplace();
    auto session = trainbus::Session::Create(MakeConfig(dir->path(), true));
    if (!session.ok()) Die(std::string(session.status().message()));
    (*session)->Bind(model.ptr().get(), &optimizer);
    trainbus::RunInfo run;
    run.run_name = "overhead";
    run.log_dir = (*session)->log_dir();
    run.train_samples = data.size();
    run.batch_size = kBatch;
    run.iterations_per_epoch = 63;
    run.epochs = kEpochs;
    run.total_iterations = run.epochs * run.iterations_per_epoch;
    run.seed = kSeed;
    run.hparams = {{"lr", "0.05"}, {"batch_size", "64"}};
    state.ResumeTiming();
    (*session)->Begin(run);
    (*session)->BeginEpoch(trainbus::EpochBeginEvent{0, 0, 63});
    trainbus::IterationEndEvent e;
    e.batch_size = kBatch;
    e.loss = 1.0;
    e.learning_rates = {kLr};
    e.inputs = &x;
    e.targets = &y;
    e.outputs = &logits;
    (*session)->EndIteration(e);
    (*session)->EndEpoch();
    if (absl::Status s = (*session)->End(); !s.ok()) Die(std::string(s.message()));
    state.PauseTiming();
    session->reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_PluginsStartAndEnd)->Unit(benchmark::kMillisecond);

// BM_PluginsPerIteration/0: Session::EndIteration with the four plugins of the
// trainer variant (same options), a real batch and model bound, an epoch
// boundary every 63 iterations: everything the plugins do per iteration,
// amortised (histograms every 100, flush requests per epoch, the writer thread).
// BM_PluginsPerIteration/1: the same between training steps, as in a real
// run, where the model's work has evicted the plugins' code and data from
// the caches, TLBs and branch predictors: each benchmark iteration runs the
// hooks, then two untimed training steps of the bench's model (zero_grad,
// forward, backward, step). Timed: the hooks. Counters: their p50 and p90
// (hooks_p50_us, hooks_p90_us), and step_ratio, the first step's time over
// the second's (medians): what the hooks' evictions cost the model's next
// step (the first follows the hooks, the second another step).
void BM_PluginsPerIteration(benchmark::State& state) {
  const bool between_steps = state.range(0) == 1;
  std::vector<double> hooks_us, step_after_hooks_us, step_after_step_us;

  TempDir dir;
  const trainbus::config::RunConfig config = MakeConfig(dir.path(), true);
  const trainbus::Dataset& data = TrainData();
  BareModel bare;
  torch::nn::Sequential& model = bare.model;
  torch::optim::SGD& optimizer = *bare.optimizer;
  const at::Tensor x = data.inputs.slice(0, 0, kBatch);
  const at::Tensor y = data.targets.slice(0, 0, kBatch);
  at::Tensor logits = model->forward(x);
  torch::nn::functional::cross_entropy(logits, y).backward();  // gradients for the histograms
  logits = logits.detach();

  auto session = trainbus::Session::Create(config);
  if (!session.ok()) Die(std::string(session.status().message()));
  (*session)->Bind(model.ptr().get(), &optimizer);
  trainbus::RunInfo run;
  run.run_name = "overhead";
  run.log_dir = (*session)->log_dir();
  run.train_samples = data.size();
  run.batch_size = kBatch;
  run.iterations_per_epoch = 63;
  run.epochs = 1000000;
  run.total_iterations = run.epochs * run.iterations_per_epoch;
  run.seed = kSeed;
  (*session)->Begin(run);
  std::vector<double> lrs = {kLr};
  std::vector<trainbus::Metric> metrics = {{"train/accuracy", 0.5}};
  int64_t step = 0, epoch = 0, batch = 0;
  (*session)->BeginEpoch(trainbus::EpochBeginEvent{0, 0, 63});
  auto train_step = [&](std::vector<double>* us) {
    const double start = Now();
    optimizer.zero_grad();
    torch::nn::functional::cross_entropy(model->forward(x), y).backward();
    optimizer.step();
    us->push_back((Now() - start) * 1e6);
  };
  for (auto _ : state) {
    const double start = between_steps ? Now() : 0.0;
    trainbus::IterationEndEvent e;
    e.step = step;
    e.epoch = epoch;
    e.batch_index = batch;
    e.batch_size = kBatch;
    e.loss = 1.0 / static_cast<double>(step + 1);  // always improving: early stopping never fires
    e.learning_rates = lrs;
    e.duration_seconds = 1e-3;
    e.metrics = metrics;
    e.inputs = &x;
    e.targets = &y;
    e.outputs = &logits;
    (*session)->EndIteration(e);
    ++step;
    if (++batch == 63) {
      (*session)->EndEpoch();
      batch = 0;
      ++epoch;
      (*session)->BeginEpoch(trainbus::EpochBeginEvent{epoch, step, 63});
    }
    if (between_steps) {
      const double seconds = Now() - start;
      state.SetIterationTime(seconds);
      hooks_us.push_back(seconds * 1e6);
      train_step(&step_after_hooks_us);
      train_step(&step_after_step_us);
    }
  }
  if (between_steps) {
    const std::vector<double>& hooks = Sorted(&hooks_us);
    state.counters["hooks_p50_us"] = Quantile(hooks, 0.5);
    state.counters["hooks_p90_us"] = Quantile(hooks, 0.9);
    state.counters["step_ratio"] =
        Quantile(Sorted(&step_after_hooks_us), 0.5) / Quantile(Sorted(&step_after_step_us), 0.5);
  }
  (*session)->EndEpoch();
  if ((*session)->ShouldStop()) state.SkipWithError((*session)->stop_reason().c_str());
  if (absl::Status s = (*session)->End(); !s.ok()) state.SkipWithError(std::string(s.message()).c_str());
}
BENCHMARK(BM_PluginsPerIteration)->Arg(0)->Unit(benchmark::kMicrosecond);
// A fixed count: each iteration also runs two training steps (~3 ms, untimed).
BENCHMARK(BM_PluginsPerIteration)->Arg(1)->UseManualTime()->Iterations(945)->Unit(benchmark::kMicrosecond);

#define TRAINBUS_OVERHEAD_BENCH(fn) \
  BENCHMARK(fn)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2)
TRAINBUS_OVERHEAD_BENCH(BM_BareLoop);
TRAINBUS_OVERHEAD_BENCH(BM_Trainer);
TRAINBUS_OVERHEAD_BENCH(BM_BareLoopWithAccuracy);
TRAINBUS_OVERHEAD_BENCH(BM_TrainerNoPlugins);
// Paired: 6 pairs per repetition, alternating which variant goes first.
#define TRAINBUS_PAIRED_BENCH(fn) \
  BENCHMARK(fn)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(FromEnv("TRAINBUS_OVERHEAD_PAIRS", 6))
TRAINBUS_PAIRED_BENCH(BM_PairedTrainer);
TRAINBUS_PAIRED_BENCH(BM_PairedTrainerInlineBatches);
TRAINBUS_PAIRED_BENCH(BM_PairedTrainerNoPlugins);
TRAINBUS_PAIRED_BENCH(BM_PairedTrainerClocked);
TRAINBUS_PAIRED_BENCH(BM_PairedBareLoopWithAccuracy);
TRAINBUS_PAIRED_BENCH(BM_PairedBareLoop);

}  // namespace

BENCHMARK_MAIN();
