// early_stopping: the plugin (bus side, weights) and the tensor byte format.
#include <cmath>
#include <cstring>
#include <variant>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "early_stopping.h"

namespace trainbus::early_stopping {
namespace {

constexpr absl::string_view kStateHeader = "trainbus.early_stopping 1\n";
constexpr absl::string_view kWeightsKey = "weights_bytes=";
constexpr absl::string_view kTensorMagic = "TBT1";

template <class T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// Reads from a byte string with bounds checks.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  template <class T>
  bool Get(T* v) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool Take(size_t n, absl::string_view* out) {
    if (bytes_.size() - pos_ < n) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  absl::string_view bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeTensors(const NamedTensors& tensors) {
  std::string out(kTensorMagic);
  Put<uint64_t>(out, tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    Put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out.append(name);
    Put<int32_t>(out, static_cast<int32_t>(t.scalar_type()));
    Put<uint32_t>(out, static_cast<uint32_t>(t.dim()));
    for (int64_t d : t.sizes()) Put<int64_t>(out, d);
    const uint64_t nbytes = t.numel() * t.element_size();
    Put<uint64_t>(out, nbytes);
    if (nbytes > 0) out.append(static_cast<const char*>(t.data_ptr()), nbytes);
  }
  return out;
}

absl::StatusOr<NamedTensors> DecodeTensors(absl::string_view bytes) {
  auto corrupt = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("early_stopping weights: ", what));
  };
  if (bytes.substr(0, kTensorMagic.size()) != kTensorMagic) return corrupt("bad magic");
  Reader r(bytes.substr(kTensorMagic.size()));
  uint64_t count;
  if (!r.Get(&count)) return corrupt("truncated");
  NamedTensors out;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t name_len, ndim;
    int32_t dtype;
    absl::string_view name;
    if (!r.Get(&name_len) || !r.Take(name_len, &name) || !r.Get(&dtype) || !r.Get(&ndim)) {
      return corrupt("truncated");
    }
    if (dtype < 0 || dtype >= static_cast<int32_t>(at::ScalarType::NumOptions) || ndim > 64) {
      return corrupt(absl::StrCat("tensor '", name, "' has a bad header"));
    }
    std::vector<int64_t> sizes(ndim);
    int64_t numel = 1;
    for (auto& d : sizes) {
      if (!r.Get(&d) || d < 0) return corrupt("truncated or negative size");
      numel *= d;
    }
    uint64_t nbytes;
    absl::string_view data;
    if (!r.Get(&nbytes) || !r.Take(nbytes, &data)) return corrupt("truncated");
    const auto st = static_cast<at::ScalarType>(dtype);
    at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(st));
    if (nbytes != static_cast<uint64_t>(numel) * t.element_size()) {
      return corrupt(absl::StrCat("tensor '", name, "' has ", nbytes, " bytes for ", numel,
                                  " elements"));
    }
    if (nbytes > 0) std::memcpy(t.data_ptr(), data.data(), nbytes);
    out.emplace_back(std::string(name), std::move(t));
  }
  if (!r.done()) return corrupt("trailing bytes");
  return out;
}

PluginInfo EarlyStoppingPlugin::Info() {
  return {"early_stopping", "1.0.0",
          "Stops the run when a monitored metric stops improving; can restore the best weights",
          OptionSpecs()};
}

absl::StatusOr<std::unique_ptr<EarlyStoppingPlugin>> EarlyStoppingPlugin::Create(
    const PluginContext& ctx) {
  auto config = ConfigFromOptions(ctx.options);
  if (!config.ok()) return config.status();
  return std::make_unique<EarlyStoppingPlugin>(*std::move(config), ctx.instance());
}

EarlyStoppingPlugin::EarlyStoppingPlugin(Config config, std::string id)
    : tracker_(std::move(config)),
      prefix_(absl::StrCat(id, "/")),
      best_tag_(absl::StrCat(prefix_, "best")),
      wait_tag_(absl::StrCat(prefix_, "wait")) {}

void EarlyStoppingPlugin::OnTrainBegin(const TrainBeginEvent&, Control& control) {
  const Config& c = tracker_.config();
  std::string extra;
  if (c.baseline) absl::StrAppend(&extra, ", baseline ", FormatValue(*c.baseline));
  if (c.stopping_threshold) {
    absl::StrAppend(&extra, ", stopping_threshold ", FormatValue(*c.stopping_threshold));
  }
  if (c.divergence_threshold) {
    absl::StrAppend(&extra, ", divergence_threshold ", FormatValue(*c.divergence_threshold));
  }
  if (c.restore_best_weights) absl::StrAppend(&extra, ", restores the best weights at the end");
  control.Log(absl::StrCat("monitoring ", c.monitor, " (mode ", ModeName(c.mode),
                           c.mode_was_auto ? " from auto" : "", "), patience ", c.patience,
                           c.patience == 1 ? " check" : " checks", ", min_delta ", FormatValue(c.min_delta), ", check every ",
                           c.every_n == 1 ? "" : absl::StrCat(c.every_n, " "),
                           CheckOnName(c.check_on), c.every_n == 1 ? "" : "s", extra));
  if (c.restore_best_weights && control.model() == nullptr) {
    control.Log("restore_best_weights: no model is bound to the session; nothing will be restored");
    warned_no_model_ = true;
  }
}

void EarlyStoppingPlugin::OnIterationEnd(const IterationEndEvent& e, Control& control) {
  tracker_.Observe("train/loss", e.loss);
  for (const Metric& m : e.metrics) tracker_.Observe(m.name, m.value);
  Handle(tracker_.IterationEnd(e.step, e.epoch), control);
}

void EarlyStoppingPlugin::OnValidationEnd(const ValidationEndEvent& e, Control& control) {
  saw_validation_ = true;
  for (const Metric& m : e.metrics) tracker_.Observe(m.name, m.value);
  Handle(tracker_.ValidationEnd(e.step, e.epoch), control);
}

void EarlyStoppingPlugin::OnEpochEnd(const EpochEndEvent& e, Control& control) {
  if (e.iterations > 0) tracker_.Observe("epoch/mean_loss", e.mean_loss);
  // EpochEnd repeats the last validation metrics; they count only for hosts
  // that never announce validations themselves.
  if (!saw_validation_) {
    for (const Metric& m : e.metrics) tracker_.Observe(m.name, m.value);
  }
  Handle(tracker_.EpochEnd(e.step, e.epoch), control);
}

void EarlyStoppingPlugin::OnRecord(const Record& record, Control& control) {
  const auto* scalar = std::get_if<ScalarValue>(&record.value);
  if (scalar == nullptr || absl::StartsWith(record.tag, prefix_)) return;
  tracker_.Observe(record.tag, scalar->value);
  if (record.tag == tracker_.config().monitor && tracker_.check_due()) {
    Handle(tracker_.TryCheck(control.step(), control.epoch()), control);
  }
}

void EarlyStoppingPlugin::Handle(const CheckResult& r, Control& control) {
  if (!r.ran || r.warmup) return;
  if (r.improved && tracker_.config().restore_best_weights) SnapshotWeights(control);
  if (std::isfinite(tracker_.best())) {
    control.Publish(Record::Scalar(best_tag_, tracker_.best(), r.step));
  }
  control.Publish(Record::Scalar(wait_tag_, static_cast<double>(tracker_.wait()), r.step));
  if (r.stop == StopCause::kNone) return;
  control.Log(absl::StrCat("stopping: ", r.reason));
  control.Publish(Record::Text(prefix_ + "reason", r.markdown, r.step));
  control.RequestStop(r.reason);
}

void EarlyStoppingPlugin::SnapshotWeights(Control& control) {
  torch::nn::Module* model = control.model();
  if (model == nullptr) {
    if (!warned_no_model_) {
      control.Log("restore_best_weights: no model is bound to the session; nothing to keep");
      warned_no_model_ = true;
    }
    return;
  }
  at::NoGradGuard no_grad;
  NamedTensors now;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) {
    now.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model->named_buffers(/*recurse=*/true)) {
    now.emplace_back(item.key(), item.value());
  }
  bool same_layout = now.size() == best_weights_.size();
  for (size_t i = 0; same_layout && i < now.size(); ++i) {
    same_layout = now[i].first == best_weights_[i].first &&
                  now[i].second.sizes() == best_weights_[i].second.sizes() &&
                  now[i].second.scalar_type() == best_weights_[i].second.scalar_type();
  }
  if (same_layout) {  // reuse the copies: no allocation per improvement
    for (size_t i = 0; i < now.size(); ++i) best_weights_[i].second.copy_(now[i].second);
    return;
  }
  best_weights_.clear();
  for (auto& [name, t] : now) {
    best_weights_.emplace_back(
        name, t.detach().to(at::TensorOptions().device(at::kCPU), /*non_blocking=*/false,
                            /*copy=*/true));
  }
}

void EarlyStoppingPlugin::RestoreWeights(Control& control) {
  torch::nn::Module* model = control.model();
  if (model == nullptr) return;
  at::NoGradGuard no_grad;
  auto params = model->named_parameters(/*recurse=*/true);
  auto buffers = model->named_buffers(/*recurse=*/true);
  int restored_params = 0, restored_buffers = 0;
  std::vector<std::string> problems;
  for (const auto& [name, saved] : best_weights_) {
    at::Tensor* target = params.find(name);
    bool is_param = target != nullptr;
    if (target == nullptr) target = buffers.find(name);
    if (target == nullptr) {
      problems.push_back(absl::StrCat("'", name, "' is not in the model"));
    } else if (target->sizes() != saved.sizes()) {
      problems.push_back(absl::StrCat("'", name, "' changed shape"));
    } else {
      target->copy_(saved);
      ++(is_param ? restored_params : restored_buffers);
    }
  }
  control.Log(absl::StrCat("restored the best weights (", tracker_.config().monitor, " ",
                           FormatValue(tracker_.best()), " at step ", tracker_.best_step(),
                           ", epoch ", tracker_.best_epoch() + 1, "): ", restored_params,
                           " parameters, ", restored_buffers, " buffers",
                           problems.empty() ? "" : "; not restored: ",
                           absl::StrJoin(problems, ", ")));
}

void EarlyStoppingPlugin::OnTrainEnd(const TrainEndEvent& e, Control& control) {
  const Config& c = tracker_.config();
  // After a failed start or a run with no iteration the metric had no chance
  // to appear: a warning then would only point away from the real error.
  if (!tracker_.monitor_seen() && e.reason != EndReason::kFailed && e.iterations_run > 0) {
    control.Log(absl::StrCat("warning: the monitored metric '", c.monitor,
                             "' never appeared in this run, so early stopping never checked; "
                             "metrics seen: ", tracker_.seen_names().Text()));
  }
  if (!c.restore_best_weights || control.model() == nullptr) return;
  if (!tracker_.has_best() || best_weights_.empty()) {
    control.Log(absl::StrCat("restore_best_weights: ",
                             tracker_.has_best() ? "the best weights were not kept (resumed "
                                                   "without them); "
                                                 : "no check improved on the starting best; ",
                             "the weights are left as trained"));
    return;
  }
  RestoreWeights(control);
}

absl::StatusOr<std::string> EarlyStoppingPlugin::SaveState() {
  std::string out(kStateHeader);
  absl::StrAppend(&out, tracker_.SaveState());
  std::string weights;
  if (tracker_.config().restore_best_weights && !best_weights_.empty()) {
    weights = EncodeTensors(best_weights_);
  }
  absl::StrAppend(&out, kWeightsKey, weights.size(), "\n", weights);
  return out;
}

absl::Status EarlyStoppingPlugin::LoadState(absl::string_view state) {
  if (!absl::StartsWith(state, kStateHeader)) {
    return absl::InvalidArgumentError("early_stopping state: unknown format");
  }
  state.remove_prefix(kStateHeader.size());
  const size_t at = state.find(absl::StrCat("\n", kWeightsKey));
  if (at == absl::string_view::npos) {
    return absl::InvalidArgumentError("early_stopping state: no weights section");
  }
  absl::string_view tracker_text = state.substr(0, at + 1);
  absl::string_view rest = state.substr(at + 1 + kWeightsKey.size());
  const size_t eol = rest.find('\n');
  size_t nbytes = 0;
  if (eol == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(0, eol), &nbytes) ||
      rest.size() - eol - 1 != nbytes) {
    return absl::InvalidArgumentError("early_stopping state: bad weights section");
  }
  NamedTensors weights;
  if (nbytes > 0 && tracker_.config().restore_best_weights) {
    auto decoded = DecodeTensors(rest.substr(eol + 1));
    if (!decoded.ok()) return decoded.status();
    weights = *std::move(decoded);
  }
  if (absl::Status s = tracker_.LoadState(tracker_text); !s.ok()) return s;
  best_weights_ = std::move(weights);
  return absl::OkStatus();
}

}  // namespace trainbus::early_stopping
