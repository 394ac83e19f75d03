#include "trainbus/trainer.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <filesystem>

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
#include "trainbus/data/datasets.h"
#include "trainbus/distributed.h"
#include "trainbus/models/models.h"

namespace trainbus {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

absl::StatusOr<std::unique_ptr<torch::optim::Optimizer>> MakeOptimizer(
    const config::OptimizerConfig& c, const std::vector<at::Tensor>& params) {
  if (c.type() == "sgd") {
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(c.lr())
                    .momentum(c.momentum())
                    .nesterov(c.nesterov())
                    .weight_decay(c.weight_decay()));
  }
  if (c.type() == "adam") {
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.lr())
                    .betas({c.beta1(), c.beta2()})
                    .eps(c.eps())
                    .weight_decay(c.weight_decay()));
  }
  if (c.type() == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.lr())
                    .betas({c.beta1(), c.beta2()})
                    .eps(c.eps())
                    .weight_decay(c.weight_decay()));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown optimizer type \"", c.type(), "\""));
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

  // Position: where the next iteration starts, and its batch size.
  int64_t epoch = 0;
  int64_t offset = 0;       // samples of this epoch already used
  int64_t batch = 0;        // size of the next batch
  int64_t pending_batch = 0;  // set by a plugin; 0: none
  bool pending_at_next_iteration = false;

  absl::Status Normalize();
  Metrics Validate();
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

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::CreateImpl(const config::RunConfig& config,
                                                             std::unique_ptr<Session> session,
                                                             bool load_plugins) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  const auto& t = config.trainer();
  if (t.has_num_threads()) at::set_num_threads(t.num_threads());

  auto data = LoadDataset(config.dataset());
  if (!data.ok()) return data.status();
  impl->data = std::move(data).value();
  if (absl::Status s = impl->Normalize(); !s.ok()) return s;

  const int64_t timeout_s = t.has_distributed_timeout_seconds() ? t.distributed_timeout_seconds() : 60;
  auto dist = Distributed::FromEnv(std::chrono::seconds(std::max<int64_t>(timeout_s, 1)));
  if (!dist.ok()) return dist.status();
  impl->dist = std::move(dist).value();
  const int world = impl->dist ? impl->dist->world_size() : 1;

  // The iteration's batch: trainer.batch_size per pass, times the passes
  // accumulated, times the ranks (each takes its share), at most the set.
  impl->base_batch = std::min(ResolveBatchSize(t, impl->data.train.size()) * world *
                                  t.accumulate_batches(),
                              impl->data.train.size());
  // The plan's errors (empty set, drop_last with too large a batch) before
  // any plugin exists: one iteration of it is enough to find them.
  if (auto early = PlanWithSchedule(impl->data.train.size(), impl->base_batch, t.epochs(),
                                    t.drop_last(),
                                    std::min<int64_t>(t.has_max_iterations() ? t.max_iterations() : 1, 1),
                                    nullptr);
      !early.ok()) {
    return early.status();
  }

  torch::manual_seed(t.seed());  // weight initialisation and dropout
  const at::Tensor& x = impl->data.train.inputs;
  auto model = MakeModel(config.model(), InputShape{x.size(1), x.size(2), x.size(3)},
                         impl->data.train.num_classes);
  if (!model.ok()) return model.status();
  impl->model = *model;
  auto optimizer = MakeOptimizer(config.optimizer(), impl->model->parameters());
  if (!optimizer.ok()) return optimizer.status();
  impl->optimizer = std::move(optimizer).value();
  if (impl->dist) {
    // Every rank starts from rank 0's weights.
    std::vector<at::Tensor> params = impl->model->parameters();
    for (const auto& b : impl->model->buffers()) params.push_back(b);
    if (absl::Status s = impl->dist->Broadcast(params); !s.ok()) return s;
  }

  if (session == nullptr) session = std::make_unique<Session>();
  impl->session = std::move(session);
  const std::string run_dir = (std::filesystem::path(config.log_root()) / config.name()).string();
  if (impl->session->log_dir().empty()) impl->session->set_log_dir(run_dir);
  // Plugins that write output load on rank 0 only (PluginInfo::capabilities).
  impl->session->set_rank(impl->dist ? impl->dist->rank() : 0);
  std::vector<std::string> dirs(config.plugin_paths().begin(), config.plugin_paths().end());
  for (const auto& p : config.plugins()) {
    if (!load_plugins || (p.has_enabled() && !p.enabled())) continue;
    if (absl::Status s = impl->session->LoadPlugin(p, dirs); !s.ok()) return s;
  }
  impl->session->Bind(impl->model.ptr().get(), impl->optimizer.get());

  Impl* m = impl.get();
  Bus& bus = impl->session->bus();
  bus.set_batch_schedule_setter([m](const BatchSchedule& schedule) {
    m->schedule = schedule;
    return absl::OkStatus();
  });
  bus.set_batch_size_setter([m](int64_t size, bool at_next_iteration) {
    m->pending_batch = size;
    m->pending_at_next_iteration = at_next_iteration;
    return absl::OkStatus();
  });
  impl->session->set_position_filler([m](CheckpointState* s) {
    // Saved after the iteration's hooks: a pending change is part of the state.
    s->epoch = m->epoch;
    s->sample_offset = m->offset;
    const bool pending_applies =
        m->pending_batch > 0 && (m->pending_at_next_iteration || m->offset >= m->data.train.size());
    s->batch_size = pending_applies ? m->pending_batch : m->batch;
  });

  RunInfo& run = impl->run;
  run.run_name = config.name();
  run.log_dir = run_dir;
  run.train_samples = impl->data.train.size();
  run.batch_size = impl->base_batch;  // as configured; a schedule starts from it
  run.epochs = t.epochs();
  run.seed = t.seed();
  run.rank = impl->dist ? impl->dist->rank() : 0;
  run.world_size = world;
  run.accumulate_batches = t.accumulate_batches();
  const auto& o = config.optimizer();
  run.hparams = {{"model", config.model().type()},
                 {"dataset", config.dataset().type()},
                 {"optimizer", o.type()},
                 {"lr", absl::StrCat(o.lr())},
                 {"batch_size", absl::StrCat(impl->base_batch)},
                 {"epochs", absl::StrCat(t.epochs())},
                 {"weight_decay", absl::StrCat(o.weight_decay())},
                 {"seed", absl::StrCat(t.seed())}};
  if (o.type() == "sgd") run.hparams.push_back({"momentum", absl::StrCat(o.momentum())});
  if (t.accumulate_batches() > 1) {
    run.hparams.push_back({"accumulate_batches", absl::StrCat(t.accumulate_batches())});
  }

  // OnSetup: a plugin may declare the batch-size schedule; the plan follows it.
  impl->session->Setup(run);
  if (!impl->session->status().ok()) return impl->session->status();
  auto plan = PlanWithSchedule(impl->data.train.size(), impl->base_batch, t.epochs(), t.drop_last(),
                               t.has_max_iterations() ? std::optional<int64_t>(t.max_iterations())
                                                      : std::nullopt,
                               impl->schedule ? &*impl->schedule : nullptr);
  if (!plan.ok()) return plan.status();
  impl->plan = *plan;
  impl->batch = impl->schedule ? impl->schedule->At(0, impl->base_batch) : impl->base_batch;
  run.epochs = static_cast<int64_t>(impl->plan.epochs.size());
  run.iterations_per_epoch = impl->plan.epochs.front().iterations;
  run.total_iterations = impl->plan.total_iterations;
  impl->session->set_host_state(PlanFingerprint(run.train_samples, impl->base_batch, t.drop_last(),
                                                t.seed(), impl->norm_mean, impl->norm_std));
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
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

Metrics Trainer::Impl::Validate() {
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
    at::Tensor logits = model->forward(val.inputs.slice(0, start, end));
    at::Tensor y = val.targets.slice(0, start, end);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += CountCorrect(logits, y);
  }
  model->train();
  return {{"val/loss", loss_sum / n}, {"val/accuracy", static_cast<double>(correct) / n}};
}

absl::StatusOr<TrainResult> Trainer::Run() {
  Impl& m = *impl_;
  Session& session = *m.session;
  const auto& t = m.config.trainer();
  const Dataset& train = m.data.train;
  const int64_t n = train.size();
  const int64_t total = m.plan.total_iterations;
  TrainResult result;
  const auto start = Clock::now();

  session.Begin(m.run);
  if (!m.norm_mean.empty()) {
    session.Publish(Record::Text(
        "data/normalization",
        absl::StrCat("Inputs normalised per channel (", t.normalize().mode(), "): mean [",
                     absl::StrJoin(m.norm_mean, ", ", [](std::string* out, double v) {
                       absl::StrAppend(out, absl::StrFormat("%.6g", v));
                     }),
                     "], std [",
                     absl::StrJoin(m.norm_std, ", ", [](std::string* out, double v) {
                       absl::StrAppend(out, absl::StrFormat("%.6g", v));
                     }),
                     "]"),
        m.run.start_step));
  }
  int64_t step = m.run.start_step;
  Metrics metrics_storage;
  std::vector<double> lrs;
  // Distributed: a failed collective ends the run like any training error.
  auto check = [&](const absl::Status& s) {
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  };
  // Distributed: every rank stops at the same point. A stop requested on any
  // rank (by a plugin, a failing hook) is requested on all of them.
  auto agree_on_stop = [&] {
    if (!m.dist) return;
    auto any = m.dist->AnyTrue(session.ShouldStop());
    check(any.status());
    if (*any && !session.ShouldStop()) session.RequestStop("another rank stopped the run");
  };
  const int world = m.dist ? m.dist->world_size() : 1;
  const int rank = m.dist ? m.dist->rank() : 0;
  auto epoch_first_step = [&](int64_t epoch) {
    return epoch < static_cast<int64_t>(m.plan.epochs.size()) ? m.plan.epochs[epoch].first_step : step;
  };
  try {
    while (m.epoch < t.epochs() && step < total && !session.ShouldStop()) {
      const int64_t epoch = m.epoch;
      const int64_t planned = epoch < static_cast<int64_t>(m.plan.epochs.size())
                                  ? m.plan.epochs[epoch].first_step + m.plan.epochs[epoch].iterations - step
                                  : 0;
      session.BeginEpoch(EpochBeginEvent{epoch, step, std::max<int64_t>(planned, 0)});
      agree_on_stop();
      const at::Tensor order = EpochPermutation(n, t.seed(), epoch);
      int64_t validated_at = -1;
      bool epoch_done = true;
      while (m.offset < n) {
        if (step >= total || session.ShouldStop()) {
          epoch_done = false;
          break;
        }
        const int64_t remaining = n - m.offset;
        if (t.drop_last() && remaining < m.batch) break;  // the partial last batch
        const int64_t lo = m.offset, hi = lo + std::min(m.batch, remaining);
        const int64_t bs = hi - lo;
        // Distributed: rank r takes the r-th of world contiguous chunks of the
        // global batch [lo, hi); weighting each rank's mean gradient and loss
        // by its chunk's share makes the sums equal one process's batch mean.
        const int64_t my_lo = lo + bs * rank / world, my_hi = lo + bs * (rank + 1) / world;
        const int64_t local_n = my_hi - my_lo;
        const at::Tensor idx = order.slice(0, my_lo, my_hi);
        const at::Tensor x = train.inputs.index_select(0, idx);
        const at::Tensor y = train.targets.index_select(0, idx);
        session.BeginIteration(bs);
        const auto it_start = Clock::now();
        m.optimizer->zero_grad();
        // Gradient accumulation: this rank's chunk runs in `passes`
        // micro-batches; scaling each loss by its share of the chunk makes
        // the summed gradient the chunk's mean, as one pass would give.
        const int64_t passes = std::max<int64_t>(1, std::min<int64_t>(t.accumulate_batches(), local_n));
        std::vector<at::Tensor> pass_logits;
        double loss_value = 0.0;
        int64_t correct = 0;
        for (int64_t pass = 0; pass < passes && local_n > 0; ++pass) {
          const int64_t p_lo = local_n * pass / passes, p_hi = local_n * (pass + 1) / passes;
          const at::Tensor px = passes == 1 ? x : x.slice(0, p_lo, p_hi);
          const at::Tensor py = passes == 1 ? y : y.slice(0, p_lo, p_hi);
          at::Tensor logits = m.model->forward(px);
          at::Tensor loss = torch::nn::functional::cross_entropy(logits, py);
          const double share = static_cast<double>(p_hi - p_lo) / static_cast<double>(local_n);
          (passes == 1 ? loss : loss * share).backward();
          const double pass_loss = loss.item<double>();
          loss_value += pass_loss * share;
          correct += CountCorrect(logits, py);
          pass_logits.push_back(logits.detach());
          AfterBackwardEvent ab;
          ab.step = step;
          ab.epoch = epoch;
          ab.batch_index = step - epoch_first_step(epoch);
          ab.micro_batch = pass;
          ab.micro_batches = passes;
          ab.loss = pass_loss;
          session.AfterBackward(ab);
        }
        double accuracy =
            local_n > 0 ? static_cast<double>(correct) / static_cast<double>(local_n) : 0.0;
        const at::Tensor logits =
            local_n == 0      ? at::empty({0, train.num_classes}, x.options().dtype(at::kFloat))
            : passes == 1     ? pass_logits.front()
                              : at::cat(pass_logits, 0);
        if (m.dist) {
          std::vector<at::Tensor> grads;
          const double share = static_cast<double>(local_n) / static_cast<double>(bs);
          for (at::Tensor& p : m.model->parameters()) {
            if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
            p.mutable_grad().mul_(share);
            grads.push_back(p.grad());
          }
          check(m.dist->AllReduceSum(grads));
          std::vector<double> sums{loss_value * share, accuracy * share};
          check(m.dist->AllReduceSum(sums));
          loss_value = sums[0];
          accuracy = sums[1];
        }
        lrs.clear();
        for (auto& g : m.optimizer->param_groups()) lrs.push_back(g.options().get_lr());
        BeforeOptimizerStepEvent before;
        before.step = step;
        before.epoch = epoch;
        before.batch_index = step - epoch_first_step(epoch);
        before.batch_size = bs;
        before.loss = loss_value;
        // Every rank takes the same decision: the values are rank-averaged.
        if (session.BeforeOptimizerStep(before)) m.optimizer->step();
        metrics_storage.assign({{"train/accuracy", accuracy}});
        m.offset = hi;
        IterationEndEvent e;
        e.step = step;
        e.epoch = epoch;
        e.batch_index = step - epoch_first_step(epoch);
        e.batch_size = bs;
        e.loss = loss_value;
        e.learning_rates = lrs;
        e.duration_seconds = Since(it_start);
        e.metrics = metrics_storage;
        e.inputs = &x;
        e.targets = &y;
        e.outputs = &logits;
        session.EndIteration(e);
        agree_on_stop();
        result.last_loss = loss_value;
        ++result.iterations_run;
        result.last_step = step;
        ++step;
        if (m.pending_batch > 0 && m.pending_at_next_iteration) {
          m.batch = m.pending_batch;
          m.pending_batch = 0;
        }
        if (t.validate_every_n_iterations() > 0 && step % t.validate_every_n_iterations() == 0) {
          session.BeginValidation(ValidationBeginEvent{step - 1, epoch});
          const auto v_start = Clock::now();
          result.final_metrics = m.Validate();
          session.EndValidation(ValidationEndEvent{step - 1, epoch, result.final_metrics, Since(v_start)});
          agree_on_stop();
          validated_at = step;
        }
      }
      if (epoch_done && t.validate_every_n_epochs() > 0 &&
          (epoch + 1) % t.validate_every_n_epochs() == 0 && validated_at != step) {
        session.BeginValidation(ValidationBeginEvent{step - 1, epoch});
        const auto v_start = Clock::now();
        result.final_metrics = m.Validate();
        session.EndValidation(ValidationEndEvent{step - 1, epoch, result.final_metrics, Since(v_start)});
        agree_on_stop();
      }
      if (epoch_done) {
        // The next position is the next epoch's start (a checkpoint saved at
        // this epoch's end resumes there).
        m.offset = n;
      }
      session.EndEpoch(/*complete=*/epoch_done);
      agree_on_stop();
      if (!epoch_done) break;
      ++m.epoch;
      m.offset = 0;
      if (m.pending_batch > 0) {
        m.batch = m.pending_batch;
        m.pending_batch = 0;
      }
    }
  } catch (const std::exception& ex) {
    std::string message = absl::StrCat("training failed at step ", step, ": ", ex.what());
    session.Abort(message);
    absl::Status end = session.End();
    return absl::InternalError(end.ok() ? message : absl::StrCat(message, "; also: ", end.message()));
  }

  absl::Status end = session.End();
  result.seconds = Since(start);
  result.stop_reason = session.stop_reason();
  if (!end.ok()) return end;
  result.reason = session.interrupt_signal() != 0 ? EndReason::kInterrupted
                  : session.ShouldStop()           ? EndReason::kStopRequested
                                                   : EndReason::kCompleted;
  return result;
}

}  // namespace trainbus
