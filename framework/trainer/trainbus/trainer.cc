#include "trainbus/trainer.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <exception>
#include <stdexcept>
#include <filesystem>
#include <map>
#include <new>
#include <thread>
#include <utility>

#include <c10/util/Exception.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "trainbus/accuracy.h"
#include "trainbus/config.h"
#include "trainbus/data/batch_prefetcher.h"
#include "trainbus/data/datasets.h"
#include "trainbus/distributed.h"
#include "trainbus/models/models.h"

namespace trainbus {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// "runs/shapes-cnn-2/" -> "shapes-cnn-2": the run's name is its folder's.
std::string RunNameOf(const std::string& log_dir) {
  std::filesystem::path p = std::filesystem::path(log_dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

using OptimizerBuilder = std::unique_ptr<torch::optim::Optimizer> (*)(
    const config::OptimizerConfig&, const std::vector<at::Tensor>&);

std::unique_ptr<torch::optim::Optimizer> MakeSgd(const config::OptimizerConfig& c,
                                                 const std::vector<at::Tensor>& params) {
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(c.lr())
                  .momentum(c.momentum())
                  .nesterov(c.nesterov())
                  .weight_decay(c.weight_decay()));
}

template <class Optimizer, class Options>
std::unique_ptr<torch::optim::Optimizer> MakeAdamFamily(const config::OptimizerConfig& c,
                                                        const std::vector<at::Tensor>& params) {
  return std::make_unique<Optimizer>(
      params, Options(c.lr()).betas({c.beta1(), c.beta2()}).eps(c.eps()).weight_decay(c.weight_decay()));
}

// optimizer.type -> builder. A new optimizer is one line here (and its name
// in config.cc's check of optimizer.type).
absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const config::OptimizerConfig& c, const std::vector<at::Tensor>& params) {
  static const auto* const kOptimizers = new std::map<std::string, OptimizerBuilder>{
      {"sgd", MakeSgd},
      {"adam", MakeAdamFamily<torch::optim::Adam, torch::optim::AdamOptions>},
      {"adamw", MakeAdamFamily<torch::optim::AdamW, torch::optim::AdamWOptions>}};
  auto it = kOptimizers->find(c.type());
  if (it == kOptimizers->end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown optimizer type \"", c.type(), "\""));
  }
  return it->second(c, params);
}

// The permutation of epoch `epoch`: a pure function of (seed, epoch), so a
// resumed run can rebuild the exact order of any epoch.
at::Tensor EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  at::Generator gen = at::detail::createCPUGenerator(seed * 1000003ull + static_cast<uint64_t>(epoch));
  return at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
}

// What a checkpoint must agree with to resume this run exactly, saved with
// every checkpoint: the plan and the input normalisation statistics.
std::string PlanFingerprint(int64_t samples, int64_t batch_size, bool drop_last, uint64_t seed,
                            const std::vector<double>& mean, const std::vector<double>& std) {
  std::string out = absl::StrCat("samples=", samples, " batch_size=", batch_size,
                                 " drop_last=", drop_last ? 1 : 0, " seed=", seed);
  auto append = [](std::string* o, double v) { absl::StrAppend(o, absl::StrFormat("%.17g", v)); };
  if (!mean.empty()) {
    absl::StrAppend(&out, " normalize_mean=", absl::StrJoin(mean, ",", append),
                    " normalize_std=", absl::StrJoin(std, ",", append));
  }
  return out;
}

// Per-channel mean and standard deviation over [N, C, ...].
std::pair<std::vector<double>, std::vector<double>> ChannelStats(const at::Tensor& x) {
  at::Tensor per_channel = x.transpose(0, 1).reshape({x.size(1), -1}).to(at::kDouble);
  at::Tensor mean = per_channel.mean(1), std = per_channel.std(1, /*unbiased=*/false);
  std::vector<double> m(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  std::vector<double> s(std.data_ptr<double>(), std.data_ptr<double>() + std.numel());
  return {m, s};
}

}  // namespace

struct Trainer::Impl {
  config::RunConfig config;
  DatasetSplits data;
  torch::nn::Sequential model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<Session> session;
  std::optional<BatchSchedule> schedule;
  SchedulePlan plan;
  int64_t base_batch = 0;
  RunInfo run;
  std::vector<double> norm_mean, norm_std;  // empty: no normalisation
  // Set in a distributed run (WORLD_SIZE > 1): the global batch is split into
  // world_size contiguous chunks, rank r trains on the r-th.
  std::unique_ptr<Distributed> dist;
  // Gathers each iteration's batch; when `prefetch` (PrefetchBatches()) the
  // next one on its own thread during this one. Run() makes it, after the
  // data's normalisation, and stops its thread at the end.
  std::unique_ptr<BatchPrefetcher> batches;
  bool prefetch = false;

  // Position: where the next iteration starts, and its batch size.
  int64_t epoch = 0;
  int64_t offset = 0;       // samples of this epoch already used
  int64_t batch = 0;        // size of the next batch
  int64_t pending_batch = 0;  // set by a plugin; 0: none
  bool pending_at_next_iteration = false;

  // The loop's position and what it reports (trainer.cc: Run()).
  int64_t step = 0;
  TrainResult result;
  // Behind IterationEndEvent::metrics: named here, each iteration sets the value.
  Metrics metrics_storage{{"train/accuracy", 0.0}};
  std::vector<double> lrs;   // behind IterationEndEvent::learning_rates

  // One iteration's forward and backward passes.
  struct Pass {
    double loss = 0.0, accuracy = 0.0;
    at::Tensor logits;
    double compute_seconds = 0.0;  // zero_grad through each pass's loss.item()
  };

  // Trainer::Create, step by step.
  absl::Status LoadData();
  absl::Status JoinRanksAndSizeTheBatch();
  absl::Status MakeModelAndOptimizer();
  absl::Status LoadPlugins(bool load);
  void ConnectToTheBus();
  void FillRunInfo();
  absl::Status SetUpAndPlan();
  std::string RunDir() const;

  absl::Status Normalize();
  // The validation's first samples and the model's output on them
  // (ValidationEndEvent's inputs, targets, outputs).
  struct ValidationSample {
    at::Tensor inputs, targets, outputs;
  };
  Metrics Validate(ValidationSample* first);
  void PublishNormalization();
  // Runs epoch `epoch` from `offset`; false when the run stopped inside it.
  bool RunEpoch();
  void RunIteration(int64_t epoch, const at::Tensor& order, int64_t batch_size);
  // Starts gathering the iteration after this one, which begins at sample
  // `next` of epoch `epoch`'s order, as the plan stands now.
  void PrefetchNext(int64_t epoch, const at::Tensor& order, int64_t next);
  // This rank's part [first, last) of the global batch [lo, lo + bs): the
  // rank-th of world_size contiguous chunks (the whole batch in one process).
  std::pair<int64_t, int64_t> MyChunk(int64_t lo, int64_t bs) const;
  // The passes of one iteration; `start` is when its zero_grad began.
  Pass ForwardBackward(const at::Tensor& x, const at::Tensor& y, int64_t epoch,
                       Clock::time_point start);
  void AverageAcrossRanks(Pass* pass, int64_t local_n, int64_t batch_size);
  // BeforeOptimizerStep, then the step unless skipped; true when it ran.
  // Adds the step's own time to *compute_seconds.
  bool OptimizerStep(int64_t epoch, int64_t batch_size, double loss, double* compute_seconds);
  void ValidateNow(int64_t epoch);
  void Check(const absl::Status& s);
  void AgreeOnStop();
  int64_t EpochFirstStep(int64_t epoch) const;
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;
const SchedulePlan& Trainer::plan() const { return impl_->plan; }
int64_t Trainer::start_step() const { return impl_->run.start_step; }
int64_t Trainer::train_samples() const { return impl_->run.train_samples; }
Session& Trainer::session() { return *impl_->session; }
const std::vector<double>& Trainer::normalization_mean() const { return impl_->norm_mean; }
const std::vector<double>& Trainer::normalization_std() const { return impl_->norm_std; }

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const config::RunConfig& config) {
  // The session gets the config's policy and folder here, its plugins in
  // CreateImpl (which knows this process's rank).
  config::RunConfig without_plugins = config;
  without_plugins.clear_plugins();
  auto session = Session::Create(without_plugins);
  if (!session.ok()) return session.status();
  return CreateImpl(config, std::move(session).value(), /*load_plugins=*/true);
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const config::RunConfig& config,
                                                         std::unique_ptr<Session> session) {
  return CreateImpl(config, std::move(session), /*load_plugins=*/true);
}

namespace {

// A step of setting up a run that LibTorch may fail by throwing (an
// allocation too large, a c10::Error): the exception becomes one line naming
// the part of the config behind it and what to do, never a terminate.
template <class Step>
absl::Status Guarded(const std::string& what, const std::string& fix, Step&& step) {
  try {
    return step();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory (std::bad_alloc); ", fix));
  } catch (const c10::Error& e) {
    std::string message = e.what_without_backtrace();
    message = message.substr(0, message.find('\n'));
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", message, "; ", fix));
  } catch (const std::exception& e) {
    std::string message = e.what();
    message = message.substr(0, message.find('\n'));
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", message, "; ", fix));
  }
}

// trainer.prefetch_batches, or when unset: each rank's LibTorch threads and
// its prefetch thread fit on the CPUs this process may run on (its affinity
// mask: a container's or taskset's share, not the machine's). The ranks of a
// distributed run may be on other machines; counting them all here errs
// towards gathering in line.
bool PrefetchBatches(const config::TrainerConfig& t, int ranks) {
  if (t.has_prefetch_batches()) return t.prefetch_batches();
  int64_t cpus = std::thread::hardware_concurrency();
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) cpus = CPU_COUNT(&allowed);
  return (static_cast<int64_t>(at::get_num_threads()) + 1) * ranks <= cpus;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::CreateImpl(const config::RunConfig& config,
                                                             std::unique_ptr<Session> session,
                                                             bool load_plugins) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  if (config.trainer().has_num_threads()) at::set_num_threads(config.trainer().num_threads());
  const auto& d = config.dataset();
  const std::string dataset = absl::StrCat("dataset (", d.type().empty() ? "shapes" : d.type(),
                                           ", train_samples ", d.train_samples(), ")");
  if (absl::Status s = Guarded(dataset, "lower dataset.train_samples / val_samples",
                               [&] { return impl->LoadData(); });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = impl->JoinRanksAndSizeTheBatch(); !s.ok()) return s;
  impl->prefetch = PrefetchBatches(config.trainer(), impl->dist ? impl->dist->world_size() : 1);
  const std::string model = absl::StrCat(
      "model (", config.model().type().empty() ? "the default" : config.model().type(),
      ", hidden [", absl::StrJoin(config.model().hidden(), ", "), "])");
  if (absl::Status s = Guarded(model, "make model.hidden smaller",
                               [&] { return impl->MakeModelAndOptimizer(); });
      !s.ok()) {
    return s;
  }
  if (session == nullptr) session = std::make_unique<Session>();
  impl->session = std::move(session);
  impl->session->set_reports_end(false);  // Run()'s result says how it ended
  if (absl::Status s = impl->LoadPlugins(load_plugins); !s.ok()) return s;
  impl->ConnectToTheBus();
  impl->FillRunInfo();
  if (absl::Status s = impl->SetUpAndPlan(); !s.ok()) return s;
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

absl::Status Trainer::Impl::LoadData() {
  auto loaded = LoadDataset(config.dataset());
  if (!loaded.ok()) return loaded.status();
  data = std::move(loaded).value();
  return Normalize();
}

absl::Status Trainer::Impl::JoinRanksAndSizeTheBatch() {
  const auto& t = config.trainer();
  const int64_t timeout_s = t.has_distributed_timeout_seconds() ? t.distributed_timeout_seconds() : 60;
  auto joined = Distributed::FromEnv(std::chrono::seconds(std::max<int64_t>(timeout_s, 1)));
  if (!joined.ok()) return joined.status();
  dist = std::move(joined).value();
  const int world = dist ? dist->world_size() : 1;
  // The iteration's batch: trainer.batch_size per pass, times the passes
  // accumulated, times the ranks (each takes its share), at most the set
  // (a single process keeps the configured size, so that drop_last with a
  // batch larger than the set stays an error).
  base_batch = ResolveBatchSize(t, data.train.size());
  if (world * t.accumulate_batches() > 1) {
    // Capped by the set first: the product cannot overflow.
    base_batch = std::min(std::min(base_batch, data.train.size()) * world * t.accumulate_batches(),
                          data.train.size());
  }
  // The plan's errors (empty set, drop_last with too large a batch) before
  // any plugin exists: one iteration of it is enough to find them.
  auto early = PlanWithSchedule(data.train.size(), base_batch, t.epochs(), t.drop_last(),
                                std::min<int64_t>(t.has_max_iterations() ? t.max_iterations() : 1, 1),
                                nullptr);
  return early.status();
}

absl::Status Trainer::Impl::MakeModelAndOptimizer() {
  torch::manual_seed(config.trainer().seed());  // weight initialisation and dropout
  const at::Tensor& x = data.train.inputs;
  auto made = MakeModel(config.model(), InputShape{x.size(1), x.size(2), x.size(3)},
                        data.train.num_classes);
  if (!made.ok()) return made.status();
  model = *made;
  auto opt = MakeOptimizer(config.optimizer(), model->parameters());
  if (!opt.ok()) return opt.status();
  optimizer = std::move(opt).value();
  if (!dist) return absl::OkStatus();
  // Every rank starts from rank 0's weights.
  std::vector<at::Tensor> params = model->parameters();
  for (const auto& b : model->buffers()) params.push_back(b);
  return dist->Broadcast(params);
}

absl::Status Trainer::Impl::LoadPlugins(bool load) {
  if (session->log_dir().empty()) session->set_log_dir(RunDir());
  // Plugins that write output load on rank 0 only (PluginInfo::capabilities).
  session->set_rank(dist ? dist->rank() : 0);
  std::vector<std::string> dirs(config.plugin_paths().begin(), config.plugin_paths().end());
  for (const auto& p : config.plugins()) {
    if (!load || (p.has_enabled() && !p.enabled())) continue;
    if (absl::Status s = session->LoadPlugin(p, dirs); !s.ok()) return s;
  }
  session->Bind(model.ptr().get(), optimizer.get());
  return absl::OkStatus();
}

void Trainer::Impl::ConnectToTheBus() {
  Bus& bus = session->bus();
  bus.set_batch_schedule_setter([this](const BatchSchedule& declared) {
    schedule = declared;
    return absl::OkStatus();
  });
  bus.set_batch_size_setter([this](int64_t size, bool at_next_iteration) {
    pending_batch = size;
    pending_at_next_iteration = at_next_iteration;
    return absl::OkStatus();
  });
  session->set_position_filler([this](CheckpointState* s) {
    // Saved after the iteration's hooks: a pending change is part of the state.
    s->epoch = epoch;
    s->sample_offset = offset;
    const bool pending_applies =
        pending_batch > 0 && (pending_at_next_iteration || offset >= data.train.size());
    s->batch_size = pending_applies ? pending_batch : batch;
  });
}

std::string Trainer::Impl::RunDir() const {
  // The session's folder when it has one (Session::Create claimed it).
  if (session != nullptr && !session->log_dir().empty()) return session->log_dir();
  return (std::filesystem::path(config.log_root()) / config.name()).string();
}

void Trainer::Impl::FillRunInfo() {
  const auto& t = config.trainer();
  const auto& o = config.optimizer();
  run.log_dir = RunDir();
  run.run_name = RunNameOf(run.log_dir);
  run.train_samples = data.train.size();
  run.batch_size = base_batch;  // the iteration's at the start; a schedule starts from it
  run.epochs = t.epochs();
  run.seed = t.seed();
  run.rank = dist ? dist->rank() : 0;
  run.world_size = dist ? dist->world_size() : 1;
  run.accumulate_batches = t.accumulate_batches();
  run.hparams = {{"model", config.model().type()},
                 {"dataset", config.dataset().type()},
                 {"optimizer", o.type()},
                 {"lr", absl::StrCat(o.lr())},
                 {"batch_size", absl::StrCat(base_batch)},
                 {"epochs", absl::StrCat(t.epochs())},
                 {"weight_decay", absl::StrCat(o.weight_decay())},
                 {"seed", absl::StrCat(t.seed())}};
  if (o.type() == "sgd") run.hparams.push_back({"momentum", absl::StrCat(o.momentum())});
  if (t.accumulate_batches() > 1) {
    run.hparams.push_back({"accumulate_batches", absl::StrCat(t.accumulate_batches())});
  }
}

absl::Status Trainer::Impl::SetUpAndPlan() {
  const auto& t = config.trainer();
  // OnSetup: a plugin may declare the batch-size schedule; the plan follows it.
  if (session->set_up()) {
    return absl::FailedPreconditionError(
        "Trainer::Create: the session given has run Setup() already; the trainer runs it, after "
        "its plugins are loaded, so that a batch-size schedule reaches the plan");
  }
  session->Setup(run);
  if (!session->status().ok() && session->bus().policy() == HookErrorPolicy::kStopRun) {
    return session->status();
  }
  if (dist) {
    // Every rank must follow one plan: a schedule declared by a plugin that
    // runs on rank 0 only would make the ranks' plans differ.
    auto any = dist->AnyTrue(schedule.has_value());
    if (!any.ok()) return any.status();
    auto missing = dist->AnyTrue(!schedule.has_value());
    if (!missing.ok()) return missing.status();
    if (*any && *missing) {
      return absl::FailedPreconditionError(
          "a batch-size schedule was declared on some ranks only; the plugin that declares it "
          "(Control::SetBatchSchedule) must run on every rank: it must not declare "
          "kWritesOutput, or must also declare kOnEveryRank");
    }
  }
  auto planned = PlanWithSchedule(data.train.size(), base_batch, t.epochs(), t.drop_last(),
                                  t.has_max_iterations() ? std::optional<int64_t>(t.max_iterations())
                                                         : std::nullopt,
                                  schedule ? &*schedule : nullptr);
  if (!planned.ok()) return planned.status();
  plan = *planned;
  batch = schedule ? schedule->At(0, base_batch) : base_batch;
  run.epochs = static_cast<int64_t>(plan.epochs.size());
  run.iterations_per_epoch = plan.epochs.front().iterations;
  run.total_iterations = plan.total_iterations;
  session->set_host_state(PlanFingerprint(run.train_samples, base_batch, t.drop_last(), t.seed(),
                                          norm_mean, norm_std));
  return absl::OkStatus();
}

absl::Status Trainer::Impl::Normalize() {
  const config::NormalizeConfig& n = config.trainer().normalize();
  if (n.mode() == "none" || n.mode().empty()) return absl::OkStatus();
  const int64_t channels = data.train.inputs.size(1);
  if (n.mode() == "given") {
    if (n.mean_size() != channels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trainer.normalize: ", n.mean_size(), " mean/std values given for data with ", channels,
          " channel(s)"));
    }
    norm_mean.assign(n.mean().begin(), n.mean().end());
    norm_std.assign(n.std().begin(), n.std().end());
  } else {
    std::tie(norm_mean, norm_std) = ChannelStats(data.train.inputs);
    for (double& s : norm_std) {
      if (s < 1e-12) s = 1.0;  // a constant channel: only centre it
    }
  }
  // Normalising the stored tensors once equals normalising every batch.
  auto apply = [&](at::Tensor& x) {
    if (!x.defined() || x.numel() == 0) return;
    at::Tensor mean = at::tensor(norm_mean, at::kDouble).to(x.scalar_type()).view({1, -1, 1, 1});
    at::Tensor std = at::tensor(norm_std, at::kDouble).to(x.scalar_type()).view({1, -1, 1, 1});
    x = (x - mean) / std;
  };
  apply(data.train.inputs);
  apply(data.val.inputs);
  return absl::OkStatus();
}

absl::Status Trainer::Resume(const std::string& path) {
  Impl& m = *impl_;
  auto state = m.session->Resume(path);
  if (!state.ok()) return state.status();
  const auto& t = m.config.trainer();
  const std::string expected = PlanFingerprint(m.run.train_samples, m.base_batch, t.drop_last(),
                                               t.seed(), m.norm_mean, m.norm_std);
  if (state->host_state != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", path, " was saved by a run with ", state->host_state,
        "; this run has ", expected, ". Resume with the same dataset, batch size, seed and normalisation."));
  }
  if (state->next_step > m.plan.total_iterations) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", path, " is at step ", state->next_step, ", past this run's ",
        m.plan.total_iterations, " iterations; raise trainer.epochs or trainer.max_iterations"));
  }
  m.run.start_step = state->next_step;
  m.epoch = state->epoch;
  m.offset = state->sample_offset;
  if (state->batch_size > 0) m.batch = state->batch_size;
  if (m.offset >= m.run.train_samples) {  // saved at an epoch's end
    ++m.epoch;
    m.offset = 0;
  }
  m.run.start_epoch = m.epoch;
  return absl::OkStatus();
}

Metrics Trainer::Impl::Validate(ValidationSample* first) {
  const Dataset& val = data.val;
  int64_t n = val.size();
  const int64_t subset = config.trainer().validation_subset();
  if (subset > 0) n = std::min(n, subset);
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  model->eval();
  double loss_sum = 0.0;
  int64_t correct = 0;
  constexpr int64_t kChunk = 1024;
  for (int64_t start = 0; start < n; start += kChunk) {
    int64_t end = std::min(n, start + kChunk);
    at::Tensor x = val.inputs.slice(0, start, end);
    at::Tensor logits = model->forward(x);
    at::Tensor y = val.targets.slice(0, start, end);
    if (start == 0) *first = {x, y, logits};
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += CountCorrect(logits, y);
  }
  model->train();
  return {{"val/loss", loss_sum / n}, {"val/accuracy", static_cast<double>(correct) / n}};
}

// --- the loop: Run() -> RunEpoch() -> RunIteration() -------------------------

void Trainer::Impl::Check(const absl::Status& s) {
  // Distributed: a failed collective ends the run like any training error.
  if (!s.ok()) throw std::runtime_error(std::string(s.message()));
}

void Trainer::Impl::AgreeOnStop() {
  // Distributed: every rank stops at the same point. A stop requested on any
  // rank (by a plugin, a failing hook, a signal) is requested on all of them,
  // and a signal names the end on every rank: the launcher signals them all,
  // and the ranks that see theirs late must not blame another rank.
  if (!dist) return;
  const int sig = session->interrupt_signal();
  std::vector<double> counts{session->ShouldStop() ? 1.0 : 0.0, sig == SIGINT ? 1.0 : 0.0,
                             sig == SIGTERM ? 1.0 : 0.0};
  Check(dist->AllReduceSum(counts));
  if (counts[0] < 0.5 || session->ShouldStop() || session->CheckInterrupt()) return;
  if (counts[1] > 0.5 || counts[2] > 0.5) {
    session->InterruptedElsewhere(counts[1] > 0.5 ? SIGINT : SIGTERM, "on another rank");
  } else {
    session->RequestStop("another rank stopped the run");
  }
}

int64_t Trainer::Impl::EpochFirstStep(int64_t e) const {
  return e < static_cast<int64_t>(plan.epochs.size()) ? plan.epochs[e].first_step : step;
}

void Trainer::Impl::PublishNormalization() {
  if (norm_mean.empty()) return;
  auto join = [](const std::vector<double>& values) {
    return absl::StrJoin(values, ", ", [](std::string* out, double v) {
      absl::StrAppend(out, absl::StrFormat("%.6g", v));
    });
  };
  session->Publish(Record::Text(
      "data/normalization",
      absl::StrCat("Inputs normalised per channel (", config.trainer().normalize().mode(),
                   "): mean [", join(norm_mean), "], std [", join(norm_std), "]"),
      run.start_step));
}

void Trainer::Impl::ValidateNow(int64_t e) {
  session->BeginValidation(ValidationBeginEvent{step - 1, e});
  const auto v_start = Clock::now();
  ValidationSample first;
  result.final_metrics = Validate(&first);
  ValidationEndEvent end{step - 1, e, result.final_metrics, Since(v_start)};
  if (first.outputs.defined()) {
    end.inputs = &first.inputs;
    end.targets = &first.targets;
    end.outputs = &first.outputs;
  }
  session->EndValidation(end);
  AgreeOnStop();
}

Trainer::Impl::Pass Trainer::Impl::ForwardBackward(const at::Tensor& x, const at::Tensor& y,
                                                   int64_t e, Clock::time_point start) {
  // Gradient accumulation: this rank's chunk runs in `passes` micro-batches;
  // scaling each loss by its share of the chunk makes the summed gradient the
  // chunk's mean, as one pass would give (for models without batch
  // statistics: BatchNorm sees each pass alone).
  const int64_t local_n = x.size(0);
  const int64_t passes =
      std::max<int64_t>(1, std::min<int64_t>(config.trainer().accumulate_batches(), local_n));
  std::vector<at::Tensor> pass_logits;
  Pass out;
  int64_t correct = 0;
  for (int64_t pass = 0; pass < passes && local_n > 0; ++pass) {
    if (pass > 0) start = Clock::now();
    const int64_t p_lo = local_n * pass / passes, p_hi = local_n * (pass + 1) / passes;
    const at::Tensor px = passes == 1 ? x : x.slice(0, p_lo, p_hi);
    const at::Tensor py = passes == 1 ? y : y.slice(0, p_lo, p_hi);
    at::Tensor logits = model->forward(px);
    at::Tensor loss = torch::nn::functional::cross_entropy(logits, py);
    // The trainer's own reads of the logits, kept out of compute_seconds.
    // (Here or after the backward pass they cost the same, about 1 us
    // together in the trainer bench: see docs/BENCHMARKS.md, 2026-12-07.)
    // variable_data(): the same storage without autograd history, as
    // detach() gives, without detach()'s dispatch and view bookkeeping (a
    // third of detach()'s time when measured side by side, 12-04). The
    // backward pass reads the logits' storage and never writes it, so no
    // version counter needs sharing.
    out.compute_seconds += Since(start);
    correct += CountCorrect(logits, py);
    pass_logits.push_back(logits.variable_data());
    const auto backward_start = Clock::now();
    const double share = static_cast<double>(p_hi - p_lo) / static_cast<double>(local_n);
    (passes == 1 ? loss : loss * share).backward();
    const double pass_loss = loss.item<double>();
    out.compute_seconds += Since(backward_start);
    out.loss += pass_loss * share;
    AfterBackwardEvent ab;
    ab.step = step;
    ab.epoch = e;
    ab.batch_index = step - EpochFirstStep(e);
    ab.micro_batch = pass;
    ab.micro_batches = passes;
    ab.loss = pass_loss;
    session->AfterBackward(ab);
  }
  if (local_n == 0) out.compute_seconds = Since(start);  // zero_grad alone (no pass ran)
  out.accuracy = local_n > 0 ? static_cast<double>(correct) / static_cast<double>(local_n) : 0.0;
  out.logits = local_n == 0   ? at::empty({0, data.train.num_classes}, x.options().dtype(at::kFloat))
               : passes == 1 ? pass_logits.front()
                             : at::cat(pass_logits, 0);
  return out;
}

void Trainer::Impl::AverageAcrossRanks(Pass* pass, int64_t local_n, int64_t bs) {
  // Weighting each rank's mean gradient and loss by its chunk's share of the
  // global batch makes the sums equal one process's batch mean.
  std::vector<at::Tensor> grads;
  const double share = static_cast<double>(local_n) / static_cast<double>(bs);
  for (at::Tensor& p : model->parameters()) {
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    p.mutable_grad().mul_(share);
    grads.push_back(p.grad());
  }
  Check(dist->AllReduceSum(grads));
  std::vector<double> sums{pass->loss * share, pass->accuracy * share};
  Check(dist->AllReduceSum(sums));
  pass->loss = sums[0];
  pass->accuracy = sums[1];
}

bool Trainer::Impl::OptimizerStep(int64_t e, int64_t bs, double loss, double* compute_seconds) {
  BeforeOptimizerStepEvent before;
  before.step = step;
  before.epoch = e;
  before.batch_index = step - EpochFirstStep(e);
  before.batch_size = bs;
  before.loss = loss;
  bool take_step = session->BeforeOptimizerStep(before);
  if (dist) {
    // One decision for all ranks, also when a plugin that runs on some ranks
    // only skipped the step.
    auto skipped_anywhere = dist->AnyTrue(!take_step);
    Check(skipped_anywhere.status());
    if (*skipped_anywhere && take_step) {
      session->bus().set_optimizer_step_skipped();
      take_step = false;
    }
  }
  // Read after the hook: an lr set there applies to this step.
  lrs.clear();
  for (auto& g : optimizer->param_groups()) lrs.push_back(g.options().get_lr());
  if (take_step) {
    const auto step_start = Clock::now();
    optimizer->step();
    *compute_seconds += Since(step_start);
  }
  return take_step;
}

void Trainer::Impl::RunIteration(int64_t e, const at::Tensor& order, int64_t bs) {
  // Distributed: rank r takes the r-th of world contiguous chunks of the
  // global batch [offset, offset + bs).
  const int64_t lo = offset;
  const auto [my_lo, my_hi] = MyChunk(lo, bs);
  const BatchPrefetcher::Batch batch_data = batches->Take(e, order, my_lo, my_hi);
  PrefetchNext(e, order, lo + bs);
  const at::Tensor& x = batch_data.inputs;
  const at::Tensor& y = batch_data.targets;
  session->BeginIteration(bs);
  const auto it_start = Clock::now();
  optimizer->zero_grad();
  Pass pass = ForwardBackward(x, y, e, it_start);
  if (dist) AverageAcrossRanks(&pass, my_hi - my_lo, bs);
  OptimizerStep(e, bs, pass.loss, &pass.compute_seconds);
  metrics_storage[0].value = pass.accuracy;
  offset = lo + bs;
  IterationEndEvent ev;
  ev.step = step;
  ev.epoch = e;
  ev.batch_index = step - EpochFirstStep(e);
  ev.batch_size = bs;
  ev.loss = pass.loss;
  ev.learning_rates = lrs;
  ev.duration_seconds = Since(it_start);
  ev.compute_seconds = pass.compute_seconds;
  ev.metrics = metrics_storage;
  ev.inputs = &x;
  ev.targets = &y;
  ev.outputs = &pass.logits;
  session->EndIteration(ev);
  AgreeOnStop();
  result.last_loss = pass.loss;
  ++result.iterations_run;
  result.last_step = step;
  ++step;
  if (pending_batch > 0 && pending_at_next_iteration) {
    batch = pending_batch;
    pending_batch = 0;
  }
}

void Trainer::Impl::PrefetchNext(int64_t e, const at::Tensor& order, int64_t next) {
  // A plugin that changes the batch size in this iteration, or stops the
  // run, leaves this batch untaken: Take() then gathers the right one.
  const int64_t n = data.train.size();
  if (!prefetch || next >= n || step + 1 >= plan.total_iterations) return;
  const int64_t bs = std::min(batch, n - next);
  if (config.trainer().drop_last() && bs < batch) return;
  const auto [my_lo, my_hi] = MyChunk(next, bs);
  batches->Prefetch(e, order, my_lo, my_hi);
}

std::pair<int64_t, int64_t> Trainer::Impl::MyChunk(int64_t lo, int64_t bs) const {
  const int world = dist ? dist->world_size() : 1;
  const int rank = dist ? dist->rank() : 0;
  return {lo + bs * rank / world, lo + bs * (rank + 1) / world};
}

bool Trainer::Impl::RunEpoch() {
  const auto& t = config.trainer();
  const int64_t n = data.train.size();
  const int64_t e = epoch;
  const int64_t planned = e < static_cast<int64_t>(plan.epochs.size())
                              ? plan.epochs[e].first_step + plan.epochs[e].iterations - step
                              : 0;
  session->BeginEpoch(EpochBeginEvent{e, step, std::max<int64_t>(planned, 0)});
  AgreeOnStop();
  const at::Tensor order = EpochPermutation(n, t.seed(), e);
  int64_t validated_at = -1;
  bool complete = true;
  while (offset < n) {
    if (step >= plan.total_iterations || session->ShouldStop()) {
      complete = false;
      break;
    }
    const int64_t remaining = n - offset;
    if (t.drop_last() && remaining < batch) break;  // the partial last batch
    RunIteration(e, order, std::min(batch, remaining));
    if (EveryN(t.validate_every_n_iterations(), step - 1)) {
      ValidateNow(e);
      validated_at = step;
    }
  }
  if (complete && EveryN(t.validate_every_n_epochs(), e) &&
      validated_at != step) {
    ValidateNow(e);
  }
  // A complete epoch's next position is the next epoch's start (a checkpoint
  // saved at this epoch's end resumes there).
  if (complete) offset = n;
  session->EndEpoch(complete);
  AgreeOnStop();
  if (!complete) return false;
  ++epoch;
  offset = 0;
  if (pending_batch > 0) {
    batch = pending_batch;
    pending_batch = 0;
  }
  return true;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  Impl& m = *impl_;
  Session& session = *m.session;
  const auto start = Clock::now();
  m.result = TrainResult();
  m.step = m.run.start_step;
  if (m.batches == nullptr) {
    m.batches = std::make_unique<BatchPrefetcher>(m.data.train.inputs, m.data.train.targets);
  }
  const int64_t prefetched_before = m.batches->prefetched();
  // The thread stops however Run() returns.
  struct StopPrefetching {
    BatchPrefetcher* batches;
    ~StopPrefetching() { batches->Stop(); }
  } stop_prefetching{m.batches.get()};
  session.Begin(m.run);
  m.PublishNormalization();
  try {
    while (m.epoch < m.config.trainer().epochs() && m.step < m.plan.total_iterations &&
           !session.ShouldStop()) {
      if (!m.RunEpoch()) break;
    }
  } catch (const std::exception& ex) {
    std::string message = absl::StrCat("training failed at step ", m.step, ": ", ex.what());
    session.Abort(message);
    absl::Status end = session.End();
    return absl::InternalError(end.ok() ? message : absl::StrCat(message, "; also: ", end.message()));
  }
  absl::Status end = session.End();
  TrainResult result = m.result;
  result.prefetched_batches = m.batches->prefetched() - prefetched_before;
  result.seconds = Since(start);
  result.stop_reason = session.stop_reason();
  if (!end.ok()) return end;
  result.reason = session.interrupt_signal() != 0 ? EndReason::kInterrupted
                  : session.ShouldStop()           ? EndReason::kStopRequested
                                                   : EndReason::kCompleted;
  return result;
}

}  // namespace trainbus
