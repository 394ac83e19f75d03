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
// The bus marks the hook it delivers and each plugin in turn (CrashContext:
// one store per plugin call) with the thread that runs it; the bus's closer
// thread marks only itself. The handler reads the crashing thread's own mark,
// then the process's: on the same thread, the plugin is named; on another
// thread (a LibTorch worker running a hook's tensor op, or any other) it is
// named "on another thread" and may not be the cause. It only reads atomics
// and calls write(2), both async-signal-safe. It runs on an alternate signal
// stack, so a stack overflow on the thread that installed it is reported too.
#ifndef TRAINBUS_CRASH_REPORT_H_
#define TRAINBUS_CRASH_REPORT_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace trainbus {

// Installs the handlers (once per process; later calls do nothing).
void InstallCrashReporter();

namespace internal {
// A thread's own mark, for threads that must not touch the process's (the
// bus's closer). Inline and constant-initialised, so a use needs no TLS
// wrapper call; initial-exec: a plain %fs-relative access, safe in the
// signal handler. A host that dlopen()s this library, instead of linking it,
// needs 24 bytes of glibc's spare static TLS, which it reserves for that.
struct CrashSlot {
  std::atomic<const char*> plugin{nullptr};
  std::atomic<const char*> hook{nullptr};
  std::atomic<int64_t> step{0};
};
__attribute__((tls_model("initial-exec"))) inline thread_local CrashSlot crash_slot;
}  // namespace internal

// What the bus is running, read by the fatal-signal handler.
class CrashContext {
 public:
  struct Snapshot {
    const char* plugin = nullptr;  // nullptr: no hook running
    const char* hook = nullptr;
    int64_t step = 0;
    pthread_t thread{};  // the thread that runs it
  };

  // One delivery of a hook to its plugins: marks the process as running
  // `hook` at `step` on this thread; Plugin() names each plugin in turn.
  // The destructor puts back what ran before (hooks nest: a record
  // published inside one is delivered to other plugins' OnRecord inside
  // it), unless another thread has marked the process since (two sessions
  // on two threads): a check and a store, not a compare-and-swap, as this
  // runs around every delivery and another thread's mark is a hint at best.
  // Cost per plugin: one store.
  class HookScope {
   public:
    HookScope(const char* hook, int64_t step) : before_(Process()) {
      const pthread_t self = pthread_self();
      // Another thread's mark is not ours to put back: its hook may be long
      // over (and its bus gone) when this one ends.
      if (!pthread_equal(before_.thread, self)) before_ = Snapshot{};
      plugin_.store(nullptr, std::memory_order_relaxed);
      hook_.store(hook, std::memory_order_relaxed);
      step_.store(step, std::memory_order_relaxed);
      thread_.store(self, std::memory_order_release);
      self_ = self;
    }
    void Plugin(const char* plugin) { plugin_.store(plugin, std::memory_order_release); }
    ~HookScope() {
      if (!pthread_equal(thread_.load(std::memory_order_relaxed), self_)) return;
      plugin_.store(nullptr, std::memory_order_relaxed);
      hook_.store(before_.hook, std::memory_order_relaxed);
      step_.store(before_.step, std::memory_order_relaxed);
      thread_.store(before_.thread, std::memory_order_relaxed);
      plugin_.store(before_.plugin, std::memory_order_release);
    }
    HookScope(const HookScope&) = delete;
    HookScope& operator=(const HookScope&) = delete;

   private:
    Snapshot before_;
    pthread_t self_;
  };

  // The calling thread only: for Close() on the bus's closer thread, which
  // may be abandoned inside it and outlive the run. Marking the process there
  // would blame that plugin for any later crash elsewhere.
  static void EnterThisThread(const char* plugin, const char* hook, int64_t step) {
    internal::crash_slot.step.store(step, std::memory_order_relaxed);
    internal::crash_slot.hook.store(hook, std::memory_order_relaxed);
    internal::crash_slot.plugin.store(plugin, std::memory_order_release);
  }
  static void LeaveThisThread() {
    internal::crash_slot.plugin.store(nullptr, std::memory_order_release);
  }

  // The calling thread's own mark (EnterThisThread), and the process's.
  static Snapshot ThisThread() {
    return {internal::crash_slot.plugin.load(std::memory_order_acquire),
            internal::crash_slot.hook.load(std::memory_order_relaxed),
            internal::crash_slot.step.load(std::memory_order_relaxed), pthread_self()};
  }
  static Snapshot Process() {
    return {plugin_.load(std::memory_order_acquire), hook_.load(std::memory_order_relaxed),
            step_.load(std::memory_order_relaxed), thread_.load(std::memory_order_relaxed)};
  }

 private:
  static std::atomic<const char*> plugin_;
  static std::atomic<const char*> hook_;
  static std::atomic<int64_t> step_;
  static std::atomic<pthread_t> thread_;
  static_assert(std::atomic<pthread_t>::is_always_lock_free, "read in a signal handler");
};

}  // namespace trainbus

#endif  // TRAINBUS_CRASH_REPORT_H_
