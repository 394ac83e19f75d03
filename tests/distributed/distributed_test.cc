// Distributed data parallel (trainbus/distributed.h and the trainer's use of it).
//
// - The collectives between two ranks in one process (two threads).
// - `trainbus train --nproc 2` with batch B per rank against one process with
//   batch 2B and the same seed: the same losses, learning rates and
//   validation losses (scalars.csv), one event file.
// - Two ranks started through RANK/WORLD_SIZE/MASTER_* with their own
//   log_root: only rank 0's folder has files; early stopping stops both at
//   the same step.
// - SIGKILL of rank 1 while training: rank 0 fails with a clear message,
//   well within the configured timeout.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "trainbus/distributed.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::ReadFile;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Starts `trainbus train --config config [--set ...]` as rank `rank` of
// `world`; stdout and stderr go to `out_path`.
pid_t StartRank(int rank, int world, int port, const std::string& config,
                const std::vector<std::string>& sets, const std::string& out_path) {
  pid_t pid = fork();
  if (pid == 0) {
    setenv("RANK", std::to_string(rank).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    FILE* f = std::freopen(out_path.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), STDERR_FILENO);
    std::vector<std::string> args = {TRAINBUS_BIN, "train", "--config", config};
    for (const std::string& s : sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(TRAINBUS_BIN, argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid` at most `seconds`; returns its exit code, -2 on timeout
// (the process is then killed), -1 when killed by a signal.
int WaitFor(pid_t pid, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -2;
}

// tag -> step -> value, from a scalars.csv (wall_time,step,tag,value).
std::map<std::string, std::map<int64_t, double>> ReadScalars(const std::string& path) {
  std::map<std::string, std::map<int64_t, double>> out;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != 4) continue;
    out[f[2]][std::stoll(f[1])] = std::stod(f[3]);
  }
  return out;
}

int CountEventFiles(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.path().filename().string().find("tfevents") != std::string::npos) ++n;
  }
  return n;
}

// 240 samples; batch B per rank.
std::string Config(const TempDir& dir, const std::string& name, int batch, int epochs,
                   const std::string& extra_plugins = "", double timeout_s = 20) {
  return dir.Write(name + ".json", absl::StrCat(R"({
    "name": ")", name, R"(", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": )", epochs, R"(, "batch_size": )", batch, R"(, "num_threads": 1,
                "seed": 5, "distributed_timeout_seconds": )", timeout_s, R"(},
    "model": {"type": "mlp", "hidden": [32]},
    "dataset": {"train_samples": 240, "val_samples": 60},
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
    "plugins": [
      {"name": "csv", "options": {"flush_secs": 0.2}},
      {"name": "tensorboard"},
      {"name": "schedulers", "options": {"interval": "iteration",
         "schedule": {"type": "LinearLR", "start_factor": 0.1, "total_iters": 10}}})",
                                                extra_plugins, "]}"));
}

TEST(DistributedTest, CollectivesBetweenTwoRanks) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  std::vector<std::string> errors(2);
  std::vector<std::vector<double>> reduced(2), broadcast(2), tensor_sums(2);
  std::vector<int> any(2, -1);
  auto rank_main = [&](int rank) {
    auto d = Distributed::Connect(rank, 2, "127.0.0.1", port, std::chrono::seconds(20));
    if (!d.ok()) {
      errors[rank] = std::string(d.status().message());
      return;
    }
    Distributed& dist = **d;
    std::vector<at::Tensor> params = {at::full({2, 2}, rank + 1.0), at::full({3}, 10.0 * (rank + 1))};
    if (!dist.Broadcast(params).ok()) errors[rank] = "broadcast";
    for (const auto& p : params) {
      for (int64_t i = 0; i < p.numel(); ++i) broadcast[rank].push_back(p.reshape({-1})[i].item<double>());
    }
    std::vector<at::Tensor> grads = {at::full({2}, rank + 1.0), at::full({1}, 3.0 * rank)};
    if (!dist.AllReduceSum(grads).ok()) errors[rank] = "allreduce";
    for (const auto& g : grads) {
      for (int64_t i = 0; i < g.numel(); ++i) tensor_sums[rank].push_back(g[i].item<double>());
    }
    std::vector<double> v = {0.25 * (rank + 1), 1.0};
    if (!dist.AllReduceSum(v).ok()) errors[rank] = "allreduce doubles";
    reduced[rank] = v;
    auto a = dist.AnyTrue(rank == 1);
    any[rank] = a.ok() ? (*a ? 1 : 0) : -1;
  };
  std::thread t0(rank_main, 0), t1(rank_main, 1);
  t0.join();
  t1.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(broadcast[r], (std::vector<double>{1, 1, 1, 1, 10, 10, 10})) << "rank " << r;
    EXPECT_EQ(tensor_sums[r], (std::vector<double>{3, 3, 3})) << "rank " << r;
    EXPECT_EQ(reduced[r], (std::vector<double>{0.75, 2.0})) << "rank " << r;
    EXPECT_EQ(any[r], 1) << "rank " << r;
  }
}

TEST(DistributedTest, EnvironmentErrorsAreClear) {
  setenv("WORLD_SIZE", "2", 1);
  unsetenv("RANK");
  auto d = Distributed::FromEnv(std::chrono::seconds(1));
  EXPECT_FALSE(d.ok());
  EXPECT_NE(std::string(d.status().message()).find("RANK"), std::string::npos) << d.status();
  setenv("WORLD_SIZE", "1", 1);
  auto single = Distributed::FromEnv(std::chrono::seconds(1));
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(*single, nullptr);
  unsetenv("WORLD_SIZE");
}

TEST(DistributedTest, TwoRanksMatchOneProcessWithTheDoubledBatch) {
  TempDir dir;
  // 240 samples: 2 x 20 per iteration -> 6 iterations per epoch; 2 epochs.
  CommandResult two = RunTrainbus(absl::StrCat("train --nproc 2 --config ", Config(dir, "two", 20, 2)));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  CommandResult one = RunTrainbus(absl::StrCat("train --config ", Config(dir, "one", 40, 2)));
  ASSERT_EQ(one.exit_code, 0) << one.output;

  auto a = ReadScalars(dir.path() + "/runs/two/scalars.csv");
  auto b = ReadScalars(dir.path() + "/runs/one/scalars.csv");
  for (const char* tag : {"train/loss", "lr/group0", "val/loss", "train/accuracy"}) {
    ASSERT_EQ(a[tag].size(), b[tag].size()) << tag << "\n" << two.output;
    ASSERT_FALSE(a[tag].empty()) << tag;
    for (const auto& [step, value] : b[tag]) {
      ASSERT_TRUE(a[tag].count(step)) << tag << " step " << step;
      EXPECT_NEAR(a[tag][step], value, 1e-5 * std::max(1.0, std::abs(value)))
          << tag << " at step " << step;
    }
  }
  EXPECT_EQ(a["train/loss"].size(), 12u);
  // One writer: the run folder has exactly one event file.
  EXPECT_EQ(CountEventFiles(dir.path() + "/runs/two"), 1) << two.output;
  // Only rank 0 prints the run's summary.
  EXPECT_NE(two.output.find("finished: 12 iterations"), std::string::npos) << two.output;
}

// 241 samples, global batch 40: the last batch has 1 sample, so rank 0's
// chunk is empty; the chunk-size weighting still gives one process's values.
// (--set reaches the ranks through --nproc.) Each rank gathers its next chunk
// on its prefetch thread, set on: unset, it is on only where each rank's
// threads and its prefetch thread fit on the process's CPUs (its affinity).
TEST(DistributedTest, AnUnevenLastBatchWithAnEmptyChunkStillMatches) {
  TempDir dir;
  const std::string samples =
      "--set dataset.train_samples=241 --set trainer.prefetch_batches=true";
  CommandResult two = RunTrainbus(
      absl::StrCat("train --nproc 2 --config ", Config(dir, "two", 20, 2), " ", samples));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  CommandResult one =
      RunTrainbus(absl::StrCat("train --config ", Config(dir, "one", 40, 2), " ", samples));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto a = ReadScalars(dir.path() + "/runs/two/scalars.csv");
  auto b = ReadScalars(dir.path() + "/runs/one/scalars.csv");
  ASSERT_EQ(b["train/loss"].size(), 14u);
  for (const char* tag : {"train/loss", "val/loss"}) {
    ASSERT_EQ(a[tag].size(), b[tag].size()) << tag << "\n" << two.output;
    for (const auto& [step, value] : b[tag]) {
      EXPECT_NEAR(a[tag][step], value, 1e-5 * std::max(1.0, std::abs(value)))
          << tag << " at step " << step;
    }
  }
}

TEST(DistributedTest, OnlyRankZeroWritesAndEarlyStoppingStopsBothRanksAtTheSameStep) {
  TempDir dir;
  // min_delta 100: never an improvement after the first check -> stops at
  // the end of epoch 2 of 20.
  const std::string config = Config(dir, "es", 20, 20, R"(,
      {"name": "early_stopping", "options": {"monitor": "val/loss", "patience": 1,
                                              "min_delta": 100}})");
  const int port = FreeLoopbackPort();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pids.push_back(StartRank(r, 2, port, config, {absl::StrCat("log_root=", dir.path(), "/rank", r)},
                             absl::StrCat(dir.path(), "/out", r, ".txt")));
  }
  for (int r = 0; r < 2; ++r) EXPECT_EQ(WaitFor(pids[r], 120), 0) << ReadFile(absl::StrCat(dir.path(), "/out", r, ".txt"));
  const std::string out0 = ReadFile(dir.path() + "/out0.txt");
  const std::string out1 = ReadFile(dir.path() + "/out1.txt");
  EXPECT_GT(CountEventFiles(dir.path() + "/rank0"), 0) << out0;
  EXPECT_EQ(CountEventFiles(dir.path() + "/rank1"), 0) << out1;
  EXPECT_FALSE(fs::exists(dir.path() + "/rank1/es/scalars.csv"));
  EXPECT_TRUE(fs::exists(dir.path() + "/rank0/es/scalars.csv"));
  // Both stopped early at the same iteration.
  auto iterations = [](const std::string& out, const std::string& prefix) -> int {
    size_t at = out.find(prefix);
    if (at == std::string::npos) return -1;
    return std::atoi(out.c_str() + at + prefix.size());
  };
  const int it0 = iterations(out0, "finished: ");
  const int it1 = iterations(out1, "rank 1: finished: ");
  EXPECT_GT(it0, 0) << out0;
  EXPECT_LT(it0, 20 * 6) << out0;
  EXPECT_EQ(it0, it1) << out0 << "\n" << out1;
  EXPECT_NE(out1.find("(stopped)"), std::string::npos) << out1;
}

TEST(DistributedTest, AKilledRankEndsTheOtherWithAnErrorWithinTheTimeout) {
  TempDir dir;
  constexpr double kTimeout = 20;
  // Long enough that the run is still going when rank 1 is killed.
  const std::string config = Config(dir, "kill", 20, 100000, "", kTimeout);
  const int port = FreeLoopbackPort();
  const std::string out0 = dir.path() + "/out0.txt", out1 = dir.path() + "/out1.txt";
  pid_t r0 = StartRank(0, 2, port, config, {}, out0);
  pid_t r1 = StartRank(1, 2, port, config, {}, out1);
  // Rank 1 prints "rank 1: training" once both ranks are connected.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (ReadFile(out1).find("training") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_NE(ReadFile(out1).find("training"), std::string::npos) << ReadFile(out1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto killed_at = Clock::now();
  kill(r1, SIGKILL);
  waitpid(r1, nullptr, 0);
  const int code = WaitFor(r0, kTimeout + 10);
  const double seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const std::string output = ReadFile(out0);
  ASSERT_NE(code, -2) << "rank 0 still running " << kTimeout + 10 << " s after rank 1 died\n" << output;
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(output.find("rank 0 of 2"), std::string::npos) << output;
  EXPECT_NE(output.find("another rank has probably died"), std::string::npos) << output;
  std::printf("rank 0 failed %.2f s after rank 1 was killed\n", seconds);
}

TEST(DistributedTest, LauncherReportsAFailingRank) {
  TempDir dir;
  // A missing config makes every rank fail at once.
  CommandResult r = RunTrainbus(absl::StrCat("train --nproc 2 --config ", dir.path(), "/missing.json"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank "), std::string::npos) << r.output;
}

// ------------------------------------------------ the --nproc launcher --

// Starts `trainbus train --nproc 2 --config config`; output to `out_path`.
pid_t StartLauncher(const std::string& config, const std::string& out_path) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(out_path.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), STDERR_FILENO);
    execl(TRAINBUS_BIN, TRAINBUS_BIN, "train", "--nproc", "2", "--config", config.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The pids whose parent is `parent` (from /proc).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = ReadFile(e.path().string() + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    if (f.size() > 1 && std::stoi(f[1]) == parent) out.push_back(std::stoi(name));
  }
  return out;
}

// Waits until both ranks of the launcher run (rank 1 says "training").
std::vector<pid_t> WaitForRanks(pid_t launcher, const std::string& out) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (ReadFile(out).find("rank 1: training") == std::string::npos && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return ChildrenOf(launcher);
}

// True once `pid` is gone; reaps it if it became our child (subreaper).
bool GoneWithin(pid_t pid, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    waitpid(pid, nullptr, WNOHANG);
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST(LauncherTest, SigtermToTheLauncherStopsEveryRankGracefully) {
  TempDir dir;
  const std::string config = Config(dir, "term", 20, 100000, "", 20);
  const std::string out = dir.path() + "/out.txt";
  const pid_t launcher = StartLauncher(config, out);
  std::vector<pid_t> ranks = WaitForRanks(launcher, out);
  ASSERT_EQ(ranks.size(), 2u) << ReadFile(out);
  ASSERT_EQ(kill(launcher, SIGTERM), 0);
  EXPECT_EQ(WaitFor(launcher, 60), 128 + SIGTERM) << ReadFile(out);
  for (pid_t r : ranks) EXPECT_TRUE(GoneWithin(r, 5)) << "rank pid " << r << " outlived the launcher";
  EXPECT_NE(ReadFile(out).find("interrupted by SIGTERM"), std::string::npos) << ReadFile(out);
}

// A signal that reached one rank only (the launcher's forwarding reaches the
// ranks one after another) ends every rank as interrupted: rank 0, which saw
// no signal of its own, says so instead of blaming another rank for a stop.
TEST(LauncherTest, ASignalToOneRankEndsEveryRankAsInterrupted) {
  TempDir dir;
  const std::string config = Config(dir, "one_signal", 20, 100000, "", 20);
  const std::string out = dir.path() + "/out.txt";
  const pid_t launcher = StartLauncher(config, out);
  std::vector<pid_t> ranks = WaitForRanks(launcher, out);
  ASSERT_EQ(ranks.size(), 2u) << ReadFile(out);
  std::sort(ranks.begin(), ranks.end());  // rank 1 was started second
  ASSERT_EQ(kill(ranks[1], SIGTERM), 0);
  WaitFor(launcher, 60);
  for (pid_t r : ranks) EXPECT_TRUE(GoneWithin(r, 5)) << "rank pid " << r << " outlived the launcher";
  const std::string text = ReadFile(out);
  EXPECT_NE(text.find("rank 1: finished"), std::string::npos) << text;
  EXPECT_NE(text.find("interrupted: trainbus: interrupted by SIGTERM (on another rank)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("another rank stopped the run"), std::string::npos) << text;
}

TEST(LauncherTest, RanksDieWithAKilledLauncher) {
  // Orphaned ranks become our children, so that they can be reaped here.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  TempDir dir;
  const std::string config = Config(dir, "orphan", 20, 100000, "", 20);
  const std::string out = dir.path() + "/out.txt";
  const pid_t launcher = StartLauncher(config, out);
  std::vector<pid_t> ranks = WaitForRanks(launcher, out);
  ASSERT_EQ(ranks.size(), 2u) << ReadFile(out);
  ASSERT_EQ(kill(launcher, SIGKILL), 0);
  waitpid(launcher, nullptr, 0);
  for (pid_t r : ranks) EXPECT_TRUE(GoneWithin(r, 60)) << "rank pid " << r << " outlived the launcher";
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(LauncherTest, AStoppedRankIsKilledAndTheLauncherFails) {
  TempDir dir;
  const std::string config = Config(dir, "stopped", 20, 100000, "", 3);
  const std::string out = dir.path() + "/out.txt";
  const pid_t launcher = StartLauncher(config, out);
  std::vector<pid_t> ranks = WaitForRanks(launcher, out);
  ASSERT_EQ(ranks.size(), 2u) << ReadFile(out);
  // Whichever is rank 1 (not the one printing progress): stop one rank.
  ASSERT_EQ(kill(ranks[1], SIGSTOP), 0);
  const int code = WaitFor(launcher, 60);
  const std::string output = ReadFile(out);
  EXPECT_NE(code, -2) << "the launcher still waits 60 s after a rank was stopped\n" << output;
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(output.find("did not exit within 10 s; killing it"), std::string::npos) << output;
  for (pid_t r : ranks) EXPECT_TRUE(GoneWithin(r, 5));
}

TEST(LauncherTest, TooManyRanksIsAClearError) {
  CommandResult r = RunTrainbus("train --nproc 1000000 --config nothing.json");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--nproc 1000000 is more than 256 local processes"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace trainbus
