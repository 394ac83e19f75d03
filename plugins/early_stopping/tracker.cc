// early_stopping: options and the decision logic (no LibTorch work here).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "early_stopping.h"

namespace trainbus::early_stopping {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr absl::string_view kStateHeader = "trainbus.early_stopping.tracker 1";

std::string Plural(int64_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

absl::Status Bad(absl::string_view option, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("option '", option, "' ", what));
}

}  // namespace

const char* ModeName(Mode mode) { return mode == Mode::kMax ? "max" : "min"; }

const char* CheckOnName(CheckOn c) {
  switch (c) {
    case CheckOn::kEpoch: return "epoch";
    case CheckOn::kValidation: return "validation";
    case CheckOn::kIteration: return "iteration";
  }
  return "?";
}

Mode AutoMode(absl::string_view monitor) {
  const std::string name = absl::AsciiStrToLower(monitor);
  for (absl::string_view token : {"acc", "auc", "f1", "precision", "recall"}) {
    if (absl::StrContains(name, token)) return Mode::kMax;
  }
  return Mode::kMin;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.6g", v);
}

std::vector<OptionSpec> OptionSpecs() {
  return {
      {"monitor", OptionType::kString, "",
       "Metric to watch (required), e.g. \"val/loss\", \"val/accuracy\", \"train/loss\", "
       "\"epoch/mean_loss\" or the tag of any scalar record"},
      {"mode", OptionType::kString, "\"auto\"",
       "\"min\", \"max\" or \"auto\" (max when the name contains acc, auc, f1, precision or "
       "recall; min otherwise)"},
      {"min_delta", OptionType::kDouble, "0",
       "An improvement must beat the best by more than this (absolute, >= 0)"},
      {"patience", OptionType::kInt, "3",
       "Checks in a row without improvement before stopping (>= 0; 0: stop at the first)"},
      {"baseline", OptionType::kDouble, "",
       "Initial best: checks that do not beat it count as bad checks"},
      {"restore_best_weights", OptionType::kBool, "false",
       "Keep a copy of the parameters and buffers at the best check and load them back at the "
       "end of the run"},
      {"check_on", OptionType::kString, "\"epoch\"",
       "When to check: \"epoch\" (EpochEnd), \"validation\" (each ValidationEnd) or "
       "\"iteration\" (IterationEnd)"},
      {"every_n", OptionType::kInt, "1", "Check every N epochs / validations / iterations (>= 1)"},
      {"start_from_epoch", OptionType::kInt, "0",
       "Skip checks in epochs before this one (>= 0; 0-based, like Keras' start_from_epoch)"},
      {"start_from_step", OptionType::kInt, "0", "Skip checks at global steps before this one (>= 0)"},
      {"stopping_threshold", OptionType::kDouble, "",
       "Stop as soon as the monitored value is better than this"},
      {"divergence_threshold", OptionType::kDouble, "",
       "Stop as soon as the monitored value is worse than this"},
      {"check_finite", OptionType::kBool, "true",
       "Stop when the monitored value is nan or infinite"},
  };
}

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& o) {
  Config c;
  if (!o.Has("monitor") || o.GetString("monitor").empty()) {
    return Bad("monitor",
               "is required: the metric to watch, e.g. \"val/loss\" or \"val/accuracy\"");
  }
  c.monitor = o.GetString("monitor");
  const std::string mode = o.GetString("mode");
  if (mode == "min") {
    c.mode = Mode::kMin;
  } else if (mode == "max") {
    c.mode = Mode::kMax;
  } else if (mode == "auto") {
    c.mode = AutoMode(c.monitor);
    c.mode_was_auto = true;
  } else {
    return Bad("mode", absl::StrCat("must be \"min\", \"max\" or \"auto\", got \"", mode, "\""));
  }
  c.min_delta = o.GetDouble("min_delta");
  if (!(c.min_delta >= 0) || std::isinf(c.min_delta)) {
    return Bad("min_delta", absl::StrCat("must be finite and >= 0, got ", FormatValue(c.min_delta)));
  }
  c.patience = o.GetInt("patience");
  if (c.patience < 0) return Bad("patience", absl::StrCat("must be >= 0, got ", c.patience));
  if (o.Has("baseline")) c.baseline = o.GetDouble("baseline");
  c.restore_best_weights = o.GetBool("restore_best_weights");
  const std::string check_on = o.GetString("check_on");
  if (check_on == "epoch") {
    c.check_on = CheckOn::kEpoch;
  } else if (check_on == "validation") {
    c.check_on = CheckOn::kValidation;
  } else if (check_on == "iteration") {
    c.check_on = CheckOn::kIteration;
  } else {
    return Bad("check_on", absl::StrCat("must be \"epoch\", \"validation\" or \"iteration\", got \"",
                                        check_on, "\""));
  }
  c.every_n = o.GetInt("every_n");
  if (c.every_n <= 0) return Bad("every_n", absl::StrCat("must be > 0, got ", c.every_n));
  c.start_from_epoch = o.GetInt("start_from_epoch");
  if (c.start_from_epoch < 0) {
    return Bad("start_from_epoch", absl::StrCat("must be >= 0, got ", c.start_from_epoch));
  }
  c.start_from_step = o.GetInt("start_from_step");
  if (c.start_from_step < 0) {
    return Bad("start_from_step", absl::StrCat("must be >= 0, got ", c.start_from_step));
  }
  if (o.Has("stopping_threshold")) c.stopping_threshold = o.GetDouble("stopping_threshold");
  if (o.Has("divergence_threshold")) c.divergence_threshold = o.GetDouble("divergence_threshold");
  if (c.stopping_threshold && c.divergence_threshold) {
    const bool ordered = c.mode == Mode::kMin ? *c.stopping_threshold < *c.divergence_threshold
                                              : *c.stopping_threshold > *c.divergence_threshold;
    if (!ordered) {
      return Bad("stopping_threshold",
                 absl::StrCat("(", FormatValue(*c.stopping_threshold),
                              ") must be better than option 'divergence_threshold' (",
                              FormatValue(*c.divergence_threshold), ") for mode ",
                              ModeName(c.mode), ", or every value would stop the run"));
    }
  }
  c.check_finite = o.GetBool("check_finite");
  return c;
}

Tracker::Tracker(Config config)
    : config_(std::move(config)),
      best_(config_.baseline ? *config_.baseline
                             : (config_.mode == Mode::kMin ? kInf : -kInf)) {}

bool Tracker::Better(double a, double b) const {
  return config_.mode == Mode::kMin ? a < b : a > b;
}

void Tracker::Observe(absl::string_view name, double value) {
  // The names seen serve only the warning about a monitor that never
  // appeared: once it has, a set look-up per metric per iteration is waste.
  if (!monitor_seen_) seen_.Note(name);
  if (name != config_.monitor) return;
  latest_ = value;
  fresh_ = true;
  monitor_seen_ = true;
}

CheckResult Tracker::IterationEnd(int64_t step, int64_t epoch) {
  if (config_.check_on == CheckOn::kIteration && EveryN(config_.every_n, step)) due_ = true;
  return TryCheck(step, epoch);
}

CheckResult Tracker::ValidationEnd(int64_t step, int64_t epoch) {
  if (config_.check_on == CheckOn::kValidation) {
    ++validations_;
    if (EveryN(config_.every_n, validations_ - 1)) due_ = true;
  }
  return TryCheck(step, epoch);
}

CheckResult Tracker::EpochEnd(int64_t step, int64_t epoch) {
  if (config_.check_on == CheckOn::kEpoch && EveryN(config_.every_n, epoch)) due_ = true;
  return TryCheck(step, epoch);
}

CheckResult Tracker::TryCheck(int64_t step, int64_t epoch) {
  if (!due_ || !fresh_ || stopped_) return {};
  due_ = false;
  fresh_ = false;
  return Check(latest_, step, epoch);
}

std::string Tracker::BestText() const {
  if (has_best_) {
    return absl::StrCat("best ", config_.monitor, " ", FormatValue(best_), " at step ", best_step_,
                        ", epoch ", best_epoch_ + 1);
  }
  if (config_.baseline) {
    return absl::StrCat("no check improved on the baseline ", FormatValue(*config_.baseline));
  }
  return "no best value yet";
}

CheckResult Tracker::Check(double v, int64_t step, int64_t epoch) {
  CheckResult r;
  r.ran = true;
  r.value = v;
  r.step = step;
  r.epoch = epoch;
  const std::string& m = config_.monitor;
  const bool finite = std::isfinite(v);
  std::string cause;
  if (!finite && config_.check_finite) {
    r.stop = StopCause::kNonFinite;
    cause = absl::StrCat(m, " is ", FormatValue(v), ", not a finite number");
  } else if (epoch < config_.start_from_epoch || step < config_.start_from_step) {
    r.warmup = true;
    return r;
  } else {
    ++checks_;
    // Keras' and Lightning's rule: current -/+ min_delta strictly beats best.
    const double shifted = config_.mode == Mode::kMin ? v + config_.min_delta : v - config_.min_delta;
    r.improved = finite && Better(shifted, best_);
    if (r.improved) {
      best_ = v;
      has_best_ = true;
      best_step_ = step;
      best_epoch_ = epoch;
      wait_ = 0;
    } else {
      ++wait_;
    }
    if (config_.stopping_threshold && finite && Better(v, *config_.stopping_threshold)) {
      r.stop = StopCause::kStoppingThreshold;
      cause = absl::StrCat(m, " = ", FormatValue(v), " is better than stopping_threshold ",
                           FormatValue(*config_.stopping_threshold), " (mode ",
                           ModeName(config_.mode), ")");
    } else if (config_.divergence_threshold && finite &&
               Better(*config_.divergence_threshold, v)) {
      r.stop = StopCause::kDivergence;
      cause = absl::StrCat(m, " = ", FormatValue(v), " is worse than divergence_threshold ",
                           FormatValue(*config_.divergence_threshold), " (mode ",
                           ModeName(config_.mode), ")");
    } else if (!r.improved && wait_ >= config_.patience) {
      r.stop = StopCause::kPatience;
      cause = absl::StrCat(m, " did not improve for ", Plural(wait_, "check"), " (patience ",
                           config_.patience, ", min_delta ", FormatValue(config_.min_delta),
                           ", mode ", ModeName(config_.mode), "; last ", FormatValue(v), ")");
    }
  }
  if (r.stop == StopCause::kNone) return r;
  stopped_ = true;
  const std::string where = absl::StrCat("step ", step, ", epoch ", epoch + 1);
  r.reason = absl::StrCat(cause, " at ", where, "; ", BestText());
  std::string best_row = has_best_ ? absl::StrCat("| best ", m, " | ", FormatValue(best_), " | ",
                                                  best_step_, " | ", best_epoch_ + 1, " |\n")
                                   : absl::StrCat("| best ", m, " | ", BestText(), " | | |\n");
  r.markdown = absl::StrCat("**Early stopping** at ", where, ": ", cause, ".\n\n",
                            "| | value | step | epoch |\n|---|---|---|---|\n", best_row,
                            "| last ", m, " | ", FormatValue(v), " | ", step, " | ", epoch + 1,
                            " |\n");
  return r;
}

std::string Tracker::SaveState() const {
  return absl::StrCat(kStateHeader, "\n",
                      "monitor=", config_.monitor, "\n",
                      "mode=", ModeName(config_.mode), "\n",
                      "best=", absl::StrFormat("%.17g", best_), "\n",
                      "has_best=", has_best_ ? 1 : 0, "\n",
                      "best_step=", best_step_, "\n",
                      "best_epoch=", best_epoch_, "\n",
                      "wait=", wait_, "\n",
                      "checks=", checks_, "\n",
                      "validations=", validations_, "\n",
                      "due=", due_ ? 1 : 0, "\n",
                      "fresh=", fresh_ ? 1 : 0, "\n",
                      "latest=", absl::StrFormat("%.17g", latest_), "\n",
                      "monitor_seen=", monitor_seen_ ? 1 : 0, "\n");
}

absl::Status Tracker::LoadState(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != kStateHeader) {
    return absl::InvalidArgumentError(
        absl::StrCat("early_stopping state: expected header '", kStateHeader, "'"));
  }
  std::map<std::string, std::string> kv;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<std::string, std::string> p = absl::StrSplit(lines[i], absl::MaxSplits('=', 1));
    kv[p.first] = p.second;
  }
  const char* keys[] = {"monitor", "mode", "best", "has_best", "best_step", "best_epoch", "wait",
                        "checks", "validations", "due", "fresh", "latest", "monitor_seen"};
  for (const char* k : keys) {
    if (!kv.count(k)) {
      return absl::InvalidArgumentError(absl::StrCat("early_stopping state: missing '", k, "'"));
    }
  }
  if (kv["monitor"] != config_.monitor || kv["mode"] != ModeName(config_.mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "early_stopping state was saved for monitor '", kv["monitor"], "' (mode ", kv["mode"],
        ") but this run monitors '", config_.monitor, "' (mode ", ModeName(config_.mode), ")"));
  }
  double best, latest;
  int64_t has_best, best_step, best_epoch, wait, checks, validations, due, fresh, seen;
  if (!absl::SimpleAtod(kv["best"], &best) || !absl::SimpleAtod(kv["latest"], &latest) ||
      !absl::SimpleAtoi(kv["has_best"], &has_best) ||
      !absl::SimpleAtoi(kv["best_step"], &best_step) ||
      !absl::SimpleAtoi(kv["best_epoch"], &best_epoch) || !absl::SimpleAtoi(kv["wait"], &wait) ||
      !absl::SimpleAtoi(kv["checks"], &checks) ||
      !absl::SimpleAtoi(kv["validations"], &validations) || !absl::SimpleAtoi(kv["due"], &due) ||
      !absl::SimpleAtoi(kv["fresh"], &fresh) || !absl::SimpleAtoi(kv["monitor_seen"], &seen)) {
    return absl::InvalidArgumentError("early_stopping state: a value is not a number");
  }
  best_ = best;
  latest_ = latest;
  has_best_ = has_best != 0;
  best_step_ = best_step;
  best_epoch_ = best_epoch;
  wait_ = wait;
  checks_ = checks;
  validations_ = validations;
  due_ = due != 0;
  fresh_ = fresh != 0;
  monitor_seen_ = seen != 0;
  stopped_ = false;  // a resumed run goes on; the next bad check stops it again
  return absl::OkStatus();
}

}  // namespace trainbus::early_stopping
