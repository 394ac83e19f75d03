// trainbus/distributed.h — data-parallel training across ranks (c10d + Gloo).
//
// One Distributed per process. Ranks meet through a c10d TCPStore served by
// rank 0 at MASTER_ADDR:MASTER_PORT, then talk through a Gloo process group:
//
//   auto d = trainbus::Distributed::FromEnv(std::chrono::seconds(60));
//   if (!d.ok()) ...                  // bad environment, or rendezvous failed
//   if (*d == nullptr) ...            // WORLD_SIZE unset or 1: a single process
//   (*d)->Broadcast(params);          // everyone starts from rank 0's weights
//   (*d)->AllReduceSum(grads);        // one flat buffer per call
//
// Every call is a collective: all ranks must make the same calls in the same
// order. Every wait is bounded by the timeout; a rank that dies makes the
// others' next call fail (within a fraction of a second for a killed
// process, within the timeout for a frozen one). After a failure the object
// is unusable, and its destructor does not wait for the dead peers.
//
// The header has no c10d includes on purpose: they are heavy.
#ifndef TRAINBUS_DISTRIBUTED_H_
#define TRAINBUS_DISTRIBUTED_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace trainbus {

class Distributed {
 public:
  // Reads RANK, WORLD_SIZE, MASTER_ADDR (default 127.0.0.1) and MASTER_PORT
  // (default 29500). Returns nullptr when WORLD_SIZE is unset or 1. Blocks
  // until every rank has arrived, at most `timeout`.
  static absl::StatusOr<std::unique_ptr<Distributed>> FromEnv(std::chrono::milliseconds timeout);
  // The same with explicit values.
  static absl::StatusOr<std::unique_ptr<Distributed>> Connect(int rank, int world_size,
                                                              const std::string& addr, int port,
                                                              std::chrono::milliseconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const;
  int world_size() const;

  // Copies rank 0's values into `tensors` (in place; one flat buffer).
  absl::Status Broadcast(const std::vector<at::Tensor>& tensors);
  // Replaces every tensor by its sum over ranks (in place; one flat buffer,
  // so the cost is one round trip however many tensors).
  absl::Status AllReduceSum(const std::vector<at::Tensor>& tensors);
  // The same divided by world_size().
  absl::Status AllReduceMean(const std::vector<at::Tensor>& tensors);
  // Element-wise sum over ranks of `values`, in place (float64).
  absl::Status AllReduceSum(std::vector<double>& values);
  // True on every rank if `value` is true on any rank.
  absl::StatusOr<bool> AnyTrue(bool value);

 private:
  struct Impl;
  explicit Distributed(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A TCP port on 127.0.0.1 that is free now (the kernel's choice), or 0:
// for MASTER_PORT when all ranks run on this machine.
int FreeLoopbackPort();

}  // namespace trainbus

#endif  // TRAINBUS_DISTRIBUTED_H_
