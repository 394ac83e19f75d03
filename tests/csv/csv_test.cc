// The csv plugin: its file writer in-process (formats, escaping, the queue,
// errors), then the plugin end to end through the `trainbus` program.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "scalar_file.h"
#include "test_util.h"

namespace trainbus::csv {
namespace {

using trainbus::test_util::CommandResult;
using trainbus::test_util::ReadFile;
using trainbus::test_util::RunTrainbus;
using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// ------------------------------------------------------------ formatting --

TEST(CsvFormatTest, DoublesReadBackExactlyWithFewestDigits) {
  EXPECT_EQ(FormatDouble(0.1), "0.1");
  EXPECT_EQ(FormatDouble(3), "3");
  EXPECT_EQ(FormatDouble(-2.5), "-2.5");
  EXPECT_EQ(FormatDouble(1e-7), "1e-07");
  EXPECT_EQ(FormatDouble(0.30000000000000004), "0.30000000000000004");
  EXPECT_EQ(FormatDouble(std::nan("")), "nan");
  EXPECT_EQ(FormatDouble(INFINITY), "inf");
  EXPECT_EQ(FormatDouble(-INFINITY), "-inf");
  for (double v : {1.0 / 3, 123456.789e100, 5e-324, 0.05f * 1.0}) {
    EXPECT_EQ(std::strtod(FormatDouble(v).c_str(), nullptr), v) << FormatDouble(v);
  }
}

TEST(CsvFormatTest, FieldsAreQuotedOnlyWhenNeeded) {
  EXPECT_EQ(EscapeCsvField("train/loss"), "train/loss");
  EXPECT_EQ(EscapeCsvField(""), "");
  EXPECT_EQ(EscapeCsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(EscapeCsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(EscapeCsvField("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(EscapeCsvField("cr\rhere"), "\"cr\rhere\"");
  EXPECT_EQ(EscapeCsvField(" padded "), "\" padded \"");
  EXPECT_EQ(EscapeCsvField("in side"), "in side");
  EXPECT_EQ(EscapeCsvField("ünïcode/λ"), "ünïcode/λ");
}

TEST(CsvFormatTest, JsonStringsEscapeQuotesBackslashesAndControls) {
  EXPECT_EQ(JsonString("train/loss"), "\"train/loss\"");
  EXPECT_EQ(JsonString("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonString("l1\nl2\tx\r"), "\"l1\\nl2\\tx\\r\"");
  EXPECT_EQ(JsonString(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  EXPECT_EQ(JsonString("λ"), "\"λ\"");
}

TEST(CsvFormatTest, RowsInBothFormats) {
  Row row{1700000000.5, 3, "train/loss", 0.25};
  EXPECT_EQ(Header(Format::kCsv), "wall_time,step,tag,value\n");
  EXPECT_EQ(Header(Format::kJsonl), "");
  EXPECT_EQ(FormatRow(row, Format::kCsv), "1700000000.500000,3,train/loss,0.25\n");
  EXPECT_EQ(FormatRow(row, Format::kJsonl),
            "{\"wall_time\":1700000000.500000,\"step\":3,\"tag\":\"train/loss\",\"value\":0.25}\n");
  Row odd{1.25, -1, "a,\"b\"", std::nan("")};
  EXPECT_EQ(FormatRow(odd, Format::kCsv), "1.250000,-1,\"a,\"\"b\"\"\",nan\n");
  EXPECT_EQ(FormatRow(odd, Format::kJsonl),
            "{\"wall_time\":1.250000,\"step\":-1,\"tag\":\"a,\\\"b\\\"\",\"value\":NaN}\n");
  odd.value = -INFINITY;
  EXPECT_THAT(FormatRow(odd, Format::kJsonl), HasSubstr("\"value\":-Infinity}"));
  odd.value = INFINITY;
  EXPECT_THAT(FormatRow(odd, Format::kCsv), HasSubstr(",inf\n"));
}

TEST(CsvFormatTest, FormatNames) {
  EXPECT_EQ(*ParseFormat("csv"), Format::kCsv);
  EXPECT_EQ(*ParseFormat("jsonl"), Format::kJsonl);
  EXPECT_THAT(std::string(ParseFormat("xml").status().message()),
              HasSubstr("option 'format' must be \"csv\" or \"jsonl\", got \"xml\""));
}

// ------------------------------------------------------------ ScalarFile --

TEST(ScalarFileTest, WritesHeaderAndRowsInOrderAndAppendsWithoutASecondHeader) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.path() + "/sub/folder/scalars.csv";  // folders are created
  {
    auto file = ScalarFile::Open(o);
    ASSERT_TRUE(file.ok()) << file.status();
    for (int i = 0; i < 5; ++i) EXPECT_TRUE((*file)->Add({100.0 + i, i, "x", i * 0.5}));
    ASSERT_TRUE((*file)->Close().ok());
    EXPECT_FALSE((*file)->Add({1, 1, "late", 1}));  // after Close
    EXPECT_EQ((*file)->counters().rows_written, 5u);
    EXPECT_EQ((*file)->counters().rows_lost, 0u);
  }
  {
    auto file = ScalarFile::Open(o);  // a resumed run appends
    ASSERT_TRUE(file.ok()) << file.status();
    (*file)->Add({200.0, 5, "x", 9});
    ASSERT_TRUE((*file)->Close().ok());
  }
  EXPECT_EQ(ReadFile(o.path),
            "wall_time,step,tag,value\n"
            "100.000000,0,x,0\n101.000000,1,x,0.5\n102.000000,2,x,1\n"
            "103.000000,3,x,1.5\n104.000000,4,x,2\n200.000000,5,x,9\n");
}

TEST(ScalarFileTest, JsonLinesHaveNoHeader) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.path() + "/s.jsonl";
  o.format = Format::kJsonl;
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  (*file)->Add({1, 0, "t", 1});
  ASSERT_TRUE((*file)->Close().ok());
  EXPECT_EQ(ReadFile(o.path), "{\"wall_time\":1.000000,\"step\":0,\"tag\":\"t\",\"value\":1}\n");
}

TEST(ScalarFileTest, ATinyQueueLosesNothingFromManyThreads) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.path() + "/s.csv";
  o.max_queue = 3;  // producers keep waiting for the writer
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  constexpr int kThreads = 4, kRows = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRows; ++i) (*file)->Add({1, i, absl::StrCat("t", t), double(i)});
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE((*file)->Close().ok());
  EXPECT_EQ((*file)->counters().rows_written, uint64_t{kThreads * kRows});
  std::vector<std::string> lines = Lines(ReadFile(o.path));
  ASSERT_EQ(lines.size(), size_t{kThreads * kRows + 1});
  // Each thread's rows are in its own order.
  std::map<std::string, int64_t> next;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    ASSERT_EQ(f.size(), 4u) << lines[i];
    EXPECT_EQ(std::stoll(f[1]), next[f[2]]++) << lines[i];
  }
}

TEST(ScalarFileTest, RequestFlushWritesWithoutClosing) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.path() + "/s.csv";
  o.flush_secs = 3600;  // no periodic write during the test
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  (*file)->Add({1, 7, "x", 2});
  (*file)->RequestFlush();  // returns at once; the writer thread writes
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ReadFile(o.path).find(",7,x,2\n") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_THAT(ReadFile(o.path), HasSubstr("1.000000,7,x,2\n"));
  EXPECT_TRUE((*file)->Close().ok());
}

TEST(ScalarFileTest, AnUnwritablePathIsAnErrorNamingIt) {
  TempDir dir;
  std::string blocker = dir.Write("blocker", "a file, not a folder");
  ScalarFileOptions o;
  o.path = blocker + "/x/scalars.csv";  // below a regular file: fails even for root
  auto file = ScalarFile::Open(o);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()),
              AllOf(HasSubstr("cannot create the folder"), HasSubstr(blocker + "/x")));

  o.path = dir.path();  // a folder
  file = ScalarFile::Open(o);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()),
              AllOf(HasSubstr("cannot open " + dir.path()), HasSubstr("Is a directory")));
}

TEST(ScalarFileTest, AFailedWriteIsReturnedFromCloseWithTheRowsLost) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  ScalarFileOptions o;
  o.path = "/dev/full";  // every write fails with ENOSPC
  o.flush_secs = 3600;
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  for (int i = 0; i < 3; ++i) (*file)->Add({1, i, "x", 1});
  absl::Status s = (*file)->Close();
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;  // ENOSPC, as in event files and checkpoints
  EXPECT_THAT(std::string(s.message()),
              AllOf(HasSubstr("writing /dev/full failed"), HasSubstr("No space left on device"),
                    HasSubstr("3 of 3 rows were not written")));
  EXPECT_EQ((*file)->counters().rows_lost, 3u);
  EXPECT_EQ((*file)->Close().message(), s.message());  // sticky, idempotent
}

// A disk that fills up in the middle of a chunk: the half-written chunk is
// cut off again, so the file ends at a whole row, and the message counts
// the rows that are not in it.
TEST(ScalarFileTest, AFullDiskNeverLeavesATornRow) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.Sub("s.csv");
  o.flush_secs = 3600;
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_IGN);  // write(2) then fails with EFBIG instead of killing us
  rlimit small = old;
  small.rlim_cur = 1000;  // bytes: the chunk below is larger
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  for (int i = 0; i < 200; ++i) (*file)->Add({1700000000.5, i, "train/loss", 0.125});
  absl::Status s = (*file)->Close();
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_DFL);
  ASSERT_TRUE(absl::IsResourceExhausted(s)) << s;
  const std::string content = ReadFile(o.path);
  EXPECT_TRUE(content.empty() || content.back() == '\n') << "torn last row: " << content;
  const uint64_t lost = (*file)->counters().rows_lost;
  const uint64_t in_file = static_cast<uint64_t>(std::count(content.begin(), content.end(), '\n'));
  EXPECT_EQ(in_file - (content.rfind("wall_time", 0) == 0 ? 1 : 0) + lost, 200u);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat(lost, " of 200 rows were not written (the file ends at the "
                                           "last whole row)")));
}

TEST(ScalarFileTest, FlushWaitsUntilEveryRowAddedBeforeIsInTheFile) {
  TempDir dir;
  ScalarFileOptions o;
  o.path = dir.Sub("s.csv");
  o.flush_secs = 3600;  // nothing would be written for an hour otherwise
  auto file = ScalarFile::Open(o);
  ASSERT_TRUE(file.ok()) << file.status();
  for (int i = 0; i < 10; ++i) (*file)->Add({1, i, "x", 1});
  ASSERT_TRUE((*file)->Flush().ok());
  EXPECT_EQ((*file)->counters().rows_written, 10u);
  EXPECT_EQ(ReadFile(o.path), Header(Format::kCsv) + [] {
    std::string rows;
    for (int i = 0; i < 10; ++i) rows += FormatRow({1, i, "x", 1}, Format::kCsv);
    return rows;
  }());
  ASSERT_TRUE((*file)->Close().ok());
}

TEST(ScalarFileTest, RewindDropsRowsFromTheResumeStepOnAndATornLastLine) {
  TempDir dir;
  for (Format f : {Format::kCsv, Format::kJsonl}) {
    const std::string path = dir.Sub(f == Format::kCsv ? "s.csv" : "s.jsonl");
    std::string content = Header(f);
    for (int i = 0; i < 8; ++i) content += FormatRow({1, i, "a,b", 0.5}, f);
    std::ofstream(path, std::ios::binary) << content << "1.0,9,tor";
    auto removed = RewindScalarFile(path, f, 5);
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(*removed, 4);  // steps 5, 6, 7 and the torn line
    std::string want = Header(f);
    for (int i = 0; i < 5; ++i) want += FormatRow({1, i, "a,b", 0.5}, f);
    EXPECT_EQ(ReadFile(path), want);
    EXPECT_EQ(*RewindScalarFile(path, f, 5), 0);  // nothing more to do
  }
  EXPECT_EQ(*RewindScalarFile(dir.Sub("missing.csv"), Format::kCsv, 3), 0);
}

// ------------------------------------------------------- end to end ------

// 300 samples, batch 50 -> 6 iterations per epoch, 2 epochs.
std::string SmallConfig(const TempDir& dir, const std::string& plugins) {
  return dir.Write("run.json", absl::StrCat(R"({
    "name": "small", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 50, "num_threads": 1},
    "dataset": {"train_samples": 300, "val_samples": 60},
    "plugins": [)", plugins, "]}"));
}

TEST(CsvPluginTest, WritesEveryScalarOfTheRun) {
  TempDir dir;
  std::string config = SmallConfig(dir, R"({"name": "csv"},
      {"name": "early_stopping", "options": {"monitor": "val/loss", "patience": 100}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string path = dir.path() + "/runs/small/scalars.csv";
  EXPECT_THAT(r.output, HasSubstr("[csv] writing scalars to " + path));

  std::vector<std::string> lines = Lines(ReadFile(path));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "wall_time,step,tag,value");
  std::map<std::string, std::vector<int64_t>> steps;
  std::map<std::string, double> last;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> f = absl::StrSplit(lines[i], ',');
    ASSERT_EQ(f.size(), 4u) << lines[i];
    EXPECT_GT(std::stod(f[0]), 1.6e9) << lines[i];  // seconds since 1970
    steps[f[2]].push_back(std::stoll(f[1]));
    last[f[2]] = std::stod(f[3]);
  }
  const std::vector<int64_t> every_step = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  EXPECT_EQ(steps["train/loss"], every_step);
  EXPECT_EQ(steps["lr/group0"], every_step);
  EXPECT_EQ(last["lr/group0"], 0.05);  // the exact double, not float32
  EXPECT_EQ(steps["val/loss"], (std::vector<int64_t>{5, 11}));
  EXPECT_EQ(steps["val/accuracy"], (std::vector<int64_t>{5, 11}));
  EXPECT_EQ(steps["epoch/mean_loss"], (std::vector<int64_t>{5, 11}));
  // Records another plugin publishes.
  EXPECT_EQ(steps["early_stopping/wait"], (std::vector<int64_t>{5, 11}));
}

TEST(CsvPluginTest, JsonLinesToAChosenPath) {
  TempDir dir;
  std::string config = SmallConfig(
      dir, R"({"name": "csv", "options": {"format": "jsonl", "path": "out/metrics.jsonl"}})");
  CommandResult r = RunTrainbus(absl::StrCat("train --config ", config));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> lines = Lines(ReadFile(dir.path() + "/runs/small/out/metrics.jsonl"));
  int losses = 0;
  for (const std::string& l : lines) {
    EXPECT_THAT(l, AllOf(::testing::StartsWith("{\"wall_time\":"), ::testing::EndsWith("}")));
    losses += l.find("\"tag\":\"train/loss\"") != std::string::npos;
  }
  EXPECT_EQ(losses, 12);
  EXPECT_THAT(lines[0], HasSubstr("\"step\":0,\"tag\":\"train/loss\",\"value\":"));
}

TEST(CsvPluginTest, BadOptionsAndAnUnwritablePathAreClearErrors) {
  TempDir dir;
  CommandResult r = RunTrainbus(absl::StrCat(
      "train --config ", SmallConfig(dir, R"({"name": "csv", "options": {"format": "xml"}})")));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'csv'"), HasSubstr("option 'format' must be")));

  r = RunTrainbus(absl::StrCat(
      "train --config ", SmallConfig(dir, R"({"name": "csv", "options": {"flush_secs": 0}})")));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("option 'flush_secs' must be > 0, got 0"));

  std::string blocker = dir.Write("blocker", "a file, not a folder");
  r = RunTrainbus(absl::StrCat(
      "train --config ", SmallConfig(dir, absl::StrCat(R"({"name": "csv", "options": {"path": ")",
                                                       blocker, R"(/scalars.csv"}})"))));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("plugin 'csv' threw in OnTrainBegin at step 0"),
                              HasSubstr(blocker)));
}

TEST(CsvPluginTest, AFailedWriteEndsTheRunNamingTheFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  TempDir dir;
  CommandResult r = RunTrainbus(absl::StrCat(
      "train --config ", SmallConfig(dir, R"({"name": "csv", "options": {"path": "/dev/full"}})")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("writing /dev/full failed: No space left on device"),
                              HasSubstr("rows were not written")));
}

}  // namespace
}  // namespace trainbus::csv
