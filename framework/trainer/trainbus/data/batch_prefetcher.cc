#include "trainbus/data/batch_prefetcher.h"

#include <pthread.h>

#include <system_error>
#include <utility>

namespace trainbus {

BatchPrefetcher::BatchPrefetcher(at::Tensor inputs, at::Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {}

BatchPrefetcher::~BatchPrefetcher() { Stop(); }

BatchPrefetcher::Batch BatchPrefetcher::Gather(const at::Tensor& order, int64_t lo,
                                               int64_t hi) const {
  const at::Tensor rows = order.slice(0, lo, hi);
  return {inputs_.index_select(0, rows), targets_.index_select(0, rows)};
}

void BatchPrefetcher::Prefetch(int64_t key, const at::Tensor& order, int64_t lo, int64_t hi) {
  Batch untaken;  // released after the lock: freeing it is the caller's time, not the thread's
  {
    std::lock_guard<std::mutex> lock(mu_);
    request_ = Request{key, lo, hi, order};
    ++generation_;
    untaken = std::move(ready_);
    ready_ = Batch();
    state_ = State::kQueued;
  }
  if (thread_.joinable()) {
    requested_.notify_one();
    return;
  }
  try {
    thread_ = std::thread([this] { Loop(); });
    pthread_setname_np(thread_.native_handle(), "trainbus-batch");
  } catch (const std::system_error&) {
    // No thread (a process or container limit): Take() gathers every batch.
    std::lock_guard<std::mutex> lock(mu_);
    state_ = State::kIdle;
  }
}

BatchPrefetcher::Batch BatchPrefetcher::Take(int64_t key, const at::Tensor& order, int64_t lo,
                                             int64_t hi) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool requested = state_ != State::kIdle && request_.key == key && request_.lo == lo &&
                         request_.hi == hi && request_.order.is_same(order);
  if (!requested) {
    // Another batch was asked for: whatever the thread gathers is dropped.
    ++generation_;
    state_ = State::kIdle;
    Batch stale = std::move(ready_);
    ready_ = Batch();
    lock.unlock();
    return Gather(order, lo, hi);
  }
  gathered_.wait(lock, [this] { return state_ == State::kReady || state_ == State::kFailed; });
  const bool ok = state_ == State::kReady;
  Batch batch = std::move(ready_);
  ready_ = Batch();
  state_ = State::kIdle;
  lock.unlock();
  if (!ok) return Gather(order, lo, hi);  // its error, if any, is thrown here
  ++prefetched_;
  return batch;
}

void BatchPrefetcher::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    ++generation_;
    state_ = State::kIdle;
  }
  requested_.notify_one();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  ready_ = Batch();
  request_ = Request();
}

void BatchPrefetcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    requested_.wait(lock, [this] { return stopping_ || state_ == State::kQueued; });
    if (stopping_) return;
    const Request request = request_;
    const uint64_t generation = generation_;
    state_ = State::kGathering;
    lock.unlock();
    Batch batch;
    bool ok = true;
    try {
      batch = Gather(request.order, request.lo, request.hi);
    } catch (...) {
      ok = false;  // Take() gathers again on its own thread and sees the error there
    }
    lock.lock();
    if (generation != generation_) continue;  // dropped while it was gathered
    ready_ = std::move(batch);
    state_ = ok ? State::kReady : State::kFailed;
    gathered_.notify_one();
  }
}

}  // namespace trainbus
