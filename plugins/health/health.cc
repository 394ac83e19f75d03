#include "health.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tensor_squares.h"
#include "trainbus/plugin_state.h"

namespace trainbus::health {
namespace {

const std::set<std::string>& Kinds() {
  static const auto* const kKinds = new std::set<std::string>{
      "spike", "divergence", "chance", "plateau", "overfitting", "vanishing", "exploding"};
  return *kKinds;
}

absl::Status Bad(absl::string_view option, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("option '", option, "' ", rule));
}

std::string Number(double v) { return absl::StrFormat("%.4g", v); }

// The share of gradient entries that are exactly zero (units that no longer
// learn: dead ReLUs, saturated activations); -1 without gradients.
double DeadFraction(torch::nn::Module& model) {
  int64_t zeros = 0, entries = 0;
  for (const at::Tensor& p : model.parameters()) {
    const SquaresAndZeros g = MeasureSquares(p.grad());
    zeros += g.zeros;
    entries += g.entries;
  }
  return entries > 0 ? static_cast<double>(zeros) / static_cast<double>(entries) : -1.0;
}

// "0.1,0.25,..." and back: a detector's window in the plugin's state.
std::string Join(const std::deque<double>& values) {
  return absl::StrJoin(values, ",", [](std::string* out, double v) {
    absl::StrAppend(out, absl::StrFormat("%.17g", v));
  });
}
bool Split(absl::string_view text, std::deque<double>* values) {
  values->clear();
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    double v;
    if (!absl::SimpleAtod(part, &v)) return false;
    values->push_back(v);
  }
  return true;
}

}  // namespace

absl::StatusOr<Config> ConfigFromOptions(const PluginOptions& o) {
  Config c;
  c.spike_window = o.GetInt("spike_window");
  c.spike_mads = o.GetDouble("spike_mads");
  c.divergence_window = o.GetInt("divergence_window");
  c.divergence_rise = o.GetDouble("divergence_rise");
  c.plateau_monitor = o.GetString("plateau_monitor");
  c.plateau_patience = o.GetInt("plateau_patience");
  c.plateau_threshold = o.GetDouble("plateau_threshold");
  c.plateau_request = o.GetString("plateau_request");
  c.overfit_checks = o.GetInt("overfit_checks");
  c.chance_tolerance = o.GetDouble("chance_tolerance");
  c.chance_checks = o.GetInt("chance_checks");
  c.chance_after = o.GetInt("chance_after");
  c.classes = o.GetInt("classes");
  c.gradients_every_n = o.GetInt("gradients_every_n");
  c.vanish_below = o.GetDouble("vanish_below");
  c.vanish_checks = o.GetInt("vanish_checks");
  c.explode_above = o.GetDouble("explode_above");
  // Each numeric option's range, checked in declaration order.
  struct Range {
    const char* option;
    bool ok;
    const char* rule;
    std::string got;
  };
  auto finite = [](double v, bool ok) { return ok && std::isfinite(v); };
  const Range ranges[] = {
      {"spike_window", c.spike_window == 0 || (c.spike_window >= 5 && c.spike_window <= 100000),
       "0 (off) or 5-100000", absl::StrCat(c.spike_window)},
      {"spike_mads", finite(c.spike_mads, c.spike_mads > 0), "a finite number > 0", absl::StrCat(c.spike_mads)},
      {"divergence_window",
       c.divergence_window == 0 || (c.divergence_window >= 10 && c.divergence_window <= 100000),
       "0 (off) or 10-100000", absl::StrCat(c.divergence_window)},
      {"divergence_rise", finite(c.divergence_rise, c.divergence_rise > 0), "a finite number > 0",
       absl::StrCat(c.divergence_rise)},
      {"plateau_patience", c.plateau_patience >= 0, ">= 0 (0: off)", absl::StrCat(c.plateau_patience)},
      {"plateau_threshold", finite(c.plateau_threshold, c.plateau_threshold >= 0),
       "a finite number >= 0", absl::StrCat(c.plateau_threshold)},
      {"overfit_checks", c.overfit_checks >= 0, ">= 0 (0: off)", absl::StrCat(c.overfit_checks)},
      {"chance_tolerance", c.chance_tolerance >= 0 && c.chance_tolerance < 1, "in [0, 1) (0: off)",
       absl::StrCat(c.chance_tolerance)},
      {"chance_checks", c.chance_checks >= 1, ">= 1", absl::StrCat(c.chance_checks)},
      {"chance_after", c.chance_after >= 0, ">= 0", absl::StrCat(c.chance_after)},
      {"classes", c.classes == 0 || c.classes >= 2, "0 (from the outputs) or >= 2", absl::StrCat(c.classes)},
      {"gradients_every_n", c.gradients_every_n >= 0, ">= 0 (0: off)", absl::StrCat(c.gradients_every_n)},
      {"vanish_below", finite(c.vanish_below, c.vanish_below >= 0), "a finite number >= 0",
       absl::StrCat(c.vanish_below)},
      {"vanish_checks", c.vanish_checks >= 1, ">= 1", absl::StrCat(c.vanish_checks)},
      {"explode_above", c.explode_above >= 0, ">= 0 (0: off)", absl::StrCat(c.explode_above)},
  };
  for (const Range& r : ranges) {
    if (!r.ok) return Bad(r.option, absl::StrCat("must be ", r.rule, ", got ", r.got));
  }
  if (c.plateau_request.find_first_of("/ ") != std::string::npos) {
    return Bad("plateau_request", absl::StrCat("must be a plugin id (no '/' or space), got '",
                                               c.plateau_request, "'"));
  }
  for (const char* option : {"stop_on", "checkpoint_on"}) {
    std::set<std::string>& into = std::string(option) == "stop_on" ? c.stop_on : c.checkpoint_on;
    for (const std::string& kind : o.GetStringList(option)) {
      if (!Kinds().count(kind)) {
        return Bad(option, absl::StrCat("names '", kind, "', which is no kind of finding; kinds: ",
                                        absl::StrJoin(Kinds(), ", ")));
      }
      into.insert(kind);
    }
  }
  return c;
}

PluginInfo HealthPlugin::Info() {
  return {"health",
          "1.0.0",
          "Spots loss spikes, divergence, collapse to chance, plateaus, overfitting and vanishing or "
          "exploding gradients while the run trains, and says so",
          {{"spike_window", OptionType::kInt, "50",
            "Loss spikes: iterations in the running median (5-100000; 0: off)"},
           {"spike_mads", OptionType::kDouble, "8",
            "Loss spikes: a loss this many scaled MADs above the running median is a spike (> 0)"},
           {"divergence_window", OptionType::kInt, "100",
            "Divergence: iterations compared, the newer half against the older (10-100000; 0: off)"},
           {"divergence_rise", OptionType::kDouble, "0.5",
            "Divergence: the relative rise of the newer half's median loss over the older half's "
            "that counts (> 0)"},
           {"plateau_monitor", OptionType::kString, "\"val/loss\"",
            "Plateaus: the metric watched (validation or iteration metric, or any scalar record's "
            "tag; a name with 'acc' is better higher)"},
           {"plateau_patience", OptionType::kInt, "5",
            "Plateaus: checks without an improvement before it is one (>= 0; 0: off)"},
           {"plateau_threshold", OptionType::kDouble, "0.001",
            "Plateaus: the relative improvement that counts (>= 0)"},
           {"plateau_request", OptionType::kString, "\"\"",
            "Plateaus: the id of a schedulers plugin to ask for one ReduceLROnPlateau reduction "
            "when a plateau starts (\"schedulers\"; empty: only report)"},
           {"overfit_checks", OptionType::kInt, "3",
            "Overfitting: validations in a row where val/loss is worse than its best and its gap "
            "to the training loss grows (>= 0; 0: off)"},
           {"chance_tolerance", OptionType::kDouble, "0.1",
            "Collapse to chance: val/loss not below ln(classes) by more than this fraction and "
            "val/accuracy below 1.5/classes ([0, 1); 0: off)"},
           {"chance_checks", OptionType::kInt, "3",
            "Collapse to chance: validations in a row at chance, so an untrained start is not one "
            "(>= 1)"},
           {"chance_after", OptionType::kInt, "50",
            "Collapse to chance: not judged before this many iterations (an untrained model is "
            "at chance too; >= 0)"},
           {"classes", OptionType::kInt, "0",
            "Classes for the collapse check (0: from the model's outputs; >= 2)"},
           {"gradients_every_n", OptionType::kInt, "50",
            "Per-layer gradient norms, update-to-weight ratios and dead gradients every N "
            "iterations (>= 0; 0: off)"},
           {"vanish_below", OptionType::kDouble, "1e-8",
            "Gradients: a layer whose gradient norm stays below this has vanishing gradients (>= 0)"},
           {"vanish_checks", OptionType::kInt, "3",
            "Gradients: gradient checks in a row below vanish_below (>= 1)"},
           {"explode_above", OptionType::kDouble, "1000",
            "Gradients: a layer's gradient norm above this explodes (>= 0; 0: off)"},
           {"stop_on", OptionType::kStringList, "[]",
            "Kinds of finding that stop the run: spike, divergence, chance, plateau, overfitting, "
            "vanishing, exploding"},
           {"checkpoint_on", OptionType::kStringList, "[]",
            "Kinds of finding that ask for a checkpoint (the checkpoint plugin saves it)"}},
          /*default_priority=*/0,
          // It prints and publishes: rank 0 only (its metrics are averaged over ranks).
          kWritesOutput};
}

absl::StatusOr<std::unique_ptr<HealthPlugin>> HealthPlugin::Create(const PluginContext& ctx) {
  auto config = ConfigFromOptions(ctx.options);
  if (!config.ok()) return config.status();
  return std::make_unique<HealthPlugin>(*std::move(config), ctx.instance());
}

HealthPlugin::HealthPlugin(Config config, std::string id)
    : config_(std::move(config)),
      prefix_(absl::StrCat(id, "/")),
      spikes_(config_.spike_window, config_.spike_mads),
      trend_(config_.divergence_window, config_.divergence_rise),
      plateau_(config_.plateau_patience, config_.plateau_threshold,
               config_.plateau_monitor.find("acc") == std::string::npos),
      overfit_(config_.overfit_checks),
      gradients_(config_.vanish_below, config_.explode_above, config_.vanish_checks),
      classes_(config_.classes) {}

void HealthPlugin::OnTrainBegin(const TrainBeginEvent& e, Control& control) {
  if (!config_.plateau_request.empty() && e.run->world_size > 1) {
    // health runs on rank 0 only: an lr lowered there alone would split the ranks.
    control.Log(absl::StrCat("warning: plateau_request is ignored in a data-parallel run (",
                             e.run->world_size, " ranks): only rank 0 runs health, and an lr "
                             "lowered on one rank would split them; use the schedulers plugin's "
                             "ReduceLROnPlateau, which every rank runs"));
    config_.plateau_request.clear();
  }
  if (e.run->start_step > 0) return;  // the run's layout was written by its first session
  const std::string p = "^" + prefix_;
  CustomScalarCategory category{"health", {}, false};
  category.charts.push_back({"loss: spike score (MADs) and trend", {p + "loss_spike_score$", p + "loss_trend$"}, {}});
  category.charts.push_back({"gradient norm per param group", {p + "param_group/"}, {}});
  category.charts.push_back({"gradient norm per layer", {p + "grad_norm/"}, {}});
  category.charts.push_back({"update / weight per layer", {p + "update_ratio/"}, {}});
  category.charts.push_back({"dead gradients and overfit gap", {p + "dead_gradients$", p + "overfit_gap$"}, {}});
  category.charts.push_back({"findings", {p + "finding_count$"}, {}});
  control.Publish(Record{prefix_ + "layout", control.step(), 0.0,
                         CustomScalarsValue{CustomScalarLayout{std::move(category)}}});
}

void HealthPlugin::OnBeforeOptimizerStep(const BeforeOptimizerStepEvent& e, Control& control) {
  // The gradients are final here (accumulated, averaged over ranks).
  if (EveryN(config_.gradients_every_n, e.step)) CheckGradients(e.step, control);
}

void HealthPlugin::OnIterationEnd(const IterationEndEvent& e, Control& control) {
  // A host without BeforeOptimizerStep: the gradients are still there.
  if (gradients_checked_at_ != e.step && EveryN(config_.gradients_every_n, e.step)) {
    CheckGradients(e.step, control);
  }
  if (classes_ == 0 && e.outputs != nullptr && e.outputs->dim() == 2) classes_ = e.outputs->size(1);
  if (std::isfinite(e.loss)) {
    train_loss_sum_ += e.loss;
    ++train_loss_count_;
  }
  if (config_.spike_window > 0) {
    const SpikeDetector::Result r = spikes_.Add(e.loss);  // r.median: the baseline it was judged against
    if (r.score) control.PublishScalar(prefix_ + "loss_spike_score", *r.score);
    if (r.spike) {
      Report({"spike", e.step,
              absl::StrCat("loss spike at step ", e.step, " (epoch ", e.epoch + 1, ", batch ",
                           e.batch_index, "): ", Number(e.loss), ", ", Number(*r.score),
                           " scaled MADs above the running median ", Number(r.median)),
              "often one bad batch; if they repeat, lower the learning rate or clip gradients "
              "(grad_clip)"},
             control);
    }
  }
  if (config_.divergence_window > 0) {
    const TrendDetector::Result r = trend_.Add(e.loss);
    if (r.rise) control.PublishScalar(prefix_ + "loss_trend", *r.rise);
    if (r.started) {
      Report({"divergence", e.step,
              absl::StrCat("the loss is diverging at step ", e.step, ": its median over the last ",
                           config_.divergence_window - config_.divergence_window / 2,
                           " iterations is ", Number(100 * *r.rise), "% above that of the ",
                           config_.divergence_window / 2, " before"),
              "lower the learning rate, or clip gradients (grad_clip)"},
             control);
    }
  }
  for (const Metric& m : e.metrics) {
    if (m.name == config_.plateau_monitor) CheckPlateau(m.value, e.step, control);
  }
  if (config_.plateau_monitor == "train/loss") CheckPlateau(e.loss, e.step, control);
}

void HealthPlugin::OnValidationEnd(const ValidationEndEvent& e, Control& control) {
  const std::optional<double> loss = FindMetric(e.metrics, "val/loss");
  const std::optional<double> accuracy = FindMetric(e.metrics, "val/accuracy");
  if (auto v = FindMetric(e.metrics, config_.plateau_monitor)) CheckPlateau(*v, e.step, control);
  if (loss && train_loss_count_ > 0) {
    const double train = train_loss_sum_ / static_cast<double>(train_loss_count_);
    control.PublishScalar(prefix_ + "overfit_gap", *loss - train);
    if (config_.overfit_checks > 0) {
      if (std::optional<int64_t> began = overfit_.Add(train, *loss, e.step)) {
        Report({"overfitting", e.step,
                absl::StrCat("overfitting since step ", *began, ": val/loss (", Number(*loss),
                             ", best ", Number(overfit_.best_val_), ") has worsened while its gap "
                             "to the training loss (", Number(train), ") grew, ",
                             config_.overfit_checks, " validations in a row"),
                "stop earlier (early_stopping with restore_best_weights), add data or "
                "regularisation (model.dropout, optimizer.weight_decay)"},
               control);
      }
    }
  }
  train_loss_sum_ = 0;
  train_loss_count_ = 0;
  const bool at_chance = config_.chance_tolerance > 0 && loss && accuracy &&
                         LooksLikeChance(*loss, *accuracy, classes_, config_.chance_tolerance);
  // Only validations from iteration chance_after on count: an untrained
  // start is at chance too.
  if (e.step + 1 >= config_.chance_after) at_chance_ = at_chance ? at_chance_ + 1 : 0;
  if (at_chance_ >= config_.chance_checks && !chance_reported_) {
    chance_reported_ = true;
    // The last step's gradients are still in the model: measure them now.
    if (control.model() != nullptr) dead_fraction_ = DeadFraction(*control.model());
    std::string dead;
    if (dead_fraction_ >= 0) {
      dead = absl::StrCat("; ", Number(100 * dead_fraction_),
                          "% of the gradients are exactly zero (dead units)");
    }
    const double chance_loss = std::log(static_cast<double>(classes_));
    const bool near = *loss <= chance_loss * (1 + config_.chance_tolerance);
    Report({"chance", e.step,
            absl::StrCat("the model has collapsed to chance at step ", e.step, " (",
                         at_chance_, " validations in a row): val/loss ",
                         Number(*loss), near ? " is near ln(" : " is above ln(", classes_, ") = ",
                         Number(std::log(static_cast<double>(classes_))), " and val/accuracy ",
                         Number(*accuracy), " near 1/", classes_, dead),
            "it learned nothing beyond the class frequencies: lower the learning rate (a too "
            "high one kills ReLUs early) and check the labels"},
           control);
  }
}

void HealthPlugin::OnRecord(const Record& r, Control& control) {
  if (requests_sent_ > 0 && !request_answered_ &&
      absl::StartsWith(r.tag, absl::StrCat(config_.plateau_request, "/lr/"))) {
    request_answered_ = true;  // the schedulers plugin changed an lr after a request
  }
  if (r.tag != config_.plateau_monitor || r.tag.rfind(prefix_, 0) == 0) return;
  if (const auto* s = std::get_if<ScalarValue>(&r.value)) CheckPlateau(s->value, r.step, control);
}

void HealthPlugin::OnTrainEnd(const TrainEndEvent& e, Control& control) {
  if (e.reason == EndReason::kFailed) return;
  if (requests_sent_ > 0 && !request_answered_) {
    control.Log(absl::StrCat("warning: asked '", config_.plateau_request, "' for an lr reduction ",
                             requests_sent_, requests_sent_ == 1 ? " time" : " times",
                             " but no lr change from it followed: is a schedulers plugin loaded "
                             "with that id and a ReduceLROnPlateau (see its lines above)?"));
  }
  if (findings_.empty()) {
    control.Log("no problems found");
    return;
  }
  std::map<std::string, int> counts;
  for (const Finding& f : findings_) ++counts[f.kind];
  std::vector<std::string> parts;
  for (const auto& [kind, n] : counts) parts.push_back(absl::StrCat(n, " ", kind));
  control.Log(absl::StrCat(findings_.size(), findings_.size() == 1 ? " finding: " : " findings: ",
                           absl::StrJoin(parts, ", "), " (first: ", findings_.front().message,
                           "); the table is the text record ", prefix_, "findings"));
}

void HealthPlugin::CheckGradients(int64_t step, Control& control) {
  gradients_checked_at_ = step;
  torch::nn::Module* model = control.model();
  if (model == nullptr) return;
  // Which param group each parameter is in, and that group's lr.
  struct Group {
    size_t index;
    double lr;
  };
  std::map<const void*, Group> group_of;
  std::vector<double> group_squares;  // sum of squared gradient norms per group
  if (torch::optim::Optimizer* opt = control.optimizer()) {
    for (const auto& group : opt->param_groups()) {
      for (const at::Tensor& p : group.params()) {
        group_of[p.unsafeGetTensorImpl()] = {group_squares.size(), group.options().get_lr()};
      }
      group_squares.push_back(0.0);
    }
  }
  int64_t zeros = 0, entries = 0;
  std::vector<std::string> vanished, exploded;  // one finding each, naming every layer
  double largest = 0;
  for (const auto& item : model->named_parameters()) {
    const at::Tensor& g = item.value().grad();
    if (!g.defined()) continue;
    const SquaresAndZeros grad = MeasureSquares(g);
    const double norm = std::sqrt(grad.sum_squares);
    const double weight = std::sqrt(MeasureSquares(item.value()).sum_squares);
    zeros += grad.zeros;
    entries += grad.entries;
    const std::string layer = item.key();
    control.PublishScalar(absl::StrCat(prefix_, "grad_norm/", layer), norm);
    auto group = group_of.find(item.value().unsafeGetTensorImpl());
    if (group != group_of.end()) {
      group_squares[group->second.index] += norm * norm;
      if (weight > 0) {
        control.PublishScalar(absl::StrCat(prefix_, "update_ratio/", layer),
                              group->second.lr * norm / weight);
      }
    }
    switch (gradients_.Add(layer, norm)) {
      case GradientWatch::Change::kVanished:
        vanished.push_back(layer);
        break;
      case GradientWatch::Change::kExploded:
        exploded.push_back(layer);
        largest = std::max(largest, norm);
        break;
      case GradientWatch::Change::kNone:
        break;
    }
  }
  auto layers = [](const std::vector<std::string>& names) {
    return absl::StrCat(names.size() == 1 ? "layer " : absl::StrCat(names.size(), " layers: "),
                        absl::StrJoin(names, ", "));
  };
  if (!vanished.empty()) {
    Report({"vanishing", step,
            absl::StrCat("vanishing gradients at step ", step, " in ", layers(vanished),
                         " (norm below ", Number(config_.vanish_below), " at ",
                         config_.vanish_checks, " checks in a row)"),
            "they no longer learn: check their activations (saturated, or dead ReLUs), their "
            "initialisation, or whether they are frozen on purpose"},
           control);
  }
  if (!exploded.empty()) {
    Report({"exploding", step,
            absl::StrCat("exploding gradients at step ", step, " in ", layers(exploded),
                         " (norm up to ", Number(largest), ", above ",
                         Number(config_.explode_above), ")"),
            "clip gradients (grad_clip max_norm) or lower the learning rate"},
           control);
  }
  for (size_t g = 0; g < group_squares.size(); ++g) {
    control.PublishScalar(absl::StrCat(prefix_, "param_group/", g, "/grad_norm"), std::sqrt(group_squares[g]));
  }
  if (entries > 0) {
    dead_fraction_ = static_cast<double>(zeros) / static_cast<double>(entries);
    control.PublishScalar(prefix_ + "dead_gradients", dead_fraction_);
  }
}

void HealthPlugin::CheckPlateau(double value, int64_t step, Control& control) {
  if (config_.plateau_patience == 0) return;
  if (plateau_.Add(value)) {
    std::string hint = "lower the learning rate (schedulers' ReduceLROnPlateau does it for you, "
                       "or this plugin's plateau_request asks it) or grow the batch "
                       "(batch_size_schedule)";
    if (!config_.plateau_request.empty()) {
      hint = absl::StrCat("asked ", config_.plateau_request, " for a ReduceLROnPlateau reduction");
    }
    Report({"plateau", step,
            absl::StrCat("plateau at step ", step, ": ", config_.plateau_monitor,
                         " has not improved by ", Number(100 * config_.plateau_threshold),
                         "% on its best (", Number(plateau_.best()), ") for ",
                         config_.plateau_patience, " checks"),
            hint},
           control);
    if (!config_.plateau_request.empty()) {
      // The schedulers plugin applies its own factor, min_lr and cooldown.
      ++requests_sent_;
      control.Publish(Record::Text(absl::StrCat(config_.plateau_request, "/requests"),
                                   absl::StrCat("reduce_lr: ", findings_.back().message), step));
    }
  }
}

void HealthPlugin::Report(Finding finding, Control& control) {
  control.Log(absl::StrCat(finding.message, "; ", finding.hint));
  findings_.push_back(std::move(finding));
  const Finding& f = findings_.back();
  control.PublishScalar(prefix_ + "finding_count", static_cast<double>(findings_.size()));
  control.Publish(Record::Text(prefix_ + "findings", Table(), control.step()));
  if (config_.checkpoint_on.count(f.kind)) control.RequestCheckpoint(absl::StrCat("health: ", f.kind));
  if (config_.stop_on.count(f.kind)) control.RequestStop(f.message);
}

// Every finding so far, as the markdown table TensorBoard's Text dashboard draws.
std::string HealthPlugin::Table() const {
  std::string out = "| step | finding | what it means | what to do |\n|---|---|---|---|\n";
  for (const Finding& f : findings_) {
    absl::StrAppend(&out, "| ", f.step, " | ", f.kind, " | ", f.message, " | ", f.hint, " |\n");
  }
  return out;
}

absl::StatusOr<std::string> HealthPlugin::SaveState() {
  PluginState s;
  s.SetString("spike_window", Join(spikes_.values()));
  s.SetBool("spike_spell", spikes_.in_spell());
  s.SetInt("requests_sent", requests_sent_);
  s.SetBool("request_answered", request_answered_);
  s.SetString("trend_window", Join(trend_.values()));
  s.SetBool("trend_active", trend_.active());
  s.SetDouble("plateau_best", plateau_.best_);
  s.SetBool("plateau_has_best", plateau_.has_best_);
  s.SetInt("plateau_stale", plateau_.stale_);
  s.SetBool("plateau_active", plateau_.active_);
  s.SetDouble("overfit_best", overfit_.best_val_);
  s.SetBool("overfit_has_best", overfit_.has_best_);
  s.SetDouble("overfit_gap", overfit_.last_gap_);
  s.SetBool("overfit_has_gap", overfit_.has_gap_);
  s.SetInt("overfit_growing", overfit_.growing_);
  s.SetInt("overfit_began", overfit_.began_);
  s.SetBool("overfit_active", overfit_.active_);
  s.SetInt("classes", classes_);
  s.SetBool("chance_reported", chance_reported_);
  s.SetInt("at_chance", at_chance_);
  s.SetDouble("dead_fraction", dead_fraction_);
  s.SetDouble("train_loss_sum", train_loss_sum_);
  s.SetInt("train_loss_count", train_loss_count_);
  std::string layers;
  for (const auto& [name, l] : gradients_.layers()) {
    absl::StrAppend(&layers, name, "\t", l.small, "\t", l.vanished ? 1 : 0, "\t", l.exploded ? 1 : 0, "\n");
  }
  s.SetString("gradient_layers", layers);
  std::string findings;
  for (const Finding& f : findings_) absl::StrAppend(&findings, f.kind, "\t", f.step, "\t", f.message, "\t", f.hint, "\n");
  s.SetString("findings", findings);
  return s.Serialize();
}

absl::Status HealthPlugin::LoadState(absl::string_view bytes) {
  absl::StatusOr<PluginState> s = PluginState::Parse(bytes);
  if (!s.ok()) return s.status();
  std::string spike, trend, layers, findings;
  for (absl::Status st :
       {s->GetString("spike_window", &spike), s->GetString("trend_window", &trend),
        s->GetBool("trend_active", &trend_.active()), s->GetDouble("plateau_best", &plateau_.best_),
        s->GetBool("plateau_has_best", &plateau_.has_best_), s->GetInt("plateau_stale", &plateau_.stale_),
        s->GetBool("plateau_active", &plateau_.active_), s->GetDouble("overfit_best", &overfit_.best_val_),
        s->GetBool("overfit_has_best", &overfit_.has_best_), s->GetDouble("overfit_gap", &overfit_.last_gap_),
        s->GetBool("overfit_has_gap", &overfit_.has_gap_), s->GetInt("overfit_growing", &overfit_.growing_),
        s->GetInt("overfit_began", &overfit_.began_), s->GetBool("overfit_active", &overfit_.active_),
        s->GetInt("classes", &classes_), s->GetBool("chance_reported", &chance_reported_),
        s->GetInt("at_chance", &at_chance_),
        s->GetDouble("dead_fraction", &dead_fraction_), s->GetDouble("train_loss_sum", &train_loss_sum_),
        s->GetInt("train_loss_count", &train_loss_count_), s->GetString("gradient_layers", &layers),
        s->GetString("findings", &findings)}) {
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("health state: ", st.message()));
  }
  // Added after the first release: absent from older checkpoints.
  for (absl::Status st : {s->Has("spike_spell") ? s->GetBool("spike_spell", &spikes_.in_spell()) : absl::OkStatus(),
                          s->Has("requests_sent") ? s->GetInt("requests_sent", &requests_sent_) : absl::OkStatus(),
                          s->Has("request_answered") ? s->GetBool("request_answered", &request_answered_)
                                                     : absl::OkStatus()}) {
    if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("health state: ", st.message()));
  }
  if (!Split(spike, &spikes_.values()) || !Split(trend, &trend_.values())) {
    return absl::InvalidArgumentError("health state: a loss window is not a list of numbers");
  }
  gradients_.layers().clear();
  for (absl::string_view line : absl::StrSplit(layers, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    GradientWatch::Layer l;
    if (f.size() != 4 || !absl::SimpleAtoi(f[1], &l.small)) {
      return absl::InvalidArgumentError("health state: a gradient layer line is malformed");
    }
    l.vanished = f[2] == "1";
    l.exploded = f[3] == "1";
    gradients_.layers()[std::string(f[0])] = l;
  }
  findings_.clear();
  for (absl::string_view line : absl::StrSplit(findings, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    Finding finding;
    if (f.size() != 4 || !absl::SimpleAtoi(f[1], &finding.step)) {
      return absl::InvalidArgumentError("health state: a finding line is malformed");
    }
    finding.kind = std::string(f[0]);
    finding.message = std::string(f[2]);
    finding.hint = std::string(f[3]);
    findings_.push_back(std::move(finding));
  }
  return absl::OkStatus();
}

}  // namespace trainbus::health
