// The plugin bus's cost per published iteration.
//
//   build-bench/bench/bus/bus_bench
//
// BM_IterationEnd/N: a Bus with N trivial plugins (each reads the event and
// keeps a running sum) publishing IterationEnd. N = 0 is the empty loop.
// BM_IterationEndNoSubscriber/N: N plugins that implement only OnTrainEnd, so
// IterationEnd reaches none of them (hooks are found at compile time by
// MakePlugin / TRAINBUS_PLUGIN; the bus keeps one subscriber list per hook).
// BM_SessionEndIteration/N: the same through Session::EndIteration(event),
// what a host loop calls (counters, position, checkpoint-request reset).
// Inputs are deterministic: the event is the same but for its step.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainbus/bus.h"
#include "trainbus/events.h"
#include "trainbus/plugin.h"
#include "trainbus/session.h"

namespace {

// Implements OnIterationEnd only: touches the event like a cheap real plugin.
class SumLoss : public trainbus::Plugin {
 public:
  void OnIterationEnd(const trainbus::IterationEndEvent& e, trainbus::Control&) override {
    sum_ += e.loss;
    last_step_ = e.step;
  }
  double sum() const { return sum_; }

 private:
  double sum_ = 0.0;
  int64_t last_step_ = 0;
};

// Implements OnTrainEnd only: never sees an IterationEnd.
class EndOnly : public trainbus::Plugin {
 public:
  void OnTrainEnd(const trainbus::TrainEndEvent&, trainbus::Control&) override { ++ends_; }

 private:
  int ends_ = 0;
};

template <class T>
std::vector<std::unique_ptr<trainbus::Plugin>> AddPlugins(trainbus::Bus& bus, int n) {
  std::vector<std::unique_ptr<trainbus::Plugin>> plugins;
  for (int i = 0; i < n; ++i) {
    plugins.push_back(trainbus::MakePlugin<T>());
    if (!bus.Add(plugins.back().get(), absl::StrCat("p", i)).ok()) std::abort();
  }
  return plugins;
}

const std::vector<double> kLearningRates = {0.05};
const std::vector<trainbus::Metric> kMetrics = {{"train/accuracy", 0.5}};

trainbus::IterationEndEvent MakeEvent() {
  trainbus::IterationEndEvent e;
  e.batch_size = 64;
  e.loss = 0.25;
  e.learning_rates = kLearningRates;
  e.metrics = kMetrics;
  e.duration_seconds = 1e-3;
  return e;
}

template <class T>
void BM_BusIterationEnd(benchmark::State& state) {
  trainbus::Bus bus;
  trainbus::RunInfo run;
  bus.set_run_info(&run);
  auto plugins = AddPlugins<T>(bus, static_cast<int>(state.range(0)));
  trainbus::IterationEndEvent e = MakeEvent();
  for (auto _ : state) {
    bus.IterationEnd(e);
    ++e.step;
    benchmark::ClobberMemory();
  }
  if (!bus.status().ok() || bus.stop_requested()) state.SkipWithError("bus failed");
  state.counters["plugins"] = static_cast<double>(state.range(0));
}

void BM_IterationEnd(benchmark::State& state) { BM_BusIterationEnd<SumLoss>(state); }
BENCHMARK(BM_IterationEnd)->Arg(0)->Arg(1)->Arg(10)->Arg(50);

void BM_IterationEndNoSubscriber(benchmark::State& state) { BM_BusIterationEnd<EndOnly>(state); }
BENCHMARK(BM_IterationEndNoSubscriber)->Arg(1)->Arg(10)->Arg(50);

// Session::EndIteration with a full event (no optimizer bound, no files).
void BM_SessionEndIteration(benchmark::State& state) {
  trainbus::Session session;
  for (int i = 0; i < state.range(0); ++i) {
    if (!session.AddPlugin(trainbus::MakePlugin<SumLoss>(), absl::StrCat("p", i)).ok()) std::abort();
  }
  trainbus::RunInfo run;
  run.run_name = "bench";
  session.Begin(run);
  session.BeginEpoch();
  trainbus::IterationEndEvent e = MakeEvent();
  for (auto _ : state) {
    session.EndIteration(e);
    ++e.step;
    ++e.batch_index;
    benchmark::ClobberMemory();
  }
  session.EndEpoch();
  if (!session.End().ok()) state.SkipWithError("session failed");
  state.counters["plugins"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_SessionEndIteration)->Arg(0)->Arg(1)->Arg(10)->Arg(50);

}  // namespace

BENCHMARK_MAIN();
