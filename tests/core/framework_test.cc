// Framework suites without LibTorch math: iteration arithmetic, options,
// config, bus, loader, session, progress format, and the CLI's error paths.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>

#include <optional>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "progress_format.h"
#include "trainbus/batch_schedule.h"
#include "trainbus/bus.h"
#include "trainbus/config.h"
#include "trainbus/crash_report.h"
#include "trainbus/options.h"
#include "trainbus/plugin.h"
#include "trainbus/plugin_loader.h"
#include "trainbus/session.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::ReadFile;
using trainbus::test_util::CommandResult;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---------------------------------------------------------------- plan ----

// Without a schedule: the textbook arithmetic of epochs, batches and iterations.
absl::StatusOr<SchedulePlan> Plain(int64_t samples, int64_t batch, int64_t epochs, bool drop_last,
                                   std::optional<int64_t> max_iterations = std::nullopt) {
  return PlanWithSchedule(samples, batch, epochs, drop_last, max_iterations, nullptr);
}

TEST(IterationPlanTest, TextbookExamples) {
  auto a = Plain(10000, 100, 1, false);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->epochs.front().iterations, 100);
  auto b = Plain(10000, 200, 10, false);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->epochs.front().iterations, 50);
  EXPECT_EQ(b->total_iterations, 500);
  auto c = Plain(50000, 100, 20, false);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->total_iterations, 10000);
  EXPECT_EQ(c->samples_seen, 1000000);
}

TEST(IterationPlanTest, NonDivisibleWithAndWithoutDropLast) {
  auto keep = Plain(1000, 300, 2, false);
  ASSERT_TRUE(keep.ok());
  EXPECT_EQ(keep->epochs.front().iterations, 4);
  EXPECT_EQ(keep->epochs.front().last_batch_size, 100);
  EXPECT_EQ(keep->total_iterations, 8);
  EXPECT_EQ(keep->samples_seen, 2000);
  auto drop = Plain(1000, 300, 2, true);
  ASSERT_TRUE(drop.ok());
  EXPECT_EQ(drop->epochs.front().iterations, 3);
  EXPECT_EQ(drop->epochs.front().last_batch_size, 300);
  EXPECT_EQ(drop->total_iterations, 6);
  EXPECT_EQ(drop->samples_seen, 1800);
}

TEST(IterationPlanTest, MaxIterationsCapsTheRun) {
  auto p = Plain(1000, 100, 10, false, 25);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->total_iterations, 25);
  EXPECT_EQ(p->epochs.size(), 3u);
  EXPECT_EQ(p->samples_seen, 2500);
  auto larger = Plain(1000, 100, 2, false, 1000);
  ASSERT_TRUE(larger.ok());
  EXPECT_EQ(larger->total_iterations, 20);
}

TEST(IterationPlanTest, BadInputIsAClearError) {
  EXPECT_THAT(Msg(Plain(100, 0, 1, false).status()), HasSubstr("batch_size must be > 0"));
  EXPECT_THAT(Msg(Plain(0, 10, 1, false).status()), HasSubstr("training set is empty"));
  EXPECT_THAT(Msg(Plain(100, 256, 1, true).status()),
              AllOf(HasSubstr("batch_size 256 is larger than the 100"), HasSubstr("drop_last")));
  EXPECT_THAT(Msg(Plain(100, 10, 1, false, 0).status()), HasSubstr("max_iterations must be between 1 and 2^62, got 0"));
}

// ------------------------------------------------------ batch schedules ----

BatchSchedule ParseSchedule(const std::string& json) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &v).ok()) << json;
  auto s = BatchSchedule::FromValue(v, "schedule");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : BatchSchedule{};
}

TEST(BatchScheduleTest, ModesGiveTheDocumentedSizes) {
  BatchSchedule step = ParseSchedule(R"({"mode": "step", "milestones": [2, 4], "sizes": [128, 256]})");
  EXPECT_EQ(step.At(0, 64), 64);
  EXPECT_EQ(step.At(1, 64), 64);
  EXPECT_EQ(step.At(2, 64), 128);
  EXPECT_EQ(step.At(5, 64), 256);
  BatchSchedule mul = ParseSchedule(R"({"mode": "multiply", "factor": 2, "every": 2, "max_batch_size": 300})");
  EXPECT_EQ(mul.At(1, 64), 64);
  EXPECT_EQ(mul.At(2, 64), 128);
  EXPECT_EQ(mul.At(4, 64), 256);
  EXPECT_EQ(mul.At(6, 64), 300);
  BatchSchedule lin = ParseSchedule(
      R"({"interval": "iteration", "mode": "linear", "start": 10, "end": 20, "final_size": 128, "round_to": 16})");
  EXPECT_EQ(lin.interval, BatchSchedule::Interval::kIteration);
  EXPECT_EQ(lin.At(0, 32), 32);
  EXPECT_EQ(lin.At(15, 32), 80);
  EXPECT_EQ(lin.At(25, 32), 128);
}

TEST(BatchScheduleTest, PlanFollowsTheScheduleEpochByEpoch) {
  BatchSchedule mul = ParseSchedule(R"({"mode": "multiply", "factor": 2, "every": 2})");
  auto plan = PlanWithSchedule(10000, 100, 6, false, std::nullopt, &mul);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->epochs.size(), 6u);
  EXPECT_EQ(plan->epochs[0].iterations, 100);
  EXPECT_EQ(plan->epochs[2].iterations, 50);
  EXPECT_EQ(plan->epochs[5].iterations, 25);
  EXPECT_EQ(plan->total_iterations, 350);
  EXPECT_EQ(plan->samples_seen, 60000);
  EXPECT_EQ(FormatSchedulePlan(*plan),
            "  epochs 1-2: batch 100, 100 iterations each, 10000 samples each\n"
            "  epochs 3-4: batch 200, 50 iterations each, 10000 samples each\n"
            "  epochs 5-6: batch 400, 25 iterations each, 10000 samples each\n"
            "  total: 350 iterations over 6 epochs, 60000 samples seen\n");
  // Without a schedule it is the textbook arithmetic.
  auto plain = PlanWithSchedule(50000, 100, 20, false, std::nullopt, nullptr);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->total_iterations, 10000);
  // Mid-epoch change: 100 samples, batch 10 for 3 iterations then 40.
  BatchSchedule it = ParseSchedule(R"({"interval": "iteration", "mode": "step", "milestones": [3], "sizes": [40]})");
  auto mid = PlanWithSchedule(100, 10, 2, false, std::nullopt, &it);
  ASSERT_TRUE(mid.ok());
  EXPECT_EQ(mid->epochs[0].iterations, 5);  // 10 10 10 40 30
  EXPECT_EQ(mid->epochs[0].last_batch_size, 30);
  EXPECT_EQ(mid->epochs[1].iterations, 3);  // 40 40 20
  auto capped = PlanWithSchedule(100, 10, 2, false, 6, &it);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->total_iterations, 6);
}

// The plan, walked iteration by iteration the way the trainer runs: the
// reference the run-length plan must equal, epoch for epoch.
std::vector<EpochPlan> WalkedPlan(int64_t samples, int64_t base, int64_t epochs, bool drop_last,
                                  std::optional<int64_t> max_iterations, const BatchSchedule* s) {
  std::vector<EpochPlan> rows;
  int64_t step = 0;
  for (int64_t e = 0; e < epochs && !(max_iterations && step >= *max_iterations); ++e) {
    EpochPlan row;
    row.epoch = e;
    row.first_step = step;
    for (int64_t offset = 0; offset < samples && !(max_iterations && step >= *max_iterations);) {
      const int64_t b = s == nullptr ? base
                        : s->At(s->interval == BatchSchedule::Interval::kEpoch ? e : step, base);
      if (drop_last && samples - offset < b) break;
      const int64_t bs = std::min(b, samples - offset);
      if (row.iterations == 0) row.first_batch_size = bs;
      row.last_batch_size = bs;
      offset += bs;
      row.samples += bs;
      ++row.iterations;
      ++step;
    }
    rows.push_back(row);
  }
  return rows;
}

BatchSchedule ScheduleFrom(const std::string& json) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &v).ok()) << json;
  auto s = BatchSchedule::FromValue(v, "test");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

TEST(BatchScheduleTest, TheRunLengthPlanIsTheIterationWalkEpochForEpoch) {
  const std::vector<std::string> schedules = {
      "", R"({"interval": "epoch", "mode": "step", "milestones": [2, 5], "sizes": [40, 7]})",
      R"({"interval": "epoch", "mode": "multiply", "factor": 2, "every": 2})",
      R"({"interval": "epoch", "mode": "multiply", "factor": 3, "max_batch_size": 100})",
      R"({"interval": "epoch", "mode": "multiply", "factor": 0.5, "every": 1})",
      R"({"interval": "epoch", "mode": "linear", "start": 1, "end": 6, "final_size": 90, "round_to": 5})",
      R"({"interval": "iteration", "mode": "step", "milestones": [7, 30], "sizes": [25, 60]})",
      R"({"interval": "iteration", "mode": "multiply", "factor": 2, "every": 5, "max_batch_size": 120})",
      R"({"interval": "iteration", "mode": "linear", "start": 3, "end": 40, "final_size": 99})"};
  int checked = 0;
  for (const std::string& json : schedules) {
    const BatchSchedule schedule = json.empty() ? BatchSchedule() : ScheduleFrom(json);
    const BatchSchedule* s = json.empty() ? nullptr : &schedule;
    for (int64_t samples : {1, 97, 300}) {
      for (int64_t base : {1, 10, 33, 500}) {
        for (bool drop_last : {false, true}) {
          for (std::optional<int64_t> cap : {std::optional<int64_t>(), std::optional<int64_t>(7),
                                             std::optional<int64_t>(100)}) {
            const int64_t epochs = 12;
            auto plan = PlanWithSchedule(samples, base, epochs, drop_last, cap, s);
            std::vector<EpochPlan> walked = WalkedPlan(samples, base, epochs, drop_last, cap, s);
            bool empty_epoch = false;
            for (const EpochPlan& r : walked) empty_epoch |= r.iterations == 0;
            const std::string where = absl::StrCat(json, " samples ", samples, " base ", base,
                                                   " drop_last ", drop_last, " cap ", cap.value_or(-1));
            if (empty_epoch) {
              EXPECT_FALSE(plan.ok()) << where;
              continue;
            }
            ASSERT_TRUE(plan.ok()) << where << ": " << plan.status();
            ASSERT_EQ(plan->epochs.size(), walked.size()) << where;
            int64_t total = 0;
            for (size_t e = 0; e < walked.size(); ++e) {
              const EpochPlan got = plan->epochs[static_cast<int64_t>(e)], want = walked[e];
              EXPECT_EQ(got.first_step, want.first_step) << where << " epoch " << e;
              EXPECT_EQ(got.iterations, want.iterations) << where << " epoch " << e;
              EXPECT_EQ(got.samples, want.samples) << where << " epoch " << e;
              EXPECT_EQ(got.first_batch_size, want.first_batch_size) << where << " epoch " << e;
              EXPECT_EQ(got.last_batch_size, want.last_batch_size) << where << " epoch " << e;
              total += want.iterations;
            }
            EXPECT_EQ(plan->total_iterations, total) << where;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 300);
}

// A plan of 2^61 iterations is a few rows, answered at once; 2^62 and more is
// an error that says what to do.
TEST(BatchScheduleTest, AnyPlanUpTo2To62IterationsIsAnsweredAtOnce) {
  auto huge = Plain(4000, 64, int64_t{1} << 55, false);  // 63 iterations an epoch
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(huge->total_iterations, 63 * (int64_t{1} << 55));
  EXPECT_EQ(huge->epochs.runs().size(), 1u);
  EXPECT_EQ(huge->epochs.back().first_step, 63 * ((int64_t{1} << 55) - 1));
  const BatchSchedule grow = ScheduleFrom(R"({"interval": "epoch", "mode": "multiply", "factor": 2})");
  auto growing = PlanWithSchedule(4000, 50, int64_t{1} << 50, false, std::nullopt, &grow);
  ASSERT_TRUE(growing.ok()) << growing.status();
  EXPECT_LT(growing->epochs.runs().size(), 10u);
  EXPECT_EQ(growing->epochs.back().first_batch_size, 4000);  // never wraps to 1
  EXPECT_THAT(Msg(Plain(4000, 1, int64_t{1} << 62, false).status()),
              HasSubstr("the plan is longer than 2^62 iterations"));
  // Slow schedules are answered at once too: a linear ramp over 10^15
  // iterations, and a multiply schedule that settles below its cap (round_to).
  const BatchSchedule ramp = ScheduleFrom(
      R"({"interval": "iteration", "mode": "linear", "start": 0, "end": 1000000000000000, "final_size": 4000})");
  auto ramped = PlanWithSchedule(4000, 50, 1000000000, false, std::nullopt, &ramp);
  ASSERT_TRUE(ramped.ok()) << ramped.status();
  EXPECT_LT(ramped->epochs.runs().size(), 5000u);
  const BatchSchedule settles = ScheduleFrom(
      R"({"interval": "epoch", "mode": "multiply", "factor": 2, "max_batch_size": 90, "round_to": 64})");
  auto settled = PlanWithSchedule(1000, 10, int64_t{1} << 50, false, std::nullopt, &settles);
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_LT(settled->epochs.runs().size(), 5u);
  EXPECT_THAT(Msg(Plain(4000, 64, 2, false, (int64_t{1} << 62) + 1).status()),
              HasSubstr("max_iterations must be between 1 and 2^62"));
  auto capped = Plain(4000, 1, int64_t{1} << 62, false, int64_t{1} << 40);
  ASSERT_TRUE(capped.ok());
  EXPECT_EQ(capped->total_iterations, int64_t{1} << 40);
}

TEST(BatchScheduleTest, BadSchedulesAreClearErrors) {
  struct Case { std::string json, expected; };
  for (const Case& c : std::vector<Case>{
           {R"({"mode": "exponential"})", "schedule: 'mode' must be \"step\", \"multiply\" or \"linear\""},
           {R"({"mode": "step", "milestones": [3, 2], "sizes": [1, 2]})", "'milestones' must be increasing"},
           {R"({"mode": "step", "milestones": [3]})", "needs 'milestones' and 'sizes' of the same"},
           {R"({"mode": "linear", "end": 5})", "needs 'final_size' and 'end' > 'start'"},
           {R"({"mode": "multiply", "factor": -1})", "'factor' must be a number > 0, got -1"},
           {R"({"mode": "step", "milestones": [1], "sizes": [0]})", "'sizes' must be a list of whole numbers >= 1"},
           {R"({"every": 2, "evry": 1})", "unknown key 'evry'"},
       }) {
    google::protobuf::Value v;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(c.json, &v).ok());
    EXPECT_THAT(Msg(BatchSchedule::FromValue(v, "schedule").status()), HasSubstr(c.expected)) << c.json;
  }
  BatchSchedule big = ParseSchedule(R"({"mode": "step", "milestones": [1], "sizes": [500]})");
  EXPECT_THAT(Msg(PlanWithSchedule(100, 10, 3, true, std::nullopt, &big).status()),
              HasSubstr("epoch 2 would run no iteration"));
}

// ------------------------------------------------------------- options ----

google::protobuf::Struct StructFromJson(const std::string& json) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &s).ok()) << json;
  return s;
}

const std::vector<OptionSpec> kSpecs = {
    {"every_n", OptionType::kInt, "10", "n"},
    {"rate", OptionType::kDouble, "0.5", "r"},
    {"name", OptionType::kString, "\"a\"", "s"},
    {"on", OptionType::kBool, "true", "b"},
    {"milestones", OptionType::kIntList, "[]", "m"},
    {"tags", OptionType::kStringList, "[\"x\"]", "t"},
    {"nested", OptionType::kObject, "", "o"},
};

TEST(PluginOptionsTest, DefaultsAndGivenValues) {
  auto o = PluginOptions::Create(kSpecs, StructFromJson(R"({"every_n": 3, "milestones": [1, 5]})"),
                                 "plugin 'p'");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->GetInt("every_n"), 3);
  EXPECT_TRUE(o->IsSet("every_n"));
  EXPECT_DOUBLE_EQ(o->GetDouble("rate"), 0.5);
  EXPECT_FALSE(o->IsSet("rate"));
  EXPECT_EQ(o->GetString("name"), "a");
  EXPECT_TRUE(o->GetBool("on"));
  EXPECT_THAT(o->GetIntList("milestones"), ElementsAre(1, 5));
  EXPECT_THAT(o->GetStringList("tags"), ElementsAre("x"));
  EXPECT_FALSE(o->Has("nested"));
  EXPECT_THROW(o->GetDouble("every_n"), std::logic_error);
  EXPECT_THROW(o->GetInt("undeclared"), std::logic_error);
}

TEST(PluginOptionsTest, UnknownKeyNamesPluginKeyAndKnownKeys) {
  auto o = PluginOptions::Create(kSpecs, StructFromJson(R"({"evry_n": 3})"), "plugin 'p'");
  EXPECT_THAT(Msg(o.status()), AllOf(HasSubstr("plugin 'p': unknown option 'evry_n'"),
                                     HasSubstr("known options: every_n, rate")));
}

TEST(PluginOptionsTest, WrongTypesAreNamed) {
  EXPECT_THAT(Msg(PluginOptions::Create(kSpecs, StructFromJson(R"({"every_n": "ten"})"), "plugin 'p'")
                      .status()),
              HasSubstr("plugin 'p': option 'every_n': expected int, got string \"ten\""));
  EXPECT_THAT(Msg(PluginOptions::Create(kSpecs, StructFromJson(R"({"every_n": 1.5})"), "plugin 'p'")
                      .status()),
              HasSubstr("expected int, got number 1.5"));
  EXPECT_THAT(
      Msg(PluginOptions::Create(kSpecs, StructFromJson(R"({"milestones": [1, "x"]})"), "plugin 'p'")
              .status()),
      HasSubstr("expected list<int>, element 1 is string"));
  EXPECT_THAT(Msg(PluginOptions::Create(kSpecs, StructFromJson(R"({"on": 1})"), "plugin 'p'").status()),
              HasSubstr("expected bool, got number"));
}

TEST(PluginOptionsTest, MalformedDefaultIsABugInThePlugin) {
  std::vector<OptionSpec> specs = {{"n", OptionType::kInt, "\"zero\"", ""}};
  EXPECT_THAT(Msg(PluginOptions::Create(specs, {}, "plugin 'p'").status()),
              HasSubstr("is not a valid int; this is a bug in the plugin"));
}

// -------------------------------------------------------------- config ----

TEST(RunConfigTest, ParsesJsonAndFillsDefaults) {
  TempDir dir;
  std::string path = dir.Write("run.json", R"({"trainer": {"epochs": 2},
      "plugins": [{"name": "progress", "options": {"bar_width": 10}}]})");
  auto c = LoadRunConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(FinalizeRunConfig(&*c, path).ok());
  EXPECT_EQ(c->trainer().epochs(), 2);
  EXPECT_EQ(ResolveBatchSize(c->trainer(), 1000), 64);
  EXPECT_EQ(c->model().type(), "cnn");
  EXPECT_EQ(c->optimizer().type(), "sgd");
  EXPECT_DOUBLE_EQ(c->optimizer().lr(), 0.05);
  EXPECT_EQ(c->name(), "cnn-shapes");
  EXPECT_EQ(c->log_root(), "runs");
  EXPECT_EQ(c->plugins(0).options().fields().at("bar_width").number_value(), 10);
}

TEST(RunConfigTest, ParsesTextFormat) {
  TempDir dir;
  std::string path = dir.Write("run.txtpb", "trainer { epochs: 3 batch_size { number_value: 10 } }\nname: \"t\"\n");
  auto c = LoadRunConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->trainer().epochs(), 3);
  EXPECT_EQ(ResolveBatchSize(c->trainer(), 100), 10);
  EXPECT_EQ(c->name(), "t");
}

TEST(RunConfigTest, UnknownFieldNamesFileAndField) {
  TempDir dir;
  std::string path = dir.Write("bad.json", R"({"trainer": {"epochz": 2}})");
  EXPECT_THAT(Msg(LoadRunConfig(path).status()), AllOf(HasSubstr(path), HasSubstr("epochz")));
  std::string tpath = dir.Write("bad.txtpb", "trainer {\n  epochz: 2\n}\n");
  EXPECT_THAT(Msg(LoadRunConfig(tpath).status()),
              AllOf(HasSubstr(tpath), HasSubstr("line 2"), HasSubstr("epochz")));
}

TEST(RunConfigTest, WrongTypeNamesFileAndField) {
  TempDir dir;
  std::string path = dir.Write("bad.json", R"({"trainer": {"epochs": "many"}})");
  EXPECT_THAT(Msg(LoadRunConfig(path).status()), AllOf(HasSubstr(path), HasSubstr("epochs")));
  std::string p2 = dir.Write("bad2.json", R"({"trainer": {"drop_last": 3}})");
  EXPECT_THAT(Msg(LoadRunConfig(p2).status()), AllOf(HasSubstr(p2), HasSubstr("drop_last")));
}

TEST(RunConfigTest, OutOfRangeNamesFileAndField) {
  struct Case {
    std::string json, expected;
  };
  const std::vector<Case> cases = {
      {R"({"trainer": {"batch_size": 0}})", "trainer.batch_size must be a whole number > 0 or \"full\", got 0"},
      {R"({"trainer": {"batch_size": "half"}})", "trainer.batch_size must be a whole number > 0 or \"full\", got \"half\""},
      {R"({"trainer": {"batch_size": 2.5}})", "trainer.batch_size must be a whole number > 0"},
      {R"({"trainer": {"validation_subset": -1}})", "trainer.validation_subset must be >= 0"},
      {R"({"trainer": {"normalize": {"mode": "zscore"}}})", "trainer.normalize.mode must be one of"},
      {R"({"trainer": {"normalize": {"mode": "given", "mean": [0.5]}}})", "needs mean and std with one value per channel"},
      {R"({"trainer": {"normalize": {"mode": "given", "mean": [0.5], "std": [0]}}})", "trainer.normalize.std[0] must be > 0"},
      {R"({"trainer": {"epochs": -1}})", "trainer.epochs must be between 1 and 2^62, got -1"},
      {R"({"optimizer": {"lr": -0.1}})", "optimizer.lr must be a finite number > 0"},
      {R"({"optimizer": {"type": "rmsprop"}})", "optimizer.type must be one of"},
      {R"({"optimizer": {"nesterov": true}})", "optimizer.nesterov needs optimizer.momentum > 0"},
      {R"({"model": {"type": "resnet"}})", "model.type must be one of \"cnn\", \"mlp\""},
      {R"({"model": {"dropout": 1.5}})", "model.dropout must be in [0, 1)"},
      {R"({"dataset": {"type": "mnist"}})", "dataset.dir is required"},
      {R"({"on_plugin_error": "ignore"})", "on_plugin_error must be \"stop\" or \"disable_plugin\""},
      {R"({"plugin_close_timeout_seconds": -1})", "plugin_close_timeout_seconds must be a finite number >= 0 (0: no limit), got -1"},
      {R"({"plugins": [{"name": "a"}, {"name": "a"}]})", "plugin 'a' is listed twice"},
      {R"({"name": "a/b"})", "name must be a plain folder name"},
  };
  for (const Case& c : cases) {
    auto config = ParseRunConfig(c.json, "json", "cfg.json");
    ASSERT_TRUE(config.ok()) << c.json;
    absl::Status s = FinalizeRunConfig(&*config, "cfg.json");
    EXPECT_THAT(Msg(s), AllOf(HasSubstr("cfg.json: "), HasSubstr(c.expected))) << c.json;
  }
}

// Several instances of one plugin: each has its own id, which --set names,
// which must be unique and is a plain word.
TEST(RunConfigTest, PluginInstancesAreNamedByTheirId) {
  auto c = ParseRunConfig(R"({"plugins": [
      {"name": "early_stopping", "id": "stop_on_loss"},
      {"name": "early_stopping", "id": "stop_on_accuracy"},
      {"name": "csv"}]})", "json", "x");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.stop_on_accuracy.options.patience=7").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.csv.options.every_n=2").ok());  // no id: the name
  EXPECT_FALSE(c->plugins(0).options().fields().contains("patience"));
  EXPECT_EQ(c->plugins(1).options().fields().at("patience").number_value(), 7);
  // A plugin the config does not name is added by --set (then found by it).
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.progress.options.bar_width=10").ok());
  ASSERT_EQ(c->plugins_size(), 4);
  EXPECT_EQ(c->plugins(3).name(), "progress");
  EXPECT_EQ(c->plugins(3).options().fields().at("bar_width").number_value(), 10);
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.progress.enabled=false").ok());
  ASSERT_EQ(c->plugins_size(), 4);
  EXPECT_FALSE(c->plugins(3).enabled());
  ASSERT_TRUE(FinalizeRunConfig(&*c, "x").ok());
  // Not added: a plugin the config has under other ids, and disabling a
  // plugin the config does not have (a typo would disable nothing).
  EXPECT_THAT(Msg(ApplyOverride(&*c, "plugins.early_stopping.options.patience=1")),
              HasSubstr("the config has plugin 'early_stopping' under the ids stop_on_loss, "
                        "stop_on_accuracy; name one of them, e.g. plugins.stop_on_loss.options"));
  EXPECT_THAT(Msg(ApplyOverride(&*c, "plugins.tensorbaord.enabled=false")),
              HasSubstr("the config has no plugin 'tensorbaord' to disable"));
  EXPECT_EQ(c->plugins_size(), 4);

  auto twice = ParseRunConfig(R"({"plugins": [{"name": "early_stopping"},
      {"name": "early_stopping"}]})", "json", "cfg.json");
  ASSERT_TRUE(twice.ok());
  EXPECT_THAT(Msg(FinalizeRunConfig(&*twice, "cfg.json")),
              HasSubstr("cfg.json: plugin 'early_stopping' is listed twice (plugins[0] and "
                        "plugins[1]); to run two instances of one plugin, give each its own \"id\""));
  auto dotted = ParseRunConfig(R"({"plugins": [{"name": "csv", "id": "a.b"}]})", "json", "cfg.json");
  ASSERT_TRUE(dotted.ok());
  EXPECT_THAT(Msg(FinalizeRunConfig(&*dotted, "cfg.json")),
              HasSubstr("plugins[0].id \"a.b\" may not contain '/' or '.'"));
}

// Relative plugin folders and libraries in a config file are its neighbours,
// wherever the program runs.
TEST(RunConfigTest, RelativePluginPathsAreTakenFromTheConfigFilesFolder) {
  TempDir dir;
  fs::create_directories(dir.path() + "/project");
  const std::string path = dir.Write("project/run.json", R"({"plugin_paths": ["plugins", "/opt/p"],
      "plugins": [{"name": "mine", "library": "build/libtrainbus_mine.so"}, {"name": "csv"}]})");
  auto c = LoadRunConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(c->plugin_paths(), ElementsAre(dir.path() + "/project/plugins", "/opt/p"));
  EXPECT_EQ(c->plugins(0).library(), dir.path() + "/project/build/libtrainbus_mine.so");
  EXPECT_EQ(c->plugins(1).library(), "");
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.mine.library=other/lib.so").ok());
  EXPECT_EQ(c->plugins(0).library(), "other/lib.so");  // --set: from the current folder
}

// A plugin whose default is not valid JSON of its type is reported when its
// library is opened (trainbus plugins), with the fix.
TEST(OptionsTest, BadDefaultsAreFoundBeforeTheRunAndSayHowToWriteThem) {
  EXPECT_TRUE(PluginOptions::CheckDefaults({{"stream", OptionType::kString, "\"stdout\"", ""},
                                            {"n", OptionType::kInt, "3", ""}},
                                           "plugin 'p'")
                  .ok());
  EXPECT_THAT(Msg(PluginOptions::CheckDefaults({{"stream", OptionType::kString, "stdout", ""}},
                                               "plugin 'p'")),
              HasSubstr("plugin 'p': the default of option 'stream' (stdout) is not a valid "
                        "string in JSON; write a string default with its quotes, e.g. "
                        "\"\\\"stdout\\\"\""));
  EXPECT_THAT(Msg(PluginOptions::CheckDefaults({{"n", OptionType::kInt, "1.5", ""}}, "plugin 'p'")),
              HasSubstr("the default of option 'n' (1.5) is not a valid int"));
}

TEST(RunConfigTest, OverridesSetFieldsPluginsAndOptions) {
  auto c = ParseRunConfig(R"({"plugins": [{"name": "progress"}]})", "json", "x");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(ApplyOverride(&*c, "trainer.epochs=7").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "optimizer.lr=0.25").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "trainer.drop_last=true").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "model.hidden=[4, 6]").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "trainer.batch_size=full").ok());
  EXPECT_EQ(ResolveBatchSize(c->trainer(), 500), 500);
  ASSERT_TRUE(ApplyOverride(&*c, "trainer.batch_size=16").ok());
  EXPECT_EQ(ResolveBatchSize(c->trainer(), 500), 16);
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.progress.priority=5").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.progress.options.bar_width=12").ok());
  ASSERT_TRUE(ApplyOverride(&*c, "plugins.progress.options.mode=lines").ok());
  EXPECT_EQ(c->trainer().epochs(), 7);
  EXPECT_DOUBLE_EQ(c->optimizer().lr(), 0.25);
  EXPECT_TRUE(c->trainer().drop_last());
  EXPECT_THAT(c->model().hidden(), ElementsAre(4, 6));
  EXPECT_EQ(c->plugins(0).priority(), 5);
  EXPECT_EQ(c->plugins(0).options().fields().at("bar_width").number_value(), 12);
  EXPECT_EQ(c->plugins(0).options().fields().at("mode").string_value(), "lines");
}

TEST(RunConfigTest, BadOverridesAreClear) {
  auto c = ParseRunConfig("{}", "json", "x");
  ASSERT_TRUE(c.ok());
  EXPECT_THAT(Msg(ApplyOverride(&*c, "trainer.epochs")), HasSubstr("expected key=value"));
  EXPECT_THAT(Msg(ApplyOverride(&*c, "trainer.epoch=3")),
              AllOf(HasSubstr("unknown field 'epoch'"), HasSubstr("epochs")));
  EXPECT_THAT(Msg(ApplyOverride(&*c, "trainer.epochs=three")),
              HasSubstr("trainer.epochs=three expects an integer, got \"three\""));
  EXPECT_THAT(Msg(ApplyOverride(&*c, "plugins.tensorboard=1")),
              HasSubstr("name a field of plugin 'tensorboard', e.g. plugins.tensorboard.enabled=false"));
  EXPECT_EQ(c->plugins_size(), 0);  // a failed --set adds nothing
  EXPECT_THAT(Msg(ApplyOverride(&*c, "trainer=1")), HasSubstr("is a section"));
}

// ----------------------------------------------------------------- bus ----

// Records what it sees into a shared log.
class Recorder : public Plugin {
 public:
  Recorder(std::string name, std::vector<std::string>* log) : name_(std::move(name)), log_(log) {}
  void OnTrainBegin(const TrainBeginEvent&, Control&) override { Add("TrainBegin"); }
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    Add(absl::StrCat("IterationEnd ", e.step));
  }
  void OnTrainEnd(const TrainEndEvent& e, Control&) override {
    Add(absl::StrCat("TrainEnd ", EndReasonName(e.reason)));
  }
  void OnAbort(const AbortEvent&, Control&) override { Add("Abort"); }
  void OnRecord(const Record& r, Control&) override {
    Add(absl::StrCat("Record ", r.tag, " ", r.wall_time > 0 ? "stamped" : "unstamped"));
  }

 private:
  void Add(const std::string& what) { log_->push_back(absl::StrCat(name_, ":", what)); }
  std::string name_;
  std::vector<std::string>* log_;
};

// Implements one hook only.
class IterationOnly : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent&, Control&) override { ++calls; }
  int calls = 0;
};

TEST(BusTest, HookMaskIsDetectedAtCompileTime) {
  EXPECT_EQ(HooksOf<IterationOnly>(), kHookIterationEnd | kClosesNothing);
  EXPECT_EQ(HooksOf<Recorder>(), kHookTrainBegin | kHookIterationEnd | kHookTrainEnd | kHookAbort |
                                     kHookRecord | kClosesNothing);
  EXPECT_EQ(HookMaskToString(kHookIterationEnd | kHookTrainEnd), "OnIterationEnd, OnTrainEnd");
}

// The hook list of trainbus/hooks.h: every hook has a name, a description
// and a bit, in the order of a run, and the new gradient hooks are detected.
class GradientHooks : public Plugin {
 public:
  void OnSetup(const SetupEvent&, Control&) override {}
  void OnAfterBackward(const AfterBackwardEvent&, Control&) override {}
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent&, Control&) override {}
  void OnValidationBegin(const ValidationBeginEvent&, Control&) override {}
};

// Keeps state (SaveState) and writes files (FlushForCheckpoint): found like hooks.
class KeepsState : public Plugin {
 public:
  absl::StatusOr<std::string> SaveState() override { return std::string("x"); }
};

TEST(BusTest, ExtrasAreDetectedAtCompileTimeToo) {
  EXPECT_EQ(ExtrasOf<KeepsState>(), kKeepsState);
  EXPECT_EQ(ExtrasOf<GradientHooks>(), 0u);
}

TEST(BusTest, TheHookListNamesDescribesAndMasksEveryHook) {
  EXPECT_EQ(kNumHooks, 13);
  for (int i = 0; i < kNumHooks; ++i) {
    EXPECT_THAT(HookName(i), ::testing::StartsWith("On"));
    EXPECT_STRNE(HookDescription(i), "?");
  }
  EXPECT_STREQ(HookName(-1), "?");
  EXPECT_STREQ(HookName(kNumHooks), "?");
  EXPECT_STREQ(HookName(kHookIndexSetup), "OnSetup");
  EXPECT_EQ(kAllHooks, (1u << 13) - 1);
  EXPECT_EQ(HooksOf<GradientHooks>(), kHookSetup | kHookAfterBackward | kHookBeforeOptimizerStep |
                                          kHookValidationBegin | kClosesNothing);
  EXPECT_EQ(HookMaskToString(HooksOf<GradientHooks>()),
            "OnSetup, OnAfterBackward, OnBeforeOptimizerStep, OnValidationBegin");
}

// Writes down every hook with its step, and skips or declares when told.
class LifecycleWatcher : public Plugin {
 public:
  explicit LifecycleWatcher(std::vector<std::string>* log) : log_(log) {}
  void OnSetup(const SetupEvent& e, Control& c) override {
    log_->push_back(absl::StrCat("Setup total=", e.run->total_iterations));
    skip_status = c.SkipOptimizerStep("too early");
  }
  void OnTrainBegin(const TrainBeginEvent&, Control& c) override {
    log_->push_back("TrainBegin");
    BatchSchedule schedule;
    schedule_status = c.SetBatchSchedule(schedule);
  }
  void OnAfterBackward(const AfterBackwardEvent& e, Control&) override {
    log_->push_back(absl::StrCat("AfterBackward ", e.step, " loss=", e.loss));
  }
  void OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& c) override {
    log_->push_back(absl::StrCat("BeforeOptimizerStep ", e.step, " batch=", e.batch_size));
    if (e.step == 1) {
      EXPECT_TRUE(c.SkipOptimizerStep("loss too large").ok());
      EXPECT_TRUE(c.optimizer_step_skipped());
    }
  }
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    log_->push_back(absl::StrCat("IterationEnd ", e.step, e.optimizer_step_skipped ? " skipped" : ""));
  }
  void OnValidationBegin(const ValidationBeginEvent& e, Control&) override {
    log_->push_back(absl::StrCat("ValidationBegin ", e.step));
  }
  void OnValidationEnd(const ValidationEndEvent& e, Control&) override {
    log_->push_back(absl::StrCat("ValidationEnd ", e.step));
  }
  absl::Status skip_status, schedule_status;

 private:
  std::vector<std::string>* log_;
};

TEST(SessionTest, GradientHooksRunBetweenBackwardAndStepAndMaySkipIt) {
  std::vector<std::string> log, lines;
  Session session;
  session.bus().set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  auto watcher = MakePlugin<LifecycleWatcher>(&log);
  LifecycleWatcher* w = watcher.get();
  ASSERT_TRUE(session.AddPlugin(std::move(watcher), "watcher").ok());
  session.Begin(RunInfo{});  // runs Setup first: the host did not
  session.BeginEpoch();
  std::vector<bool> stepped;
  for (int i = 0; i < 2; ++i) {
    session.BeginIteration(8);
    session.AfterBackward(0.5 + i);
    stepped.push_back(session.BeforeOptimizerStep(0.5 + i));
    session.EndIteration(0.5 + i, 8);
  }
  session.BeginValidation();
  session.EndValidation(Metrics{{"val/loss", 1.0}});
  session.EndEpoch();
  ASSERT_TRUE(session.End().ok());
  EXPECT_THAT(stepped, ElementsAre(true, false));
  EXPECT_THAT(log, ElementsAre("Setup total=0", "TrainBegin", "AfterBackward 0 loss=0.5",
                               "BeforeOptimizerStep 0 batch=8", "IterationEnd 0",
                               "AfterBackward 1 loss=1.5", "BeforeOptimizerStep 1 batch=8",
                               "IterationEnd 1 skipped", "ValidationBegin 1", "ValidationEnd 1"));
  EXPECT_THAT(lines, ::testing::Contains(
                         "[watcher] skipped the optimizer step of step 1: loss too large"));
  // Each request only where it can still take effect, with a message saying where.
  EXPECT_EQ(w->skip_status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(w->skip_status),
              HasSubstr("plugin 'watcher': SkipOptimizerStep (too early): only allowed in "
                        "OnBeforeOptimizerStep"));
  EXPECT_THAT(Msg(w->schedule_status),
              HasSubstr("plugin 'watcher': SetBatchSchedule: only allowed in OnSetup"));
}

// Declares a batch schedule in OnSetup.
class DeclaresSchedule : public Plugin {
 public:
  void OnSetup(const SetupEvent&, Control& c) override { status = c.SetBatchSchedule({}); }
  absl::Status status;
};

TEST(SessionTest, OneBatchScheduleAndOnlyWhereTheHostBatches) {
  {
    // A Session in the user's loop batches the data itself.
    Session session;
    auto p = MakePlugin<DeclaresSchedule>();
    DeclaresSchedule* d = p.get();
    ASSERT_TRUE(session.AddPlugin(std::move(p), "sched").ok());
    session.Setup(RunInfo{});
    EXPECT_THAT(Msg(d->status), HasSubstr("this host batches its data itself"));
  }
  {
    Session session;
    int declared = 0;
    session.bus().set_batch_schedule_setter([&](const BatchSchedule&) {
      ++declared;
      return absl::OkStatus();
    });
    auto a = MakePlugin<DeclaresSchedule>();
    auto b = MakePlugin<DeclaresSchedule>();
    DeclaresSchedule* first = a.get();
    DeclaresSchedule* second = b.get();
    ASSERT_TRUE(session.AddPlugin(std::move(a), "a").ok());
    ASSERT_TRUE(session.AddPlugin(std::move(b), "b").ok());
    session.Setup(RunInfo{});
    EXPECT_TRUE(first->status.ok()) << first->status;
    EXPECT_THAT(Msg(second->status),
                HasSubstr("plugin 'b': SetBatchSchedule: another plugin already declared"));
    EXPECT_EQ(declared, 1);
  }
}

// A plugin's capabilities, not its name, decide where it runs.
TEST(SessionTest, PluginsThatWriteOutputLoadOnRankZeroOnly) {
  PluginInfo quiet, writer, per_rank;
  writer.capabilities = kWritesOutput;
  per_rank.capabilities = kWritesOutput | kOnEveryRank;
  EXPECT_TRUE(LoadsOnRank(quiet, 1));
  EXPECT_TRUE(LoadsOnRank(writer, 0));
  EXPECT_FALSE(LoadsOnRank(writer, 1));
  EXPECT_TRUE(LoadsOnRank(per_rank, 3));
  // The bundled writers say so; a rank-1 session leaves them out.
  Session session;
  session.set_rank(1);
  for (const char* name : {"csv", "tensorboard", "progress", "checkpoint", "nonfinite_guard"}) {
    config::PluginConfig p;
    p.set_name(name);
    ASSERT_TRUE(session.LoadPlugin(p).ok()) << name;
  }
  EXPECT_THAT(session.bus().plugin_names(), ElementsAre("nonfinite_guard"));
}

TEST(BusTest, DeliversByPriorityThenInsertionOrder) {
  std::vector<std::string> log;
  Recorder a("a", &log), b("b", &log), c("c", &log);
  Bus bus;
  ASSERT_TRUE(bus.Add(&a, "a", 10).ok());
  ASSERT_TRUE(bus.Add(&b, "b", 0).ok());
  ASSERT_TRUE(bus.Add(&c, "c", 10).ok());
  bus.IterationEnd(IterationEndEvent{});
  EXPECT_THAT(log, ElementsAre("b:IterationEnd 0", "a:IterationEnd 0", "c:IterationEnd 0"));
  EXPECT_THAT(bus.plugin_names(), ElementsAre("b", "a", "c"));
}

TEST(BusTest, DuplicateNameIsRejected) {
  IterationOnly a, b;
  Bus bus;
  ASSERT_TRUE(bus.Add(&a, "x").ok());
  EXPECT_THAT(Msg(bus.Add(&b, "x")), HasSubstr("two plugins are named 'x'"));
}

TEST(BusTest, PluginsOnlyGetTheirHooks) {
  auto only = MakePlugin<IterationOnly>();
  Bus bus;
  ASSERT_TRUE(bus.Add(only.get(), "only").ok());
  RunInfo run;
  bus.TrainBegin(TrainBeginEvent{&run});
  bus.IterationEnd(IterationEndEvent{});
  bus.Publish(Record::Scalar("x", 1, 0));
  EXPECT_EQ(only->calls, 1);
}

class Requester : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control& c) override {
    if (e.step == 2) c.RequestStop("enough");
    if (e.step == 1) c.RequestCheckpoint("best so far");
    c.Publish(Record::Scalar("req/step", static_cast<double>(e.step), e.step));
    lr_status = c.SetLearningRate(0, 0.1);
    c.Log("hello");
  }
  absl::Status lr_status;
};

TEST(BusTest, ControlRequestsAreAttributedToThePlugin) {
  std::vector<std::string> log, lines;
  Requester req;
  Recorder sink("sink", &log);
  Bus bus;
  bus.set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(bus.Add(&req, "req").ok());
  ASSERT_TRUE(bus.Add(&sink, "sink").ok());
  for (int64_t s = 0; s < 3; ++s) {
    IterationEndEvent e;
    e.step = s;
    bus.IterationEnd(e);
    if (s == 1) {
      EXPECT_TRUE(bus.checkpoint_requested());
      EXPECT_EQ(bus.checkpoint_reason(), "req: best so far");
    }
  }
  EXPECT_TRUE(bus.stop_requested());
  EXPECT_EQ(bus.stop_reason(), "req: enough");
  EXPECT_THAT(log, ::testing::Contains("sink:Record req/step stamped"));
  EXPECT_THAT(Msg(req.lr_status), HasSubstr("no optimizer is bound"));
  EXPECT_THAT(lines, ::testing::Contains("[req] hello"));
}

class Thrower : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control&) override {
    ++calls;
    if (e.step == 1) throw std::runtime_error("disk on fire");
  }
  void OnTrainEnd(const TrainEndEvent&, Control&) override { got_train_end = true; }
  int calls = 0;
  bool got_train_end = false;
};

TEST(BusTest, ThrowingHookStopsTheRunCleanlyByDefault) {
  std::vector<std::string> log, lines;
  auto session = std::make_unique<Session>(HookErrorPolicy::kStopRun);
  session->bus().set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  auto thrower = MakePlugin<Thrower>();
  Thrower* t = thrower.get();
  ASSERT_TRUE(session->AddPlugin(std::move(thrower), "boom").ok());
  ASSERT_TRUE(session->AddPlugin(std::make_unique<Recorder>("rec", &log), "rec").ok());
  session->Begin(RunInfo{});
  session->BeginEpoch();
  int iterations = 0;
  for (; iterations < 10 && !session->ShouldStop(); ++iterations) session->EndIteration(1.0, 4);
  EXPECT_EQ(iterations, 2);  // the stop took effect at the end of step 1
  absl::Status end = session->End();
  EXPECT_THAT(Msg(end), HasSubstr("plugin 'boom' threw in OnIterationEnd at step 1: disk on fire"));
  EXPECT_TRUE(t->got_train_end);
  EXPECT_THAT(log, ::testing::Contains("rec:Abort"));
  EXPECT_THAT(log, ::testing::Contains("rec:TrainEnd failed"));
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("stopping the run")));
}

TEST(BusTest, ThrowingHookCanDisableThePluginInstead) {
  std::vector<std::string> log, lines;
  Session session(HookErrorPolicy::kDisablePlugin);
  session.bus().set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  auto thrower = MakePlugin<Thrower>();
  Thrower* t = thrower.get();
  ASSERT_TRUE(session.AddPlugin(std::move(thrower), "boom").ok());
  ASSERT_TRUE(session.AddPlugin(std::make_unique<Recorder>("rec", &log), "rec").ok());
  session.Begin(RunInfo{});
  session.BeginEpoch();
  for (int i = 0; i < 5; ++i) session.EndIteration(1.0, 4);
  EXPECT_FALSE(session.ShouldStop());
  EXPECT_EQ(t->calls, 2);  // no hooks after the failure
  EXPECT_FALSE(t->got_train_end);
  EXPECT_THAT(session.bus().disabled_plugins(), ElementsAre("boom"));
  EXPECT_THAT(Msg(session.status()), HasSubstr("plugin 'boom' threw in OnIterationEnd at step 1"));
  EXPECT_TRUE(session.End().ok());
  EXPECT_THAT(log, ::testing::Contains("rec:IterationEnd 4"));
  EXPECT_THAT(log, ::testing::Contains("rec:TrainEnd completed"));
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("plugin disabled, training continues")));
}

class FailsToClose : public Plugin {
 public:
  absl::Status Close() override { return absl::DataLossError("3 records lost writing x.tfevents"); }
};

// Close() overridden: the mask says so (kClosesNothing stays clear), and the
// bus calls it. Whether the bus calls Close() goes by the mask alone: a
// mask with kClosesNothing is skipped, and a mask set by hand without it
// (or from a plugin built before the bit existed) is closed, as always.
TEST(BusTest, CloseIsCalledUnlessTheMaskSaysThereIsNothingToClose) {
  EXPECT_EQ(HooksOf<FailsToClose>() & kClosesNothing, 0u);
  for (const bool mask_by_hand : {false, true}) {
    for (const bool closes_nothing : {false, true}) {
      SCOPED_TRACE(absl::StrCat("mask by hand ", mask_by_hand, ", closes nothing ", closes_nothing));
      Session session;
      session.bus().set_log_sink([](absl::string_view) {});
      auto plugin = mask_by_hand ? std::make_unique<FailsToClose>() : MakePlugin<FailsToClose>();
      if (mask_by_hand) {
        EXPECT_EQ(plugin->hooks(), kAllHooks);  // Plugin's default
      }
      if (closes_nothing) plugin->set_hooks(plugin->hooks() | kClosesNothing);
      ASSERT_TRUE(session.AddPlugin(std::move(plugin), "writer").ok());
      session.Begin(RunInfo{});
      const absl::Status s = session.End();
      if (closes_nothing) {
        EXPECT_TRUE(s.ok()) << s;  // its Close(), which fails, was not called
      } else {
        EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
      }
    }
  }
}

// A mask written by hand as ~0u ("everything") has the reserved bits set
// too; only HooksOf()'s exact form means "nothing to close".
TEST(BusTest, AnAllOnesMaskByHandStillGetsCloseCalled) {
  EXPECT_FALSE(ClosesNothing(~0u));
  EXPECT_FALSE(ClosesNothing(kAllHooks));
  EXPECT_TRUE(ClosesNothing(HooksOf<Plugin>()));
  Session session;
  session.bus().set_log_sink([](absl::string_view) {});
  auto plugin = std::make_unique<FailsToClose>();
  plugin->set_hooks(~0u);
  ASSERT_TRUE(session.AddPlugin(std::move(plugin), "writer").ok());
  session.Begin(RunInfo{});
  EXPECT_EQ(session.End().code(), absl::StatusCode::kDataLoss);  // its Close() ran
}

// Overrides a plugin declares private or protected are overrides: HooksOf()
// sees them (it cannot name them, and that is how it knows), and the bus
// calls them through Plugin's public virtuals. Such a plugin did not compile
// before: HooksOf() took their address.
class PrivateOverrides : public Plugin {
 public:
  int iteration_ends = 0;
  bool closed = false;

 private:
  void OnIterationEnd(const IterationEndEvent&, Control&) override { ++iteration_ends; }
  absl::Status Close() override {
    closed = true;
    return absl::OkStatus();
  }
};
class ProtectedSaveState : public Plugin {
 protected:
  absl::StatusOr<std::string> SaveState() override { return std::string("x"); }
};
static_assert(HooksOf<PrivateOverrides>() == kHookIterationEnd,
              "a private hook is a hook, a private Close() closes");
static_assert(ExtrasOf<ProtectedSaveState>() == kKeepsState, "a protected SaveState() saves");

TEST(BusTest, PrivateOverridesAreCalled) {
  Session session;
  auto owned = MakePlugin<PrivateOverrides>();
  PrivateOverrides* plugin = owned.get();
  EXPECT_EQ(plugin->hooks(), kHookIterationEnd);
  ASSERT_TRUE(session.AddPlugin(std::move(owned), "private").ok());
  session.Begin(RunInfo{});
  session.EndIteration(1.0, 4);
  EXPECT_TRUE(session.End().ok());
  EXPECT_EQ(plugin->iteration_ends, 1);
  EXPECT_TRUE(plugin->closed);
}

TEST(BusTest, CloseErrorsEndTheRunWithThatError) {
  Session session;
  session.bus().set_log_sink([](absl::string_view) {});
  ASSERT_TRUE(session.AddPlugin(MakePlugin<FailsToClose>(), "writer").ok());
  session.Begin(RunInfo{});
  absl::Status s = session.End();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Msg(s), HasSubstr("plugin 'writer' failed to close: 3 records lost"));
}

// Throws in exactly one hook (by index, kNumHooks = Close) and records the rest.
class ThrowsIn : public Plugin {
 public:
  explicit ThrowsIn(int hook) : hook_(hook) {}
  // Every hook of trainbus/hooks.h, generated from the same list.
#define THROWS_IN_HOOK_(name, event, when) \
  void On##name(const event&, Control&) override { Maybe(kHookIndex##name); }
  TRAINBUS_HOOKS(THROWS_IN_HOOK_)
#undef THROWS_IN_HOOK_
  absl::Status Close() override {
    Maybe(kNumHooks);
    return absl::OkStatus();
  }

 private:
  void Maybe(int hook) {
    if (hook == hook_) throw std::runtime_error("broken on purpose");
  }
  int hook_;
};

// Notes that Close() ran.
class ClosesFine : public Plugin {
 public:
  explicit ClosesFine(bool* closed) : closed_(closed) {}
  absl::Status Close() override {
    *closed_ = true;
    return absl::OkStatus();
  }

 private:
  bool* closed_;
};

// For every hook, and Close(): a plugin throwing there ends the run with a
// message naming plugin, hook and step, and every other plugin still gets
// the rest of the lifecycle, Close() included.
TEST(BusTest, AThrowInAnyHookIsNamedAndEveryOtherPluginStillCloses) {
  for (int hook = 0; hook <= kNumHooks; ++hook) {
    const std::string hook_name = hook < kNumHooks ? HookName(hook) : "Close";
    SCOPED_TRACE(hook_name);
    std::vector<std::string> log;
    bool closed = false;
    Session session;
    session.bus().set_log_sink([](absl::string_view) {});
    ASSERT_TRUE(session.AddPlugin(MakePlugin<ThrowsIn>(hook), "boom").ok());
    ASSERT_TRUE(session.AddPlugin(std::make_unique<Recorder>("rec", &log), "rec").ok());
    ASSERT_TRUE(session.AddPlugin(MakePlugin<ClosesFine>(&closed), "last").ok());
    session.Begin(RunInfo{});
    session.BeginEpoch();
    session.BeginIteration(4);
    session.AfterBackward(1.0);
    session.BeforeOptimizerStep(1.0);
    session.EndIteration(1.0, 4);
    session.Publish(Record::Scalar("x", 1.0, 0));
    session.BeginValidation();
    session.EndValidation(Metrics{{"val/loss", 0.5}});
    session.EndEpoch();
    if (hook == kHookIndexAbort) session.Abort("the host gave up");  // OnAbort needs an abort
    absl::Status end = session.End();
    ASSERT_FALSE(end.ok());
    if (hook < kNumHooks) {
      EXPECT_THAT(Msg(end), HasSubstr(absl::StrCat("plugin 'boom' threw in ", hook_name,
                                                   " at step 0: broken on purpose")));
    } else {
      EXPECT_THAT(Msg(end), HasSubstr("plugin 'boom' failed to close: threw: broken on purpose"));
    }
    EXPECT_THAT(log, ::testing::Contains(HasSubstr("rec:TrainEnd")));
    EXPECT_TRUE(closed);
  }
}

// Close() that never returns (a stalled disk, a deadlock).
class HangsInClose : public Plugin {
 public:
  absl::Status Close() override {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
};

// Appends its name to a list when closed.
class NotesClose : public Plugin {
 public:
  NotesClose(std::string name, std::vector<std::string>* closed) : name_(name), closed_(closed) {}
  absl::Status Close() override {
    closed_->push_back(name_);
    return absl::OkStatus();
  }

 private:
  std::string name_;
  std::vector<std::string>* closed_;
};

TEST(BusTest, AClosePastItsTimeLimitIsReportedAndTheOthersStillClose) {
  std::vector<std::string> closed;
  std::vector<std::string> lines;
  auto session = std::make_unique<Session>();
  session->bus().set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  // Long enough for the healthy plugins' Close() even on a loaded machine.
  session->bus().set_close_timeout(absl::Seconds(1));
  // Plugins with nothing to close between them are skipped: the hung ones
  // are still told apart from the closed ones.
  ASSERT_TRUE(session->AddPlugin(MakePlugin<IterationOnly>(), "nothing_to_close").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<NotesClose>("csv", &closed), "csv").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<IterationOnly>(), "nothing_either").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<HangsInClose>(), "stuck").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<HangsInClose>(), "stuck_too").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<IterationOnly>(), "nothing_again").ok());
  ASSERT_TRUE(session->AddPlugin(MakePlugin<NotesClose>("writer", &closed), "writer").ok());
  session->Begin(RunInfo{});
  session->BeginEpoch();
  session->EndIteration(1.0, 4);
  absl::Status end = session->End();
  EXPECT_EQ(end.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(Msg(end), AllOf(HasSubstr("plugin 'stuck' did not return from Close() within 1s"),
                              HasSubstr("plugin_close_timeout_seconds")));
  // In delivery order, each once: the plugin after two hung ones was still closed.
  EXPECT_THAT(closed, ElementsAre("csv", "writer"));
  ASSERT_EQ(session->bus().abandoned_plugins().size(), 2u);
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("plugin 'stuck' did not return")));
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("plugin 'stuck_too' did not return")));
  session.reset();  // must not destroy the plugins their Close() threads still run in
}

// Closes slowly, well within the limit.
class SlowClose : public Plugin {
 public:
  SlowClose(std::chrono::milliseconds how_long, std::vector<std::string>* closed)
      : how_long_(how_long), closed_(closed) {}
  absl::Status Close() override {
    std::this_thread::sleep_for(how_long_);
    closed_->push_back("slow");
    return absl::OkStatus();
  }

 private:
  std::chrono::milliseconds how_long_;
  std::vector<std::string>* closed_;
};

// The limit is each Close()'s own, counted from its start: two that each
// take 60 % of it are both waited for, though together they take longer.
TEST(BusTest, EachCloseHasTheWholeTimeLimitFromItsOwnStart) {
  std::vector<std::string> closed;
  Session session;
  session.bus().set_close_timeout(absl::Seconds(2));
  ASSERT_TRUE(session.AddPlugin(MakePlugin<SlowClose>(std::chrono::milliseconds(1200), &closed),
                                "first").ok());
  ASSERT_TRUE(session.AddPlugin(MakePlugin<SlowClose>(std::chrono::milliseconds(1200), &closed),
                                "second").ok());
  session.Begin(RunInfo{});
  EXPECT_TRUE(session.End().ok());
  EXPECT_THAT(closed, ElementsAre("slow", "slow"));
  EXPECT_TRUE(session.bus().abandoned_plugins().empty());
}

TEST(BusTest, ACloseTimeLimitOfCenturiesIsNoLimit) {
  // 1e10 s would overflow the clock's deadline: such a limit is none.
  std::vector<std::string> closed;
  Session session;
  session.bus().set_close_timeout(absl::Seconds(1e10));
  ASSERT_TRUE(session.AddPlugin(MakePlugin<NotesClose>("csv", &closed), "csv").ok());
  ASSERT_TRUE(session.AddPlugin(MakePlugin<NotesClose>("writer", &closed), "writer").ok());
  session.Begin(RunInfo{});
  EXPECT_TRUE(session.End().ok());
  EXPECT_THAT(closed, ElementsAre("csv", "writer"));
  EXPECT_TRUE(session.bus().abandoned_plugins().empty());
}

TEST(BusTest, CloseTimeoutComesFromTheRunConfig) {
  config::RunConfig c;
  c.set_plugin_close_timeout_seconds(0.25);
  auto session = Session::Create(c);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->bus().close_timeout(), absl::Milliseconds(250));
  c.set_plugin_close_timeout_seconds(0);
  session = Session::Create(c);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->bus().close_timeout(), absl::InfiniteDuration());
  EXPECT_EQ(Session().bus().close_timeout(), Bus::kDefaultCloseTimeout);
}

class Echo : public Plugin {
 public:
  void OnRecord(const Record& r, Control& c) override {
    ++seen;
    c.Publish(Record::Scalar(r.tag + "'", 0, 0));  // answers every record: a loop
  }
  int seen = 0;
};

TEST(BusTest, RecordLoopsAreCut) {
  std::vector<std::string> lines;
  Echo echo;
  echo.set_hooks(HooksOf<Echo>());
  Bus bus;
  bus.set_log_sink([&](absl::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(bus.Add(&echo, "echo").ok());
  bus.Publish(Record::Scalar("x", 1, 0));
  EXPECT_EQ(echo.seen, 8);
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("nest deeper than 8")));
}

// -------------------------------------------------------------- session ----

TEST(SessionTest, EmbeddedLoopCountsStepsEpochsAndStops) {
  std::vector<std::string> log;
  Session session;
  ASSERT_TRUE(session.AddPlugin(std::make_unique<Recorder>("rec", &log), "rec").ok());
  auto only = MakePlugin<IterationOnly>();
  IterationOnly* counter = only.get();
  ASSERT_TRUE(session.AddPlugin(std::move(only), "count").ok());
  RunInfo run;
  run.epochs = 3;
  session.Begin(run);
  for (int epoch = 0; epoch < 3; ++epoch) {
    session.BeginEpoch();
    for (int b = 0; b < 4; ++b) session.EndIteration(0.5, 8);
    session.EndValidation({{"val/loss", 0.25}});
    session.EndEpoch();
  }
  EXPECT_EQ(session.step(), 12);
  EXPECT_EQ(session.epoch(), 2);
  EXPECT_EQ(counter->calls, 12);
  EXPECT_TRUE(session.End().ok());
  EXPECT_EQ(log.front(), "rec:TrainBegin");
  EXPECT_EQ(log.back(), "rec:TrainEnd completed");
  EXPECT_THAT(Msg(session.AddPlugin(MakePlugin<IterationOnly>(), "late")), HasSubstr("after Begin()"));
}

// An embedded loop that stops early hears why from End(), on standard error;
// a host that reports the end itself (the Trainer) turns that off.
TEST(SessionTest, AnEmbeddedRunThatStopsSaysWhy) {
  for (bool reports : {true, false}) {
    Session session;
    session.set_reports_end(reports);
    RunInfo run;
    run.run_name = "mlp";
    session.Begin(run);
    session.BeginEpoch();
    session.EndIteration(0.5, 8);
    session.EndIteration(0.5, 8);
    session.RequestStop("val/loss stopped improving");
    ::testing::internal::CaptureStderr();
    EXPECT_TRUE(session.End().ok());
    const std::string err = ::testing::internal::GetCapturedStderr();
    if (reports) {
      EXPECT_EQ(err, "[trainbus] run 'mlp' stopped after step 1: user: val/loss stopped improving\n");
    } else {
      EXPECT_EQ(err, "");
    }
  }
}

// --------------------------------------------------------------- loader ----

std::string PluginDir(const std::string& kind) { return absl::StrCat(TEST_PLUGIN_ROOT, "/", kind); }

std::string LibIn(const std::string& kind, const std::string& file) {
  return absl::StrCat(PluginDir(kind), "/", file);
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(PluginLoaderTest, GoodPluginLoadsFromTrainbusPluginPath) {
  ScopedEnv env("TRAINBUS_PLUGIN_PATH", PluginDir("good"));
  PluginLoader loader;
  EXPECT_THAT(loader.search_dirs(), ::testing::Contains(fs::canonical(PluginDir("good")).string()));
  auto lib = loader.Find("test_good");
  ASSERT_TRUE(lib.ok()) << lib.status();
  EXPECT_EQ(lib->info().version, "2.3.4");
  EXPECT_EQ(lib->descriptor->hooks, kHookIterationEnd | kClosesNothing);
  google::protobuf::Struct options = StructFromJson(R"({"stop_at": 1})");
  auto plugin = loader.Create("test_good", "", options, "/tmp/x");
  ASSERT_TRUE(plugin.ok()) << plugin.status();
  EXPECT_EQ((*plugin)->hooks(), kHookIterationEnd | kClosesNothing);

  // It works on the bus like any other plugin.
  std::vector<std::string> log;
  Session session;
  ASSERT_TRUE(session.AddPlugin(std::move(plugin).value(), "test_good").ok());
  ASSERT_TRUE(session.AddPlugin(std::make_unique<Recorder>("rec", &log), "rec").ok());
  session.Begin(RunInfo{});
  session.BeginEpoch();
  while (!session.ShouldStop()) session.EndIteration(1, 1);
  EXPECT_EQ(session.step(), 2);
  EXPECT_EQ(session.stop_reason(), "test_good: asked to stop at 1");
  EXPECT_THAT(log, ::testing::Contains("rec:Record test/iterations stamped"));
  EXPECT_TRUE(session.End().ok());
}

TEST(PluginLoaderTest, SessionLoadsPluginsFromAConfig) {
  auto config = ParseRunConfig(
      absl::StrCat(R"({"plugin_paths": [")", PluginDir("good"),
                   R"("], "plugins": [{"name": "test_good", "options": {"label": "y"}}]})"),
      "json", "cfg");
  ASSERT_TRUE(config.ok());
  auto session = Session::Create(*config);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_EQ((*session)->plugins().size(), 1u);
  EXPECT_EQ((*session)->plugins()[0].name, "test_good");
}

TEST(PluginLoaderTest, EachBrokenLibraryGivesItsError) {
  struct Case {
    std::string kind, file;
    absl::StatusCode code;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {"no_entry", "libtrainbus_test_no_entry.so", absl::StatusCode::kInvalidArgument,
       {"is not a trainbus plugin", "trainbus_plugin_descriptor", "TRAINBUS_PLUGIN("}},
      {"wrong_api", "libtrainbus_test_wrong_api.so", absl::StatusCode::kFailedPrecondition,
       {"plugin API version mismatch", "API 999",
        absl::StrCat("this trainbus has API ", TRAINBUS_PLUGIN_API_VERSION), "Rebuild"}},
      {"wrong_abi", "libtrainbus_test_wrong_abi.so", absl::StatusCode::kFailedPrecondition,
       {"C++ ABI mismatch", absl::StrCat("_GLIBCXX_USE_CXX11_ABI=", 1 - TRAINBUS_CXX11_ABI),
        absl::StrCat("this trainbus has _GLIBCXX_USE_CXX11_ABI=", TRAINBUS_CXX11_ABI)}},
      {"wrong_torch", "libtrainbus_test_wrong_torch.so", absl::StatusCode::kFailedPrecondition,
       {"LibTorch version mismatch", "LibTorch 0.1", TRAINBUS_TORCH_VERSION}},
  };
  for (const Case& c : cases) {
    std::string path = LibIn(c.kind, c.file);
    auto lib = PluginLoader::Open(path);
    EXPECT_EQ(lib.status().code(), c.code) << c.kind << ": " << lib.status();
    EXPECT_THAT(Msg(lib.status()), HasSubstr(path)) << c.kind;
    for (const std::string& e : c.expected) EXPECT_THAT(Msg(lib.status()), HasSubstr(e)) << c.kind;
  }
}

TEST(PluginLoaderTest, ThrowingFactoryIsReported) {
  PluginLoader loader({PluginDir("throws")});
  auto p = loader.Create("test_good", LibIn("throws", "libtrainbus_test_throws.so"), {}, "");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Msg(p.status()), AllOf(HasSubstr("plugin 'test_good'"),
                                     HasSubstr("creating the plugin threw: factory exploded")));
}

TEST(PluginLoaderTest, FactoryErrorsAndBadOptionsNameThePlugin) {
  PluginLoader loader({PluginDir("good")});
  auto bad_value = loader.Create("test_good", "", StructFromJson(R"({"label": "bad"})"), "");
  EXPECT_THAT(Msg(bad_value.status()),
              AllOf(HasSubstr("plugin 'test_good'"), HasSubstr("option 'label' must not be")));
  auto unknown = loader.Create("test_good", "", StructFromJson(R"({"lable": "x"})"), "");
  EXPECT_THAT(Msg(unknown.status()),
              HasSubstr("plugin 'test_good': unknown option 'lable'; known options: stop_at, label"));
}

TEST(PluginLoaderTest, TwoPluginsWithOneNameAreAnError) {
  PluginLoader loader({PluginDir("good"), PluginDir("dup")});
  auto lib = loader.Find("test_good");
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(Msg(lib.status()), AllOf(HasSubstr("two plugins are named 'test_good'"),
                                       HasSubstr("libtrainbus_test_good.so"),
                                       HasSubstr("libtrainbus_test_good_copy.so")));
}

TEST(PluginLoaderTest, MissingPluginListsWhereItLooked) {
  PluginLoader loader({PluginDir("good")});
  auto lib = loader.Find("nope");
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(lib.status()), AllOf(HasSubstr("no plugin named 'nope'"),
                                       HasSubstr("libtrainbus_nope.so"),
                                       HasSubstr(fs::canonical(PluginDir("good")).string()),
                                       HasSubstr("TRAINBUS_PLUGIN_PATH")));
  auto missing_file = loader.Create("x", "/no/such/libx.so", {}, "");
  EXPECT_THAT(Msg(missing_file.status()), HasSubstr("library /no/such/libx.so does not exist"));
  auto config = ParseRunConfig(R"({"plugins": [{"name": "nope"}]})", "json", "cfg");
  EXPECT_THAT(Msg(Session::Create(*config).status()), HasSubstr("no plugin named 'nope'"));
}

TEST(PluginLoaderTest, DiscoverReportsBrokenLibrariesWithoutFailing) {
  PluginLoader loader({PluginDir("good"), PluginDir("wrong_api")});
  std::vector<std::string> problems;
  auto libs = loader.Discover(&problems);
  bool found_good = false;
  for (const auto& l : libs) found_good |= (l.info().name == "test_good");
  EXPECT_TRUE(found_good);
  EXPECT_THAT(problems, ::testing::Contains(HasSubstr("plugin API version mismatch")));
}

TEST(PluginLoaderTest, ALoaderScansItsFoldersOnceANewLoaderSeesLaterLibraries) {
  TempDir dir;
  const std::string folder = fs::canonical(dir.path()).string();
  fs::copy_file(LibIn("good", "libtrainbus_test_good.so"), fs::path(folder) / "libtrainbus_test_good.so");
  fs::copy_file(LibIn("wrong_api", "libtrainbus_test_wrong_api.so"),
                fs::path(folder) / "libtrainbus_test_wrong_api.so");
  // The built-in plugin folder is searched too: count what is in `folder`.
  auto in_folder = [&](const PluginLoader& loader, std::vector<std::string>* problems) {
    std::vector<std::string> paths, all_problems;
    for (const PluginLibrary& lib : loader.Discover(&all_problems)) {
      if (absl::StartsWith(lib.path, folder)) paths.push_back(lib.path);
    }
    for (const std::string& p : all_problems) {
      if (absl::StrContains(p, folder)) problems->push_back(p);
    }
    return paths;
  };
  PluginLoader loader({dir.path()});
  ASSERT_TRUE(loader.Find("test_good").ok());
  // A second library named test_good arrives after the scan: this loader
  // answers from its scan (a session's plugins see one state of the folders)
  // and repeats the scan's problems on every call.
  fs::copy_file(LibIn("dup", "libtrainbus_test_good_copy.so"),
                fs::path(folder) / "libtrainbus_test_good_copy.so");
  EXPECT_TRUE(loader.Find("test_good").ok());
  for (int call = 0; call < 2; ++call) {
    std::vector<std::string> problems;
    EXPECT_THAT(in_folder(loader, &problems), ElementsAre(HasSubstr("libtrainbus_test_good.so")))
        << "call " << call;
    EXPECT_THAT(problems, ElementsAre(HasSubstr("plugin API version mismatch"))) << "call " << call;
  }
  PluginLoader fresh({dir.path()});
  std::vector<std::string> problems;
  EXPECT_EQ(in_folder(fresh, &problems).size(), 2u);
  EXPECT_THAT(Msg(fresh.Find("test_good").status()),
              HasSubstr("two plugins are named 'test_good'"));
}

TEST(PluginLoaderTest, ConventionalFileThatFailsACheckIsTheAnswer) {
  // libtrainbus_<name>.so is looked at first: its failed check is what Find
  // says, from the scan, not "no plugin named".
  TempDir dir;
  fs::copy_file(LibIn("wrong_api", "libtrainbus_test_wrong_api.so"),
                fs::path(dir.path()) / "libtrainbus_test_wrong_api.so");
  PluginLoader loader({dir.path()});
  auto lib = loader.Find("test_wrong_api");
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(lib.status()), HasSubstr("plugin API version mismatch"));
}

TEST(PluginLoaderTest, ASessionSeesANewTrainbusPluginPath) {
  // A session reuses its loader only while TRAINBUS_PLUGIN_PATH is the same.
  Session session;
  config::PluginConfig good;
  good.set_name("test_good");
  {
    ScopedEnv env("TRAINBUS_PLUGIN_PATH", PluginDir("no_entry"));
    EXPECT_EQ(session.LoadPlugin(good).code(), absl::StatusCode::kNotFound);
  }
  ScopedEnv env("TRAINBUS_PLUGIN_PATH", PluginDir("good"));
  EXPECT_TRUE(session.LoadPlugin(good).ok());
}

// ------------------------------------------------------------- progress ----

TEST(ProgressFormatTest, LineMatchesTheDocumentedShape) {
  progress::ProgressLine p;
  p.epoch = 2;
  p.epochs = 10;
  p.done = 120;
  p.total = 250;
  p.its_per_second = 410;
  p.loss = 0.4123;
  p.lr = 1e-3;
  p.eta_seconds = 12.2;
  EXPECT_EQ(progress::FormatProgress(p, 10),
            "epoch 3/10 [====>     ] 120/250 it 410 it/s loss 0.412 lr 1.0e-03 ETA 00:12");
  p.done = 250;
  EXPECT_EQ(progress::FormatProgress(p, 4).substr(0, 18), "epoch 3/10 [====] ");
  EXPECT_EQ(progress::FormatDuration(3723), "01:02:03");
  EXPECT_EQ(progress::FormatDuration(-1), "--:--");
  std::vector<Metric> m = {{"val/accuracy", 0.9125}};
  EXPECT_EQ(progress::FormatEpochSummary(2, 10, 250, 4.21, 0.41234, m),
            "epoch 3/10 done: 250 it in 4.2 s, loss 0.4123, val/accuracy 0.9125");
}

// ------------------------------------------------------------------ CLI ----

TEST(CliTest, PluginsListsTheBuiltInPluginsWithOptions) {
  CommandResult r = RunTrainbus("plugins");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("progress 1.0.0"), HasSubstr("bar_width (int, default 30)"),
                              HasSubstr("hooks:   OnTrainBegin, OnEpochBegin, OnIterationEnd"),
                              HasSubstr("runs on: rank 0 only (writes output), priority 0"),
                              HasSubstr("state:   saved with checkpoints, restored by --resume"),
                              HasSubstr("state:   none (nothing to restore on --resume)")));
}

TEST(CliTest, PlanPrintsTheArithmetic) {
  CommandResult r = RunTrainbus("plan --samples 50000 --batch_size 100 --epochs 20");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("iterations per epoch: 500"),
                              HasSubstr("total iterations:     10000")));
  r = RunTrainbus("plan --samples 10000 --batch-size 200 --epochs 10");
  EXPECT_THAT(r.output, AllOf(HasSubstr("iterations per epoch: 50"), HasSubstr("total iterations:     500")));
  r = RunTrainbus("plan --samples 10000 --batch-size 100");
  EXPECT_THAT(r.output, HasSubstr("iterations per epoch: 100"));
  r = RunTrainbus("plan --samples 1000 --batch-size 300 --epochs 2 --drop-last");
  EXPECT_THAT(r.output, AllOf(HasSubstr("iterations per epoch: 3"), HasSubstr("samples seen:         1800")));
  r = RunTrainbus(R"(plan --samples 10000 --batch-size 100 --epochs 6 --batch-schedule '{"mode": "multiply", "factor": 2, "every": 2}')");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("epochs 3-4: batch 200, 50 iterations each"),
                              HasSubstr("total iterations:     350")));
  r = RunTrainbus(R"(plan --samples 100 --batch-size 10 --batch-schedule '{"mode": "cubic"}')");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--batch_schedule: 'mode' must be"));
}

TEST(CliTest, BadConfigAndFlagsExitWithAClearMessage) {
  TempDir dir;
  std::string path = dir.Write("bad.json", R"({"trainer": {"batch_size": -4}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", path));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(path, ": trainer.batch_size must be a whole number > 0 or \"full\", got -4")));
  r = RunTrainbus(absl::StrCat("train --config ", path, " --set trainer.batch_size=zero"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("trainer.batch_size must be a whole number > 0 or \"full\", got \"zero\""));
  r = RunTrainbus("train");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--config FILE"));
  r = RunTrainbus("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown command 'frobnicate'"));
  r = RunTrainbus("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("trainbus train --config FILE"),
                              HasSubstr("iteration   one batch: forward, loss, backward"),
                              HasSubstr("step        the global iteration number")));
  // A command's own help: only its part, and the terms.
  r = RunTrainbus("plan --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, AllOf(HasSubstr("trainbus plan --samples N --batch-size B"),
                              Not(HasSubstr("trainbus train --config")), HasSubstr("Terms:")));
}

// End to end: a plugin library whose Close() hangs cannot hold `trainbus
// train` past plugin_close_timeout_seconds; the exit code and message say
// which plugin, and the plugin after it (csv) still wrote every row.
TEST(CliTest, APluginHangingInCloseEndsTheRunWithinTheLimitAndLosesNothingElse) {
  TempDir dir;
  const std::string hangs = absl::StrCat(TEST_PLUGIN_ROOT, "/hangs/libtrainbus_test_hangs.so");
  std::string config = dir.Write("run.json", absl::StrCat(R"({
    "name": "hang", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 50, "num_threads": 1},
    "dataset": {"train_samples": 300, "val_samples": 60},
    "plugin_close_timeout_seconds": 2,
    "plugins": [{"name": "test_hangs_in_close", "library": ")", hangs, R"("}, {"name": "csv"}]})"));
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("plugin 'test_hangs_in_close' did not return from Close() within 2s"));
  std::ifstream csv(dir.path() + "/runs/hang/scalars.csv");
  int loss_rows = 0;
  for (std::string line; std::getline(csv, line);) loss_rows += line.find(",train/loss,") != std::string::npos;
  EXPECT_EQ(loss_rows, 12);  // 2 epochs x 6 iterations
}

// A plugin that crashes the process is named, with the hook and the step;
// the process still dies of the signal (139 = 128 + SIGSEGV through the
// shell). A crash in Close() comes after the final checkpoint committed.
TEST(CliTest, APluginThatCrashesIsNamedWithItsHookAndStep) {
  TempDir dir;
  const std::string crashes = absl::StrCat(TEST_PLUGIN_ROOT, "/crashes/libtrainbus_test_crashes.so");
  auto config = [&](const std::string& options) {
    return dir.Write("run.json", absl::StrCat(R"({
      "name": "crash", "log_root": ")", dir.path(), R"(/runs",
      "trainer": {"epochs": 2, "batch_size": 50, "num_threads": 1},
      "dataset": {"train_samples": 300, "val_samples": 60},
      "plugins": [{"name": "checkpoint"},
                  {"name": "test_crashes", "library": ")", crashes, R"(", "options": )", options,
                  "}]}"));
  };
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config(R"({"crash_at": 4})")));
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[trainbus] fatal SIGSEGV in plugin 'test_crashes', hook "
                                  "OnIterationEnd, step 4"));

  r = RunTrainbus(absl::StrCat("train --config ",
                               config(R"({"crash_at": -2, "how": "abort"})")));
  EXPECT_EQ(r.exit_code, 128 + SIGABRT) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[trainbus] fatal SIGABRT in plugin 'test_crashes', hook Close"));
  // The run before it is complete: its final checkpoint was committed first.
  EXPECT_EQ(ReadFile(dir.path() + "/runs/crash-2/checkpoints/latest"), "step-00000012\n");

  // A crash on a thread the hook started (as LibTorch's workers run a hook's
  // tensor ops) names the hook the process was running.
  r = RunTrainbus(absl::StrCat("train --config ", config(R"({"crash_at": 3, "how": "thread"})")));
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[trainbus] fatal SIGSEGV in plugin 'test_crashes', hook "
                                  "OnIterationEnd, step 3 (on another thread, while that hook ran)"));
}

// A Close() abandoned at its time limit is still "running" on its thread,
// but not for the process: a crash elsewhere afterwards is not blamed on it
// (it was, until the closer thread marked only itself).
TEST(CrashReportTest, AnAbandonedCloseIsNotBlamedForALaterCrashElsewhere) {
  const std::string style = GTEST_FLAG_GET(death_test_style);
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the statement starts threads
  EXPECT_DEATH(
      {
        InstallCrashReporter();
        Session session;
        session.bus().set_log_sink([](absl::string_view) {});
        session.bus().set_close_timeout(absl::Milliseconds(50));
        (void)session.AddPlugin(MakePlugin<HangsInClose>(), "hangs");
        session.Begin(RunInfo{});
        (void)session.End();  // abandons Close() after 50 ms
        std::raise(SIGSEGV);
      },
      "fatal SIGSEGV outside any plugin hook");
  GTEST_FLAG_SET(death_test_style, style);
}

// Two sessions on two threads: a delivery never puts back another thread's
// mark when it ends (that hook may be over, its bus gone). Here B's hook
// starts, A's starts, B's ends, A's ends; a crash on B's thread afterwards is
// outside any hook (it was blamed on B's finished hook).
class Rendezvous : public Plugin {
 public:
  Rendezvous(std::promise<void>* entered, std::shared_future<void> leave)
      : entered_(entered), leave_(std::move(leave)) {}
  void OnIterationEnd(const IterationEndEvent&, Control&) override {
    entered_->set_value();
    leave_.wait();
  }

 private:
  std::promise<void>* entered_;
  std::shared_future<void> leave_;
};
TEST(CrashReportTest, ADeliveryNeverPutsBackAnotherThreadsMark) {
  const std::string style = GTEST_FLAG_GET(death_test_style);
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the statement starts threads
  auto two_sessions_then_a_crash_on_b = [] {
    InstallCrashReporter();
    std::promise<void> b_in, a_in, b_out, a_out;
    Session a, b;
    (void)a.AddPlugin(MakePlugin<Rendezvous>(&a_in, b_out.get_future().share()), "a");
    (void)b.AddPlugin(MakePlugin<Rendezvous>(&b_in, a_in.get_future().share()), "b");
    a.Begin(RunInfo{});
    b.Begin(RunInfo{});
    std::shared_future<void> a_done = a_out.get_future().share();
    std::thread thread_b([&] {
      b.EndIteration(1.0, 4);  // B's hook waits until A's has started
      b_out.set_value();
      a_done.wait();
      std::raise(SIGSEGV);  // on B's thread, in no hook
    });
    b_in.get_future().wait();
    a.EndIteration(1.0, 4);  // A's hook waits until B's delivery has ended
    a_out.set_value();
    thread_b.join();
  };
  EXPECT_DEATH(two_sessions_then_a_crash_on_b(), "fatal SIGSEGV outside any plugin hook");
  GTEST_FLAG_SET(death_test_style, style);
}

// Hooks nest: a record published inside one hook reaches the other plugins'
// OnRecord inside it. When they return, the crash report names the outer hook
// again (it said "outside any plugin hook" until Leave restored it).
class PublishesThenCrashes : public Plugin {
 public:
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override {
    control.Publish(Record::Scalar("x", 1.0, e.step));
    std::raise(SIGSEGV);
  }
};
class ReadsRecords : public Plugin {
 public:
  void OnRecord(const Record&, Control&) override {}
};
TEST(CrashReportTest, ACrashAfterANestedRecordNamesTheOuterHook) {
  EXPECT_DEATH(
      {
        InstallCrashReporter();
        Session session;
        (void)session.AddPlugin(MakePlugin<PublishesThenCrashes>(), "publisher");
        (void)session.AddPlugin(MakePlugin<ReadsRecords>(), "reader");
        session.Begin(RunInfo{});
        session.EndIteration(1.0, 4);
      },
      "fatal SIGSEGV in plugin 'publisher', hook OnIterationEnd, step 0;");
}

}  // namespace
}  // namespace trainbus
