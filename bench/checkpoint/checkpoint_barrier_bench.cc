// The cost of the checkpoint flush barrier (Plugin::FlushForCheckpoint).
//
// A Session with an MLP bound (about 100k parameters) takes a checkpoint
// after every `iterations` iterations (each one publishing train/loss, lr and
// train/accuracy). Variants, side by side in one run:
//   files=0  no file-writing plugin: the checkpoint commits as soon as its
//            files are written (what a checkpoint cost before the barrier);
//   files=1  the tensorboard and csv plugins with flush_secs far away, so the
//            barrier has everything since the last checkpoint to write.
// Counters:
//   save_us    SaveCheckpoint() on the calling (training) thread: serialising
//              the model plus asking each plugin to start its flush;
//   commit_ms  from SaveCheckpoint() until `latest` names the checkpoint: the
//              files, the barrier's waits and the rename, on the checkpoint
//              thread (the training thread does not wait for it).
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainbus/config.h"
#include "trainbus/session.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "checkpoint_barrier_bench: %s\n", message.c_str());
  std::exit(1);
}

std::string Latest(const std::string& root) {
  std::ifstream in(root + "/latest");
  std::string name;
  std::getline(in, name);
  return name;
}

void BM_Checkpoint(benchmark::State& state) {
  const bool files = state.range(0) == 1;
  const int64_t iterations = state.range(1);
  char tmpl[] = "/tmp/trainbus_barrier_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
  const std::string dir = tmpl;
  const std::string plugins =
      files ? R"([{"name": "tensorboard", "options": {"flush_secs": 100000, "images": 0,
                   "histograms_every_n": 0, "hparams": false, "layout": false}},
                  {"name": "csv", "options": {"flush_secs": 100000}}])"
            : "[]";
  auto config = trainbus::ParseRunConfig(
      absl::StrCat(R"({"name": "barrier", "log_root": ")", dir, R"(", "plugins": )", plugins, "}"),
      "json", "checkpoint_barrier_bench");
  if (!config.ok()) Die(std::string(config.status().message()));
  auto session = trainbus::Session::Create(*config);
  if (!session.ok()) Die(std::string(session.status().message()));
  torch::manual_seed(1);
  torch::nn::Sequential model(torch::nn::Linear(784, 128), torch::nn::Linear(128, 10));
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  (*session)->Bind(model.ptr().get(), &optimizer);
  trainbus::RunInfo run;
  run.run_name = "barrier";
  run.log_dir = dir + "/barrier";
  (*session)->Begin(run);
  (*session)->BeginEpoch();
  const std::string root = dir + "/checkpoints";
  const trainbus::Metric accuracy[] = {{"train/accuracy", 0.5}};
  double save_seconds = 0, commit_seconds = 0;
  int64_t n = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < iterations; ++i) {
      (*session)->EndIteration(1.0 / (1 + n * iterations + i), 64, accuracy);
    }
    const std::string name = absl::StrFormat("step-%08d", ++n);
    const auto start = Clock::now();
    if (absl::Status s = (*session)->SaveCheckpoint(root, name, "bench"); !s.ok()) {
      Die(std::string(s.message()));
    }
    const auto saved = Clock::now();
    while (Latest(root) != name) std::this_thread::sleep_for(std::chrono::microseconds(50));
    save_seconds += std::chrono::duration<double>(saved - start).count();
    commit_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
  (*session)->EndEpoch();
  if (absl::Status s = (*session)->End(); !s.ok()) Die(std::string(s.message()));
  session->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  state.counters["save_us"] = 1e6 * save_seconds / static_cast<double>(n);
  state.counters["commit_ms"] = 1e3 * commit_seconds / static_cast<double>(n);
}
BENCHMARK(BM_Checkpoint)
    ->ArgNames({"files", "iterations"})
    ->Args({0, 100})
    ->Args({1, 100})
    ->Args({0, 1000})
    ->Args({1, 1000})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);

}  // namespace

BENCHMARK_MAIN();
