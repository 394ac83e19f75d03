// What the plugins that read the model's gradients add to one iteration (the
// health plugin; nonfinite_guard, on in the default example), on the default
// example's model (the CNN: conv 1->8, conv 8->16, linear 784->6; 5,958
// parameters) with gradients in place, through a Session as the trainer
// drives it:
//
//   BM_HealthPerIteration/0    the loss checks only (gradients_every_n 0)
//   BM_HealthPerIteration/50   and the gradient statistics every 50th iteration (the default)
//   BM_HealthPerIteration/1    and the gradient statistics every iteration
//   BM_NonFiniteGuardPerIteration  nonfinite_guard as configured by default: the loss
//                              and every gradient checked every iteration
//   BM_NoPluginPerIteration    the same Session calls with no plugin: the baseline
//
//   scripts/bench.sh health
#include <memory>
#include <string>

#include <benchmark/benchmark.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/modules/activation.h>
#include <torch/optim/sgd.h>

#include "absl/strings/str_cat.h"
#include "health.h"
#include "nonfinite_guard.h"
#include "trainbus/session.h"
#include "trainbus/testing.h"

namespace {

torch::nn::Sequential ModelWithGradients() {
  torch::manual_seed(0);
  torch::nn::Sequential m(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)),
                          torch::nn::ReLU(), torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)),
                          torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).padding(1)),
                          torch::nn::ReLU(), torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)),
                          torch::nn::Flatten(), torch::nn::Linear(16 * 7 * 7, 6));
  for (auto& p : m->parameters()) p.mutable_grad() = torch::randn_like(p) * 0.01;
  return m;
}

// Session calls of one iteration with the plugin `make(arg)` returns (none
// when `make` is null).
using MakePlugin = absl::StatusOr<std::unique_ptr<trainbus::Plugin>> (*)(int64_t arg);
void Iterations(benchmark::State& state, const char* name, MakePlugin make, int64_t arg) {
  torch::nn::Sequential model = ModelWithGradients();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05));
  trainbus::Session session;
  if (make != nullptr) {
    absl::StatusOr<std::unique_ptr<trainbus::Plugin>> plugin = make(arg);
    if (!plugin.ok()) {
      state.SkipWithError(std::string(plugin.status().message()).c_str());
      return;
    }
    (void)session.AddPlugin(*std::move(plugin), name);
  }
  session.Bind(model, &optimizer);
  trainbus::RunInfo run;
  run.epochs = 1;
  run.batch_size = 64;
  session.Begin(run);
  session.BeginEpoch();
  int64_t i = 0;
  for (auto _ : state) {
    const double loss = 1.0 + 0.01 * static_cast<double>(i++ % 7);  // healthy: nothing to report
    (void)session.BeforeOptimizerStep(loss);
    session.EndIteration(loss, 64);
  }
  state.SetItemsProcessed(state.iterations());
  session.EndEpoch(false);
  (void)session.End();
}

// The plugins as a config makes them: `arg` is the benchmark's argument.
absl::StatusOr<std::unique_ptr<trainbus::Plugin>> Health(int64_t gradients_every_n) {
  return trainbus::testing::CreatePlugin<trainbus::health::HealthPlugin>(
      absl::StrCat(R"({"gradients_every_n": )", gradients_every_n, "}"));
}
absl::StatusOr<std::unique_ptr<trainbus::Plugin>> NonFiniteGuard(int64_t /*unused*/) {
  return trainbus::testing::CreatePlugin<trainbus::nonfinite_guard::NonFiniteGuardPlugin>("{}");
}

void BM_HealthPerIteration(benchmark::State& state) {
  Iterations(state, "health", &Health, state.range(0));
}
BENCHMARK(BM_HealthPerIteration)->Arg(0)->Arg(50)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_NonFiniteGuardPerIteration(benchmark::State& state) {
  Iterations(state, "nonfinite_guard", &NonFiniteGuard, 0);
}
BENCHMARK(BM_NonFiniteGuardPerIteration)->Unit(benchmark::kMicrosecond);

void BM_NoPluginPerIteration(benchmark::State& state) { Iterations(state, "", nullptr, 0); }
BENCHMARK(BM_NoPluginPerIteration)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
