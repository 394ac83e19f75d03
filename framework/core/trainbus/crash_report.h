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
// The bus marks the running plugin and hook (CrashContext: a few relaxed
// stores around each call), for the calling thread and as the process's
// latest; the handler reads the crashing thread's own first, then the
// process's (a hook's tensor op that crashes on a LibTorch worker thread is
// named too, "on another thread"), and calls write(2): all async-signal-safe.
// It runs on an alternate signal stack, so a stack overflow on the thread
// that installed it is reported too.
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
  struct Snapshot {
    const char* plugin = nullptr;  // nullptr: no hook running
    const char* hook = nullptr;
    int64_t step = 0;
  };

  // The calling thread runs `plugin`'s `hook`, and so does the process.
  // `plugin` and `hook` must outlive the call (the bus's own strings).
  // Returns what ran before, for Leave(): hooks nest (a record published
  // inside one hook is delivered to other plugins' OnRecord inside it).
  static Snapshot Enter(const char* plugin, const char* hook, int64_t step) {
    const Snapshot before = ThisThread();
    EnterThisThread(plugin, hook, step);
    Set(plugin, hook, step);
    return before;
  }
  // `entered` is the plugin given to the matching Enter(): the process's
  // mark goes back only if it is still this thread's (another thread's
  // session may have entered a hook since).
  static void Leave(const char* entered, const Snapshot& before) {
    EnterThisThread(before.plugin, before.hook, before.step);
    if (plugin_.compare_exchange_strong(entered, before.plugin, std::memory_order_acq_rel)) {
      hook_.store(before.hook, std::memory_order_relaxed);
      step_.store(before.step, std::memory_order_relaxed);
    }
  }
  // Enter() ... Leave() for one scope, also when it is left by an exception.
  class Scope {
   public:
    Scope(const char* plugin, const char* hook, int64_t step)
        : plugin_(plugin), before_(Enter(plugin, hook, step)) {}
    ~Scope() { Leave(plugin_, before_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const char* plugin_;
    Snapshot before_;
  };

  // The calling thread only: for Close() on the bus's closer thread, which
  // may be abandoned inside it and outlive the run. Marking the process there
  // would blame that plugin for any later crash elsewhere, or clear the mark
  // of a hook another thread runs when it returns.
  static void EnterThisThread(const char* plugin, const char* hook, int64_t step) {
    this_thread_.step.store(step, std::memory_order_relaxed);
    this_thread_.hook.store(hook, std::memory_order_relaxed);
    this_thread_.plugin.store(plugin, std::memory_order_release);
  }
  static void LeaveThisThread() { this_thread_.plugin.store(nullptr, std::memory_order_release); }

  // What the calling thread runs; and what the process last entered.
  static Snapshot ThisThread() { return Read(this_thread_); }
  static Snapshot Process() {
    return {plugin_.load(std::memory_order_acquire), hook_.load(std::memory_order_relaxed),
            step_.load(std::memory_order_relaxed)};
  }

 private:
  struct Slot {
    std::atomic<const char*> plugin{nullptr};
    std::atomic<const char*> hook{nullptr};
    std::atomic<int64_t> step{0};
  };
  static void Set(const char* plugin, const char* hook, int64_t step) {
    step_.store(step, std::memory_order_relaxed);
    hook_.store(hook, std::memory_order_relaxed);
    plugin_.store(plugin, std::memory_order_release);
  }
  static Snapshot Read(const Slot& s) {
    return {s.plugin.load(std::memory_order_acquire), s.hook.load(std::memory_order_relaxed),
            s.step.load(std::memory_order_relaxed)};
  }
  static std::atomic<const char*> plugin_;
  static std::atomic<const char*> hook_;
  static std::atomic<int64_t> step_;
  // initial-exec: a plain %fs-relative access, safe in the signal handler
  // (the general model may allocate on a thread's first access). A host that
  // dlopen()s this library, instead of linking it, needs 24 bytes of glibc's
  // spare static TLS, which it reserves for such libraries.
  __attribute__((tls_model("initial-exec"))) static thread_local Slot this_thread_;
};

}  // namespace trainbus

#endif  // TRAINBUS_CRASH_REPORT_H_
