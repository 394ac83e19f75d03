#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "google/protobuf/util/json_util.h"
#include "trainbus/interrupt.h"
#include "trainbus/checkpoint.h"
#include "trainbus/config.h"
#include "trainbus/run_folder.h"
#include "trainbus/batch_schedule.h"
#include "trainbus/trainer.h"

namespace trainbus::cli {
namespace {

// A config error in a field that a --set gave names that --set, not the
// file: "--set trainer.epochs=0: trainer.epochs must be > 0, got 0".
std::string BlameTheSet(const std::string& message, const std::string& config_path,
                        const std::vector<std::string>& overrides) {
  const std::string prefix = config_path + ": ";
  if (!absl::StartsWith(message, prefix)) return message;
  const absl::string_view rest = absl::string_view(message).substr(prefix.size());
  for (auto it = overrides.rbegin(); it != overrides.rend(); ++it) {
    const std::string key = it->substr(0, it->find('='));
    if (absl::StartsWith(rest, key) &&
        (rest.size() == key.size() || rest[key.size()] == ' ' || rest[key.size()] == '[' ||
         rest[key.size()] == '.')) {
      return absl::StrCat("--set ", *it, ": ", rest);
    }
  }
  return message;
}

}  // namespace

int Train(const std::string& config_path, const std::vector<std::string>& overrides,
          const std::string& resume_path) {
  if (config_path.empty()) {
    std::cerr << "trainbus train: give a run config with --config FILE, e.g.\n"
                 "  trainbus train --config examples/shapes/config.json\n";
    return 2;
  }
  auto config = LoadRunConfig(config_path);
  if (!config.ok()) {
    std::cerr << "trainbus: " << config.status().message() << "\n";
    return 2;
  }
  for (const std::string& o : overrides) {
    if (absl::Status s = ApplyOverride(&*config, o); !s.ok()) {
      std::cerr << "trainbus: " << s.message() << "\n";
      return 2;
    }
  }
  if (absl::Status s = FinalizeRunConfig(&*config, config_path); !s.ok()) {
    std::cerr << "trainbus: " << BlameTheSet(std::string(s.message()), config_path, overrides) << "\n";
    return 2;
  }
  // A new run claims a folder of its own (Session::Create, run_folder.h):
  // never an older run's, never one another run started at the same moment
  // has. A resumed run continues in its own folder.
  if (!resume_path.empty()) config->set_append(true);
  const std::string wanted = config->name();
  auto trainer = Trainer::Create(*config);
  if (!trainer.ok()) {
    std::cerr << "trainbus: " << trainer.status().message() << "\n";
    return 1;
  }
  if (!resume_path.empty()) {
    if (absl::Status s = (*trainer)->Resume(resume_path); !s.ok()) {
      std::cerr << "trainbus: cannot resume: " << s.message() << "\n";
      return 1;
    }
  }
  const std::string run_dir = (*trainer)->session().log_dir();
  if (const int rank = RankFromEnvironment(); rank > 0) {
    // Ranks other than 0 write nothing and print only errors.
    std::cout << "rank " << rank << ": training" << std::endl;
    auto result = (*trainer)->Run();
    if (!result.ok()) {
      std::cerr << "trainbus: the run failed: " << result.status().message() << "\n";
      return 1;
    }
    std::cout << "rank " << rank << ": finished: " << result->iterations_run << " iterations ("
              << EndReasonName(result->reason) << ")\n";
    return 0;
  }
  std::filesystem::path run_path = std::filesystem::path(run_dir).lexically_normal();
  if (run_path.filename().empty()) run_path = run_path.parent_path();
  const std::string name = run_path.filename().string();
  if (name != wanted) {
    std::cout << (std::filesystem::path(config->log_root()) / wanted).string()
              << " holds an earlier run; this one goes to " << run_dir
              << " (--set name=... to choose)\n";
  }
  std::cout << "run " << name << ": " << (*trainer)->train_samples()
            << " training samples (" << config->dataset().type() << "), "
            << config->trainer().epochs() << " epochs\n"
            << FormatSchedulePlan((*trainer)->plan());
  if (const int64_t k = config->trainer().accumulate_batches(); k > 1) {
    std::cout << "  each iteration is one optimizer step over " << k
              << " accumulated forward/backward passes (trainer.accumulate_batches)\n";
  }
  if (!resume_path.empty()) {
    auto resolved = ResolveCheckpoint(resume_path);
    std::cout << "resuming at step " << (*trainer)->start_step() << " from "
              << (resolved.ok() ? *resolved : resume_path) << "\n";
  }
  std::cout << "plugins: ";
  for (const auto& p : (*trainer)->session().plugins()) std::cout << p.name << " ";
  std::cout << "\n" << std::flush;

  auto result = (*trainer)->Run();
  if (!result.ok()) {
    std::cerr << "trainbus: the run failed: " << result.status().message() << "\n";
    return 1;
  }
  std::cout << "finished: " << result->iterations_run << " iterations in "
            << absl::StrCat(static_cast<int64_t>(result->seconds * 10) / 10.0) << " s ("
            << EndReasonName(result->reason);
  if (!result->stop_reason.empty()) std::cout << ": " << result->stop_reason;
  std::cout << ")";
  for (const Metric& m : result->final_metrics) std::cout << ", " << m.name << " " << m.value;
  std::cout << "\n";
  std::error_code ec;
  if (std::filesystem::exists(run_dir, ec)) {
    if (result->reason == EndReason::kInterrupted) {
      // The same overrides, and the folder by name: a resume appends to
      // exactly this run (it may be <name>-2, not the config's <name>).
      std::string again;
      for (const std::string& o : overrides) {
        if (!absl::StartsWith(o, "name=")) absl::StrAppend(&again, " --set '", o, "'");
      }
      std::cout << "\nContinue with:    trainbus train --config " << config_path << again
                << " --set name=" << name << " --resume "
                << (std::filesystem::path(run_dir) / "checkpoints").string() << "\n";
    }
    std::cout << "\nTensorBoard event files are in " << run_dir << "\n"
              << "View them with:   tensorboard --logdir " << config->log_root() << "\n"
              << "Check them with:  trainbus inspect " << config->log_root() << "\n";
  }
  // A stop by Ctrl-C / SIGTERM exits as the signal would have (130 / 143),
  // after everything was written.
  if (result->reason == EndReason::kInterrupted && InterruptSignal() != 0) {
    return 128 + InterruptSignal();
  }
  return 0;
}

int Plan(int64_t samples, int64_t batch_size, int64_t epochs, bool drop_last,
         int64_t max_iterations, const std::string& batch_schedule_json) {
  std::optional<BatchSchedule> schedule;
  if (!batch_schedule_json.empty()) {
    google::protobuf::Value value;
    if (!google::protobuf::util::JsonStringToMessage(batch_schedule_json, &value).ok()) {
      std::cerr << "trainbus plan: --batch_schedule must be a JSON object, e.g. "
                   "'{\"mode\": \"step\", \"milestones\": [2], \"sizes\": [256]}'\n";
      return 2;
    }
    auto parsed = BatchSchedule::FromValue(value, "--batch_schedule");
    if (!parsed.ok()) {
      std::cerr << "trainbus plan: " << parsed.status().message() << "\n";
      return 2;
    }
    schedule = *parsed;
  }
  auto plan = PlanWithSchedule(samples, batch_size, epochs, drop_last,
                               max_iterations > 0 ? std::optional<int64_t>(max_iterations)
                                                  : std::nullopt,
                               schedule ? &*schedule : nullptr);
  if (!plan.ok()) {
    std::cerr << "trainbus plan: " << plan.status().message()
              << " (use --samples N --batch-size B --epochs E)\n";
    return 2;
  }
  const EpochPlan& first = plan->epochs.front();
  std::cout << "samples:              " << samples << "\n"
            << "batch size:           " << batch_size << (drop_last ? " (drop_last)" : "")
            << (schedule ? " at the start, then as scheduled" : "") << "\n"
            << "iterations per epoch: " << first.iterations
            << (first.last_batch_size < first.first_batch_size
                    ? absl::StrCat(" (last batch ", first.last_batch_size, ")")
                    : std::string())
            << (schedule ? " in the first epoch" : "") << "\n"
            << "epochs:               " << plan->epochs.size() << "\n"
            << "total iterations:     " << plan->total_iterations << "\n"
            << "samples seen:         " << plan->samples_seen << "\n"
            << "epoch by epoch:\n"
            << FormatSchedulePlan(*plan);
  return 0;
}

}  // namespace trainbus::cli
