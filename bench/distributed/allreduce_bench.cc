// allreduce_bench CONFIG [ITERATIONS]: the collectives one iteration of a
// 2-rank trainbus run makes, timed between two local processes (127.0.0.1):
// the gradients of CONFIG's model all-reduced as one flat buffer, the loss and
// metric sums, and the stop agreement. Prints milliseconds per iteration.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "trainbus/config.h"
#include "trainbus/data/datasets.h"
#include "trainbus/distributed.h"
#include "trainbus/models/models.h"

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int RankMain(int rank, int port, const std::vector<std::vector<int64_t>>& shapes, int iterations) {
  auto d = trainbus::Distributed::Connect(rank, 2, "127.0.0.1", port, std::chrono::seconds(60));
  if (!d.ok()) {
    std::fprintf(stderr, "%s\n", std::string(d.status().message()).c_str());
    return 1;
  }
  std::vector<at::Tensor> grads;
  int64_t numel = 0;
  for (const auto& s : shapes) {
    grads.push_back(at::randn(s));
    numel += grads.back().numel();
  }
  double grad_ms = 0, sums_ms = 0, stop_ms = 0;
  for (int i = -10; i < iterations; ++i) {  // 10 warm-up rounds
    auto t0 = Clock::now();
    if (!(*d)->AllReduceSum(grads).ok()) return 1;
    auto t1 = Clock::now();
    std::vector<double> sums{1.0, 0.5};
    if (!(*d)->AllReduceSum(sums).ok()) return 1;
    auto t2 = Clock::now();
    if (!(*d)->AnyTrue(false).ok()) return 1;
    auto t3 = Clock::now();
    if (i >= 0) {
      grad_ms += Ms(t0, t1);
      sums_ms += Ms(t1, t2);
      stop_ms += Ms(t2, t3);
    }
  }
  if (rank == 0) {
    std::printf("model: %zu parameter tensors, %lld floats (%.1f KiB)\n", shapes.size(),
                static_cast<long long>(numel), numel * 4 / 1024.0);
    std::printf("per iteration over %d iterations, 2 ranks on 127.0.0.1:\n", iterations);
    std::printf("  gradients all-reduce (one flat buffer): %.3f ms\n", grad_ms / iterations);
    std::printf("  loss + metric sums:                     %.3f ms\n", sums_ms / iterations);
    std::printf("  stop agreement (AnyTrue):               %.3f ms\n", stop_ms / iterations);
    std::printf("  total:                                  %.3f ms\n",
                (grad_ms + sums_ms + stop_ms) / iterations);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: allreduce_bench CONFIG [ITERATIONS]\n");
    return 2;
  }
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 500;
  auto config = trainbus::LoadRunConfig(argv[1]);
  if (!config.ok() || !trainbus::FinalizeRunConfig(&*config, argv[1]).ok()) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 2;
  }
  auto data = trainbus::LoadDataset(config->dataset());
  if (!data.ok()) return 2;
  const at::Tensor& x = data->train.inputs;
  auto model = trainbus::MakeModel(config->model(), {x.size(1), x.size(2), x.size(3)},
                                   data->train.num_classes);
  if (!model.ok()) return 2;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& p : (*model)->parameters()) shapes.push_back(p.sizes().vec());
  const int port = 20000 + getpid() % 20000;
  pid_t child = fork();
  if (child == 0) _exit(RankMain(1, port, shapes, iterations));
  int rc = RankMain(0, port, shapes, iterations);
  int status = 0;
  waitpid(child, &status, 0);
  return rc != 0 ? rc : (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
