// schedule_state.cc — the schedulers' state as text, for exact resume
// (Scheduler::SaveState / LoadState, StateWriter, StateReader).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lr_schedules.h"
#include "schedules.h"

namespace trainbus::schedulers {

// State text: "trainbus-schedulers-state 1 <signature> <groups> <lr...> <has_initial>
// <initial...> <n_max> <max...> <n_min> <min...> <schedule tree...>".
std::string Scheduler::SaveState() const {
  StateWriter w;
  w.Word("trainbus-schedulers-state");
  w.Int(1);
  w.Word(root_->Signature());
  w.Int(static_cast<int64_t>(groups_.size()));
  w.Doubles(groups_.lr);
  w.Int(groups_.has_initial_lr ? 1 : 0);
  w.Doubles(groups_.initial_lr);
  w.Int(static_cast<int64_t>(groups_.max_lr.size()));
  w.Doubles(groups_.max_lr);
  w.Int(static_cast<int64_t>(groups_.min_lr.size()));
  w.Doubles(groups_.min_lr);
  root_->Save(w);
  return w.Finish();
}

absl::Status Scheduler::LoadState(absl::string_view state) {
  StateReader r(state);
  std::string magic, signature;
  int64_t version = 0, n = 0, has_initial = 0, n_max = 0, n_min = 0;
  SCHED_RETURN_IF_ERROR(r.Word(&magic));
  if (magic != "trainbus-schedulers-state") {
    return absl::InvalidArgumentError("not a schedulers state (bad header)");
  }
  SCHED_RETURN_IF_ERROR(r.Int(&version));
  if (version != 1) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported schedulers state version ", version));
  }
  SCHED_RETURN_IF_ERROR(r.Word(&signature));
  if (signature != root_->Signature()) {
    return absl::InvalidArgumentError(absl::StrCat("the state was saved by schedule ", signature,
                                                   " but the configured schedule is ",
                                                   root_->Signature()));
  }
  SCHED_RETURN_IF_ERROR(r.Int(&n));
  if (n != static_cast<int64_t>(groups_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("the state has ", n,
                                                   " param groups but the optimizer has ",
                                                   groups_.size()));
  }
  ParamGroups g;
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.lr, n));
  SCHED_RETURN_IF_ERROR(r.Int(&has_initial));
  g.has_initial_lr = has_initial != 0;
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.initial_lr, g.has_initial_lr ? n : 0));
  SCHED_RETURN_IF_ERROR(r.Int(&n_max));
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.max_lr, n_max == 0 ? 0 : n));
  SCHED_RETURN_IF_ERROR(r.Int(&n_min));
  SCHED_RETURN_IF_ERROR(r.Doubles(&g.min_lr, n_min == 0 ? 0 : n));
  ParamGroups saved = groups_;
  groups_ = g;  // schedules point at groups_
  absl::Status s = root_->Load(r);
  if (s.ok() && !r.AtEnd()) s = absl::InvalidArgumentError("trailing data in schedulers state");
  if (!s.ok()) {
    groups_ = saved;
    return absl::InvalidArgumentError(absl::StrCat("bad schedulers state: ", s.message()));
  }
  return absl::OkStatus();
}

// --- text state ---------------------------------------------------------------

void StateWriter::Int(int64_t v) { absl::StrAppend(&out_, out_.empty() ? "" : " ", v); }
void StateWriter::Double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  absl::StrAppend(&out_, out_.empty() ? "" : " ", buf);
}
void StateWriter::Word(absl::string_view w) { absl::StrAppend(&out_, out_.empty() ? "" : " ", w); }
void StateWriter::Doubles(const std::vector<double>& v) {
  for (double d : v) Double(d);
}
std::string StateWriter::Finish() const { return out_; }

StateReader::StateReader(absl::string_view text) : text_(text) {}

absl::StatusOr<std::string> StateReader::Next() {
  while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  if (pos_ >= text_.size()) return absl::InvalidArgumentError("state ends too early");
  size_t start = pos_;
  while (pos_ < text_.size() && !std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  return text_.substr(start, pos_ - start);
}
bool StateReader::AtEnd() {
  while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  return pos_ >= text_.size();
}
absl::Status StateReader::Word(std::string* w) {
  auto t = Next();
  if (!t.ok()) return t.status();
  *w = *t;
  return absl::OkStatus();
}
absl::Status StateReader::Int(int64_t* v) {
  auto t = Next();
  if (!t.ok()) return t.status();
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(t->c_str(), &end, 10);
  if (errno != 0 || end == t->c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat("expected an integer, got \"", *t, "\""));
  }
  *v = x;
  return absl::OkStatus();
}
absl::Status StateReader::Double(double* v) {
  auto t = Next();
  if (!t.ok()) return t.status();
  char* end = nullptr;
  double x = std::strtod(t->c_str(), &end);
  if (end == t->c_str() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat("expected a number, got \"", *t, "\""));
  }
  *v = x;
  return absl::OkStatus();
}
absl::Status StateReader::Doubles(std::vector<double>* v, size_t expected_size) {
  v->resize(expected_size);
  for (double& d : *v) SCHED_RETURN_IF_ERROR(Double(&d));
  return absl::OkStatus();
}

}  // namespace trainbus::schedulers
