#include "trainbus/data/batch_prefetcher.h"

#include <pthread.h>

#include <cstring>
#include <utility>
#include <vector>

#include <ATen/ops/empty.h>

namespace trainbus {
namespace {

// A tensor the prefetch thread copies rows into itself: a contiguous CPU
// tensor, indexed by a contiguous 1-D int64 tensor of rows.
bool CopiesRowsItself(const at::Tensor& source) {
  return source.dim() > 0 && source.layout() == at::kStrided && source.device().is_cpu() &&
         source.is_contiguous() && !source.is_quantized() && !source.has_names();
}

// Room for `n` rows of `source`, or an undefined tensor when the prefetch
// thread leaves `source` to index_select.
at::Tensor RoomForRows(const at::Tensor& source, int64_t n) {
  if (!CopiesRowsItself(source)) return at::Tensor();
  std::vector<int64_t> sizes = source.sizes().vec();
  sizes[0] = n;
  return at::empty(sizes, source.options());
}

// Rows `rows` of `source`, copied one after the other on this thread into
// `room` (from RoomForRows): what index_select(0, rows) returns, byte for
// byte. (index_select may split a large copy over LibTorch's intra-op
// threads, which on the prefetch thread would start a team of its own beside
// the training thread's.) Without room, or with rows out of range, it is
// index_select, which copies them or throws its own error.
at::Tensor CopyRows(const at::Tensor& source, const at::Tensor& rows, const at::Tensor& room) {
  if (!room.defined() || rows.scalar_type() != at::kLong || rows.dim() != 1 ||
      !rows.is_contiguous() || room.size(0) != rows.numel()) {
    return source.index_select(0, rows);
  }
  const int64_t count = source.size(0), n = rows.numel();
  const int64_t* index = rows.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (index[i] < 0 || index[i] >= count) return source.index_select(0, rows);
  }
  if (n == 0 || source.numel() == 0) return room;
  const size_t row_bytes = static_cast<size_t>(source.numel() / count) * source.element_size();
  const char* from = static_cast<const char*>(source.data_ptr());
  char* to = static_cast<char*>(room.data_ptr());
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(to + static_cast<size_t>(i) * row_bytes,
                from + static_cast<size_t>(index[i]) * row_bytes, row_bytes);
  }
  return room;
}

}  // namespace

BatchPrefetcher::BatchPrefetcher(at::Tensor inputs, at::Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {}

BatchPrefetcher::~BatchPrefetcher() { Stop(); }

BatchPrefetcher::Batch BatchPrefetcher::Gather(const at::Tensor& order, int64_t lo,
                                               int64_t hi) const {
  const at::Tensor rows = order.slice(0, lo, hi);
  return {inputs_.index_select(0, rows), targets_.index_select(0, rows)};
}

void BatchPrefetcher::Prefetch(int64_t key, const at::Tensor& order, int64_t lo, int64_t hi) {
  if (no_thread_) return;
  // The batch's memory comes from this thread's malloc arena, as an
  // index_select here would take it, and returns to it when the batch is
  // freed here after its iteration: the memory an in-line gather would reuse.
  // (Allocated on the prefetch thread, every batch came from that thread's
  // arena and was freed into it from this one.)
  Batch room{RoomForRows(inputs_, hi - lo), RoomForRows(targets_, hi - lo)};
  Batch untaken;  // released after the lock: freeing it is the caller's time, not the thread's
  {
    std::lock_guard<std::mutex> lock(mu_);
    request_ = Request{key, lo, hi, order, std::move(room)};
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
  } catch (...) {
    // No thread (a process or container limit, no memory for it): Take()
    // gathers every batch, and no later Prefetch() tries again.
    no_thread_ = true;
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = thread_.joinable();
    ++generation_;
    state_ = State::kIdle;
    ready_ = Batch();
    request_ = Request();
  }
  if (!thread_.joinable()) return;
  requested_.notify_one();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
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
      const at::Tensor rows = request.order.slice(0, request.lo, request.hi);
      batch = {CopyRows(inputs_, rows, request.room.inputs),
               CopyRows(targets_, rows, request.room.targets)};
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
