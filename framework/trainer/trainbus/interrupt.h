// trainbus/interrupt.h — Ctrl-C and SIGTERM stop a run gracefully.
//
// A training run killed by Ctrl-C or SIGTERM loses whatever its writers had
// not yet flushed and never writes its final checkpoint. With the watcher
// installed:
//
//   - the first SIGINT or SIGTERM asks the run to stop at the end of the
//     current iteration, like any requested stop: plugins see TrainEnd with
//     EndReason::kInterrupted, writers flush and close, the checkpoint plugin
//     saves a final checkpoint. One line on stderr says so.
//   - a second signal flushes every TensorBoard event file (at most
//     `second_signal_flush_seconds`) and exits at once with 128 + signal.
//
//   int main(int argc, char** argv) {
//     trainbus::InstallInterruptWatcher();   // first thing: before any thread starts
//     ...
//     // Session::EndIteration() turns a pending signal into a stop request;
//     // a user's loop just keeps checking session.ShouldStop().
//   }
//
// How: the signals are blocked in the calling thread, so every thread started
// after it inherits the mask, and one watcher thread takes them with sigwait().
// Nothing runs inside a signal handler, so the second signal may flush files
// safely. Install it before LibTorch or any writer starts a thread; a thread
// started earlier could still receive the signal and die of it.
#ifndef TRAINBUS_INTERRUPT_H_
#define TRAINBUS_INTERRUPT_H_

#include <functional>

namespace trainbus {

struct InterruptOptions {
  // Called on the watcher thread at the second signal, before the exit (for
  // example: flush event files). Bounded by second_signal_flush_seconds.
  std::function<void()> on_second_signal;
  double second_signal_flush_seconds = 5.0;
};

// Installs the watcher (once per process; later calls do nothing).
void InstallInterruptWatcher(InterruptOptions options = {});

// The signal that asked the run to stop (SIGINT or SIGTERM), or 0 if none.
// Async-signal-safe and lock-free: any thread may poll it.
int InterruptSignal();

// Forgets a received signal (tests; a program running several sessions).
void ClearInterrupt();

// For tests: behave as if `signal` had been received once.
void SimulateInterrupt(int signal);

}  // namespace trainbus

#endif  // TRAINBUS_INTERRUPT_H_
