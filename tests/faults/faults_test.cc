// Fault tests through the real `trainbus` program and plugins: nothing is lost
// and the error is clear when a run is killed (SIGKILL), when a checkpoint
// cannot be written (file size limit, folder that cannot be created) and when
// any field of the run config has a value of the wrong JSON type.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "trainbus/checkpoint.h"
#include "trainbus/config.h"
#include "trainbus/models/models.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/inspect.h"
#include "test_util.h"

namespace trainbus {
namespace {

using trainbus::test_util::TempDir;

namespace fs = std::filesystem;
namespace pb = google::protobuf;
namespace tb = trainbus::tensorboard;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::StartsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// An upper bound for anything the tests wait for; it never decides a result.
constexpr auto kDeadline = std::chrono::seconds(120);
constexpr uid_t kNobody = 65534;

// ------------------------------------------------- running the program --

struct SpawnOptions {
  std::optional<rlim_t> max_file_size;  // RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail with EFBIG
  std::optional<uid_t> run_as;          // a root parent drops to this uid/gid in the child
  int pipe_size = 0;                    // shrink the output pipe to this many bytes
};

// A running `trainbus`; `out` reads its stdout and stderr (one pipe).
struct Child {
  pid_t pid = -1;
  int out = -1;
};

struct Result {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string output;
};

Child Spawn(const std::vector<std::string>& args, const SpawnOptions& o = {}) {
  std::vector<std::string> all = {TRAINBUS_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};
  if (o.pipe_size > 0 && fcntl(fds[0], F_SETPIPE_SZ, o.pipe_size) < 0) return {};
  pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    if (o.max_file_size) {
      signal(SIGXFSZ, SIG_IGN);  // kept across exec: write(2) returns EFBIG instead of killing
      rlimit limit{*o.max_file_size, *o.max_file_size};
      if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(125);
    }
    if (o.run_as && (setgroups(0, nullptr) != 0 || setgid(*o.run_as) != 0 || setuid(*o.run_as) != 0)) {
      _exit(126);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return {};
  }
  return {pid, fds[0]};
}

// Reads the rest of the output and reaps the child.
Result Finish(Child c) {
  Result r;
  char buf[4096];
  ssize_t n;
  while ((n = read(c.out, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) r.output.append(buf, n);
  }
  close(c.out);
  int status = 0;
  while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

Result RunTrainbus(const std::vector<std::string>& args, const SpawnOptions& o = {}) {
  Child c = Spawn(args, o);
  if (c.pid < 0) return {-1, 0, "could not start " TRAINBUS_BIN};
  return Finish(c);
}

// Kills a child that a failed assertion left behind.
struct KillOnExit {
  pid_t pid;
  ~KillOnExit() {
    if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
  }
};

// ------------------------------------------- checkpoints and event files --

struct SavedCheckpoint {
  std::string dir;
  int64_t next_step;
};

// The complete checkpoint folders under `root` (a folder is renamed into
// place only once complete), oldest first; each one's sizes and CRCs checked.
std::vector<SavedCheckpoint> CompleteCheckpoints(const std::string& root, std::string* problems) {
  std::vector<SavedCheckpoint> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!absl::StartsWith(name, "step-") || !fs::exists(e.path() / "meta.pb", ec)) continue;
    auto state = LoadCheckpoint(e.path().string(), nullptr, nullptr);
    if (!state.ok()) {
      absl::StrAppend(problems, state.status().message(), "\n");
      continue;
    }
    out.push_back({e.path().string(), state->next_step});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.next_step < b.next_step; });
  return out;
}

struct EventFile {
  std::string path;
  tb::EventFileContents contents;
};

// Every event file of a run folder, in the order they were started.
std::vector<EventFile> ReadEventFiles(const std::string& run_dir) {
  std::vector<EventFile> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    if (e.path().filename().string().find("tfevents") == std::string::npos) continue;
    auto contents = tb::ReadEventFile(e.path().string());
    if (contents.ok()) files.push_back({e.path().string(), *std::move(contents)});
  }
  auto started = [](const EventFile& f) {
    return f.contents.events.empty() ? 0.0 : f.contents.events.front().wall_time();
  };
  std::sort(files.begin(), files.end(),
            [&](const EventFile& a, const EventFile& b) { return started(a) < started(b); });
  return files;
}

std::vector<int64_t> LossSteps(const EventFile& f) {
  std::vector<int64_t> steps;
  for (const auto& e : f.contents.events) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() == "train/loss") steps.push_back(e.step());
    }
  }
  return steps;
}

// n when the file's train/loss steps are exactly 0, 1, ..., n-1 (else -1).
int64_t ContiguousLossSteps(const std::string& run_dir) {
  std::vector<EventFile> files = ReadEventFiles(run_dir);
  if (files.size() != 1) return -1;
  std::vector<int64_t> steps = LossSteps(files[0]);
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i] != static_cast<int64_t>(i)) return -1;
  }
  return static_cast<int64_t>(steps.size());
}

// train/loss of the only run under `log_root`, as TensorBoard shows it:
// both loaders (their rules replayed by inspect) show steps 0..steps-1, each
// once, and the files hold each step once.
void ExpectEachLossStepOnce(const std::string& log_root, int64_t steps) {
  auto report = tb::InspectLogDir(log_root);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 1u);
  bool found = false;
  for (const tb::InspectTag& t : report->runs[0].tags) {
    if (t.tag != "train/loss") continue;
    found = true;
    EXPECT_EQ(t.count, steps);
    EXPECT_EQ(t.count_legacy, steps);
    EXPECT_EQ(t.written, steps);
    EXPECT_EQ(t.duplicate_steps, 0);
    EXPECT_EQ(t.first_step, 0);
    EXPECT_EQ(t.last_step, steps - 1);
  }
  EXPECT_TRUE(found) << "no train/loss under " << log_root;
}

bool IsReadable(const tb::EventFileContents& c) {
  return c.end == tb::EventFileReader::State::kEnd ||
         c.end == tb::EventFileReader::State::kTruncated;
}

// ---------------------------------------------------------------- SIGKILL --

// 320 samples, batch 16: 20 iterations per epoch, 400 in all. A progress
// line per iteration: the parent stops reading the (shrunk) pipe, so the
// child blocks a few dozen iterations later and cannot finish the run,
// however fast the machine is. flush_secs is huge, so what reaches the event
// file before the kill is what the epoch-end flush request wrote.
std::string KillConfig(const TempDir& dir) {
  return dir.Write("kill.json", absl::StrCat(R"({
    "name": "kill", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 20, "batch_size": 16, "seed": 42, "num_threads": 1},
    "model": {"type": "mlp", "hidden": [32]},
    "dataset": {"type": "shapes", "train_samples": 320, "val_samples": 32, "seed": 7},
    "plugins": [
      {"name": "progress", "options": {"mode": "lines", "every_n_iterations": 1}},
      {"name": "tensorboard", "options": {"flush_secs": 100000, "hparams": false,
                                          "images": 0, "histograms_every_n": 0}},
      {"name": "checkpoint", "options": {"every_n_epochs": 1, "keep_last": 1000}}]})"));
}
constexpr int64_t kKillRunSteps = 400;

TEST(KillTest, SigkillMidRunLosesNothingFlushedAndResumeWritesEveryStep) {
  TempDir dir;
  const std::string config = KillConfig(dir);
  const std::string run_dir = dir.path() + "/runs/kill";
  const std::string root = run_dir + "/checkpoints";

  SpawnOptions small_pipe;
  small_pipe.pipe_size = 4096;
  Child child = Spawn({"train", "--config", config}, small_pipe);
  ASSERT_GT(child.pid, 0);
  KillOnExit guard{child.pid};
  // ~75 bytes a line: the pipe must hold far less than the 400 lines.
  ASSERT_LE(fcntl(child.out, F_GETPIPE_SZ), 8192);

  // Let the run go until two checkpoints have been queued ...
  std::string output;
  char buf[512];
  while (absl::StrContains(output, "[checkpoint] saving") == false ||
         output.find("[checkpoint] saving") == output.rfind("[checkpoint] saving")) {
    ssize_t n = read(child.out, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "the run ended before its second checkpoint:\n" << output;
    output.append(buf, n);
  }
  // ... then stop reading: the child soon blocks on its output. Kill it once
  // two checkpoints are complete on disk and the event file holds train/loss
  // up to the newest one. The epoch-end flush is only requested, not awaited,
  // and not ordered with the checkpoint writer thread, so wait for it; the
  // child is frozen (SIGSTOP) for the final check so nothing changes between
  // the check and the kill.
  const auto deadline = Clock::now() + kDeadline;
  std::vector<SavedCheckpoint> at_kill;
  int64_t steps_at_kill = -1;
  for (;;) {
    ASSERT_LT(Clock::now(), deadline) << "no 2 complete checkpoints with their steps in the event file";
    std::string problems;
    auto ready = [&] {
      at_kill = CompleteCheckpoints(root, &problems);
      steps_at_kill = ContiguousLossSteps(run_dir);
      return at_kill.size() >= 2 && steps_at_kill >= at_kill.back().next_step;
    };
    if (ready()) {
      ASSERT_EQ(kill(child.pid, SIGSTOP), 0);
      int status = 0;
      ASSERT_EQ(waitpid(child.pid, &status, WUNTRACED), child.pid);
      ASSERT_TRUE(WIFSTOPPED(status)) << "the run ended before it was killed:\n" << output;
      if (ready()) break;
      ASSERT_EQ(kill(child.pid, SIGCONT), 0);
    }
    ASSERT_EQ(problems, "");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(kill(child.pid, SIGKILL), 0);
  guard.pid = -1;
  Result killed = Finish(child);
  ASSERT_EQ(killed.signal, SIGKILL) << output << killed.output;

  // (a) The event file reads back (a cut-off last record is tolerated, no
  // corruption) and train/loss is exactly steps 0..n-1, n >= the newest
  // checkpoint's step, n < the run's total (it was killed mid-run).
  std::vector<EventFile> files = ReadEventFiles(run_dir);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(IsReadable(files[0].contents)) << files[0].contents.problem;
  std::vector<int64_t> steps = LossSteps(files[0]);
  for (size_t i = 0; i < steps.size(); ++i) ASSERT_EQ(steps[i], static_cast<int64_t>(i));
  EXPECT_EQ(static_cast<int64_t>(steps.size()), steps_at_kill);
  EXPECT_GE(static_cast<int64_t>(steps.size()), at_kill.back().next_step);
  EXPECT_LT(static_cast<int64_t>(steps.size()), kKillRunSteps);

  // (b) `latest` (what --resume takes) names a complete checkpoint: the
  // newest, or the one before when the kill came between the newest's rename
  // into place and the update of `latest`. It loads into the run's model and
  // optimizer.
  auto newest = ResolveCheckpoint(root);
  ASSERT_TRUE(newest.ok()) << newest.status();
  const size_t n = at_kill.size();
  EXPECT_TRUE(*newest == at_kill[n - 1].dir || *newest == at_kill[n - 2].dir) << *newest;
  auto run_config = LoadRunConfig(config);
  ASSERT_TRUE(run_config.ok()) << run_config.status();
  ASSERT_TRUE(FinalizeRunConfig(&*run_config, config).ok());
  auto model = MakeModel(run_config->model(), InputShape{}, /*num_classes=*/6);
  ASSERT_TRUE(model.ok()) << model.status();
  torch::optim::SGD optimizer((*model)->parameters(), torch::optim::SGDOptions(0.05));
  auto state = LoadCheckpoint(root, model->ptr().get(), &optimizer);
  ASSERT_TRUE(state.ok()) << state.status();
  const int64_t resume_step = state->next_step;
  EXPECT_EQ(fs::path(*newest).filename(), absl::StrFormat("step-%08d", resume_step));
  EXPECT_EQ(resume_step % 20, 0) << "saved at an epoch end";

  // (c) Resuming runs to the planned end and then every step has exactly one
  // train/loss point, as TensorBoard shows them: the resumed file starts with
  // the purge step (SessionLog START at resume_step), which drops the killed
  // run's points at steps >= resume_step.
  Result resumed = RunTrainbus({"train", "--config", config, "--resume", root});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output,
              AllOf(HasSubstr(absl::StrCat("resuming at step ", resume_step)),
                    HasSubstr(absl::StrCat("finished: ", kKillRunSteps - resume_step,
                                           " iterations"))));
  auto last = LoadCheckpoint(root, nullptr, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->next_step, kKillRunSteps);

  files = ReadEventFiles(run_dir);
  ASSERT_EQ(files.size(), 2u);
  for (const EventFile& f : files) EXPECT_TRUE(IsReadable(f.contents)) << f.contents.problem;
  // Both of TensorBoard's loaders show each step once; the killed session's
  // tail was cut from its file, so nothing is written twice either.
  ExpectEachLossStepOnce(dir.path() + "/runs", kKillRunSteps);
}

// A checkpoint every 7 iterations (not at epoch ends) and no periodic flush:
// before the flush barrier, a kill soon after a checkpoint lost the steps
// between the last flush and the checkpoint for good (the resume starts after
// them). Now the checkpoint commits only once the event and csv files hold
// every step before it: kill at random moments, resume, and every step is in
// both files exactly once.
std::string BarrierConfig(const TempDir& dir) {
  return dir.Write("barrier.json", absl::StrCat(R"({
    "name": "barrier", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 30, "batch_size": 16, "seed": 42, "num_threads": 1},
    "model": {"type": "mlp", "hidden": [32]},
    "dataset": {"type": "shapes", "train_samples": 320, "val_samples": 32, "seed": 7},
    "plugins": [
      {"name": "progress", "options": {"mode": "lines", "every_n_iterations": 1}},
      {"name": "tensorboard", "options": {"flush_secs": 100000, "images": 0,
                                          "histograms_every_n": 0}},
      {"name": "csv", "options": {"flush_secs": 100000}},
      {"name": "checkpoint", "options": {"every_n_iterations": 7, "every_n_epochs": 0,
                                         "keep_last": 1000}}]})"));
}
// Long enough (about 1 s, more under sanitizers) for a checkpoint to commit
// while the run goes on: a commit waits for the writers' flush and an fsync
// on its own thread, and with 120 steps a loaded machine once finished the
// run before any commit, so the kill never came. The kill comes early; only
// the resume runs the rest.
constexpr int64_t kBarrierRunSteps = 600;

TEST(FlushBarrierTest, KillAtRandomMomentsThenResumeWritesEveryStepOnce) {
  std::mt19937 rng(20261203);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE(absl::StrCat("trial ", trial));
    TempDir dir;
    const std::string config = BarrierConfig(dir);
    const std::string run_dir = dir.path() + "/runs/barrier";
    Child child = Spawn({"train", "--config", config});
    ASSERT_GT(child.pid, 0);
    KillOnExit guard{child.pid};
    // Kill after the k-th checkpoint line plus 0-40 more output lines.
    const int checkpoints = 2 + static_cast<int>(rng() % 6);
    const int extra_lines = static_cast<int>(rng() % 40);
    std::string output;
    char c;
    int seen = 0, lines_after = -1;
    while (lines_after < extra_lines) {
      ssize_t n = read(child.out, &c, 1);
      if (n < 0 && errno == EINTR) continue;
      ASSERT_GT(n, 0) << "the run ended before the kill:\n" << output;
      output += c;
      if (c != '\n') continue;
      if (lines_after >= 0) ++lines_after;
      if (absl::StrContains(output.substr(output.rfind('\n', output.size() - 2) + 1),
                            "[checkpoint] saving")) {
        ++seen;
      }
      // From the k-th save on, once a checkpoint is committed (the commit
      // waits for the writers' flush on its own thread): then the kill.
      if (lines_after < 0 && seen >= checkpoints && fs::exists(run_dir + "/checkpoints/latest")) {
        lines_after = 0;
      }
    }
    ASSERT_EQ(kill(child.pid, SIGKILL), 0);
    guard.pid = -1;
    Result killed = Finish(child);
    ASSERT_EQ(killed.signal, SIGKILL) << output << killed.output;

    // Whatever `latest` names, the files already hold every step before it.
    auto at_kill = LoadCheckpoint(run_dir + "/checkpoints", nullptr, nullptr);
    ASSERT_TRUE(at_kill.ok()) << at_kill.status();
    EXPECT_GE(ContiguousLossSteps(run_dir), at_kill->next_step);

    Result resumed = RunTrainbus({"train", "--config", config, "--resume", run_dir + "/checkpoints"});
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    ExpectEachLossStepOnce(dir.path() + "/runs", kBarrierRunSteps);
    // The csv file: train/loss rows for steps 0..n-1, each once (the resume
    // removed the killed session's rows after the checkpoint).
    std::string csv = test_util::ReadFile(run_dir + "/scalars.csv");
    std::map<int64_t, int> rows;
    for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ',');
      if (f.size() == 4 && f[2] == "train/loss") rows[std::atoll(f[1].c_str())]++;
    }
    ASSERT_EQ(static_cast<int64_t>(rows.size()), kBarrierRunSteps);
    for (const auto& [step, n] : rows) ASSERT_EQ(n, 1) << "csv step " << step;
    EXPECT_EQ(rows.begin()->first, 0);
    EXPECT_EQ(rows.rbegin()->first, kBarrierRunSteps - 1);
  }
}

// ------------------------------------------------------ SIGINT / SIGTERM --

// Ctrl-C or SIGTERM mid-run: the run stops at the end of the iteration, every
// step it ran is in the event file once, a final checkpoint at that step is
// saved, the exit code is the signal's (130 / 143); --resume then finishes
// with each step once. The parent keeps reading the output, so the child
// never blocks on it; flush_secs is huge, so only the graceful close can have
// written the last epoch's events.
class InterruptTest : public ::testing::TestWithParam<int> {};

TEST_P(InterruptTest, StopsAtTheEndOfTheIterationAndWritesEverything) {
  const int sig = GetParam();
  TempDir dir;
  const std::string config = KillConfig(dir);
  const std::string run_dir = dir.path() + "/runs/kill";
  Child child = Spawn({"train", "--config", config});
  ASSERT_GT(child.pid, 0);
  KillOnExit guard{child.pid};
  std::string output;
  char buf[512];
  // Past the first checkpoint and a few iterations into the next epoch.
  while (!absl::StrContains(output, "[checkpoint] saving") ||
         !absl::StrContains(output.substr(output.find("[checkpoint] saving")), " 5/20 it")) {
    ssize_t n = read(child.out, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << "the run ended before it could be interrupted:\n" << output;
    output.append(buf, n);
  }
  ASSERT_EQ(kill(child.pid, sig), 0);
  Result r = Finish(child);
  guard.pid = -1;
  r.output = output + r.output;
  const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  ASSERT_EQ(r.exit_code, 128 + sig) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr(absl::StrCat("[trainbus] ", name,
                                                     ": stopping at the end of this iteration")),
                              HasSubstr(absl::StrCat("(interrupted: trainbus: interrupted by ", name)),
                              HasSubstr("Continue with:")));
  const size_t at = r.output.find("finished: ");
  ASSERT_NE(at, std::string::npos) << r.output;
  const int64_t ran = std::atoll(r.output.c_str() + at + 10);
  ASSERT_GT(ran, 20);
  ASSERT_LT(ran, kKillRunSteps);
  // Every step that ran, once, in order, though no periodic flush came.
  EXPECT_EQ(ContiguousLossSteps(run_dir), ran);
  // The final checkpoint is at the stop: a resume continues from there.
  auto last = LoadCheckpoint(run_dir + "/checkpoints", nullptr, nullptr);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->next_step, ran);

  Result resumed = RunTrainbus({"train", "--config", config, "--resume", run_dir + "/checkpoints"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  ExpectEachLossStepOnce(dir.path() + "/runs", kKillRunSteps);
}

// A second Ctrl-C does not wait for a shutdown that hangs (here a plugin
// whose Close() never returns, with a 60 s limit): the event files are
// flushed and the process exits at once with 130.
TEST(SecondInterruptTest, ExitsAtOnceAfterFlushingTheEventFiles) {
  TempDir dir;
  const std::string config = dir.Write("hang.json", absl::StrCat(R"({
    "name": "hang", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 20, "batch_size": 16, "seed": 42, "num_threads": 1},
    "model": {"type": "mlp", "hidden": [32]},
    "dataset": {"type": "shapes", "train_samples": 320, "val_samples": 32, "seed": 7},
    "plugin_close_timeout_seconds": 60,
    "plugins": [
      {"name": "progress", "options": {"mode": "lines", "every_n_iterations": 1}},
      {"name": "tensorboard", "options": {"flush_secs": 100000, "images": 0,
                                          "histograms_every_n": 0}},
      {"name": "test_hangs_in_close", "library": ")", TEST_PLUGIN_ROOT,
                                       R"(/hangs/libtrainbus_test_hangs.so"}]})"));
  const std::string run_dir = dir.path() + "/runs/hang";
  Child child = Spawn({"train", "--config", config});
  ASSERT_GT(child.pid, 0);
  KillOnExit guard{child.pid};
  std::string output;
  char buf[512];
  auto read_until = [&](const std::string& text) {
    while (!absl::StrContains(output, text)) {
      ssize_t n = read(child.out, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      output.append(buf, n);
    }
    return true;
  };
  ASSERT_TRUE(read_until(" 5/20 it")) << output;
  ASSERT_EQ(kill(child.pid, SIGINT), 0);
  // The run stops and reaches the plugins' Close(), where one hangs.
  ASSERT_TRUE(read_until("run interrupted after step")) << output;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto second = Clock::now();
  ASSERT_EQ(kill(child.pid, SIGINT), 0);
  Result r = Finish(child);
  guard.pid = -1;
  const double seconds = std::chrono::duration<double>(Clock::now() - second).count();
  r.output = output + r.output;
  EXPECT_EQ(r.exit_code, 130) << r.output;
  EXPECT_LT(seconds, 10) << "the second SIGINT did not end the process promptly";
  EXPECT_THAT(r.output, HasSubstr("second SIGINT: flushing event files and exiting now"));
  EXPECT_THAT(r.output, Not(HasSubstr("finished:")));
  // Every step the run made is in the event file, once.
  EXPECT_GE(ContiguousLossSteps(run_dir), 6) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Signals, InterruptTest, ::testing::Values(SIGINT, SIGTERM),
                         [](const auto& info) { return info.param == SIGINT ? "SIGINT" : "SIGTERM"; });

// ------------------------------------------------ checkpoint write faults --

// 160 samples, batch 16: 10 iterations per epoch. The mlp's model.pt is
// about 200 KB (784 x 64 floats), far above the file size limit used below;
// no other plugin writes files, so only the checkpoint can hit it.
std::string CheckpointConfig(const TempDir& dir, const std::string& checkpoint_dir = "") {
  return dir.Write("ckpt.json", absl::StrCat(R"({
    "name": "ckpt", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 16, "seed": 42, "num_threads": 1},
    "model": {"type": "mlp", "hidden": [64]},
    "dataset": {"type": "shapes", "train_samples": 160, "val_samples": 16, "seed": 7},
    "plugins": [{"name": "checkpoint", "options": {"every_n_epochs": 1, "keep_last": 100)",
                                             checkpoint_dir.empty() ? "" : absl::StrCat(
                                                 R"(, "dir": ")", checkpoint_dir, R"(")"),
                                             "}}]}"));
}

TEST(DiskFullTest, FailedCheckpointWriteEndsTheRunClearlyAndKeepsThePreviousOne) {
  TempDir dir;
  const std::string config = CheckpointConfig(dir);
  const std::string root = dir.path() + "/runs/ckpt/checkpoints";
  Result first = RunTrainbus({"train", "--config", config});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto before = ResolveCheckpoint(root);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(fs::path(*before).filename(), "step-00000020");

  // Two more epochs with a 64 KiB file size limit: the checkpoint at step 30
  // cannot be written (EFBIG, as on a full disk).
  SpawnOptions limited;
  limited.max_file_size = 64 << 10;
  Result full = RunTrainbus(
      {"train", "--config", config, "--resume", root, "--set", "trainer.epochs=4"}, limited);
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_THAT(full.output, AllOf(HasSubstr("trainbus: the run failed: "),
                                 HasSubstr(root + "/step-00000030 was not saved"),
                                 HasSubstr("model.pt: File too large"),
                                 HasSubstr(root + "/latest still names the newest complete checkpoint"),
                                 HasSubstr("free disk space")));
  // Nothing half-written is taken for the newest: `latest` still names step
  // 20, which loads; neither later checkpoint nor a temporary folder is left.
  auto after = ResolveCheckpoint(root);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, *before);
  auto state = LoadCheckpoint(root, nullptr, nullptr);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->next_step, 20);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-00000010", "step-00000020"}));
}

TEST(UnwritableTest, CheckpointFolderThatCannotBeCreatedIsAClearError) {
  {  // A regular file where a folder should be: fails for root too.
    TempDir dir;
    const std::string blocker = dir.Write("blocker", "a file, not a folder");
    Result r = RunTrainbus({"train", "--config", CheckpointConfig(dir, blocker + "/checkpoints")});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, AllOf(HasSubstr("trainbus: the run failed: "),
                                HasSubstr("checkpoint: cannot create folder " + blocker +
                                          "/checkpoints: Not a directory"),
                                HasSubstr("Check the path and permissions")));
  }
  {  // A read-only parent folder (chmod 0500). Root ignores permissions, so a
     // root test process runs trainbus as `nobody` on a folder nobody owns.
    TempDir dir;
    const std::string parent = dir.path() + "/read-only";
    fs::create_directory(parent);
    SpawnOptions as;
    if (geteuid() == 0) {
      as.run_as = kNobody;
      ASSERT_EQ(chown(dir.path().c_str(), kNobody, kNobody), 0);
      ASSERT_EQ(chown(parent.c_str(), kNobody, kNobody), 0);
    }
    ASSERT_EQ(chmod(parent.c_str(), 0500), 0);
    const std::string config = CheckpointConfig(dir, parent + "/checkpoints");
    Result r = RunTrainbus({"train", "--config", config}, as);
    if (r.exit_code == 126 || (as.run_as && r.exit_code == 127)) {
      GTEST_SKIP() << "cannot run trainbus as an unprivileged user here: " << r.output;
    }
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, AllOf(HasSubstr("trainbus: the run failed: "),
                                HasSubstr("checkpoint: cannot create folder " + parent +
                                          "/checkpoints: Permission denied"),
                                HasSubstr("Check the path and permissions")));
  }
}

// ------------------------------------------------- wrong types in config --

// A field of RunConfig by its path from the root, e.g. trainer.normalize.mean.
using FieldPath = std::vector<const pb::FieldDescriptor*>;

bool IsWellKnownType(const pb::Descriptor* d) {
  return absl::StartsWith(d->file()->name(), "google/protobuf/");
}

void CollectFields(const pb::Descriptor* d, const FieldPath& prefix, std::vector<FieldPath>* out) {
  for (int i = 0; i < d->field_count(); ++i) {
    FieldPath path = prefix;
    path.push_back(d->field(i));
    out->push_back(path);
    const pb::Descriptor* m = d->field(i)->message_type();
    if (m != nullptr && !IsWellKnownType(m)) CollectFields(m, path, out);
  }
}

// "trainer.normalize.mean", "plugins[0].options": how errors name a field.
std::string Dotted(const FieldPath& path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ".", path[i]->name(),
                    i + 1 < path.size() && path[i]->is_repeated() ? "[0]" : "");
  }
  return out;
}

// A whole config that sets only the last field of `path`, to `value`; lists
// of messages on the way (plugins) get one element.
std::string ConfigSetting(const FieldPath& path, const std::string& value) {
  std::string json = value;
  for (size_t i = path.size(); i-- > 0;) {
    if (i + 1 < path.size() && path[i]->is_repeated()) json = absl::StrCat("[", json, "]");
    json = absl::StrCat("{\"", path[i]->name(), "\": ", json, "}");
  }
  return json;
}

// JSON values of the wrong type for one element of field `f`.
std::vector<std::string> WrongElementValues(const pb::FieldDescriptor* f) {
  if (f->message_type() != nullptr) {
    if (f->message_type()->full_name() == "google.protobuf.Struct") {
      return {"5", "\"verbose\"", "true", "[1, 2]"};
    }
    return {"5", "\"text\"", "true", "[]"};
  }
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return {"\"yes\"", "1", "{}", "[true]"};
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return {"5", "true", "{}", "[\"a\"]"};
    default:  // numbers
      return {"\"many\"", "true", "{}", "[1]"};
  }
}

// Right-typed element (for lists given a bare element instead of a list).
std::string RightElementValue(const pb::FieldDescriptor* f) {
  if (f->message_type() != nullptr) return "{}";
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return "\"x\"";
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return "true";
    default:
      return "1";
  }
}

std::vector<std::string> WrongValues(const pb::FieldDescriptor* f) {
  std::vector<std::string> element = WrongElementValues(f);
  if (!f->is_repeated()) return element;
  // A list given a bare element, an object, or elements of the wrong type.
  std::vector<std::string> out = {RightElementValue(f)};
  if (f->message_type() == nullptr) out.push_back("{}");
  for (const std::string& e : element) {
    if (!absl::StartsWith(e, "[")) out.push_back(absl::StrCat("[", e, "]"));
  }
  return out;
}

// Every field of RunConfig, found through its descriptor (a new field is
// covered without touching this test), gets each value of a wrong JSON type.
TEST(WrongTypeTest, EveryConfigFieldOfTheWrongTypeIsAClearError) {
  TempDir dir;
  std::vector<FieldPath> fields;
  CollectFields(config::RunConfig::descriptor(), {}, &fields);
  ASSERT_GT(fields.size(), 40u);
  int cases = 0;
  for (const FieldPath& path : fields) {
    const pb::FieldDescriptor* f = path.back();
    if (f->message_type() != nullptr && f->message_type()->full_name() == "google.protobuf.Value") {
      continue;  // trainer.batch_size takes any JSON value: see the next test
    }
    for (const std::string& value : WrongValues(f)) {
      const std::string json = ConfigSetting(path, value);
      const std::string file = dir.Write(absl::StrCat("wrong-", ++cases, ".json"), json);
      auto loaded = LoadRunConfig(file);
      ASSERT_FALSE(loaded.ok()) << json << " was accepted";
      // Our kind check: "<file>: <path>[ [i]] must be ..."; a string that is not a
      // number, for a number, is protobuf's: "<file>: ... (<path>): invalid
      // value "many" for type TYPE_INT64".
      EXPECT_THAT(std::string(loaded.status().message()),
                  AnyOf(AllOf(HasSubstr(file + ": " + Dotted(path)), HasSubstr(" must be ")),
                        AllOf(StartsWith(file + ": "),
                              HasSubstr("(" + Dotted(path)),
                              HasSubstr("): invalid value \"many\" for type TYPE_"))))
          << json;
    }
  }
  EXPECT_GT(cases, 150);
  // Two of the messages in full.
  const std::string bool_file = dir.Write("bool.json", R"({"trainer": {"drop_last": "yes"}})");
  EXPECT_EQ(LoadRunConfig(bool_file).status().message(),
            bool_file + ": trainer.drop_last must be true or false (without quotes), got the "
                        "string \"yes\"");
  const std::string list_file = dir.Write("list.json", R"({"model": {"hidden": 128}})");
  EXPECT_EQ(LoadRunConfig(list_file).status().message(),
            list_file + ": model.hidden must be a list of integers ([...]), got the number 128");
}

// What proto3 JSON allows stays allowed, and trainer.batch_size (a
// google.protobuf.Value: a number or "full") is checked when the config is
// finalised, as `trainbus train` does right after loading it.
TEST(WrongTypeTest, Proto3JsonSpellingsAreAcceptedAndBatchSizeIsCheckedWhenFinalised) {
  TempDir dir;
  const std::string legal = dir.Write("legal.json", R"({
      "trainer": {"epochs": "7", "validateEveryNEpochs": 2, "seed": null},
      "optimizer": {"lr": "0.5", "momentum": 1e-1},
      "plugins": [{"name": "progress", "options": {"anything": [1, {"a": null}]}}]})");
  auto loaded = LoadRunConfig(legal);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->trainer().epochs(), 7);  // a number in a string: legal proto3 JSON
  EXPECT_EQ(loaded->trainer().validate_every_n_epochs(), 2);  // lowerCamelCase json_name
  EXPECT_FALSE(loaded->trainer().has_seed());                 // null: unset
  EXPECT_EQ(loaded->optimizer().lr(), 0.5);
  // ... but not what is in the string.
  const std::string many = dir.Write("many.json", R"({"trainer": {"epochs": "many"}})");
  EXPECT_THAT(std::string(LoadRunConfig(many).status().message()),
              AllOf(HasSubstr(many), HasSubstr("trainer.epochs"), HasSubstr("\"many\"")));

  int cases = 0;
  for (const char* value : {"true", "{}", "[64]", "\"big\"", "0", "2.5", "null"}) {
    const std::string file = dir.Write(absl::StrCat("batch-", ++cases, ".json"),
                                       absl::StrCat(R"({"trainer": {"batch_size": )", value, "}}"));
    auto config = LoadRunConfig(file);
    ASSERT_TRUE(config.ok()) << value << ": " << config.status();
    absl::Status s = FinalizeRunConfig(&*config, file);
    EXPECT_THAT(std::string(s.message()),
                AllOf(HasSubstr(file + ": trainer.batch_size must be a whole number > 0 or \"full\", got")))
        << value;
  }
}

}  // namespace
}  // namespace trainbus

namespace trainbus {
namespace {

// Killed between renaming a checkpoint into place and writing `latest`:
// the folder has complete checkpoints but no `latest`. --resume takes the
// newest complete one; a `latest` that names a missing one is an error that
// names the one to use.
TEST(ResumeTest, WithoutLatestTheNewestCompleteCheckpointResumes) {
  TempDir dir;
  const std::string config = CheckpointConfig(dir);
  const std::string root = dir.path() + "/runs/ckpt/checkpoints";
  Result first = RunTrainbus({"train", "--config", config});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_TRUE(fs::remove(root + "/latest"));
  Result resumed = RunTrainbus({"train", "--config", config, "--set", "trainer.epochs=3",
                                "--resume", root});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resuming at step 20 from " + root + "/step-00000020"));

  std::ofstream(root + "/latest") << "step-00000999\n";
  Result bad = RunTrainbus({"train", "--config", config, "--resume", root});
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_THAT(bad.output, AllOf(HasSubstr("names 'step-00000999', which is not a complete checkpoint"),
                                HasSubstr("the newest complete one is " + root + "/step-00000030"),
                                HasSubstr("resume with --resume " + root + "/step-00000030")));
}

}  // namespace
}  // namespace trainbus

namespace trainbus {
namespace {

// Two runs started at the same moment with the same log root and name each
// claim a folder of their own (exclusive create), whichever plugins run.
TEST(RunFolderTest, ConcurrentRunsNeverShareAFolder) {
  TempDir dir;
  const std::string config = dir.Write("twin.json", absl::StrCat(R"({
    "name": "twin", "log_root": ")", dir.path(), R"(/runs",
    "trainer": {"epochs": 2, "batch_size": 16, "seed": 42, "num_threads": 1},
    "model": {"type": "mlp", "hidden": [16]},
    "dataset": {"type": "shapes", "train_samples": 160, "val_samples": 16, "seed": 7},
    "plugins": [{"name": "tensorboard", "options": {"images": 0, "histograms_every_n": 0}},
                {"name": "checkpoint"}]})"));
  for (int round = 0; round < 3; ++round) {
    Child a = Spawn({"train", "--config", config});
    Child b = Spawn({"train", "--config", config});
    ASSERT_GT(a.pid, 0);
    ASSERT_GT(b.pid, 0);
    Result ra = Finish(a);
    Result rb = Finish(b);
    ASSERT_EQ(ra.exit_code, 0) << ra.output;
    ASSERT_EQ(rb.exit_code, 0) << rb.output;
  }
  auto report = tb::InspectLogDir(dir.path() + "/runs");
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 6u);  // twin, twin-2 ... twin-6
  for (const tb::InspectRun& run : report->runs) {
    EXPECT_EQ(run.files.size(), 1u) << run.run;
    for (const tb::InspectTag& t : run.tags) {
      if (t.tag == "train/loss") {
        EXPECT_EQ(t.written, 20) << run.run;
      }
    }
  }
}

// A rerun of a config whose plugins write no event files still gets a new
// folder: the first run's checkpoints stay as they were.
TEST(RunFolderTest, ARerunNeverWritesIntoAnOlderRunsFolder) {
  TempDir dir;
  const std::string config = CheckpointConfig(dir);
  Result first = RunTrainbus({"train", "--config", config});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto before = fs::last_write_time(dir.path() + "/runs/ckpt/checkpoints/latest");
  Result second = RunTrainbus({"train", "--config", config});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_THAT(second.output, HasSubstr("holds an earlier run; this one goes to " + dir.path() +
                                       "/runs/ckpt-2"));
  EXPECT_EQ(fs::last_write_time(dir.path() + "/runs/ckpt/checkpoints/latest"), before);
  EXPECT_TRUE(fs::exists(dir.path() + "/runs/ckpt-2/checkpoints/latest"));
}

}  // namespace
}  // namespace trainbus
