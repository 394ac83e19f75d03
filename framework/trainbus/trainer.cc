#include "trainbus/trainer.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "trainbus/data/datasets.h"
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

// What a checkpoint must agree with to resume this run exactly.
std::string PlanFingerprint(const IterationPlan& p, uint64_t seed) {
  return absl::StrCat("samples=", p.samples, " batch_size=", p.batch_size,
                      " drop_last=", p.drop_last ? 1 : 0, " seed=", seed);
}

}  // namespace

struct Trainer::Impl {
  config::RunConfig config;
  DatasetSplits data;
  torch::nn::Sequential model{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<Session> session;
  IterationPlan plan;
  RunInfo run;
  int64_t start_batch = 0;  // first batch of the first epoch (resume mid-epoch)

  Metrics Validate();
};

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;
const IterationPlan& Trainer::plan() const { return impl_->plan; }
int64_t Trainer::start_step() const { return impl_->run.start_step; }
Session& Trainer::session() { return *impl_->session; }

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const config::RunConfig& config) {
  auto session = Session::Create(config);
  if (!session.ok()) return session.status();
  config::RunConfig without_plugins = config;
  without_plugins.clear_plugins();  // already loaded into the session
  return Create(without_plugins, std::move(session).value());
}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const config::RunConfig& config,
                                                         std::unique_ptr<Session> session) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  const auto& t = config.trainer();
  if (t.has_num_threads()) at::set_num_threads(t.num_threads());

  auto data = LoadDataset(config.dataset());
  if (!data.ok()) return data.status();
  impl->data = std::move(data).value();

  auto plan = PlanIterations(impl->data.train.size(), t.batch_size(), t.epochs(), t.drop_last(),
                             t.has_max_iterations() ? std::optional<int64_t>(t.max_iterations())
                                                    : std::nullopt);
  if (!plan.ok()) return plan.status();
  impl->plan = *plan;

  torch::manual_seed(t.seed());  // weight initialisation and dropout
  const at::Tensor& x = impl->data.train.inputs;
  auto model = MakeModel(config.model(), InputShape{x.size(1), x.size(2), x.size(3)},
                         impl->data.train.num_classes);
  if (!model.ok()) return model.status();
  impl->model = *model;
  auto optimizer = MakeOptimizer(config.optimizer(), impl->model->parameters());
  if (!optimizer.ok()) return optimizer.status();
  impl->optimizer = std::move(optimizer).value();

  if (session == nullptr) session = std::make_unique<Session>();
  impl->session = std::move(session);
  const std::string run_dir = (std::filesystem::path(config.log_root()) / config.name()).string();
  if (impl->session->log_dir().empty()) impl->session->set_log_dir(run_dir);
  std::vector<std::string> dirs(config.plugin_paths().begin(), config.plugin_paths().end());
  for (const auto& p : config.plugins()) {
    if (p.has_enabled() && !p.enabled()) continue;
    if (absl::Status s = impl->session->LoadPlugin(p, dirs); !s.ok()) return s;
  }
  impl->session->Bind(impl->model.ptr().get(), impl->optimizer.get());

  RunInfo& run = impl->run;
  run.run_name = config.name();
  run.log_dir = run_dir;
  run.train_samples = impl->plan.samples;
  run.batch_size = impl->plan.batch_size;
  run.epochs = impl->plan.epochs;
  run.iterations_per_epoch = impl->plan.iterations_per_epoch;
  run.total_iterations = impl->plan.total_iterations;
  run.seed = t.seed();
  const auto& o = config.optimizer();
  run.hparams = {{"model", config.model().type()},
                 {"dataset", config.dataset().type()},
                 {"optimizer", o.type()},
                 {"lr", absl::StrCat(o.lr())},
                 {"batch_size", absl::StrCat(t.batch_size())},
                 {"epochs", absl::StrCat(t.epochs())},
                 {"weight_decay", absl::StrCat(o.weight_decay())},
                 {"seed", absl::StrCat(t.seed())}};
  if (o.type() == "sgd") run.hparams.push_back({"momentum", absl::StrCat(o.momentum())});
  impl->session->set_host_state(PlanFingerprint(impl->plan, t.seed()));
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

absl::Status Trainer::Resume(const std::string& path) {
  Impl& m = *impl_;
  auto state = m.session->Resume(path);
  if (!state.ok()) return state.status();
  const std::string expected = PlanFingerprint(m.plan, m.config.trainer().seed());
  if (state->host_state != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", path, " was saved by a run with ", state->host_state,
        "; this run has ", expected, ". Resume with the same dataset, batch size and seed."));
  }
  if (state->next_step > m.plan.total_iterations) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", path, " is at step ", state->next_step, ", past this run's ",
        m.plan.total_iterations, " iterations; raise trainer.epochs or trainer.max_iterations"));
  }
  m.run.start_step = state->next_step;
  m.run.start_epoch = state->next_step / m.plan.iterations_per_epoch;
  m.start_batch = state->next_step % m.plan.iterations_per_epoch;
  return absl::OkStatus();
}

Metrics Trainer::Impl::Validate() {
  const Dataset& val = data.val;
  if (val.size() == 0) return {};
  torch::NoGradGuard no_grad;
  model->eval();
  double loss_sum = 0.0;
  int64_t correct = 0;
  constexpr int64_t kChunk = 1024;
  for (int64_t start = 0; start < val.size(); start += kChunk) {
    int64_t end = std::min(val.size(), start + kChunk);
    at::Tensor logits = model->forward(val.inputs.slice(0, start, end));
    at::Tensor y = val.targets.slice(0, start, end);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  model->train();
  return {{"val/loss", loss_sum / val.size()},
          {"val/accuracy", static_cast<double>(correct) / val.size()}};
}

absl::StatusOr<TrainResult> Trainer::Run() {
  Impl& m = *impl_;
  Session& session = *m.session;
  const auto& t = m.config.trainer();
  const Dataset& train = m.data.train;
  const int64_t n = train.size();
  const int64_t batch = m.plan.batch_size;
  TrainResult result;
  result.losses.reserve(static_cast<size_t>(m.plan.total_iterations));
  const auto start = Clock::now();

  session.Begin(m.run);
  int64_t step = m.run.start_step;
  Metrics metrics_storage;
  std::vector<double> lrs;
  try {
    for (int64_t epoch = m.run.start_epoch; epoch < m.plan.epochs && !session.ShouldStop();
         ++epoch) {
      // Batches [first, end) of this epoch; a resumed run may start mid-epoch.
      const int64_t first = epoch == m.run.start_epoch ? m.start_batch : 0;
      const int64_t end = std::min(m.plan.iterations_per_epoch,
                                   m.plan.total_iterations - epoch * m.plan.iterations_per_epoch);
      if (end - first <= 0) break;
      session.BeginEpoch(EpochBeginEvent{epoch, step, end - first});
      const at::Tensor order = EpochPermutation(n, t.seed(), epoch);
      int64_t validated_at = -1;
      for (int64_t b = first; b < end; ++b) {
        const int64_t lo = b * batch, hi = std::min(n, lo + batch);
        const at::Tensor idx = order.slice(0, lo, hi);
        const at::Tensor x = train.inputs.index_select(0, idx);
        const at::Tensor y = train.targets.index_select(0, idx);
        const int64_t bs = hi - lo;
        session.BeginIteration(bs);
        const auto it_start = Clock::now();
        m.optimizer->zero_grad();
        at::Tensor logits = m.model->forward(x);
        at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
        loss.backward();
        lrs.clear();
        for (auto& g : m.optimizer->param_groups()) lrs.push_back(g.options().get_lr());
        m.optimizer->step();
        const double loss_value = loss.item<double>();
        metrics_storage.assign(
            {{"train/accuracy", logits.argmax(1).eq(y).to(at::kDouble).mean().item<double>()}});
        IterationEndEvent e;
        e.step = step;
        e.epoch = epoch;
        e.batch_index = b;
        e.batch_size = bs;
        e.loss = loss_value;
        e.learning_rates = lrs;
        e.duration_seconds = Since(it_start);
        e.metrics = metrics_storage;
        e.inputs = &x;
        e.targets = &y;
        e.outputs = &logits;
        session.EndIteration(e);
        result.losses.push_back(loss_value);
        ++result.iterations_run;
        result.last_step = step;
        ++step;
        if (t.validate_every_n_iterations() > 0 && step % t.validate_every_n_iterations() == 0) {
          const auto v_start = Clock::now();
          result.final_metrics = m.Validate();
          session.EndValidation(ValidationEndEvent{step - 1, epoch, result.final_metrics, Since(v_start)});
          validated_at = step;
        }
        if (session.ShouldStop()) break;
      }
      const bool epoch_complete = !session.ShouldStop();
      if (epoch_complete && t.validate_every_n_epochs() > 0 &&
          (epoch + 1) % t.validate_every_n_epochs() == 0 && validated_at != step) {
        const auto v_start = Clock::now();
        result.final_metrics = m.Validate();
        session.EndValidation(ValidationEndEvent{step - 1, epoch, result.final_metrics, Since(v_start)});
      }
      session.EndEpoch();
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
  result.reason = session.ShouldStop() ? EndReason::kStopRequested : EndReason::kCompleted;
  return result;
}

}  // namespace trainbus
