#include "trainbus/interrupt.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace trainbus {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "polled from any thread");

const char* SignalName(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal"; }

void Watch(sigset_t set, InterruptOptions options) {
  int received = 0;
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (++received == 1) {
      g_signal.store(sig, std::memory_order_release);
      std::fprintf(stderr,
                   "\n[trainbus] %s: stopping at the end of this iteration; writers flush, a final "
                   "checkpoint is saved (send it again to exit at once)\n",
                   SignalName(sig));
      continue;
    }
    std::fprintf(stderr, "\n[trainbus] second %s: flushing event files and exiting now\n",
                 SignalName(sig));
    const int code = 128 + sig;
    if (options.on_second_signal) {
      // A flush that hangs (a stuck disk) must not keep the process alive.
      std::thread([code, limit = options.second_signal_flush_seconds] {
        std::this_thread::sleep_for(std::chrono::duration<double>(limit));
        _exit(code);
      }).detach();
      options.on_second_signal();
    }
    _exit(code);
  }
}

}  // namespace

void InstallInterruptWatcher(InterruptOptions options) {
  static std::atomic<bool> installed{false};
  if (installed.exchange(true)) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(Watch, set, std::move(options)).detach();
}

int InterruptSignal() { return g_signal.load(std::memory_order_acquire); }

void ClearInterrupt() { g_signal.store(0, std::memory_order_release); }

void SimulateInterrupt(int signal) { g_signal.store(signal, std::memory_order_release); }

}  // namespace trainbus
