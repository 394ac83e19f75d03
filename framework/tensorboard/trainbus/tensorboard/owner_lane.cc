// trainbus/tensorboard/owner_lane.cc — the process's membarrier registration.
#include "trainbus/tensorboard/owner_lane.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace trainbus::tensorboard::internal {
namespace {

long Membarrier(int command) { return ::syscall(SYS_membarrier, command, 0, 0); }

// Registers the process for private expedited barriers and checks that one
// runs; returns the registered process's id, or 0 when the barrier is
// unavailable.
pid_t RegisterForBarrier() {
  if (Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0) return 0;
  if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) return 0;
  return ::getpid();
}

// At load time (see owner_lane.h for why then). A forked child has another
// id, and no lane: the registration belongs to the parent's process.
const pid_t registered_process = RegisterForBarrier();

}  // namespace

bool OwnerLane::BarrierAvailable() {
  return registered_process != 0 && registered_process == ::getpid();
}

void OwnerLane::FenceEveryThread() {
  for (int attempt = 0; attempt < 16; ++attempt) {
    if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
    if (errno != EINTR && errno != ENOMEM && errno != EAGAIN) break;
  }
  // Not seen: the registration was checked at load time. The global barrier
  // needs none (it waits out an RCU grace period, milliseconds).
  if (Membarrier(MEMBARRIER_CMD_GLOBAL) == 0) return;
  // Last resort, not a guarantee: a store buffer drains in nanoseconds.
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace trainbus::tensorboard::internal
