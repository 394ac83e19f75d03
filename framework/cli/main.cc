// The `trainbus` program: train from a config, list plugins, plan iterations,
// inspect TensorBoard event files. `trainbus --help` explains each command.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "trainbus/distributed.h"
#include "trainbus/crash_report.h"
#include "trainbus/interrupt.h"
#include "trainbus/tensorboard/event_file_writer.h"

ABSL_FLAG(std::string, config, "", "train: the run config file (JSON or protobuf text format)");
ABSL_FLAG(std::string, resume, "",
          "train: continue from a checkpoint (a checkpoint folder, or runs/<name>/checkpoints)");
ABSL_FLAG(bool, json, false, "inspect, plugins: print JSON for scripts");
ABSL_FLAG(int64_t, samples, 0, "plan: number of training samples");
ABSL_FLAG(int64_t, batch_size, 0, "plan: samples per iteration");
ABSL_FLAG(int64_t, epochs, 1, "plan: passes over the training set");
ABSL_FLAG(bool, drop_last, false, "plan: skip each epoch's last, smaller batch");
ABSL_FLAG(int64_t, max_iterations, 0, "plan: cap on the total iterations (0: none)");
ABSL_FLAG(std::string, batch_schedule, "",
          "plan: a batch-size schedule as JSON (see the batch_size_schedule plugin)");

namespace {

constexpr const char* kUsage = R"(trainbus — a LibTorch training loop with a plugin bus

Usage:
  trainbus train --config FILE [--set key=value ...] [--resume DIR] [--nproc N]
      Train as the run config describes and write TensorBoard event files to
      <log_root>/<name> (default runs/<name>). --set overrides a config field,
      e.g. --set trainer.epochs=3 --set optimizer.lr=0.1
           --set plugins.tensorboard.options.flush_secs=5
      --resume continues exactly where a checkpoint left off (model, optimizer,
      position, RNG, plugin states), e.g. --resume runs/shapes-cnn/checkpoints
      --nproc N trains data-parallel on N local processes (ranks): each takes
      trainer.batch_size samples of every global batch of N x batch_size,
      gradients are averaged every iteration; only rank 0 writes files and
      prints progress. On several hosts, start one `trainbus train` per rank
      with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (as torchrun does).
  trainbus plugins [--json]
      List every plugin found: name, version, library, hooks, and its options
      with types and defaults. Folders searched: the built-in plugin folder,
      then $TRAINBUS_PLUGIN_PATH (':'-separated).
  trainbus plan --samples N --batch-size B [--epochs E] [--drop-last]
                [--max-iterations M] [--batch-schedule JSON]
      Print iterations per epoch, total iterations and samples seen, epoch by
      epoch where the batch size changes, e.g.
      --batch-schedule '{"mode": "multiply", "factor": 2, "every": 2}'.
      (Flags may be written with '-' or '_'.)
  trainbus inspect LOGDIR [--json]
      Read every event file under LOGDIR, check its checksums, and list runs
      and tags; exits 1 when a file is corrupt.

Terms:
  iteration   one batch: forward, loss, backward and one optimizer step
              (with trainer.accumulate_batches k: k forward/backward passes,
              still one step)
  step        the global iteration number, 0 for the first iteration of a
              run and never reset; the x axis of every TensorBoard curve
  epoch       one pass over the training set; iterations per epoch are
              ceil(samples / batch size), floor with trainer.drop_last
  batch       the samples of one iteration (trainer.batch_size)

Examples:
  trainbus train --config examples/shapes/config.json
  tensorboard --logdir runs
)";

// `trainbus <command> --help`: that command's part of the usage, and the terms.
std::string CommandHelp(const std::string& command) {
  const std::string usage = kUsage;
  const size_t start = usage.find("  trainbus " + command + " ");
  if (start == std::string::npos) return usage;
  size_t end = usage.find("\n  trainbus ", start + 1);
  const size_t terms = usage.find("\nTerms:");
  if (end == std::string::npos || end > terms) end = terms;
  const size_t examples = usage.find("\nExamples:");
  return "Usage:\n" + usage.substr(start, end + 1 - start) + usage.substr(terms, examples - terms);
}

bool WantsHelp(int argc, char** argv) {
  if (argc < 2) return true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h" || a == "help" || a == "--helpfull") return true;
  }
  return false;
}

int RunMain(int argc, char** argv);

}  // namespace

// The last line of defence: whatever a command throws (an allocation a
// config asked for, a LibTorch error) ends in one line and exit 1, never in
// terminate() and a backtrace.
int main(int argc, char** argv) {
  try {
    return RunMain(argc, argv);
  } catch (const std::bad_alloc&) {
    std::cerr << "trainbus: out of memory (std::bad_alloc): the config asks for more than this "
                 "machine has; lower its sizes (dataset, model, batch, queues)\n";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    std::cerr << "trainbus: " << what.substr(0, what.find('\n')) << "\n";
  }
  return 1;
}

namespace {

int RunMain(int argc, char** argv) {
  if (WantsHelp(argc, argv)) {
    const bool for_command = argc >= 3 && argv[1][0] != '-';
    std::cout << (for_command ? CommandHelp(argv[1]) : std::string(kUsage));
    return argc < 2 ? 2 : 0;
  }
  // --set may repeat; absl flags keep only the last value, so take them here.
  std::vector<std::string> overrides;
  std::vector<char*> rest;
  // --nproc is taken here too: the ranks it starts get every other argument.
  int nproc = 0;
  std::vector<std::string> child_args;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nproc" || a == "-nproc" || absl::StartsWith(a, "--nproc=") ||
        absl::StartsWith(a, "-nproc=")) {
      std::string value;
      if (a.find('=') != std::string::npos) {
        value = a.substr(a.find('=') + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      }
      if (!absl::SimpleAtoi(value, &nproc) || nproc < 1) {
        std::cerr << "trainbus: --nproc needs a number of processes >= 1, e.g. --nproc 2\n";
        return 2;
      }
      continue;
    }
    child_args.push_back(a);
    if (a == "--set" || a == "-set") {
      if (i + 1 >= argc) {
        std::cerr << "trainbus: --set needs key=value\n";
        return 2;
      }
      overrides.push_back(argv[++i]);
      child_args.push_back(argv[i]);
    } else if (absl::StartsWith(a, "--set=")) {
      overrides.push_back(a.substr(6));
    } else {
      rest.push_back(argv[i]);
    }
  }
  // Accept --batch-size as well as --batch_size: Abseil flag names use '_'.
  std::vector<std::string> normalized;
  normalized.reserve(rest.size());
  for (char* arg : rest) {
    std::string a = arg;
    if (absl::StartsWith(a, "--")) {
      size_t end = std::min(a.find('='), a.size());
      std::replace(a.begin() + 2, a.begin() + end, '-', '_');
    }
    normalized.push_back(std::move(a));
  }
  rest.clear();
  for (std::string& a : normalized) rest.push_back(a.data());
  absl::SetProgramUsageMessage("see `trainbus --help`");
  std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(rest.size()), rest.data());
  if (positional.size() < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = positional[1];
  std::vector<std::string> args(positional.begin() + 2, positional.end());
  if (command == "train") {
    if (!args.empty()) {
      std::cerr << "trainbus train: unexpected argument '" << args[0] << "'\n";
      return 2;
    }
    if (nproc > 1) return trainbus::cli::LaunchLocalRanks(nproc, child_args);
    // Before LibTorch or any writer starts a thread (interrupt.h).
    trainbus::InstallInterruptWatcher({[] { trainbus::tensorboard::FlushAllEventFiles(); }});
    trainbus::InstallCrashReporter();
    return trainbus::cli::Train(absl::GetFlag(FLAGS_config), overrides, absl::GetFlag(FLAGS_resume));
  }
  if (nproc > 0) {
    std::cerr << "trainbus " << command << ": --nproc is only for `trainbus train`\n";
    return 2;
  }
  if (!overrides.empty()) {
    std::cerr << "trainbus " << command << ": --set is only for `trainbus train`\n";
    return 2;
  }
  if (command == "plugins") return trainbus::cli::ListPlugins(absl::GetFlag(FLAGS_json));
  if (command == "plan") {
    return trainbus::cli::Plan(absl::GetFlag(FLAGS_samples), absl::GetFlag(FLAGS_batch_size),
                               absl::GetFlag(FLAGS_epochs), absl::GetFlag(FLAGS_drop_last),
                               absl::GetFlag(FLAGS_max_iterations),
                               absl::GetFlag(FLAGS_batch_schedule));
  }
  if (command == "inspect") {
    if (args.size() != 1) {
      std::cerr << "trainbus inspect: give one LOGDIR, e.g. trainbus inspect runs\n";
      return 2;
    }
    return trainbus::cli::Inspect(args[0], absl::GetFlag(FLAGS_json));
  }
  std::cerr << "trainbus: unknown command '" << command << "'\n\n" << kUsage;
  return 2;
}

}  // namespace
