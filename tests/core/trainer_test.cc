// The LibTorch side: the trainer loop, datasets and models.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "trainbus/config.h"
#include "trainbus/data/datasets.h"
#include "trainbus/plugin.h"
#include "trainbus/session.h"
#include "trainbus/trainer.h"

namespace trainbus {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "trainbus_trainer_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string path() const { return path_; }

 private:
  std::string path_;
};

config::RunConfig TinyConfig(const std::string& extra_json = "{}") {
  auto c = ParseRunConfig(extra_json, "json", "test");
  EXPECT_TRUE(c.ok()) << c.status();
  auto* d = c->mutable_dataset();
  if (!d->has_train_samples()) d->set_train_samples(240);
  if (!d->has_val_samples()) d->set_val_samples(60);
  auto* t = c->mutable_trainer();
  if (!t->has_batch_size()) t->set_batch_size(32);
  if (!t->has_epochs()) t->set_epochs(3);
  if (!t->has_num_threads()) t->set_num_threads(1);
  c->set_log_root((fs::temp_directory_path() / "trainbus_trainer_runs").string());
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
    batch_sizes.push_back(e.batch_size);
    lrs.push_back(e.learning_rates.empty() ? -1 : e.learning_rates[0]);
    if (e.step == stop_at) c.RequestStop("test stop");
    if (e.step == set_lr_at) ASSERT_TRUE(c.SetLearningRate(0, 0.5).ok());
    if (e.step == throw_at) throw std::runtime_error("hook failure");
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
  std::vector<double> lrs;
  double accuracy = -1;
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

TEST(TrainerTest, RunsThePlannedIterations) {
  auto [trainer, w] = MakeTrainer(TinyConfig());
  EXPECT_EQ(trainer->plan().iterations_per_epoch, 8);  // ceil(240 / 32)
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->iterations_run, 24);
  EXPECT_EQ(r->losses.size(), 24u);
  EXPECT_EQ(w->steps.front(), 0);
  EXPECT_EQ(w->steps.back(), 23);
  EXPECT_EQ(w->batch_sizes[7], 240 - 7 * 32);  // the last, smaller batch
  EXPECT_THAT(w->epoch_sizes, ::testing::ElementsAre(8, 8, 8));
  EXPECT_EQ(w->validation_steps, (std::vector<int64_t>{7, 15, 23}));
  EXPECT_EQ(w->run.total_iterations, 24);
  EXPECT_EQ(r->reason, EndReason::kCompleted);
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
  auto a = MakeTrainer(TinyConfig()).trainer->Run();
  auto b = MakeTrainer(TinyConfig()).trainer->Run();
  auto c = MakeTrainer(TinyConfig(R"({"trainer": {"seed": 43}})")).trainer->Run();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->losses, b->losses);
  EXPECT_NE(a->losses, c->losses);
}

TEST(TrainerTest, ATinyModelLearnsATinyProblem) {
  auto [trainer, w] = MakeTrainer(TinyConfig(
      R"({"trainer": {"epochs": 6}, "dataset": {"train_samples": 600, "val_samples": 120},
          "optimizer": {"momentum": 0.9}})"));
  auto r = trainer->Run();
  ASSERT_TRUE(r.ok());
  const auto& l = r->losses;
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
    auto r = MakeTrainer(TinyConfig(json)).trainer->Run();
    ASSERT_TRUE(r.ok()) << json << ": " << r.status();
    EXPECT_EQ(r->iterations_run, 24) << json;
    EXPECT_LT(r->losses.back(), r->losses.front()) << json;
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

}  // namespace
}  // namespace trainbus
