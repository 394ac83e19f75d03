// trainbus/crash_report.h — a plugin that crashes the process is named.
//
// A segfault or abort inside a plugin takes the whole process down; without
// a word the user cannot tell which of a dozen plugins did it. With the
// reporter installed, a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGABRT) prints one line before the process dies of it as before (same
// signal, same exit status, a core dump if enabled):
//
//   [trainbus] fatal SIGSEGV in plugin 'my_plugin', hook OnIterationEnd, step 41
//
// or "outside any plugin hook" when no hook was running. What the writers
// had flushed before stays readable; a checkpoint is never half-committed.
//
// The bus marks the running plugin and hook (CrashContext, two relaxed
// atomic stores around each call); the handler only reads them and calls
// write(2), both async-signal-safe. It runs on an alternate signal stack, so
// a stack overflow is reported too.
#ifndef TRAINBUS_CRASH_REPORT_H_
#define TRAINBUS_CRASH_REPORT_H_

#include <atomic>
#include <cstdint>

namespace trainbus {

// Installs the handlers (once per process; later calls do nothing).
void InstallCrashReporter();

// What the bus is running, read by the fatal-signal handler.
class CrashContext {
 public:
  // `plugin` and `hook` must outlive the call (the bus's own strings).
  static void Enter(const char* plugin, const char* hook, int64_t step) {
    step_.store(step, std::memory_order_relaxed);
    hook_.store(hook, std::memory_order_relaxed);
    plugin_.store(plugin, std::memory_order_release);
  }
  static void Leave() { plugin_.store(nullptr, std::memory_order_release); }

  static const char* plugin() { return plugin_.load(std::memory_order_acquire); }
  static const char* hook() { return hook_.load(std::memory_order_relaxed); }
  static int64_t step() { return step_.load(std::memory_order_relaxed); }

 private:
  static std::atomic<const char*> plugin_;
  static std::atomic<const char*> hook_;
  static std::atomic<int64_t> step_;
};

}  // namespace trainbus

#endif  // TRAINBUS_CRASH_REPORT_H_
