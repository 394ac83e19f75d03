// schedulers_plugin.cc — see schedulers_plugin.h and README.md.
//
// Order of events, as in a PyTorch loop (optimizer.step(); scheduler.step()):
//   OnTrainBegin    build the schedules from the optimizer's lrs (PyTorch's
//                   initial_lr) and set the lr of step 0 (the constructor's
//                   step: e.g. LinearLR's start_factor).
//   OnIterationEnd  (interval "iteration") step every schedule; the new lr is
//                   used by the next optimizer step.
//   OnEpochEnd      (interval "epoch") the same, once per epoch.
//   ReduceLROnPlateau steps whenever its monitored value is seen, and reduces
//                   once more when another plugin asks: a text record
//                   "reduce_lr: <why>" on "<id>/requests" (health on a plateau).
#include "schedulers_plugin.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace trainbus::schedulers {
namespace {

constexpr char kMagic[] = "trainbus-schedulers-plugin";

[[noreturn]] void Throw(absl::string_view message) {
  throw std::runtime_error(std::string(message));
}

std::string FormatLr(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

}  // namespace

PluginInfo SchedulersPlugin::Info() {
  return {"schedulers",
          "1.0.0",
          "Learning-rate schedules with PyTorch's names, arguments and values (StepLR, "
          "CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau, SequentialLR, ...)",
          {{"schedule", OptionType::kObject, "",
            "One schedule for every param group: {\"type\": \"<PyTorch class>\", <its "
            "arguments>}"},
           {"groups", OptionType::kAny, "",
            "Instead of 'schedule': a list with one schedule object per param group (null: "
            "leave that group alone)"},
           {"interval", OptionType::kString, "\"iteration\"",
            "When schedules step: \"iteration\" (after every optimizer step) or \"epoch\""},
           {"monitor", OptionType::kString, "\"val/loss\"",
            "ReduceLROnPlateau's metric: a validation or iteration metric, \"train/loss\", "
            "\"epoch/mean_loss\", or the tag of any scalar record"},
           {"publish", OptionType::kString, "\"changes\"",
            "Publish schedulers/lr/group<i> records: \"changes\" (when the lr changes), "
            "\"every_step\" or \"never\""}}};
}

std::string SchedulersPlugin::Tag(int g, absl::string_view id) {
  return absl::StrCat(id, "/lr/group", g);
}

absl::StatusOr<std::unique_ptr<SchedulersPlugin>> SchedulersPlugin::Create(
    const PluginContext& ctx) {
  const PluginOptions& o = ctx.options;
  auto p = std::make_unique<SchedulersPlugin>();
  p->id_ = ctx.instance().empty() ? "schedulers" : ctx.instance();
  const std::string interval = o.GetString("interval");
  if (interval != "iteration" && interval != "epoch") {
    return absl::InvalidArgumentError(absl::StrCat(
        "option 'interval' must be \"iteration\" or \"epoch\", got \"", interval, "\""));
  }
  p->per_epoch_ = interval == "epoch";
  const std::string publish = o.GetString("publish");
  if (publish == "changes") {
    p->publish_ = Publish::kChanges;
  } else if (publish == "every_step") {
    p->publish_ = Publish::kEveryStep;
  } else if (publish == "never") {
    p->publish_ = Publish::kNever;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "option 'publish' must be \"changes\", \"every_step\" or \"never\", got \"", publish, "\""));
  }
  const std::string monitor = o.GetString("monitor");
  if (monitor.empty()) return absl::InvalidArgumentError("option 'monitor' must not be empty");

  const bool has_schedule = o.Has("schedule"), has_groups = o.Has("groups");
  if (has_schedule == has_groups) {
    return absl::InvalidArgumentError(
        has_schedule ? "options 'schedule' and 'groups' exclude each other: give one"
                     : "option 'schedule' (or 'groups', one schedule per param group) is required, "
                       "e.g. \"schedule\": {\"type\": \"CosineAnnealingLR\", \"T_max\": 1000}");
  }
  auto add_unit = [&](const google::protobuf::Value& config, std::string where,
                      std::vector<int> groups) -> absl::Status {
    absl::Status s = Scheduler::Validate(config, where);
    if (!s.ok()) return s;
    Unit u;
    u.config = config;
    u.where = std::move(where);
    u.groups = std::move(groups);
    u.monitor = monitor;
    const auto& fields = config.struct_value().fields();
    auto it = fields.find("monitor");
    if (it != fields.end() && it->second.kind_case() == google::protobuf::Value::kStringValue) {
      u.monitor = it->second.string_value();
    }
    p->units_.push_back(std::move(u));
    return absl::OkStatus();
  };
  if (has_schedule) {
    absl::Status s = add_unit(o.GetValue("schedule"), "schedule", {});  // groups: all, at TrainBegin
    if (!s.ok()) return s;
  } else {
    const google::protobuf::Value& groups = o.GetValue("groups");
    if (groups.kind_case() != google::protobuf::Value::kListValue ||
        groups.list_value().values_size() == 0) {
      return absl::InvalidArgumentError(
          "option 'groups' must be a non-empty list with one schedule object (or null) per "
          "param group");
    }
    const auto& items = groups.list_value().values();
    for (int i = 0; i < items.size(); ++i) {
      if (items[i].kind_case() == google::protobuf::Value::kNullValue) continue;
      absl::Status s = add_unit(items[i], absl::StrCat("groups[", i, "]"), {i});
      if (!s.ok()) return s;
    }
    p->num_configured_groups_ = items.size();
  }
  return p;
}

void SchedulersPlugin::OnTrainBegin(const TrainBeginEvent& e, Control& control) {
  const int n = control.num_param_groups();
  if (n <= 0) Throw("no optimizer param groups to schedule (is an optimizer bound?)");
  if (num_configured_groups_ > 0 && num_configured_groups_ != n) {
    Throw(absl::StrCat("option 'groups' has ", num_configured_groups_,
                       " entries but the optimizer has ", n, " param group", n == 1 ? "" : "s"));
  }
  next_step_ = e.run != nullptr ? e.run->start_step : 0;
  total_iterations_ = e.run != nullptr ? e.run->total_iterations : 0;
  for (Unit& u : units_) {
    if (u.groups.empty()) {
      for (int g = 0; g < n; ++g) u.groups.push_back(g);
    }
    std::vector<double> lrs;
    for (int g : u.groups) lrs.push_back(control.learning_rate(g));
    auto s = Scheduler::Create(u.config, lrs, u.where);
    if (!s.ok()) Throw(s.status().message());
    u.scheduler = std::move(s).value();
  }
  published_.assign(n, std::numeric_limits<double>::quiet_NaN());
  reads_metrics_ = false;
  for (const Unit& u : units_) reads_metrics_ |= u.scheduler->needs_metric();
  begun_ = true;
  if (pending_state_) {
    absl::Status s = LoadInto(*pending_state_);
    pending_state_.reset();
    if (!s.ok()) Throw(absl::StrCat("cannot restore the saved state: ", s.message()));
  } else if (e.run != nullptr && e.run->start_step > 0) {
    control.Log(absl::StrCat("the run resumes at step ", e.run->start_step,
                             " but no saved schedule state was loaded: schedules start over "
                             "from the optimizer's current lr"));
  }
  for (Unit& u : units_) Apply(u, control, /*force_publish=*/true);
}

void SchedulersPlugin::Apply(Unit& u, Control& control, bool force_publish) {
  const std::vector<double>& lrs = u.scheduler->lrs();
  for (size_t i = 0; i < u.groups.size(); ++i) {
    const int g = u.groups[i];
    const double lr = lrs[i];
    if (control.learning_rate(g) != lr) {
      absl::Status s = control.SetLearningRate(g, lr);
      if (!s.ok()) {
        // The step after a run's last iteration may extrapolate (OneCycleLR with
        // linear annealing can go below 0); that lr is never used.
        const bool never_used = (total_iterations_ > 0 && next_step_ >= total_iterations_) ||
                                control.stop_requested();
        if (never_used) continue;
        Throw(absl::StrCat(u.where, " ", u.scheduler->type(), ": cannot set lr ", lr,
                           " for param group ", g, " (step ", next_step_, "): ", s.message()));
      }
    }
    const bool changed = !(published_[g] == lr);
    if (publish_ == Publish::kNever) continue;
    // The lr after the run's last iteration (or after a stop) is never used:
    // a point at a step that never runs would be a lie on the chart.
    if ((total_iterations_ > 0 && next_step_ >= total_iterations_) || control.stop_requested()) {
      continue;
    }
    if (force_publish || publish_ == Publish::kEveryStep || changed) {
      published_[g] = lr;
      in_own_publish_ = true;
      control.Publish(Record::Scalar(Tag(g, id_), lr, next_step_));
      in_own_publish_ = false;
    }
  }
}

void SchedulersPlugin::StepUnit(Unit& u, std::optional<double> metric, Control& control) {
  Scheduler& s = *u.scheduler;
  // PyTorch's schedules read group['lr']: start from what the optimizer has.
  // Inline: no allocation per step (this runs every iteration).
  absl::InlinedVector<double, 4> current;
  for (int g : u.groups) current.push_back(control.learning_rate(g));
  s.SyncLrs(current);
  absl::Status st = metric ? s.StepWithMetric(*metric) : s.Step();
  if (!st.ok()) Throw(absl::StrCat(u.where, " ", st.message()));
  if (metric) {
    for (size_t i = 0; i < u.groups.size(); ++i) {
      if (s.lrs()[i] != current[i]) {
        u.reduced_for_step = next_step_;
        control.Log(absl::StrCat("ReduceLROnPlateau (", u.where, "): ", u.monitor, " = ",
                                 FormatLr(*metric), " has not improved enough; lr of group ",
                                 u.groups[i], " reduced from ", FormatLr(current[i]), " to ",
                                 FormatLr(s.lrs()[i])));
      }
    }
  }
  Apply(u, control, /*force_publish=*/false);
}

void SchedulersPlugin::Observe(Source source, absl::string_view name, double value,
                               Control& control) {
  // Every metric of every iteration comes here: without a ReduceLROnPlateau
  // there is nothing to do, and the look at each unit (cold after the
  // training step) would be for nothing.
  if (!reads_metrics_) return;
  // The names seen serve only OnTrainEnd's warning about a monitor that never
  // appeared, so they are noted only while one has not: a set look-up per
  // metric per iteration, cold after each training step, for nothing.
  bool waiting = false;
  for (Unit& u : units_) {
    if (!u.scheduler || !u.scheduler->needs_metric()) continue;
    if (u.monitor != name) {
      waiting |= !u.monitor_seen;
      continue;
    }
    u.monitor_seen = true;
    if (u.source == Source::kUnknown) u.source = source;
    if (u.source != source) continue;
    StepUnit(u, value, control);
  }
  if (waiting) seen_.Note(name);
}

void SchedulersPlugin::OnTrainEnd(const TrainEndEvent& e, Control& control) {
  if (e.reason == EndReason::kFailed || e.iterations_run == 0) return;
  // A resumed run that ended before it validated had no chance to see it.
  if (!validated_ && control.run().start_step > 0) return;
  for (const Unit& u : units_) {
    if (!u.scheduler || !u.scheduler->needs_metric() || u.monitor_seen) continue;
    control.Log(absl::StrCat("warning: ", u.where, ": ReduceLROnPlateau's monitor '", u.monitor,
                             "' never appeared in this run, so its lr ",
                             u.reduced_on_request ? "changed only on requests" : "never changed",
                             "; metrics seen: ",
                             seen_.Text()));
  }
}

void SchedulersPlugin::OnIterationEnd(const IterationEndEvent& e, Control& control) {
  if (!begun_) return;
  next_step_ = e.step + 1;
  if (!per_epoch_) {
    for (Unit& u : units_) {
      if (!u.scheduler->needs_metric()) StepUnit(u, std::nullopt, control);
    }
  }
  Observe(Source::kIteration, "train/loss", e.loss, control);
  for (const Metric& m : e.metrics) Observe(Source::kIteration, m.name, m.value, control);
}

void SchedulersPlugin::OnValidationEnd(const ValidationEndEvent& e, Control& control) {
  validated_ = true;
  if (!begun_) return;
  next_step_ = e.step + 1;
  for (const Metric& m : e.metrics) Observe(Source::kValidation, m.name, m.value, control);
}

void SchedulersPlugin::OnEpochEnd(const EpochEndEvent& e, Control& control) {
  if (!begun_) return;
  next_step_ = e.step + 1;
  if (per_epoch_) {
    for (Unit& u : units_) {
      if (!u.scheduler->needs_metric()) StepUnit(u, std::nullopt, control);
    }
  }
  Observe(Source::kEpoch, "epoch/mean_loss", e.mean_loss, control);
  for (const Metric& m : e.metrics) Observe(Source::kEpoch, m.name, m.value, control);
}

void SchedulersPlugin::OnRecord(const Record& r, Control& control) {
  if (in_own_publish_) return;
  if (const auto* text = std::get_if<TextValue>(&r.value); text != nullptr && r.tag == id_ + "/requests") {
    if (!begun_) {
      control.Log(absl::StrCat("warning: ignored the request '", text->markdown,
                               "': it came before the run began"));
      return;
    }
    next_step_ = std::max(next_step_, r.step + 1);
    OnRequest(text->markdown, control);
    return;
  }
  if (!begun_) return;
  const auto* scalar = std::get_if<ScalarValue>(&r.value);
  if (scalar == nullptr) return;
  // A record of step s (published by a plugin that runs before this one, in
  // the same hook) changes the lr used from step s + 1 on.
  next_step_ = std::max(next_step_, r.step + 1);
  Observe(Source::kRecord, r.tag, scalar->value, control);
}

void SchedulersPlugin::OnRequest(absl::string_view request, Control& control) {
  if (!absl::StartsWith(request, "reduce_lr")) {
    control.Log(absl::StrCat("warning: ignored the request '", request, "' on ", id_,
                             "/requests: the one request understood is 'reduce_lr: <why>'"));
    return;
  }
  absl::string_view why = absl::StripAsciiWhitespace(absl::StripPrefix(
      absl::StripPrefix(request, "reduce_lr"), ":"));
  bool reduced_any = false;
  for (Unit& u : units_) {
    if (!u.scheduler->needs_metric()) continue;
    reduced_any = true;
    if (u.reduced_for_step == next_step_) {
      control.Log(absl::StrCat("ReduceLROnPlateau (", u.where, "): not reduced again on request (",
                               why, "): it already reduced the lr for step ", next_step_));
      continue;
    }
    Scheduler& s = *u.scheduler;
    std::vector<double> current;
    for (int g : u.groups) current.push_back(control.learning_rate(g));
    s.SyncLrs(current);
    if (absl::Status st = s.ReduceNow(); !st.ok()) {
      control.Log(absl::StrCat("ReduceLROnPlateau (", u.where, "): not reduced on request (", why,
                               "): ", st.message()));
      continue;
    }
    u.reduced_on_request = true;
    u.reduced_for_step = next_step_;
    for (size_t i = 0; i < u.groups.size(); ++i) {
      const bool changed = s.lrs()[i] != current[i];
      control.Log(absl::StrCat("ReduceLROnPlateau (", u.where, "): lr of group ", u.groups[i],
                               changed ? " reduced from " : " stays at ", FormatLr(current[i]),
                               changed ? absl::StrCat(" to ", FormatLr(s.lrs()[i])) : " (min_lr or eps)",
                               " on request: ", why));
    }
    Apply(u, control, /*force_publish=*/false);
  }
  if (!reduced_any && !warned_no_plateau_) {
    warned_no_plateau_ = true;
    control.Log(absl::StrCat("warning: asked to reduce the lr (", why, ") but no ReduceLROnPlateau "
                             "is configured, so nothing changed: add one to 'schedule' or "
                             "'groups' (its monitor may be any metric; its patience decides how "
                             "often it also acts on its own)"));
  }
}

// State: "<magic> 1 <units>\n" then one line per unit: "<source> <scheduler state>".
absl::StatusOr<std::string> SchedulersPlugin::SaveState() {
  if (!begun_) {
    if (pending_state_) return *pending_state_;
    return std::string();  // nothing built yet
  }
  std::string out = absl::StrCat(kMagic, " 1 ", units_.size(), "\n");
  for (const Unit& u : units_) {
    absl::StrAppend(&out, static_cast<int>(u.source), " ", u.scheduler->SaveState(), "\n");
  }
  return out;
}

absl::Status SchedulersPlugin::LoadState(absl::string_view state) {
  if (state.empty()) return absl::OkStatus();
  if (begun_) {
    return absl::FailedPreconditionError(
        "LoadState must be called before the run begins (the lrs are restored at OnTrainBegin)");
  }
  if (!absl::StartsWith(state, kMagic)) {
    return absl::InvalidArgumentError("not a schedulers plugin state (bad header)");
  }
  pending_state_ = std::string(state);  // applied at OnTrainBegin, once the groups are known
  return absl::OkStatus();
}

absl::Status SchedulersPlugin::LoadInto(absl::string_view state) {
  std::vector<absl::string_view> lines = absl::StrSplit(state, '\n', absl::SkipEmpty());
  const std::string header = absl::StrCat(kMagic, " 1 ", units_.size());
  if (lines.empty() || lines[0] != header) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the saved state does not match the configured schedules (expected header \"", header,
        "\", got \"", lines.empty() ? absl::string_view() : lines[0], "\")"));
  }
  if (lines.size() != units_.size() + 1) {
    return absl::InvalidArgumentError("the saved state has the wrong number of schedules");
  }
  for (size_t i = 0; i < units_.size(); ++i) {
    absl::string_view line = lines[i + 1];
    const size_t space = line.find(' ');
    int source = 0;
    if (space == absl::string_view::npos || !absl::SimpleAtoi(line.substr(0, space), &source) ||
        source < 0 || source > 4) {
      return absl::InvalidArgumentError(absl::StrCat("bad state line for ", units_[i].where));
    }
    absl::Status s = units_[i].scheduler->LoadState(line.substr(space + 1));
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(units_[i].where, ": ", s.message()));
    units_[i].source = static_cast<Source>(source);
  }
  return absl::OkStatus();
}

}  // namespace trainbus::schedulers
