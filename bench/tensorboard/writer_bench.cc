// Benchmarks of trainbus::tensorboard: the scalar fast path end to end, the
// calling thread's add_scalar latency distribution, histograms, images, the
// building blocks (CRC-32C, the hand encoder, the floor of each piece). The
// end-to-end scalar benchmark runs twice: through the calling thread's own
// lane, and through the shared ring that other threads use.
//
//   scripts/bench.sh tensorboard   (or build-bench/bench/tensorboard/tensorboard_writer_bench)
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include <x86intrin.h>

#include <atomic>
#include <thread>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "trainbus/io/file_io.h"
#include "trainbus/tensorboard/bounded_queue.h"
#include "trainbus/tensorboard/crc32c.h"
#include "trainbus/tensorboard/event_file_name.h"
#include "trainbus/tensorboard/event_file_writer.h"
#include "trainbus/tensorboard/histogram.h"
#include "trainbus/tensorboard/scalar_event.h"
#include "trainbus/tensorboard/summaries.h"
#include "trainbus/tensorboard/tensor_summaries.h"
#include "trainbus/tensorboard/summary_writer.h"

namespace {

namespace tb = trainbus::tensorboard;
namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/tb_bench_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<tb::SummaryWriter> NewWriter(const std::string& dir) {
  tb::SummaryWriterOptions opt;
  opt.log_dir = dir;
  auto w = tb::SummaryWriter::Create(opt);
  if (!w.ok()) std::abort();
  return std::move(*w);
}

// Nanoseconds per TSC tick.
double NsPerTick() {
  static const double ns = [] {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t c0 = __rdtsc();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(100)) {
    }
    const uint64_t c1 = __rdtsc();
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() /
           static_cast<double>(c1 - c0);
  }();
  return ns;
}

void BM_Crc32c(benchmark::State& state, bool hardware) {
  std::vector<char> buf(state.range(0), 'x');
  for (auto _ : state) {
    benchmark::DoNotOptimize(hardware ? tb::crc32c::ValueHardware(buf.data(), buf.size())
                                      : tb::crc32c::ValuePortable(buf.data(), buf.size()));
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK_CAPTURE(BM_Crc32c, hardware, true)->Arg(64)->Arg(64 << 10);
BENCHMARK_CAPTURE(BM_Crc32c, portable, false)->Arg(64)->Arg(64 << 10);

void BM_EncodeScalarRecord(benchmark::State& state) {
  char buf[256];
  int64_t step = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        tb::EncodeScalarRecord(1.7e9 + step * 1e-3, step, "loss/train", 0.25f, buf));
    ++step;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeScalarRecord);

// What the writer thread does per scalar: encode a batch of records without
// their checksums, then frame the batch (FinishRecords) before writing it.
void BM_EncodeScalarBatch(benchmark::State& state) {
  constexpr int kBatch = 1024;
  std::vector<char> buf(kBatch * tb::MaxScalarRecordSize(10));
  int64_t step = 0;
  for (auto _ : state) {
    size_t size = 0;
    for (int i = 0; i < kBatch; ++i, ++step) {
      size += tb::EncodeUnframedScalarRecord(1.7e9 + step * 1e-3, step, "loss/train", 0.25f,
                                             buf.data() + size);
    }
    tb::FinishRecords(buf.data(), size);
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_EncodeScalarBatch);

// The floor of the end-to-end path, piece by piece on one core (no second
// thread, so no cache line crosses between cores): what add_scalar's clock
// read, its enqueue and the writer thread's write() cost alone. With
// BM_EncodeScalarBatch (encode and frame) they add up to the least CPU a
// scalar can cost in this design on the machine that runs them.
void BM_CoarseClock(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(tb::CoarseNowSeconds());
}
BENCHMARK(BM_CoarseClock);

// One thread pushes a scalar-sized item into the writer's ring (one
// compare-and-swap, the cell's stores) and drains it every 1024 pushes.
void BM_RingPushOneThread(benchmark::State& state) {
  struct Item {
    float value;
    int64_t step;
    double wall_time;
    char tag[24];
  };
  tb::internal::BoundedQueue<Item> queue(1 << 16);
  int64_t step = 0;
  uint64_t position = 0;
  for (auto _ : state) {
    queue.TryPush(
        [&](Item& it) {
          it.value = 0.25f;
          it.step = step;
          it.wall_time = 1.7e9;
        },
        &position);
    if ((++step & 1023) == 0) {
      while (queue.Front() != nullptr) queue.Pop();
      queue.Release();
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RingPushOneThread);

// write() of 1 MiB batches into a file in the page cache (the writer
// thread's system calls); bytes_per_second over the scalars' 50.8 bytes a
// record is the kernel's share per scalar.
void BM_WriteToPageCache(benchmark::State& state) {
  ScratchDir dir;
  const std::string path = dir.path() + "/file";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    state.SkipWithError("open failed");
    return;
  }
  std::vector<char> batch(1 << 20, 'x');
  int64_t written = 0;
  for (auto _ : state) {
    if (::write(fd, batch.data(), batch.size()) != static_cast<ssize_t>(batch.size())) {
      state.SkipWithError("write failed");
      break;
    }
    written += static_cast<int64_t>(batch.size());
    if (written >= (int64_t{256} << 20)) {  // keep the file (and the page cache) bounded
      state.PauseTiming();
      const bool truncated = ::ftruncate(fd, 0) == 0 && ::lseek(fd, 0, SEEK_SET) == 0;
      written = 0;
      state.ResumeTiming();
      if (!truncated) {
        state.SkipWithError("truncate failed");
        break;
      }
    }
  }
  ::close(fd);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(batch.size()));
}
BENCHMARK(BM_WriteToPageCache)->Unit(benchmark::kMicrosecond);

// CPU time of the whole process (every thread: the caller and the writer).
double ProcessCpuNs() {
  struct rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

// CPU time of the calling thread alone.
double ThreadCpuNs() {
  struct timespec t;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

// The CPU time every thread of the process, and the calling thread alone,
// spent from construction to Report(), per event: counters cpu_ns_per_event
// and its split, caller_cpu_ns_per_event and writer_cpu_ns_per_event (the
// rest: the writer thread).
class CpuPerEvent {
 public:
  CpuPerEvent() : process0_(ProcessCpuNs()), caller0_(ThreadCpuNs()) {}
  void Report(benchmark::State& state, double events) const {
    const double cpu = ProcessCpuNs() - process0_;
    const double caller = ThreadCpuNs() - caller0_;
    state.counters["cpu_ns_per_event"] = cpu / events;
    state.counters["caller_cpu_ns_per_event"] = caller / events;
    state.counters["writer_cpu_ns_per_event"] = (cpu - caller) / events;
  }

 private:
  double process0_, caller0_;
};

// End to end: add_scalar from the calling thread, the writer thread encodes,
// frames, checksums and writes; every iteration ends with flush(), so the
// time covers everything reaching the file. cpu_ns_per_event is the CPU of
// every thread of the process over the loop, per scalar. With
// `through_shared_ring`, another thread logs to the writer first and owns
// its lane (see owner_lane.h), so the calling thread's scalars take the way
// every thread but the first takes: side by side, the two measure what the
// lane saves.
void ScalarThroughputEndToEnd(benchmark::State& state, bool through_shared_ring) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  if (through_shared_ring) std::thread([&] { w->add_scalar("claims/lane", 0.0, 0); }).join();
  const int64_t batch = state.range(0);
  int64_t step = 0;
  const CpuPerEvent cpu;
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i, ++step) {
      w->add_scalar("loss/train", static_cast<double>(i) * 0.001, step);
    }
    if (!w->flush().ok()) state.SkipWithError("flush failed");
  }
  cpu.Report(state, static_cast<double>(state.iterations() * batch));
  state.SetItemsProcessed(state.iterations() * batch);
  const tb::WriterCounters c = w->counters();
  state.counters["bytes_per_event"] =
      static_cast<double>(c.bytes_written) / static_cast<double>(c.records_written);
  state.counters["queue_full_waits"] = static_cast<double>(c.queue_full_waits);
  (void)w->close();
}
void BM_ScalarThroughputEndToEnd(benchmark::State& state) { ScalarThroughputEndToEnd(state, false); }
void BM_ScalarThroughputEndToEndSharedRing(benchmark::State& state) {
  ScalarThroughputEndToEnd(state, true);
}
BENCHMARK(BM_ScalarThroughputEndToEnd)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ScalarThroughputEndToEndSharedRing)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

// Cost of the two rdtsc reads alone, subtracted from every sample.
uint64_t RdtscOverhead() {
  uint64_t overhead = UINT64_MAX;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t t0 = __rdtsc();
    const uint64_t t1 = __rdtsc();
    overhead = std::min(overhead, t1 - t0);
  }
  return overhead;
}

// p50, p99, p99.9, p99.99 and max of `ticks` (sorted here) as counters, in ns.
void LatencyCounters(benchmark::State& state, std::vector<uint32_t>& ticks) {
  const double ns_per_tick = NsPerTick();
  const uint64_t overhead = RdtscOverhead();
  std::sort(ticks.begin(), ticks.end());
  auto at = [&](uint64_t t) { return static_cast<double>(t > overhead ? t - overhead : 0) * ns_per_tick; };
  auto pct = [&](double p) { return at(ticks[std::min(ticks.size() - 1, static_cast<size_t>(p * ticks.size()))]); };
  state.counters["p50_ns"] = pct(0.50);
  state.counters["p99_ns"] = pct(0.99);
  state.counters["p99.9_ns"] = pct(0.999);
  state.counters["p99.99_ns"] = pct(0.9999);
  state.counters["max_ns"] = at(ticks.back());
}

// Latency of each add_scalar call on the calling thread while the writer
// thread is busy writing what the previous calls enqueued. Every iteration
// is a fresh writer and its first 1,048,576 calls: the first lap over the
// ring (its memory being backed) is counted, as a new run's would be.
void BM_AddScalarLatency(benchmark::State& state) {
  constexpr int64_t kCalls = 1 << 20;
  std::vector<uint32_t> ticks(kCalls);
  std::vector<uint32_t> all;
  uint64_t waits = 0;
  for (auto _ : state) {
    state.PauseTiming();
    {
      ScratchDir dir;
      auto w = NewWriter(dir.path());
      state.ResumeTiming();
      for (int64_t i = 0; i < kCalls; ++i) {
        const uint64_t t0 = __rdtsc();
        w->add_scalar("loss/train", 0.5, i);
        const uint64_t t1 = __rdtsc();
        ticks[i] = static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX));
      }
      state.PauseTiming();
      all.insert(all.end(), ticks.begin(), ticks.end());
      if (!w->close().ok()) state.SkipWithError("close failed");
      waits += w->counters().queue_full_waits;
    }
    state.ResumeTiming();
  }
  LatencyCounters(state, all);
  state.counters["queue_full_waits"] = static_cast<double>(waits) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * kCalls);
}
BENCHMARK(BM_AddScalarLatency)->Iterations(4)->Unit(benchmark::kMillisecond);

// Four producer threads into one writer, 262,144 scalars each (their own
// tags), end to end (until flushed); latency of every call of every thread.
void BM_FourProducersEndToEnd(benchmark::State& state) {
  constexpr int kThreads = 4;
  constexpr int64_t kPerThread = 1 << 18;
  std::vector<std::vector<uint32_t>> ticks(kThreads, std::vector<uint32_t>(kPerThread));
  std::vector<uint32_t> all;
  uint64_t waits = 0;
  double cpu = 0;  // from the start signal until everything is flushed
  for (auto _ : state) {
    state.PauseTiming();
    {
      ScratchDir dir;
      auto w = NewWriter(dir.path());
      std::atomic<int> ready{0};
      std::atomic<bool> go{false};
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          const std::string tag = "producer/" + std::to_string(t);
          ready.fetch_add(1);
          while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
          for (int64_t i = 0; i < kPerThread; ++i) {
            const uint64_t t0 = __rdtsc();
            w->add_scalar(tag, 0.5, i);
            const uint64_t t1 = __rdtsc();
            ticks[t][i] = static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX));
          }
        });
      }
      while (ready.load() < kThreads) std::this_thread::yield();
      state.ResumeTiming();
      const double cpu0 = ProcessCpuNs();
      go.store(true, std::memory_order_release);
      for (auto& th : threads) th.join();
      if (!w->flush().ok()) state.SkipWithError("flush failed");
      cpu += ProcessCpuNs() - cpu0;
      state.PauseTiming();
      for (auto& t : ticks) all.insert(all.end(), t.begin(), t.end());
      if (!w->close().ok()) state.SkipWithError("close failed");
      waits += w->counters().queue_full_waits;
    }
    state.ResumeTiming();
  }
  state.counters["cpu_ns_per_event"] = cpu / static_cast<double>(state.iterations() * kThreads * kPerThread);
  LatencyCounters(state, all);
  state.counters["queue_full_waits"] = static_cast<double>(waits) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * kThreads * kPerThread);
}
BENCHMARK(BM_FourProducersEndToEnd)->Iterations(4)->Unit(benchmark::kMillisecond)->UseRealTime();

// Several threads calling add_scalar at once (a contended CAS on the ring).
void BM_AddScalarThreads(benchmark::State& state) {
  static std::unique_ptr<ScratchDir> dir;
  static std::unique_ptr<tb::SummaryWriter> w;
  if (state.thread_index() == 0) {
    dir = std::make_unique<ScratchDir>();
    w = NewWriter(dir->path());
  }
  int64_t step = 0;
  for (auto _ : state) w->add_scalar("loss/train", 0.5, step++);
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    (void)w->close();
    w.reset();
    dir.reset();
  }
}
BENCHMARK(BM_AddScalarThreads)->Threads(1)->Threads(2)->UseRealTime();

std::vector<double> NormalValues(size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = normal(rng);
  return v;
}

void BM_BuildHistogram(benchmark::State& state) {
  const std::vector<double> values = NormalValues(state.range(0));
  tb::proto::HistogramProto h;
  for (auto _ : state) {
    if (!tb::BuildHistogram(values, &h).ok()) state.SkipWithError("bad");
    benchmark::DoNotOptimize(h);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_BuildHistogram)->Arg(10000)->Unit(benchmark::kMicrosecond);

// add_histogram of 10,000 values on the calling thread: the check for
// non-finite values, the copy and the enqueue (bucketing, the proto and
// serialisation run on the writer thread: BM_BuildHistogram). Each call
// finds the writer idle, as an occasional histogram in a training loop does.
template <typename Values>
void TimeAddHistogram(benchmark::State& state, const Values& values) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  int64_t step = 0;
  for (auto _ : state) {
    w->add_histogram("weights", values, step++);
    state.PauseTiming();  // the writer thread buckets it; the next call finds it idle
    if (!w->flush().ok()) state.SkipWithError("flush failed");
    state.ResumeTiming();
  }
  (void)w->close();
  state.SetItemsProcessed(state.iterations());
}

void BM_AddHistogram(benchmark::State& state) {
  const std::vector<double> values = NormalValues(state.range(0));
  TimeAddHistogram(state, absl::Span<const double>(values));
}
BENCHMARK(BM_AddHistogram)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_AddHistogramFloatSpan(benchmark::State& state) {
  const std::vector<double> d = NormalValues(state.range(0));
  const std::vector<float> values(d.begin(), d.end());
  TimeAddHistogram(state, absl::Span<const float>(values));
}
BENCHMARK(BM_AddHistogramFloatSpan)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_AddHistogramDoubleTensor(benchmark::State& state) {
  TimeAddHistogram(state, at::randn({state.range(0)}, at::kDouble));
}
BENCHMARK(BM_AddHistogramDoubleTensor)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_AddHistogramTensor(benchmark::State& state) {
  TimeAddHistogram(state, at::randn({state.range(0)}));
}
BENCHMARK(BM_AddHistogramTensor)->Arg(10000)->Unit(benchmark::kMicrosecond);

// add_image of a 3x224x224 float image on the calling thread: checks,
// conversion to uint8 and enqueue (the PNG is encoded on the writer thread).
void BM_AddImage(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  at::Tensor img = at::rand({3, state.range(0), state.range(0)});
  int64_t step = 0;
  for (auto _ : state) w->add_image("input", img, step++);
  (void)w->close();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddImage)->Arg(224)->Unit(benchmark::kMillisecond);

// The calling thread's part of the tensorboard plugin's `inputs` grid: 16
// gray 28x28 float images (NCHW) checked, converted to uint8 and tiled.
void BM_PrepareImageGrid(benchmark::State& state) {
  at::Tensor batch = at::rand({16, 1, 28, 28});
  for (auto _ : state) {
    auto canvas = tb::PrepareImage("inputs", batch, "NCHW");
    benchmark::DoNotOptimize(canvas);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PrepareImageGrid)->Unit(benchmark::kMicrosecond);

// The writer thread's part of the same image: the PNG and the Summary.
void BM_EncodeImage(benchmark::State& state) {
  at::Tensor img = at::rand({3, state.range(0), state.range(0)});
  auto canvas = tb::PrepareImage("input", img, "CHW");
  if (!canvas.ok()) state.SkipWithError(std::string(canvas.status().message()).c_str());
  for (auto _ : state) {
    auto summary = tb::EncodeImageSummary("input", *canvas);
    benchmark::DoNotOptimize(summary);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeImage)->Arg(224)->Unit(benchmark::kMillisecond);

// A grid of 64 MNIST-sized images.
void BM_AddImagesGrid(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  at::Tensor batch = at::rand({64, 1, 28, 28});
  int64_t step = 0;
  for (auto _ : state) w->add_images("batch", batch, step++);
  (void)w->close();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddImagesGrid)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
