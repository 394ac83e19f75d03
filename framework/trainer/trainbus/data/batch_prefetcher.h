// trainbus/data/batch_prefetcher.h — the next training batch, gathered on a
// thread of its own while the model trains on the current one.
//
// A batch is rows `order[lo, hi)` of an in-memory dataset: two index_select
// calls that read scattered rows of a tensor of many megabytes. On the
// trainer bench's small model that gather took 25-33 us of a 1 ms iteration
// (2026-12-07), all of it memory latency the training thread waited out.
// Gathered one iteration ahead on another core, it costs the training
// thread the batch's allocation, a hand-off, and reading rows another core
// wrote (on that bench the model's work took about 1 % longer: the net is
// about half the gather).
//
//   BatchPrefetcher prefetcher(data.inputs, data.targets);
//   Batch b = prefetcher.Take(key, order, lo, hi);   // waits for it, or gathers now
//   prefetcher.Prefetch(key, order, hi, hi + bs);    // the next one, in the background
//
// Take() returns exactly what a gather on the calling thread returns: the
// prefetched batch only when the request was for the same key, rows and
// order tensor; otherwise (a batch size that changed, the first batch of an
// epoch) it gathers on the calling thread. A gather that threw in the
// background is done again on the calling thread, where its error surfaces.
// `key` names the `order` tensor (the trainer passes the epoch).
//
// One caller thread; the dataset's tensors must not change while a prefetch
// may run. The thread starts with the first Prefetch() and stops in Stop()
// and the destructor.
#ifndef TRAINBUS_DATA_BATCH_PREFETCHER_H_
#define TRAINBUS_DATA_BATCH_PREFETCHER_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include <ATen/core/Tensor.h>

namespace trainbus {

class BatchPrefetcher {
 public:
  struct Batch {
    at::Tensor inputs, targets;
  };

  BatchPrefetcher(at::Tensor inputs, at::Tensor targets);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // Rows order[lo, hi) of the dataset, gathered on the calling thread
  // (index_select, which may use LibTorch's intra-op threads). The prefetch
  // thread copies the same bytes row by row, on itself alone, for a
  // contiguous CPU tensor and int64 rows; anything else it index_selects.
  Batch Gather(const at::Tensor& order, int64_t lo, int64_t hi) const;

  // Starts gathering rows order[lo, hi) in the background. Replaces a
  // request that was not taken.
  void Prefetch(int64_t key, const at::Tensor& order, int64_t lo, int64_t hi);

  // Rows order[lo, hi): the prefetched batch when it was requested with
  // this key and these rows (waiting for it if it is not ready), otherwise
  // gathered now.
  Batch Take(int64_t key, const at::Tensor& order, int64_t lo, int64_t hi);

  // Drops any request and joins the thread. Prefetch() starts it again.
  void Stop();

  // Takes that were served by a prefetch (for tests and the bench).
  int64_t prefetched() const { return prefetched_; }

 private:
  enum class State { kIdle, kQueued, kGathering, kReady, kFailed };
  struct Request {
    int64_t key = -1, lo = 0, hi = 0;
    at::Tensor order;
    Batch room;  // allocated by the caller, filled by the thread
  };

  void Loop();

  const at::Tensor inputs_, targets_;
  int64_t prefetched_ = 0;  // the caller's thread only
  bool no_thread_ = false;  // the caller's thread only: the thread could not be started

  std::mutex mu_;
  std::condition_variable requested_;  // the thread waits for a request
  std::condition_variable gathered_;   // Take() waits for the batch
  State state_ = State::kIdle;         // guarded by mu_
  Request request_;                    // guarded by mu_
  uint64_t generation_ = 0;            // guarded by mu_; bumped per request
  Batch ready_;                        // guarded by mu_
  bool stopping_ = false;              // guarded by mu_
  std::thread thread_;                 // the caller's thread only
};

}  // namespace trainbus

#endif  // TRAINBUS_DATA_BATCH_PREFETCHER_H_
