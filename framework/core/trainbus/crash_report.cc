#include "trainbus/crash_report.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace trainbus {

std::atomic<const char*> CrashContext::plugin_{nullptr};
std::atomic<const char*> CrashContext::hook_{nullptr};
std::atomic<int64_t> CrashContext::step_{0};
std::atomic<pthread_t> CrashContext::thread_{};

namespace {

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
  }
  return "signal";
}

// Async-signal-safe output: fixed buffer, no allocation, write(2).
struct Line {
  char buf[512];
  size_t n = 0;
  void Add(const char* s) {
    while (s != nullptr && *s != '\0' && n < sizeof(buf) - 1) buf[n++] = *s++;
  }
  void Add(int64_t v) {
    char digits[24];
    size_t k = 0;
    const bool negative = v < 0;
    uint64_t u = negative ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    do {
      digits[k++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u != 0 && k < sizeof(digits));
    if (negative) Add("-");
    while (k > 0 && n < sizeof(buf) - 1) buf[n++] = digits[--k];
  }
};

void OnFatalSignal(int sig) {
  Line line;
  line.Add("\n[trainbus] fatal ");
  line.Add(SignalName(sig));
  // This thread's hook, else the one the process runs (a hook's work on a
  // thread of its own, e.g. LibTorch's workers, crashed).
  CrashContext::Snapshot c = CrashContext::ThisThread();
  bool elsewhere = false;
  if (c.plugin == nullptr) {
    c = CrashContext::Process();
    elsewhere = !pthread_equal(c.thread, pthread_self());
  }
  if (c.plugin != nullptr) {
    line.Add(" in plugin '");
    line.Add(c.plugin);
    line.Add("', hook ");
    line.Add(c.hook);
    line.Add(", step ");
    line.Add(c.step);
    if (elsewhere) {
      // Not necessarily the plugin's: any thread without a hook of its own.
      line.Add(" (on another thread, while that hook ran); what was flushed before stays "
               "readable. If the plugin started that thread's work, report it to its author or "
               "disable it\n");
    } else {
      line.Add("; what was flushed before stays readable. Report it to the plugin's author or "
               "disable the plugin\n");
    }
  } else {
    line.Add(" outside any plugin hook\n");
  }
  line.buf[line.n - 1] = '\n';  // a name cut short by the buffer still ends the line
  ssize_t ignored = ::write(STDERR_FILENO, line.buf, line.n);
  (void)ignored;
  // SA_RESETHAND restored the default action: die of the same signal.
  ::raise(sig);
}

}  // namespace

void InstallCrashReporter() {
  static std::atomic<bool> installed{false};
  if (installed.exchange(true)) return;
  // An alternate stack, so that a stack overflow can still be reported.
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof(alt_stack);
  sigaltstack(&ss, nullptr);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnFatalSignal;
  sa.sa_flags = SA_RESETHAND | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int sig : kFatalSignals) sigaction(sig, &sa, nullptr);
}

}  // namespace trainbus
