// schedulers_plugin.h — the `schedulers` plugin: PyTorch learning-rate
// schedules driven by the bus (see README.md in this folder for the options).
//
// The class lives in the static library (not only in the .so) so that tests
// can drive it in-process with a fake Control; plugin_entry.cc exports it.
#ifndef TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULERS_PLUGIN_H_
#define TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULERS_PLUGIN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "schedules.h"
#include "trainbus/plugin.h"
#include "trainbus/seen_names.h"

namespace trainbus::schedulers {

class SchedulersPlugin : public Plugin {
 public:
  static PluginInfo Info();
  static absl::StatusOr<std::unique_ptr<SchedulersPlugin>> Create(const PluginContext& ctx);

  void OnTrainBegin(const TrainBeginEvent& e, Control& control) override;
  void OnIterationEnd(const IterationEndEvent& e, Control& control) override;
  void OnValidationEnd(const ValidationEndEvent& e, Control& control) override;
  void OnEpochEnd(const EpochEndEvent& e, Control& control) override;
  void OnRecord(const Record& r, Control& control) override;
  // Warns about a ReduceLROnPlateau monitor that never appeared (a typo).
  void OnTrainEnd(const TrainEndEvent& e, Control& control) override;

  absl::StatusOr<std::string> SaveState() override;
  // Before the run begins (the checkpoint plugin restores state then); the
  // state is applied at OnTrainBegin, replacing the lrs read from the optimizer.
  absl::Status LoadState(absl::string_view state) override;

  // Tag of the records the instance `id` publishes for group `g`
  // ("schedulers/lr/group0" for the default instance).
  static std::string Tag(int g, absl::string_view id = "schedulers");

  // Where a ReduceLROnPlateau metric comes from; the first source that
  // delivers the monitored name is kept for the rest of the run.
  enum class Source { kUnknown = 0, kIteration = 1, kValidation = 2, kEpoch = 3, kRecord = 4 };

  // One schedule and the param groups it drives.
  struct Unit {
    google::protobuf::Value config;
    std::string where;            // "schedule" or "groups[i]"
    std::vector<int> groups;      // optimizer param groups
    std::string monitor;          // ReduceLROnPlateau only
    Source source = Source::kUnknown;
    bool monitor_seen = false;
    bool reduced_on_request = false;
    int64_t reduced_for_step = -1;  // the step whose lr its last reduction set
    std::unique_ptr<Scheduler> scheduler;
  };
  const std::vector<Unit>& units() const { return units_; }

 private:
  enum class Publish { kChanges, kEveryStep, kNever };

  void StepUnit(Unit& u, std::optional<double> metric, Control& control);
  void Observe(Source source, absl::string_view name, double value, Control& control);
  void Apply(Unit& u, Control& control, bool force_publish);
  // A text record on "<id>/requests" from another plugin: "reduce_lr: <why>"
  // applies one ReduceLROnPlateau reduction now (health asks on a plateau).
  void OnRequest(absl::string_view request, Control& control);
  absl::Status LoadInto(absl::string_view state);

  std::vector<Unit> units_;
  std::string id_ = "schedulers";  // PluginContext::id: the prefix of its records
  bool per_epoch_ = false;
  Publish publish_ = Publish::kChanges;
  bool begun_ = false;
  std::optional<std::string> pending_state_;
  int64_t next_step_ = 0;          // the step that uses the lr being set
  int64_t total_iterations_ = 0;
  std::vector<double> published_;  // last published lr per group (NaN: none)
  bool in_own_publish_ = false;
  // Some unit is a ReduceLROnPlateau, which reads metrics: otherwise the
  // metrics and scalar records need no look (set at OnTrainBegin).
  bool reads_metrics_ = false;
  int num_configured_groups_ = 0;  // length of 'groups' (0: 'schedule')
  SeenNames seen_;                 // metric names seen (for that warning)
  bool validated_ = false;         // OnValidationEnd ran in this session
  bool warned_no_plateau_ = false; // a reduce_lr request found no ReduceLROnPlateau
};

}  // namespace trainbus::schedulers

#endif  // TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULERS_PLUGIN_H_
