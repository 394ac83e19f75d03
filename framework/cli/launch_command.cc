// `trainbus train --nproc N`: runs this program N times (without --nproc)
// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, like torchrun.
//
// The launcher owns its ranks for their whole life:
//   - a rank that fails stops the others, and the launcher fails naming it;
//   - SIGINT / SIGTERM to the launcher go to every rank once (each then stops
//     gracefully at the end of its iteration); the ranks have a process group
//     of their own, so a Ctrl-C in the terminal reaches them only this way,
//     never twice (a second signal means "exit now" to a rank);
//   - a rank dies with the launcher (parent-death signal SIGTERM), also when
//     the launcher is SIGKILLed;
//   - once the run is stopping, a rank that has not exited within
//     kGraceSeconds (a stopped or hung one) gets SIGKILL: the launcher never
//     waits forever.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "trainbus/distributed.h"

namespace trainbus::cli {
namespace {

constexpr int kMaxRanks = 256;
constexpr double kGraceSeconds = 10.0;

// Shared with the signal handler: only plain stores and kill(2) there.
pid_t g_pids[kMaxRanks];
volatile sig_atomic_t g_nranks = 0;
volatile sig_atomic_t g_signal = 0;

void ForwardSignal(int sig) {
  if (g_signal == 0) g_signal = sig;
  for (int r = 0; r < g_nranks; ++r) {
    if (g_pids[r] > 0) kill(g_pids[r], sig);
  }
}

void KillAll(int sig) {
  for (int r = 0; r < g_nranks; ++r) {
    if (g_pids[r] > 0) kill(g_pids[r], sig);
  }
}

}  // namespace

int LaunchLocalRanks(int nproc, const std::vector<std::string>& child_args) {
  if (nproc > kMaxRanks) {
    std::cerr << "trainbus train: --nproc " << nproc << " is more than " << kMaxRanks
              << " local processes; use at most " << kMaxRanks
              << " (for more, start one trainbus per rank with RANK/WORLD_SIZE on each host)\n";
    return 2;
  }
  if (std::getenv("WORLD_SIZE") != nullptr) {
    std::cerr << "trainbus train: --nproc cannot be combined with WORLD_SIZE in the environment\n";
    return 2;
  }
  const int port = FreeLoopbackPort();
  if (port == 0) {
    std::cerr << "trainbus train: no free TCP port on 127.0.0.1 for the ranks to meet\n";
    return 1;
  }
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = ForwardSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const pid_t launcher = getpid();
  std::cout << std::flush;
  for (int r = 0; r < nproc; ++r) {
    g_pids[r] = -1;
    g_nranks = r + 1;
    const pid_t pid = fork();
    if (pid < 0) {
      std::cerr << "trainbus train: fork failed: " << std::strerror(errno) << "\n";
      KillAll(SIGKILL);
      while (wait(nullptr) > 0 || errno == EINTR) {
      }
      return 1;
    }
    if (pid == 0) {
      // Only async-signal-safe calls until exec.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(1);  // the launcher died before prctl
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      for (const std::string& a : child_args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    g_pids[r] = pid;
    if (g_signal != 0) kill(pid, g_signal);  // a signal came while this one was forking
  }

  using Clock = std::chrono::steady_clock;
  int result = 0;
  int running = nproc;
  bool stopping = false;
  Clock::time_point kill_at;
  while (running > 0) {
    if (g_signal != 0 && !stopping) {
      stopping = true;
      kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(kGraceSeconds));
    }
    if (stopping && Clock::now() >= kill_at) {
      for (int r = 0; r < nproc; ++r) {
        if (g_pids[r] > 0) {
          std::cerr << "trainbus train: rank " << r << " (pid " << g_pids[r]
                    << ") did not exit within " << kGraceSeconds << " s; killing it\n";
          kill(g_pids[r], SIGKILL);
          kill(g_pids[r], SIGCONT);
        }
      }
      kill_at = Clock::time_point::max();
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0 || (pid < 0 && errno == EINTR)) {
      const timespec nap{0, 50 * 1000 * 1000};
      nanosleep(&nap, nullptr);
      continue;
    }
    if (pid < 0) break;
    int r = 0;
    while (r < nproc && g_pids[r] != pid) ++r;
    if (r >= nproc) continue;
    g_pids[r] = -1;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok || result != 0 || g_signal != 0) continue;
    result = WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
    std::cerr << "trainbus train: rank " << r << " of " << nproc << " (pid " << pid << ") "
              << (WIFSIGNALED(status) ? absl::StrCat("was killed by signal ", WTERMSIG(status))
                                      : absl::StrCat("exited with status ", WEXITSTATUS(status)))
              << "; stopping the other ranks\n";
    KillAll(SIGTERM);
    stopping = true;
    kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(kGraceSeconds));
  }
  // Stopped by a signal: exit as the ranks did (130 / 143), after they wrote.
  if (g_signal != 0) return 128 + g_signal;
  return result;
}

}  // namespace trainbus::cli
