// What a program that only logs numbers pays for the writer: start-up time,
// CPU and peak memory of examples/standalone_writer/log_numbers (1,000
// scalars, a histogram, an image and a text, then close), linked with the
// LibTorch-free writer (trainbus::tensorboard_core), beside the same program
// logging one tensor through the tensor layer (trainbus::tensorboard, which
// loads LibTorch). Each iteration starts the program afresh (posix_spawn) and
// waits for it; the time is wall time from spawn to exit, the memory the
// child's peak resident set (wait4).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <benchmark/benchmark.h>

extern char** environ;

namespace {

void StartLogAndExit(benchmark::State& state, const char* program) {
  char tmpl[] = "/tmp/trainbus_standalone_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  long max_rss_kb = 0;
  double cpu_seconds = 0;
  int64_t runs = 0;
  for (auto _ : state) {
    const std::string log_dir = dir + "/run" + std::to_string(runs);
    std::string arg0 = program, arg1 = log_dir, arg2 = "1000";
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    const auto start = std::chrono::steady_clock::now();
    pid_t pid = 0;
    if (posix_spawn(&pid, program, &actions, nullptr, argv, environ) != 0) {
      state.SkipWithError("posix_spawn failed");
      break;
    }
    int status = 0;
    rusage usage{};
    wait4(pid, &status, 0, &usage);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    posix_spawn_file_actions_destroy(&actions);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("the program failed");
      break;
    }
    state.SetIterationTime(seconds);
    max_rss_kb = std::max(max_rss_kb, usage.ru_maxrss);
    cpu_seconds += usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 + usage.ru_stime.tv_sec +
                   usage.ru_stime.tv_usec * 1e-6;
    ++runs;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  state.counters["peak_rss_MB"] = static_cast<double>(max_rss_kb) / 1024.0;
  state.counters["cpu_ms"] = runs > 0 ? 1000.0 * cpu_seconds / static_cast<double>(runs) : 0;
}

BENCHMARK_CAPTURE(StartLogAndExit, writer_core, LOG_NUMBERS)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20);
BENCHMARK_CAPTURE(StartLogAndExit, writer_with_tensor_layer, LOG_NUMBERS_WITH_TORCH)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
