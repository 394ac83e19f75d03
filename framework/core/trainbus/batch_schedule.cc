#include "trainbus/batch_schedule.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace trainbus {
namespace {

using google::protobuf::Value;

absl::Status Bad(absl::string_view where, absl::string_view key, absl::string_view rule,
                 const Value& got) {
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(got, &json);
  return absl::InvalidArgumentError(absl::StrCat(where, ": '", key, "' must be ", rule, ", got ", json));
}

bool IsWhole(const Value& v) {
  return v.kind_case() == Value::kNumberValue && std::floor(v.number_value()) == v.number_value() &&
         std::fabs(v.number_value()) < 9e15;
}

absl::StatusOr<std::vector<int64_t>> WholeList(absl::string_view where, absl::string_view key,
                                               const Value& v, int64_t min) {
  std::vector<int64_t> out;
  if (v.kind_case() != Value::kListValue) return Bad(where, key, "a list of whole numbers", v);
  for (const Value& e : v.list_value().values()) {
    if (!IsWhole(e) || e.number_value() < min) {
      return Bad(where, key, absl::StrCat("a list of whole numbers >= ", min), v);
    }
    out.push_back(static_cast<int64_t>(e.number_value()));
  }
  return out;
}

}  // namespace

int64_t BatchSchedule::At(int64_t t, int64_t base) const {
  double size = static_cast<double>(base);
  switch (mode) {
    case Mode::kStep:
      for (size_t i = 0; i < milestones.size(); ++i) {
        if (t >= milestones[i]) size = static_cast<double>(sizes[i]);
      }
      break;
    case Mode::kMultiply:
      size = base * std::pow(factor, static_cast<double>(t / every));
      break;
    case Mode::kLinear:
      if (t >= end) {
        size = static_cast<double>(final_size);
      } else if (t > start) {
        size = base + (final_size - base) * static_cast<double>(t - start) / (end - start);
      }
      break;
  }
  if (max_batch_size > 0) size = std::min(size, static_cast<double>(max_batch_size));
  // Past 2^53 (or inf from a large factor) llround would wrap to a tiny or
  // negative size; a batch that large means "the whole set" anyway, and the
  // trainer caps a batch at the set's size.
  constexpr double kLargest = 9.0e15;
  if (!(size < kLargest)) size = kLargest;
  int64_t rounded = static_cast<int64_t>(std::llround(size / round_to)) * round_to;
  return std::max<int64_t>(rounded, round_to);
}

absl::StatusOr<BatchSchedule> BatchSchedule::FromValue(const Value& value, absl::string_view where) {
  if (value.kind_case() != Value::kStructValue) {
    return Bad(where, "schedule", "an object such as {\"mode\": \"step\", ...}", value);
  }
  BatchSchedule s;
  bool has_milestones = false, has_sizes = false, has_final = false, has_end = false;
  for (const auto& [key, v] : value.struct_value().fields()) {
    auto whole = [&](int64_t min, int64_t* out) -> absl::Status {
      if (!IsWhole(v) || v.number_value() < min) return Bad(where, key, absl::StrCat("a whole number >= ", min), v);
      *out = static_cast<int64_t>(v.number_value());
      return absl::OkStatus();
    };
    absl::Status st;
    if (key == "interval") {
      if (v.string_value() == "epoch") s.interval = Interval::kEpoch;
      else if (v.string_value() == "iteration") s.interval = Interval::kIteration;
      else return Bad(where, key, "\"epoch\" or \"iteration\"", v);
    } else if (key == "mode") {
      if (v.string_value() == "step") s.mode = Mode::kStep;
      else if (v.string_value() == "multiply") s.mode = Mode::kMultiply;
      else if (v.string_value() == "linear") s.mode = Mode::kLinear;
      else return Bad(where, key, "\"step\", \"multiply\" or \"linear\"", v);
    } else if (key == "milestones") {
      auto list = WholeList(where, key, v, 0);
      if (!list.ok()) return list.status();
      s.milestones = *list;
      has_milestones = true;
    } else if (key == "sizes") {
      auto list = WholeList(where, key, v, 1);
      if (!list.ok()) return list.status();
      s.sizes = *list;
      has_sizes = true;
    } else if (key == "factor") {
      if (v.kind_case() != Value::kNumberValue || !(v.number_value() > 0)) {
        return Bad(where, key, "a number > 0", v);
      }
      s.factor = v.number_value();
    } else if (key == "every") {
      st = whole(1, &s.every);
    } else if (key == "start") {
      st = whole(0, &s.start);
    } else if (key == "end") {
      st = whole(1, &s.end);
      has_end = true;
    } else if (key == "final_size") {
      st = whole(1, &s.final_size);
      has_final = true;
    } else if (key == "max_batch_size") {
      st = whole(0, &s.max_batch_size);
    } else if (key == "round_to") {
      st = whole(1, &s.round_to);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown key '", key, "'; known keys: interval, mode, milestones, sizes, factor, "
          "every, start, end, final_size, max_batch_size, round_to"));
    }
    if (!st.ok()) return st;
  }
  switch (s.mode) {
    case Mode::kStep:
      if (!has_milestones || !has_sizes || s.milestones.size() != s.sizes.size() || s.sizes.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": mode \"step\" needs 'milestones' and 'sizes' of the same, non-zero length"));
      }
      for (size_t i = 1; i < s.milestones.size(); ++i) {
        if (s.milestones[i] <= s.milestones[i - 1]) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": 'milestones' must be increasing, got ", absl::StrJoin(s.milestones, ", ")));
        }
      }
      break;
    case Mode::kMultiply:
      break;
    case Mode::kLinear:
      if (!has_final || !has_end || s.end <= s.start) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": mode \"linear\" needs 'final_size' and 'end' > 'start'"));
      }
      break;
  }
  return s;
}

EpochPlan EpochPlans::operator[](int64_t e) const {
  // The last run that starts at or before e.
  auto it = std::upper_bound(runs_.begin(), runs_.end(), e,
                             [](int64_t epoch, const Run& r) { return epoch < r.first.epoch; });
  const Run& run = *std::prev(it);
  EpochPlan row = run.first;
  row.epoch = e;
  row.first_step = run.first.first_step + (e - run.first.epoch) * run.first.iterations;
  return row;
}

void EpochPlans::Append(const EpochPlan& row, int64_t count) {
  if (count <= 0) return;
  if (!runs_.empty()) {
    const EpochPlan& last = runs_.back().first;
    if (last.iterations == row.iterations && last.samples == row.samples &&
        last.first_batch_size == row.first_batch_size &&
        last.last_batch_size == row.last_batch_size) {
      runs_.back().count += count;
      epochs_ += count;
      return;
    }
  }
  runs_.push_back(Run{row, count});
  epochs_ += count;
}

int64_t BatchSchedule::NextChange(int64_t t, int64_t base) const {
  if (mode == Mode::kStep) {
    int64_t next = kNever;
    for (int64_t m : milestones) {
      if (m > t) next = std::min(next, m);
    }
    return next;
  }
  // multiply and linear are monotone in t: once the size is the one it ends
  // at it never changes again; before that, find the first t' > t with
  // another size by doubling, then bisecting (a handful of At() calls, however
  // slow the ramp).
  const int64_t now = At(t, base);
  const int64_t last = mode == Mode::kLinear ? end : kMaxPlannedIterations;
  if (t >= last || now == At(last, base)) return kNever;
  int64_t step = 1, lo = t, hi = t;
  while (true) {
    hi = step > last - t ? last : t + step;
    if (At(hi, base) != now) break;
    lo = hi;
    step *= 2;
  }
  while (hi - lo > 1) {  // At(lo) == now, At(hi) != now
    const int64_t mid = lo + (hi - lo) / 2;
    (At(mid, base) == now ? lo : hi) = mid;
  }
  return hi;
}

bool BatchSchedule::NonDecreasing(int64_t base) const {
  switch (mode) {
    case Mode::kMultiply:
      return factor >= 1.0;
    case Mode::kLinear:
      return final_size >= base;
    case Mode::kStep: {
      std::vector<std::pair<int64_t, int64_t>> steps;
      for (size_t i = 0; i < milestones.size() && i < sizes.size(); ++i) {
        steps.emplace_back(milestones[i], sizes[i]);
      }
      std::sort(steps.begin(), steps.end());
      int64_t previous = base;
      for (const auto& [milestone, size] : steps) {
        if (size < previous) return false;
        previous = size;
      }
      return true;
    }
  }
  return false;
}

absl::StatusOr<SchedulePlan> PlanWithSchedule(int64_t samples, int64_t base_batch, int64_t epochs,
                                              bool drop_last,
                                              std::optional<int64_t> max_iterations,
                                              const BatchSchedule* schedule) {
  if (samples <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("the training set is empty (", samples, " samples)"));
  }
  if (base_batch <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be > 0, got ", base_batch));
  }
  if (epochs <= 0) return absl::InvalidArgumentError(absl::StrCat("epochs must be > 0, got ", epochs));
  if (max_iterations && (*max_iterations <= 0 || *max_iterations > kMaxPlannedIterations)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_iterations must be between 1 and 2^62, got ", *max_iterations));
  }
  const int64_t budget = max_iterations ? std::min(*max_iterations, kMaxPlannedIterations)
                                        : kMaxPlannedIterations;
  auto no_iteration = [&](int64_t b, int64_t e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size ", b, " is larger than the ", samples,
        " training samples and drop_last is set: epoch ", e + 1,
        " would run no iteration. Lower the batch size (or its schedule's sizes) or unset "
        "drop_last."));
  };
  SchedulePlan plan;
  int64_t step = 0;
  auto add = [&](const EpochPlan& row, int64_t count) {
    plan.epochs.Append(row, count);
    step += row.iterations * count;
    plan.total_iterations = step;
    int64_t seen = 0;
    if (__builtin_mul_overflow(row.samples, count, &seen) ||
        __builtin_add_overflow(plan.samples_seen, seen, &plan.samples_seen)) {
      plan.samples_seen = INT64_MAX;
    }
  };
  // Epoch e with a batch of b throughout, at most `left` iterations of it.
  auto constant_epoch = [&](int64_t e, int64_t b, int64_t left) -> absl::StatusOr<EpochPlan> {
    const int64_t full = samples / b, rest = samples % b;
    int64_t iterations = drop_last ? full : full + (rest > 0 ? 1 : 0);
    if (iterations == 0) return no_iteration(b, e);
    bool partial_last = !drop_last && rest > 0;
    if (iterations > left) {
      iterations = left;
      partial_last = false;
    }
    EpochPlan row;
    row.epoch = e;
    row.first_step = step;
    row.iterations = iterations;
    row.first_batch_size = iterations == 1 && partial_last ? rest : b;
    row.last_batch_size = partial_last ? rest : b;
    row.samples = partial_last ? (iterations - 1) * b + rest : iterations * b;
    return row;
  };

  int64_t e = 0;
  while (e < epochs && step < budget) {
    const bool by_epoch = schedule == nullptr || schedule->interval == BatchSchedule::Interval::kEpoch;
    // The batch is the same for every iteration from here to `until` (an
    // epoch, or a step for iteration schedules): compute that stretch.
    const int64_t t = by_epoch ? e : step;
    int64_t until = schedule == nullptr ? BatchSchedule::kNever : schedule->NextChange(t, base_batch);
    const int64_t b_now = schedule == nullptr ? base_batch : schedule->At(t, base_batch);
    // A growing schedule past the set's size plans alike from here on: one
    // batch of the whole set (drop_last refuses it below, as the walk would).
    if (schedule != nullptr && b_now >= samples && !drop_last && schedule->NonDecreasing(base_batch)) {
      until = BatchSchedule::kNever;
    }
    if (!by_epoch && until != BatchSchedule::kNever) {
      // An iteration schedule whose next change is epochs away: whole epochs
      // of the current size until then, computed.
      auto row = constant_epoch(e, b_now, budget - step);
      if (!row.ok()) return row.status();
      const int64_t whole = std::min({epochs - e, (until - step) / row->iterations,
                                      (budget - step) / row->iterations});
      if (whole > 0 && row->iterations * whole <= until - step) {
        add(*row, whole);
        e += whole;
        continue;
      }
    }
    if (by_epoch || until == BatchSchedule::kNever) {
      const int64_t b = schedule == nullptr ? base_batch : schedule->At(t, base_batch);
      auto row = constant_epoch(e, b, budget - step);
      if (!row.ok()) return row.status();
      const int64_t span = std::min(epochs, by_epoch ? until : BatchSchedule::kNever) - e;
      const int64_t whole = std::min(span, (budget - step) / row->iterations);
      if (whole == 0) {  // the budget ends inside this epoch
        add(*row, 1);
        ++e;
        continue;
      }
      add(*row, whole);
      e += whole;
      continue;
    }
    // An iteration schedule that still changes: walk this epoch batch by batch.
    EpochPlan row;
    row.epoch = e;
    row.first_step = step;
    int64_t offset = 0;
    int64_t last_tried = base_batch;
    int64_t s = step;
    while (offset < samples && s < budget) {
      const int64_t b = schedule->At(s, base_batch);
      last_tried = b;
      const int64_t remaining = samples - offset;
      if (drop_last && remaining < b) break;
      const int64_t bs = std::min(b, remaining);
      if (row.iterations == 0) row.first_batch_size = bs;
      row.last_batch_size = bs;
      offset += bs;
      row.samples += bs;
      ++row.iterations;
      ++s;
    }
    if (row.iterations == 0) return no_iteration(last_tried, e);
    add(row, 1);
    ++e;
  }
  if (!max_iterations && e < epochs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the plan is longer than 2^62 iterations (", epochs, " epochs of ",
        plan.epochs.front().iterations, " iterations and more); lower trainer.epochs or set "
        "trainer.max_iterations"));
  }
  return plan;
}

std::string FormatSchedulePlan(const SchedulePlan& plan) {
  std::string out;
  for (const EpochPlans::Run& run : plan.epochs.runs()) {
    const EpochPlan& r = run.first;
    const int64_t first = r.epoch + 1, last = r.epoch + run.count;
    std::string epochs = first == last ? absl::StrCat("epoch ", first)
                                       : absl::StrCat("epochs ", first, "-", last);
    std::string batch = absl::StrCat("batch ", r.first_batch_size);
    if (r.last_batch_size < r.first_batch_size) {
      absl::StrAppend(&batch, " (last batch ", r.last_batch_size, ")");  // the remainder
    } else if (r.last_batch_size > r.first_batch_size) {
      absl::StrAppend(&batch, " -> ", r.last_batch_size);  // grew inside the epoch
    }
    absl::StrAppend(&out, "  ", epochs, ": ", batch, ", ", r.iterations,
                    r.iterations == 1 ? " iteration" : " iterations", " each, ", r.samples,
                    " samples each\n");
  }
  absl::StrAppend(&out, "  total: ", plan.total_iterations, " iterations over ", plan.epochs.size(),
                  plan.epochs.size() == 1 ? " epoch" : " epochs", ", ", plan.samples_seen,
                  " samples seen\n");
  return out;
}

}  // namespace trainbus
