// Benchmarks of trainbus::tensorboard: the scalar fast path end to end, the
// calling thread's add_scalar latency distribution, histograms, images, and
// the building blocks (CRC-32C, the hand encoder).
//
//   build-tb/bench/tensorboard/tensorboard_writer_bench
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "trainbus/tensorboard/crc32c.h"
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

// End to end: add_scalar from the calling thread, the writer thread encodes,
// frames, checksums and writes; every iteration ends with flush(), so the
// time covers everything reaching the file.
void BM_ScalarThroughputEndToEnd(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  const int64_t batch = state.range(0);
  int64_t step = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i, ++step) {
      w->add_scalar("loss/train", static_cast<double>(i) * 0.001, step);
    }
    if (!w->flush().ok()) state.SkipWithError("flush failed");
  }
  state.SetItemsProcessed(state.iterations() * batch);
  const tb::WriterCounters c = w->counters();
  state.counters["bytes_per_event"] =
      static_cast<double>(c.bytes_written) / static_cast<double>(c.records_written);
  state.counters["queue_full_waits"] = static_cast<double>(c.queue_full_waits);
  (void)w->close();
}
BENCHMARK(BM_ScalarThroughputEndToEnd)->Arg(1 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

// Latency of each add_scalar call on the calling thread while the writer
// thread is busy writing what the previous calls enqueued.
void BM_AddScalarLatency(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  const double ns_per_tick = NsPerTick();
  constexpr int64_t kCalls = 1 << 20;
  std::vector<uint32_t> ticks(kCalls);
  std::vector<uint32_t> all;
  int64_t step = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < kCalls; ++i, ++step) {
      const uint64_t t0 = __rdtsc();
      w->add_scalar("loss/train", 0.5, step);
      const uint64_t t1 = __rdtsc();
      ticks[i] = static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX));
    }
    state.PauseTiming();
    all.insert(all.end(), ticks.begin(), ticks.end());
    if (!w->flush().ok()) state.SkipWithError("flush failed");
    state.ResumeTiming();
  }
  // Cost of the two rdtsc reads alone, subtracted from every sample.
  uint64_t overhead = UINT64_MAX;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t t0 = __rdtsc();
    const uint64_t t1 = __rdtsc();
    overhead = std::min(overhead, t1 - t0);
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    const uint64_t t = all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
    return static_cast<double>(t > overhead ? t - overhead : 0) * ns_per_tick;
  };
  state.counters["p50_ns"] = pct(0.50);
  state.counters["p99_ns"] = pct(0.99);
  state.counters["p99.9_ns"] = pct(0.999);
  state.counters["p99.99_ns"] = pct(0.9999);
  state.counters["max_ns"] = static_cast<double>(all.back() - overhead) * ns_per_tick;
  state.counters["queue_full_waits"] = static_cast<double>(w->counters().queue_full_waits);
  state.SetItemsProcessed(state.iterations() * kCalls);
  (void)w->close();
}
BENCHMARK(BM_AddScalarLatency)->Iterations(8)->Unit(benchmark::kMillisecond);

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

// add_histogram of 10,000 values: bucketing, the proto, serialisation and
// enqueueing on the calling thread (the writer thread writes concurrently).
void BM_AddHistogram(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  const std::vector<double> values = NormalValues(state.range(0));
  int64_t step = 0;
  for (auto _ : state) w->add_histogram("weights", values, step++);
  (void)w->close();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddHistogram)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_AddHistogramTensor(benchmark::State& state) {
  ScratchDir dir;
  auto w = NewWriter(dir.path());
  at::Tensor t = at::randn({state.range(0)});
  int64_t step = 0;
  for (auto _ : state) w->add_histogram("weights", t, step++);
  (void)w->close();
  state.SetItemsProcessed(state.iterations());
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
