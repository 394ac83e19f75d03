// The LibTorch side: the trainer loop, datasets and models.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include "trainbus/accuracy.h"
#include "trainbus/batch_schedule.h"
#include "trainbus/checkpoint.h"
#include "trainbus/config.h"
#include "trainbus/data/datasets.h"
#include "trainbus/plugin.h"
#include "trainbus/session.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/proto/hparams.pb.h"
#include "trainbus/tensorboard/summaries.h"
#include "trainbus/tensorboard/tensor_summaries.h"
#include "trainbus/trainer.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

config::RunConfig TinyConfig(const std::string& extra_json = "{}") {
  auto c = ParseRunConfig(extra_json, "json", "test");
  EXPECT_TRUE(c.ok()) << c.status();
  auto* d = c->mutable_dataset();
  if (!d->has_train_samples()) d->set_train_samples(240);
  if (!d->has_val_samples()) d->set_val_samples(60);
  auto* t = c->mutable_trainer();
  if (!t->has_batch_size()) t->mutable_batch_size()->set_number_value(32);
  if (!t->has_epochs()) t->set_epochs(3);
  if (!t->has_num_threads()) t->set_num_threads(1);
  if (c->log_root().empty()) c->set_log_root((fs::temp_directory_path() / "trainbus_trainer_runs").string());
  EXPECT_TRUE(FinalizeRunConfig(&*c, "test").ok());
  return *c;
}

// Records the events a run publishes.
class Watcher : public Plugin {
 public:
  void OnTrainBegin(const TrainBeginEvent& e, Control&) override { run = *e.run; }
  void OnEpochBegin(const EpochBeginEvent& e, Control&) override { epoch_sizes.push_back(e.iterations); }
  void OnIterationEnd(const IterationEndEvent& e, Control& c) override {
    steps.push_back(e.step);
    losses.push_back(e.loss);
    batch_sizes.push_back(e.batch_size);
    lrs.push_back(e.learning_rates.empty() ? -1 : e.learning_rates[0]);
    if (e.step == stop_at) c.RequestStop("test stop");
    if (e.step == set_lr_at) {
      ASSERT_TRUE(c.SetLearningRate(0, 0.5).ok());
    }
    if (e.step == throw_at) throw std::runtime_error("hook failure");
    // The outputs are this batch's logits, without autograd history: a
    // plugin reads them without recording a graph.
    ASSERT_NE(e.outputs, nullptr);
    ASSERT_NE(e.targets, nullptr);
    outputs_ok = outputs_ok && e.outputs->defined() && !e.outputs->requires_grad() &&
                 !e.outputs->grad_fn() && e.outputs->size(0) == e.batch_size;
    if (outputs_ok) {
      const double from_outputs = e.outputs->argmax(1).eq(*e.targets).to(at::kDouble).mean().item<double>();
      accuracy_matches_outputs = accuracy_matches_outputs &&
                                 FindMetric(e.metrics, "train/accuracy") == from_outputs;
    }
    ASSERT_NE(c.model(), nullptr);
    ASSERT_NE(c.optimizer(), nullptr);
  }
  void OnValidationEnd(const ValidationEndEvent& e, Control&) override {
    validation_steps.push_back(e.step);
    accuracy = FindMetric(e.metrics, "val/accuracy").value_or(-1);
  }
  void OnTrainEnd(const TrainEndEvent& e, Control&) override { end_reason = e.reason; }

  int64_t stop_at = -1, set_lr_at = -1, throw_at = -1;
  RunInfo run;
  std::vector<int64_t> steps, batch_sizes, epoch_sizes, validation_steps;
  std::vector<double> lrs, losses;
  double accuracy = -1;
  bool outputs_ok = true, accuracy_matches_outputs = true;
  EndReason end_reason = EndReason::kCompleted;
};

struct Watched {
  std::unique_ptr<Trainer> trainer;
  Watcher* watcher;
};

Watched MakeTrainer(const config::RunConfig& c, HookErrorPolicy policy = HookErrorPolicy::kStopRun) {
  auto session = std::make_unique<Session>(policy);
  session->bus().set_log_sink([](absl::string_view) {});
  auto w = MakePlugin<Watcher>();
  Watcher* raw = w.get();
  EXPECT_TRUE(session->AddPlugin(std::move(w), "watcher").ok());
  auto t = Trainer::Create(c, std::move(session));
  EXPECT_TRUE(t.ok()) << t.status();
  return {std::move(t).value(), raw};
}

// The trainer's fast accuracy must count exactly what argmax/eq/sum counts,
// with argmax's tie and NaN rules, and fall back for every other layout.
TEST(AccuracyTest, CountCorrectMatchesArgmaxIncludingTiesAndNaN) {
  at::manual_seed(3);
  auto reference = [](const at::Tensor& logits, const at::Tensor& y) {
    return logits.argmax(1).eq(y).sum().item<int64_t>();
  };
  const at::Tensor y = at::randint(0, 5, {200}, at::TensorOptions().dtype(at::kLong));
  // Rounded to 0.5 steps: many rows have tied maxima.
  at::Tensor logits = (at::randn({200, 5}) * 2).round() / 2;
  logits.index_put_({3, 2}, NAN);                   // NaN in the middle of a row
  logits.index_put_({4, 0}, NAN);                   // NaN first
  logits.index_put_({5}, NAN);                      // all NaN
  logits.index_put_({6, 1}, INFINITY);
  logits.index_put_({7}, -INFINITY);                // all -inf: index 0
  logits.index_put_({8, 1}, NAN);                   // two NaNs: the first wins
  logits.index_put_({8, 3}, NAN);
  logits.index_put_({9, 0}, 50.0);                  // a NaN after the maximum
  logits.index_put_({9, 4}, NAN);
  EXPECT_EQ(CountCorrect(logits, y), reference(logits, y));
  // Row by row, so that two wrong rows cannot cancel out in the sum.
  for (int64_t i = 0; i < logits.size(0); ++i) {
    for (int64_t label = 0; label < 5; ++label) {
      const at::Tensor row = logits.slice(0, i, i + 1);
      const at::Tensor target = at::full({1}, label, at::TensorOptions().dtype(at::kLong));
      ASSERT_EQ(CountCorrect(row, target), reference(row, target)) << "row " << i << ", label " << label;
    }
  }
  // Every prefix of the rows, against every label: the fast path counts four
  // rows at a time, and a row it got wrong shows at the prefix that ends
  // with it, for the label it should have predicted.
  for (int64_t label = 0; label < 5; ++label) {
    const at::Tensor all = at::full({200}, label, at::TensorOptions().dtype(at::kLong));
    for (int64_t k = 1; k <= logits.size(0); ++k) {
      ASSERT_EQ(CountCorrect(logits.slice(0, 0, k), all.slice(0, 0, k)),
                reference(logits.slice(0, 0, k), all.slice(0, 0, k)))
          << "rows [0, " << k << "), label " << label;
    }
  }
  // Rows set up to be right: the NaN's column is the prediction.
  at::Tensor y2 = y.clone();
  y2.index_put_({3}, 2);
  y2.index_put_({4}, 0);
  y2.index_put_({5}, 0);
  EXPECT_EQ(CountCorrect(logits, y2), reference(logits, y2));
  // Fallback layouts: transposed (not contiguous), double, int32 targets.
  const at::Tensor t = at::randn({5, 200}).t();
  EXPECT_EQ(CountCorrect(t, y), reference(t, y));
  EXPECT_EQ(CountCorrect(logits.to(at::kDouble), y), reference(logits, y));
  EXPECT_EQ(CountCorrect(logits, y.to(at::kInt)), reference(logits, y));
  EXPECT_EQ(CountCorrect(at::empty({0, 5}), at::empty({0}, at::kLong)), 0);
  // One class: every row predicts it (seven rows: a block of four and a tail).
  const at::Tensor one_class = at::randn({7, 1});
  const at::Tensor labels = at::tensor({0, 1, 0, 0, 1, 0, 0}, at::TensorOptions().dtype(at::kLong));
  EXPECT_EQ(CountCorrect(one_class, labels), 5);
}

TEST(TrainerTest, RunsThePlannedIterations) {
  auto [trainer, w] = MakeTrainer(TinyConfig());
  EXPECT_EQ(trainer->plan().epochs[0].iterations, 8);  // ceil(240 / 32)
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->iterations_run, 24);
  EXPECT_EQ(w->losses.size(), 24u);
  EXPECT_EQ(r->last_loss, w->losses.back());
  EXPECT_EQ(w->steps.front(), 0);
  EXPECT_EQ(w->steps.back(), 23);
  EXPECT_EQ(w->batch_sizes[7], 240 - 7 * 32);  // the last, smaller batch
  EXPECT_THAT(w->epoch_sizes, ::testing::ElementsAre(8, 8, 8));
  EXPECT_EQ(w->validation_steps, (std::vector<int64_t>{7, 15, 23}));
  EXPECT_EQ(w->run.total_iterations, 24);
  EXPECT_EQ(r->reason, EndReason::kCompleted);
  EXPECT_TRUE(w->outputs_ok);
  EXPECT_TRUE(w->accuracy_matches_outputs);
}

TEST(TrainerTest, DropLastAndMaxIterations) {
  auto [dropped, w1] = MakeTrainer(TinyConfig(R"({"trainer": {"drop_last": true, "epochs": 2}})"));
  auto r1 = dropped->Run();
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->iterations_run, 14);  // floor(240 / 32) = 7 per epoch
  for (int64_t b : w1->batch_sizes) EXPECT_EQ(b, 32);

  auto [capped, w2] = MakeTrainer(TinyConfig(R"({"trainer": {"max_iterations": 11}})"));
  auto r2 = capped->Run();
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->iterations_run, 11);
  EXPECT_EQ(w2->steps.back(), 10);
  EXPECT_THAT(w2->epoch_sizes, ::testing::ElementsAre(8, 3));
}

TEST(TrainerTest, StopsAtTheExactIterationRequested) {
  auto [trainer, w] = MakeTrainer(TinyConfig());
  w->stop_at = 5;
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->iterations_run, 6);
  EXPECT_EQ(r->last_step, 5);
  EXPECT_EQ(r->reason, EndReason::kStopRequested);
  EXPECT_EQ(r->stop_reason, "watcher: test stop");
  EXPECT_EQ(w->end_reason, EndReason::kStopRequested);
}

TEST(TrainerTest, SameSeedSameLossesOtherSeedOtherLosses) {
  auto a = MakeTrainer(TinyConfig());
  auto b = MakeTrainer(TinyConfig());
  auto c = MakeTrainer(TinyConfig(R"({"trainer": {"seed": 43}})"));
  ASSERT_TRUE(a.trainer->Run().ok() && b.trainer->Run().ok() && c.trainer->Run().ok());
  EXPECT_EQ(a.watcher->losses, b.watcher->losses);
  EXPECT_NE(a.watcher->losses, c.watcher->losses);
}

// Gathering the next batch on the prefetch thread changes nothing but where
// the gather runs: every run below trains on the same batches, bit for bit,
// with trainer.prefetch_batches on and off. Each epoch's first batch is
// gathered in line; so is one whose size a plugin changed mid-epoch.
TEST(TrainerTest, PrefetchedBatchesAreTheBatchesGatheredInLine) {
  struct Case {
    const char* json;
    int64_t stop_at;
    int64_t prefetched;  // -1: some, fewer than iterations - epochs
  };
  const Case cases[] = {
      {R"({})", -1, 24 - 3},
      {R"({"trainer": {"drop_last": true}})", -1, 21 - 3},
      {R"({"trainer": {"max_iterations": 11}})", -1, 11 - 2},
      {R"({})", 5, 5},  // the batch of step 6 was gathered, never taken
      {R"({"plugins": [{"name": "batch_size_schedule", "options": {"schedule":
           {"interval": "iteration", "mode": "linear", "start": 0, "end": 6,
            "final_size": 64, "round_to": 8}}}]})", -1, -1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    config::RunConfig on_config = TinyConfig(c.json);
    config::RunConfig off_config = on_config;
    on_config.mutable_trainer()->set_prefetch_batches(true);
    off_config.mutable_trainer()->set_prefetch_batches(false);
    auto on = MakeTrainer(on_config);
    auto off = MakeTrainer(off_config);
    on.watcher->stop_at = off.watcher->stop_at = c.stop_at;
    auto r_on = on.trainer->Run();
    auto r_off = off.trainer->Run();
    ASSERT_TRUE(r_on.ok()) << r_on.status();
    ASSERT_TRUE(r_off.ok()) << r_off.status();
    EXPECT_EQ(on.watcher->losses, off.watcher->losses);
    EXPECT_EQ(on.watcher->batch_sizes, off.watcher->batch_sizes);
    EXPECT_EQ(r_off->prefetched_batches, 0);
    const int64_t epochs = static_cast<int64_t>(on.watcher->epoch_sizes.size());
    if (c.prefetched >= 0) {
      EXPECT_EQ(r_on->prefetched_batches, c.prefetched);
    } else {
      EXPECT_GT(r_on->prefetched_batches, 0);
      EXPECT_LT(r_on->prefetched_batches, r_on->iterations_run - epochs);
    }
  }
}

// Unset, prefetch_batches is on when a core is left over for its thread:
// not when LibTorch's threads take every core.
TEST(TrainerTest, BatchesArePrefetchedByDefaultOnlyWhenACoreIsFree) {
  // The CPUs this process may use, as the trainer counts them.
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  const int cpus = CPU_COUNT(&allowed);
  auto all_cores = MakeTrainer(TinyConfig(absl::StrCat(R"({"trainer": {"num_threads": )", cpus, "}}")));
  auto r = all_cores.trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prefetched_batches, 0);
  if (cpus < 2) GTEST_SKIP() << "one CPU: no core is ever free";
  auto one_thread = MakeTrainer(TinyConfig());  // num_threads 1
  r = one_thread.trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prefetched_batches, 24 - 3);
}

TEST(TrainerTest, ATinyModelLearnsATinyProblem) {
  auto [trainer, w] = MakeTrainer(TinyConfig(
      R"({"trainer": {"epochs": 6}, "dataset": {"train_samples": 600, "val_samples": 120},
          "optimizer": {"momentum": 0.9}})"));
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok());
  const auto& l = w->losses;
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += l[i];
    last += l[l.size() - 1 - i];
  }
  EXPECT_LT(last, 0.5 * first) << "loss did not fall: " << first / 10 << " -> " << last / 10;
  EXPECT_GT(w->accuracy, 0.6);  // six classes: chance is 0.17
}

TEST(TrainerTest, EveryOptimizerAndModelTrains) {
  for (const char* json :
       {R"({"optimizer": {"type": "adam"}})", R"({"optimizer": {"type": "adamw"}})",
        R"({"optimizer": {"type": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4}})",
        R"({"model": {"type": "mlp", "hidden": [32, 16], "dropout": 0.1}})"}) {
    auto t = MakeTrainer(TinyConfig(json));
    auto r = t.trainer->Run();
    ASSERT_TRUE(r.ok()) << json << ": " << r.status();
    EXPECT_EQ(r->iterations_run, 24) << json;
    EXPECT_LT(t.watcher->losses.back(), t.watcher->losses.front()) << json;
  }
}

TEST(TrainerTest, PluginsSetTheLearningRateForTheNextStep) {
  auto [trainer, w] = MakeTrainer(TinyConfig(R"({"optimizer": {"lr": 0.01}})"));
  w->set_lr_at = 3;
  ASSERT_TRUE(trainer->Run().ok());
  EXPECT_DOUBLE_EQ(w->lrs[3], 0.01);
  EXPECT_DOUBLE_EQ(w->lrs[4], 0.5);
}

TEST(TrainerTest, ValidationEveryNIterations) {
  auto [trainer, w] = MakeTrainer(
      TinyConfig(R"({"trainer": {"validate_every_n_iterations": 5, "validate_every_n_epochs": 0}})"));
  ASSERT_TRUE(trainer->Run().ok());
  EXPECT_EQ(w->validation_steps, (std::vector<int64_t>{4, 9, 14, 19}));
}

TEST(TrainerTest, AThrowingHookEndsTheRunWithItsMessage) {
  auto [trainer, w] = MakeTrainer(TinyConfig());
  w->throw_at = 2;
  auto r = trainer->Run();
  EXPECT_THAT(Msg(r.status()), HasSubstr("plugin 'watcher' threw in OnIterationEnd at step 2: hook failure"));
  EXPECT_EQ(w->steps.back(), 2);
  EXPECT_EQ(w->end_reason, EndReason::kFailed);
}

TEST(TrainerTest, UnknownPluginInConfigFailsBeforeTraining) {
  config::RunConfig c = TinyConfig();
  c.add_plugins()->set_name("no_such_plugin");
  auto t = Trainer::Create(c);
  EXPECT_THAT(Msg(t.status()), HasSubstr("no plugin named 'no_such_plugin'"));
}

// ------------------------------------------------------------ checkpoints ----

}  // namespace
namespace internal {
extern void (*checkpoint_stage_hook)(const char* stage);
}  // namespace internal
namespace {

// A tiny model and optimizer with some momentum state.
struct Tiny {
  torch::nn::Linear model{torch::nn::Linear(3, 2)};
  std::unique_ptr<torch::optim::SGD> opt;
  Tiny() {
    opt = std::make_unique<torch::optim::SGD>(model->parameters(),
                                              torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int i = 0; i < 2; ++i) {
      opt->zero_grad();
      model->forward(at::ones({4, 3})).sum().backward();
      opt->step();
    }
  }
};

CheckpointState StateAt(int64_t step) {
  CheckpointState s;
  s.next_step = step;
  s.plugin_states["p"] = "state-bytes";
  s.host_state = "plan";
  return s;
}

TEST(CheckpointTest, RoundTripRestoresModelOptimizerAndState) {
  TempDir dir;
  Tiny a;
  auto blob = SerializeCheckpoint(a.model.ptr().get(), a.opt.get(), StateAt(7));
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto path = WriteCheckpoint(dir.path(), "step-7", *blob);
  ASSERT_TRUE(path.ok()) << path.status();
  Tiny b;
  {
    torch::NoGradGuard g;
    b.model->weight.add_(1.0);
  }
  auto state = LoadCheckpoint(dir.path(), b.model.ptr().get(), b.opt.get());  // via `latest`
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->next_step, 7);
  EXPECT_EQ(state->plugin_states["p"], "state-bytes");
  EXPECT_EQ(state->host_state, "plan");
  EXPECT_TRUE(a.model->weight.equal(b.model->weight));
  // Momentum buffers too: one more identical step keeps them equal.
  for (Tiny* t : {&a, &b}) {
    t->opt->zero_grad();
    t->model->forward(at::ones({4, 3})).sum().backward();
    t->opt->step();
  }
  EXPECT_TRUE(a.model->weight.equal(b.model->weight));
}

TEST(CheckpointTest, CorruptOrIncompatibleCheckpointIsAClearError) {
  TempDir dir;
  Tiny a;
  auto blob = SerializeCheckpoint(a.model.ptr().get(), a.opt.get(), StateAt(1));
  ASSERT_TRUE(blob.ok());
  auto path = WriteCheckpoint(dir.path(), "step-1", *blob);
  ASSERT_TRUE(path.ok());
  {
    std::fstream f(*path + "/model.pt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x55');
  }
  Tiny b;
  auto bad = LoadCheckpoint(*path, b.model.ptr().get(), b.opt.get());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(bad.status()), AllOf(HasSubstr(*path), HasSubstr("model.pt is corrupt")));

  auto path2 = WriteCheckpoint(dir.path(), "step-2", *blob);
  ASSERT_TRUE(path2.ok());
  torch::nn::Linear other(5, 2);
  auto mismatch = LoadCheckpoint(*path2, other.ptr().get(), nullptr);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(mismatch.status()), HasSubstr("does not fit this model"));

  EXPECT_THAT(Msg(LoadCheckpoint(dir.path() + "/nothing", nullptr, nullptr).status()),
              HasSubstr("does not exist"));
}

TEST(CheckpointTest, CrashDuringWriteLeavesThePreviousCheckpointLoadable) {
  TempDir dir;
  Tiny a;
  auto blob = SerializeCheckpoint(a.model.ptr().get(), a.opt.get(), StateAt(10));
  ASSERT_TRUE(WriteCheckpoint(dir.path(), "step-10", *blob).ok());
  for (const char* stage : {"model", "optimizer", "meta"}) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      static std::string crash_at;
      crash_at = stage;
      internal::checkpoint_stage_hook = [](const char* s) {
        if (crash_at == s) _exit(86);  // the process dies mid-write
      };
      auto later = SerializeCheckpoint(a.model.ptr().get(), a.opt.get(), StateAt(20));
      (void)WriteCheckpoint(dir.path(), "step-20", *later);
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 86) << stage;
    Tiny b;
    auto state = LoadCheckpoint(dir.path(), b.model.ptr().get(), b.opt.get());
    ASSERT_TRUE(state.ok()) << stage << ": " << state.status();
    EXPECT_EQ(state->next_step, 10) << stage;
    EXPECT_FALSE(fs::exists(dir.path() + "/step-20")) << stage;
  }
  // The next good save cleans the leftovers of the crashed ones.
  ASSERT_TRUE(WriteCheckpoint(dir.path(), "step-30", *blob).ok());
  int leftovers = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    leftovers += e.path().filename().string().find(".tmp-") != std::string::npos;
  }
  EXPECT_EQ(leftovers, 0);
}

// 2N iterations straight == N iterations, then resumed for N more.
TEST(CheckpointTest, ResumeContinuesExactly) {
  TempDir dir;
  const std::string json = absl::StrCat(R"({"name": "resume", "log_root": ")", dir.path(), R"(",
      "trainer": {"epochs": 3},
      "model": {"type": "mlp", "hidden": [16], "dropout": 0.2},
      "optimizer": {"type": "adam", "lr": 0.01},
      "plugins": [{"name": "checkpoint", "options": {"every_n_epochs": 0}}]})");
  // 240 samples, batch 32 -> 8 per epoch, 24 in all; stop after 10 (mid-epoch).
  auto straight = MakeTrainer(TinyConfig(json));
  auto full = straight.trainer->Run();
  ASSERT_TRUE(full.ok()) << full.status();
  fs::remove_all(dir.path() + "/resume");

  config::RunConfig first_half = TinyConfig(json);
  first_half.mutable_trainer()->set_max_iterations(10);
  auto a = MakeTrainer(first_half);
  auto ra = a.trainer->Run();
  ASSERT_TRUE(ra.ok()) << ra.status();
  ASSERT_EQ(ra->iterations_run, 10);

  auto b = MakeTrainer(TinyConfig(json));
  ASSERT_TRUE(b.trainer->Resume(dir.path() + "/resume/checkpoints").ok());
  EXPECT_EQ(b.trainer->start_step(), 10);
  auto rb = b.trainer->Run();
  ASSERT_TRUE(rb.ok()) << rb.status();
  ASSERT_EQ(rb->iterations_run, 14);
  std::vector<double> joined = a.watcher->losses;
  joined.insert(joined.end(), b.watcher->losses.begin(), b.watcher->losses.end());
  EXPECT_EQ(joined, straight.watcher->losses);  // bit for bit
  EXPECT_EQ(b.watcher->steps.front(), 10);
  std::vector<double> lrs = a.watcher->lrs;
  lrs.insert(lrs.end(), b.watcher->lrs.begin(), b.watcher->lrs.end());
  EXPECT_EQ(lrs, straight.watcher->lrs);
}

TEST(CheckpointTest, ResumeRefusesAnotherPlanOrACorruptCheckpoint) {
  TempDir dir;
  const std::string json = absl::StrCat(R"({"name": "r", "log_root": ")", dir.path(), R"(",
      "trainer": {"epochs": 1}, "plugins": [{"name": "checkpoint"}]})");
  ASSERT_TRUE(MakeTrainer(TinyConfig(json)).trainer->Run().ok());
  const std::string root = dir.path() + "/r/checkpoints";
  config::RunConfig other = TinyConfig(json);
  other.mutable_trainer()->mutable_batch_size()->set_number_value(16);
  EXPECT_THAT(Msg(MakeTrainer(other).trainer->Resume(root)),
              AllOf(HasSubstr("batch_size=32"), HasSubstr("batch_size=16"),
                    HasSubstr("Resume with the same dataset, batch size, seed and normalisation")));
  auto dir_path = ResolveCheckpoint(root);
  ASSERT_TRUE(dir_path.ok());
  std::ofstream(*dir_path + "/optimizer.pt", std::ios::app) << "junk";
  auto t = MakeTrainer(TinyConfig(json));
  EXPECT_THAT(Msg(t.trainer->Resume(root)), HasSubstr("optimizer.pt is corrupt"));
  EXPECT_TRUE(t.watcher->steps.empty());
}

// ------------------------------------------- batch sizes and normalisation ----

// Watches the gradient hooks: passes per iteration, the gradient norm the
// optimizer is about to use, and records.
class GradientWatcher : public Plugin {
 public:
  void OnAfterBackward(const AfterBackwardEvent& e, Control&) override {
    passes.push_back(absl::StrCat(e.step, ":", e.micro_batch, "/", e.micro_batches));
  }
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent&, Control& c) override {
    double sum = 0;
    for (const at::Tensor& p : c.model()->parameters()) {
      if (p.grad().defined()) sum += p.grad().pow(2).sum().item<double>();
    }
    norms_before_step.push_back(std::sqrt(sum));
  }
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    losses.push_back(e.loss);
    batch_sizes.push_back(e.batch_size);
  }
  void OnRecord(const Record& r, Control&) override {
    if (r.tag == "grad_clip/norm") clip_norms.push_back(std::get<ScalarValue>(r.value).value);
  }
  std::vector<std::string> passes;
  std::vector<double> norms_before_step, losses, clip_norms;
  std::vector<int64_t> batch_sizes;
};

struct GradientWatched {
  std::unique_ptr<Trainer> trainer;
  GradientWatcher* watcher;
};

GradientWatched MakeGradientTrainer(const config::RunConfig& c) {
  auto session = std::make_unique<Session>();
  session->bus().set_log_sink([](absl::string_view) {});
  auto w = MakePlugin<GradientWatcher>();
  GradientWatcher* raw = w.get();
  // After every bundled plugin's gradient hooks (grad_clip runs at -50).
  EXPECT_TRUE(session->AddPlugin(std::move(w), "gradients", 100).ok());
  auto t = Trainer::Create(c, std::move(session));
  EXPECT_TRUE(t.ok()) << t.status();
  return {std::move(t).value(), raw};
}

// accumulate_batches k: each iteration runs k backward passes over its
// share of the batch before one optimizer step; the plan, the iteration's
// batch and the loss are those of one pass over k x batch_size samples.
TEST(TrainerTest, GradientAccumulationIsOneStepOverKPasses) {
  auto one = MakeGradientTrainer(TinyConfig(R"({"trainer": {"epochs": 1, "batch_size": 64}})"));
  auto acc = MakeGradientTrainer(
      TinyConfig(R"({"trainer": {"epochs": 1, "batch_size": 16, "accumulate_batches": 4}})"));
  EXPECT_EQ(acc.trainer->plan().total_iterations, one.trainer->plan().total_iterations);
  EXPECT_EQ(acc.trainer->plan().epochs[0].iterations, 4);  // ceil(240 / 64)
  ASSERT_TRUE(one.trainer->Run().ok());
  ASSERT_TRUE(acc.trainer->Run().ok());
  EXPECT_EQ(acc.watcher->batch_sizes, one.watcher->batch_sizes);
  ASSERT_EQ(acc.watcher->passes.size(), 16u);
  EXPECT_EQ(acc.watcher->passes[0], "0:0/4");
  EXPECT_EQ(acc.watcher->passes[3], "0:3/4");
  EXPECT_EQ(acc.watcher->passes[15], "3:3/4");
  EXPECT_EQ(one.watcher->passes[0], "0:0/1");
  // The same arithmetic in another order: equal up to float rounding.
  ASSERT_EQ(acc.watcher->losses.size(), one.watcher->losses.size());
  for (size_t i = 0; i < one.watcher->losses.size(); ++i) {
    EXPECT_NEAR(acc.watcher->losses[i], one.watcher->losses[i], 1e-4) << "iteration " << i;
    EXPECT_NEAR(acc.watcher->norms_before_step[i], one.watcher->norms_before_step[i],
                1e-4 * (1 + one.watcher->norms_before_step[i]))
        << "iteration " << i;
  }
  auto bad = ParseRunConfig(R"({"trainer": {"accumulate_batches": 0}})", "json", "test");
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(Msg(FinalizeRunConfig(&*bad, "test")),
              HasSubstr("trainer.accumulate_batches must be between 1 and 65536, got 0"));
}

// compute_seconds is the model's own work only: hooks that take 10 ms each
// (every micro-batch's AfterBackward, the BeforeOptimizerStep) count in
// duration_seconds and not in it.
class SlowGradientHooks : public Plugin {
 public:
  void OnAfterBackward(const AfterBackwardEvent&, Control&) override { Nap(); }
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent&, Control&) override { Nap(); }
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    compute.push_back(e.compute_seconds);
    duration.push_back(e.duration_seconds);
  }
  static void Nap() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }
  std::vector<double> compute, duration;
};

TEST(TrainerTest, ComputeSecondsIsTheModelsWorkWithoutTheHooks) {
  auto session = std::make_unique<Session>(HookErrorPolicy::kStopRun);
  session->bus().set_log_sink([](absl::string_view) {});
  auto hooks = MakePlugin<SlowGradientHooks>();
  SlowGradientHooks* raw = hooks.get();
  ASSERT_TRUE(session->AddPlugin(std::move(hooks), "slow").ok());
  auto trainer = Trainer::Create(
      TinyConfig(R"({"trainer": {"epochs": 1, "max_iterations": 3, "accumulate_batches": 2}})"),
      std::move(session));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ASSERT_TRUE((*trainer)->Run().ok());
  ASSERT_EQ(raw->compute.size(), 3u);
  for (size_t i = 0; i < raw->compute.size(); ++i) {
    EXPECT_GT(raw->compute[i], 0.0) << "iteration " << i;
    // Three naps an iteration: two passes' AfterBackward, one BeforeOptimizerStep.
    EXPECT_GE(raw->duration[i] - raw->compute[i], 0.030) << "iteration " << i;
  }
}

// grad_clip through the trainer: it logs the norm before clipping, and the
// optimizer gets gradients of at most max_norm.
TEST(TrainerTest, GradClipBoundsTheNormTheOptimizerSees) {
  auto w = MakeGradientTrainer(TinyConfig(R"({"trainer": {"epochs": 1},
      "plugins": [{"name": "grad_clip", "options": {"max_norm": 0.01}}]})"));
  ASSERT_TRUE(w.trainer->Run().ok());
  ASSERT_EQ(w.watcher->clip_norms.size(), 8u);
  ASSERT_EQ(w.watcher->norms_before_step.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_GT(w.watcher->clip_norms[i], 0.01) << "the unclipped norm, step " << i;
    EXPECT_LE(w.watcher->norms_before_step[i], 0.01 * (1 + 1e-5)) << "step " << i;
  }
}

TEST(BatchScheduleRunTest, EpochScheduleRunsExactlyThePlannedIterations) {
  auto [trainer, w] = MakeTrainer(TinyConfig(R"({"plugins": [{"name": "batch_size_schedule",
      "options": {"schedule": {"mode": "multiply", "factor": 2, "every": 1}}}]})"));
  const SchedulePlan& plan = trainer->plan();
  ASSERT_EQ(plan.epochs.size(), 3u);
  EXPECT_EQ(plan.epochs[0].iterations, 8);  // 240 / 32
  EXPECT_EQ(plan.epochs[1].iterations, 4);  // 240 / 64
  EXPECT_EQ(plan.epochs[2].iterations, 2);  // 240 / 128
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->iterations_run, plan.total_iterations);
  EXPECT_THAT(w->epoch_sizes, ::testing::ElementsAre(8, 4, 2));
  EXPECT_EQ(w->batch_sizes[0], 32);
  EXPECT_EQ(w->batch_sizes[8], 64);
  EXPECT_EQ(w->batch_sizes[11], 240 - 3 * 64);
  EXPECT_EQ(w->batch_sizes[12], 128);
  EXPECT_EQ(w->batch_sizes[13], 112);
}

TEST(BatchScheduleRunTest, IterationScheduleRebatchesMidEpochAndScalesTheLr) {
  auto [trainer, w] = MakeTrainer(TinyConfig(R"({"optimizer": {"lr": 0.01},
      "plugins": [{"name": "batch_size_schedule", "options": {"scale_lr": true,
        "schedule": {"interval": "iteration", "mode": "linear", "start": 0, "end": 6,
                     "final_size": 64, "round_to": 8}}}]})"));
  const SchedulePlan& plan = trainer->plan();
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->iterations_run, plan.total_iterations);
  // Expected sizes: the schedule at every step, cut at each epoch's end.
  BatchSchedule s;
  s.interval = BatchSchedule::Interval::kIteration;
  s.mode = BatchSchedule::Mode::kLinear;
  s.end = 6;
  s.final_size = 64;
  s.round_to = 8;
  int64_t step = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int64_t offset = 0; offset < 240; ++step) {
      const int64_t want = std::min<int64_t>(s.At(step, 32), 240 - offset);
      ASSERT_EQ(w->batch_sizes[step], want) << "step " << step;
      EXPECT_NEAR(w->lrs[step], 0.01 * s.At(step, 32) / 32, 1e-12) << "step " << step;
      offset += want;
    }
  }
  EXPECT_EQ(step, r->iterations_run);
}

TEST(BatchScheduleRunTest, BatchSizeOneAndFullBatchBothTrain) {
  auto [sgd, w1] = MakeTrainer(TinyConfig(R"({"trainer": {"batch_size": 1, "epochs": 1},
      "dataset": {"train_samples": 60, "val_samples": 12}, "optimizer": {"lr": 0.01}})"));
  auto r1 = sgd->Run();
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->iterations_run, 60);  // stochastic gradient descent: one sample per step
  for (int64_t b : w1->batch_sizes) EXPECT_EQ(b, 1);

  auto [full, w2] = MakeTrainer(TinyConfig(R"({"trainer": {"batch_size": "full", "epochs": 8},
      "optimizer": {"lr": 0.1}})"));
  auto r2 = full->Run();
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->iterations_run, 8);  // batch gradient descent: one step per epoch
  for (int64_t b : w2->batch_sizes) EXPECT_EQ(b, 240);
  EXPECT_LT(w2->losses.back(), w2->losses.front());
}

TEST(NormalizationTest, ComputedStatisticsMatchADirectComputation) {
  auto [trainer, w] = MakeTrainer(TinyConfig(R"({"trainer": {"normalize": {"mode": "compute"}}})"));
  auto raw = MakeShapesDataset(240, 60, 7);
  ASSERT_TRUE(raw.ok());
  const at::Tensor x = raw->train.inputs.to(at::kDouble);
  ASSERT_EQ(trainer->normalization_mean().size(), 1u);
  EXPECT_NEAR(trainer->normalization_mean()[0], x.mean().item<double>(), 1e-9);
  EXPECT_NEAR(trainer->normalization_std()[0], x.std(/*unbiased=*/false).item<double>(), 1e-9);
  ASSERT_TRUE(trainer->Run().ok());

  auto [given, w2] = MakeTrainer(TinyConfig(
      R"({"trainer": {"normalize": {"mode": "given", "mean": [0.5], "std": [0.25]}}})"));
  EXPECT_EQ(given->normalization_mean(), (std::vector<double>{0.5}));
}

TEST(NormalizationTest, GivenStatisticsMustMatchTheChannels) {
  config::RunConfig c = TinyConfig(
      R"({"trainer": {"normalize": {"mode": "given", "mean": [0.5, 0.5], "std": [1, 1]}}})");
  auto t = Trainer::Create(c, std::make_unique<Session>());
  EXPECT_THAT(Msg(t.status()), HasSubstr("2 mean/std values given for data with 1 channel(s)"));
}

TEST(ValidationTest, EveryNIterationsOnAFixedSubset) {
  auto [trainer, w] = MakeTrainer(TinyConfig(R"({"trainer": {"validate_every_n_iterations": 4,
      "validate_every_n_epochs": 0, "validation_subset": 20}})"));
  ASSERT_TRUE(trainer->Run().ok());
  EXPECT_EQ(w->validation_steps.size(), 6u);  // 24 iterations / 4
  const double correct = w->accuracy * 20;    // accuracy over exactly 20 samples
  EXPECT_NEAR(correct, std::round(correct), 1e-9);
}

TEST(CheckpointTest, ResumeWithABatchScheduleContinuesExactly) {
  TempDir dir;
  const std::string json = absl::StrCat(R"({"name": "bs", "log_root": ")", dir.path(), R"(",
      "plugins": [{"name": "batch_size_schedule", "options": {"scale_lr": true,
                   "schedule": {"interval": "iteration", "mode": "step", "milestones": [5, 9],
                                "sizes": [48, 80]}}},
                  {"name": "checkpoint", "options": {"every_n_epochs": 0}}]})");
  auto straight = MakeTrainer(TinyConfig(json));
  auto full = straight.trainer->Run();
  ASSERT_TRUE(full.ok()) << full.status();
  fs::remove_all(dir.path() + "/bs");
  config::RunConfig first = TinyConfig(json);
  first.mutable_trainer()->set_max_iterations(7);  // inside epoch 1, after a change
  auto a = MakeTrainer(first);
  auto ra = a.trainer->Run();
  ASSERT_TRUE(ra.ok()) << ra.status();
  auto b = MakeTrainer(TinyConfig(json));
  ASSERT_TRUE(b.trainer->Resume(dir.path() + "/bs/checkpoints").ok());
  auto rb = b.trainer->Run();
  ASSERT_TRUE(rb.ok()) << rb.status();
  std::vector<double> joined = a.watcher->losses;
  joined.insert(joined.end(), b.watcher->losses.begin(), b.watcher->losses.end());
  EXPECT_EQ(joined, straight.watcher->losses);
  std::vector<int64_t> sizes = a.watcher->batch_sizes;
  sizes.insert(sizes.end(), b.watcher->batch_sizes.begin(), b.watcher->batch_sizes.end());
  EXPECT_EQ(sizes, straight.watcher->batch_sizes);
  std::vector<double> lrs = a.watcher->lrs;
  lrs.insert(lrs.end(), b.watcher->lrs.begin(), b.watcher->lrs.end());
  EXPECT_EQ(lrs, straight.watcher->lrs);
}

// -------------------------------------------------------------- datasets ----

TEST(DatasetTest, ShapesAreDeterministicBalancedAndInRange) {
  auto a = MakeShapesDataset(120, 30, 7);
  auto b = MakeShapesDataset(120, 30, 7);
  auto c = MakeShapesDataset(120, 30, 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->train.inputs.sizes(), (std::vector<int64_t>{120, 1, 28, 28}));
  EXPECT_TRUE(a->train.inputs.equal(b->train.inputs));
  EXPECT_FALSE(a->train.inputs.equal(c->train.inputs));
  EXPECT_FALSE(a->train.inputs.equal(a->val.inputs.slice(0, 0, 30)) && false);
  EXPECT_GE(a->train.inputs.min().item<float>(), 0.0f);
  EXPECT_LE(a->train.inputs.max().item<float>(), 1.0f);
  EXPECT_EQ(a->train.num_classes, 6);
  at::Tensor counts = at::bincount(a->train.targets);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(counts[k].item<int64_t>(), 20);
}

void WriteBigEndian32(std::ofstream& out, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  out.write(b, 4);
}

void WriteIdx(const std::string& dir, const std::string& prefix, int n) {
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  WriteBigEndian32(images, 2051);
  WriteBigEndian32(images, n);
  WriteBigEndian32(images, 28);
  WriteBigEndian32(images, 28);
  for (int i = 0; i < n * 28 * 28; ++i) images.put(char(i % 256));
  std::ofstream labels(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  WriteBigEndian32(labels, 2049);
  WriteBigEndian32(labels, n);
  for (int i = 0; i < n; ++i) labels.put(char(i % 10));
}

TEST(DatasetTest, MnistReadsIdxFiles) {
  TempDir dir;
  WriteIdx(dir.path(), "train", 12);
  WriteIdx(dir.path(), "t10k", 5);
  auto d = LoadMnist(dir.path(), 10, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train.inputs.sizes(), (std::vector<int64_t>{10, 1, 28, 28}));
  EXPECT_EQ(d->val.size(), 5);
  EXPECT_EQ(d->train.targets[3].item<int64_t>(), 3);
  EXPECT_NEAR(d->train.inputs[0][0][0][1].item<float>(), 1.0f / 255, 1e-6);
}

TEST(DatasetTest, MnistMissingFileIsNamed) {
  TempDir dir;
  WriteIdx(dir.path(), "train", 3);
  auto d = LoadMnist(dir.path(), 0, 0);
  EXPECT_THAT(Msg(d.status()), AllOf(HasSubstr("t10k-images-idx3-ubyte is missing"), HasSubstr(dir.path())));
  EXPECT_THAT(Msg(LoadMnist("/no/such/dir", 0, 0).status()), HasSubstr("folder /no/such/dir does not exist"));
}

TEST(DatasetTest, Cifar10ReadsBinaryBatchesAndRejectsBadOnes) {
  TempDir dir;
  auto write_batch = [&](const std::string& name, int n, int size_delta = 0) {
    std::ofstream out(dir.path() + "/" + name, std::ios::binary);
    for (int i = 0; i < n; ++i) {
      out.put(char(i % 10));
      for (int p = 0; p < 3072; ++p) out.put(char(p % 251));
    }
    for (int k = 0; k < size_delta; ++k) out.put(0);
  };
  for (int i = 1; i <= 5; ++i) write_batch(absl::StrCat("data_batch_", i, ".bin"), 2);
  write_batch("test_batch.bin", 3);
  auto d = LoadCifar10(dir.path(), 0, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train.inputs.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  EXPECT_EQ(d->val.size(), 3);
  EXPECT_EQ(d->train.targets[1].item<int64_t>(), 1);
  EXPECT_NEAR(d->train.inputs[0][0][0][5].item<float>(), 5.0f / 255, 1e-6);
  write_batch("test_batch.bin", 3, 7);
  EXPECT_THAT(Msg(LoadCifar10(dir.path(), 0, 0).status()),
              AllOf(HasSubstr("test_batch.bin is not a CIFAR-10 binary batch"), HasSubstr("3073")));
}

// An embedding program returns early (or throws) with the session declared
// before the model, as the README shows: the session's destructor ends the
// run after the model is gone. Plugins must not touch it (this crashed in
// early_stopping's restore_best_weights; ASan sees any use of the freed
// model), the run ends as failed, and the event files are complete.
TEST(SessionTest, ReturningEarlyWithoutEndIsSafeAndEndsTheRunAsFailed) {
  TempDir dir;
  auto config = ParseRunConfig(absl::StrCat(R"({"name": "early", "log_root": ")", dir.path(), R"(",
      "plugins": [{"name": "early_stopping", "options": {"monitor": "val/loss",
                   "restore_best_weights": true}},
                  {"name": "tensorboard"}]})"), "json", "cfg");
  ASSERT_TRUE(config.ok()) << config.status();
  {
    auto session = Session::Create(*config);
    ASSERT_TRUE(session.ok()) << session.status();
    (*session)->bus().set_log_sink([](absl::string_view) {});
    auto model = std::make_unique<torch::nn::Linear>(4, 2);
    torch::optim::SGD optimizer((*model)->parameters(), torch::optim::SGDOptions(0.1));
    (*session)->Bind(model->get(), &optimizer);
    (*session)->Begin(RunInfo());
    (*session)->BeginEpoch();
    for (int i = 0; i < 3; ++i) {
      (*session)->EndIteration(1.0 / (i + 1), 8);
      (*session)->EndValidation({{"val/loss", 1.0 / (i + 1)}});
    }
    model.reset();  // the model goes first, then the session without End()
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path() + "/early")) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  auto contents = tensorboard::ReadEventFile(files[0]);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_EQ(contents->end, tensorboard::EventFileReader::State::kEnd);
  int losses = 0;
  std::string end_text;
  for (const auto& e : contents->events) {
    for (const auto& v : e.summary().value()) {
      losses += v.tag() == "train/loss";
      if (v.tag() == "run/end") end_text = v.tensor().string_val(0);
    }
  }
  EXPECT_EQ(losses, 3);
  EXPECT_THAT(end_text, HasSubstr("Run failed after step 2"));
  EXPECT_THAT(end_text, HasSubstr("destroyed without End()"));
}

// The HParams dashboard's status of a run that nonfinite_guard stopped on a
// NaN loss is a failure, not a success (it was STATUS_SUCCESS for every run).
TEST(SessionTest, ARunStoppedOnANonFiniteLossShowsAsFailedInHParams) {
  TempDir dir;
  auto config = ParseRunConfig(absl::StrCat(R"({"name": "nan", "log_root": ")", dir.path(), R"(",
      "plugins": [{"name": "nonfinite_guard", "options": {"check_gradients": false}},
                  {"name": "tensorboard"}]})"), "json", "cfg");
  ASSERT_TRUE(config.ok()) << config.status();
  auto session = Session::Create(*config);
  ASSERT_TRUE(session.ok()) << session.status();
  (*session)->bus().set_log_sink([](absl::string_view) {});
  torch::nn::Linear model(4, 2);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  (*session)->Bind(model.ptr().get(), &optimizer);
  RunInfo run;
  run.hparams = {{"lr", "0.1"}};
  (*session)->Begin(run);
  (*session)->BeginEpoch();
  (*session)->EndIteration(1.0, 8);
  (*session)->EndIteration(std::nan(""), 8);
  EXPECT_TRUE((*session)->ShouldStop());
  ASSERT_TRUE((*session)->End().ok());
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path() + "/nan")) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  auto contents = tensorboard::ReadEventFile(files[0]);
  ASSERT_TRUE(contents.ok()) << contents.status();
  int status = -1;
  for (const auto& e : contents->events) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() != "_hparams_/session_end_info") continue;
      tensorboard::proto::hparams::HParamsPluginData data;
      ASSERT_TRUE(data.ParseFromString(v.metadata().plugin_data().content()));
      status = data.session_end_info().status();
    }
  }
  EXPECT_EQ(status, tensorboard::proto::hparams::STATUS_FAILURE);
}

// The tensorboard plugin's inputs/video: frame k is the first image of
// iteration k's batch, each scaled to [0, 1] by its own range, whatever the
// batch's dtype or memory layout (a contiguous float batch is copied with
// memcpy, any other through a tensor copy). The GIF must be byte for byte
// the one the writer makes from those frames scaled with tensor ops (the
// plugin scales them with plain loops).
TEST(SessionTest, TheTensorBoardVideoHoldsEachIterationsFirstInputImage) {
  TempDir dir;
  auto config = ParseRunConfig(absl::StrCat(R"({"name": "video", "log_root": ")", dir.path(), R"(",
      "plugins": [{"name": "tensorboard", "options": {"video_frames": 3, "images": 0,
                   "graph": false, "layout": false, "hparams": false}}]})"), "json", "cfg");
  ASSERT_TRUE(config.ok()) << config.status();
  auto session = Session::Create(*config);
  ASSERT_TRUE(session.ok()) << session.status();
  (*session)->bus().set_log_sink([](absl::string_view) {});
  (*session)->Begin(RunInfo());
  (*session)->BeginEpoch();
  at::manual_seed(11);
  std::vector<at::Tensor> firsts;
  for (int k = 0; k < 5; ++k) {
    // [2, 3, 4, 5]: image 0's red a ramp that differs per iteration, the rest noise
    // (three channels: the frames' bytes are laid out channel last).
    at::Tensor batch = at::rand({2, 3, 4, 5});
    batch[0][0] = (at::arange(20, at::kFloat).reshape({4, 5}) * (k + 1)).remainder(17);
    if (k == 1) batch[0][1][2][3] = NAN;  // a frame with a NaN is black, as through min/max
    firsts.push_back(batch[0].clone());
    at::Tensor inputs = batch;
    if (k == 1) inputs = batch.to(at::kDouble);                               // another dtype
    if (k == 2) inputs = batch.permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});  // strided
    IterationEndEvent e;
    e.loss = 1.0;
    e.batch_size = 2;
    e.inputs = &inputs;
    (*session)->EndIteration(e);
  }
  ASSERT_TRUE((*session)->End().ok());

  at::Tensor frames = at::stack({firsts[0], firsts[1], firsts[2]});
  const at::Tensor flat = frames.flatten(1);
  const at::Tensor lo = std::get<0>(flat.min(1)).view({-1, 1, 1, 1});
  const at::Tensor hi = std::get<0>(flat.max(1)).view({-1, 1, 1, 1});
  const at::Tensor scaled = (frames - lo) / (hi - lo).clamp_min(1e-12);
  auto canvas = tensorboard::PrepareVideo("inputs/video", scaled.unsqueeze(0), 4.0, "NTCHW");
  ASSERT_TRUE(canvas.ok()) << canvas.status();
  auto want = tensorboard::EncodeVideoSummary("inputs/video", *canvas);
  ASSERT_TRUE(want.ok()) << want.status();

  std::vector<std::string> files;
  for (const auto& f : fs::directory_iterator(dir.path() + "/video")) files.push_back(f.path());
  ASSERT_EQ(files.size(), 1u);
  auto contents = tensorboard::ReadEventFile(files[0]);
  ASSERT_TRUE(contents.ok()) << contents.status();
  int videos = 0;
  for (const auto& e : contents->events) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() != "inputs/video") continue;
      ++videos;
      EXPECT_EQ(e.step(), 0);
      EXPECT_EQ(v.image().encoded_image_string(), want->value(0).image().encoded_image_string());
    }
  }
  EXPECT_EQ(videos, 1);
}

// Bind takes what LibTorch code holds: a holder (Sequential), a shared_ptr,
// or a Module*. Plugins then see the model.
class ModelSeer : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent&, Control& c) override { seen = c.model(); }
  torch::nn::Module* seen = nullptr;
};

// An embedded program's reruns never mix into one folder: Session::Create
// claims <name>, then <name>-2, ... as `trainbus train` does; append keeps it.
TEST(SessionTest, CreateClaimsANewRunFolderUnlessAppending) {
  TempDir dir;
  auto config = ParseRunConfig(absl::StrCat(R"({"name": "mine", "log_root": ")", dir.path(), R"("})"),
                               "json", "test");
  ASSERT_TRUE(config.ok());
  auto first = Session::Create(*config);
  auto second = Session::Create(*config);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ((*first)->log_dir(), dir.path() + "/mine");
  EXPECT_EQ((*second)->log_dir(), dir.path() + "/mine-2");
  EXPECT_TRUE(fs::is_directory(dir.path() + "/mine-2"));
  config->set_append(true);
  auto appended = Session::Create(*config);
  ASSERT_TRUE(appended.ok());
  EXPECT_EQ((*appended)->log_dir(), dir.path() + "/mine");
  EXPECT_FALSE(fs::exists(dir.path() + "/mine-3"));
  // A name with folders in it (an embedder's "group/exp") claims its last part.
  config->set_append(false);
  config->set_name("group/exp");
  auto grouped = Session::Create(*config), again = Session::Create(*config);
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*grouped)->log_dir(), dir.path() + "/group/exp");
  EXPECT_EQ((*again)->log_dir(), dir.path() + "/group/exp-2");
}

TEST(SessionTest, BindTakesHoldersSharedPointersAndPointers) {
  torch::nn::Sequential sequential(torch::nn::Linear(4, 3), torch::nn::Linear(3, 2));
  auto shared = std::make_shared<torch::nn::LinearImpl>(4, 2);
  torch::optim::SGD optimizer(sequential->parameters(), torch::optim::SGDOptions(0.1));
  for (int how = 0; how < 3; ++how) {
    Session session;
    auto seer = MakePlugin<ModelSeer>();
    ModelSeer* raw = seer.get();
    ASSERT_TRUE(session.AddPlugin(std::move(seer), "seer").ok());
    torch::nn::Module* want = nullptr;
    if (how == 0) {
      session.Bind(sequential, &optimizer);
      want = sequential.ptr().get();
    } else if (how == 1) {
      session.Bind(shared, &optimizer);
      want = shared.get();
    } else {
      session.Bind(shared.get(), &optimizer);
      want = shared.get();
    }
    session.Begin(RunInfo());
    session.EndIteration(1.0, 4);
    ASSERT_TRUE(session.End().ok());
    EXPECT_EQ(raw->seen, want) << "way " << how;
  }
}

}  // namespace
}  // namespace trainbus
