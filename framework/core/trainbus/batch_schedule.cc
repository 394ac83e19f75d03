#include "trainbus/batch_schedule.h"

#include <algorithm>
#include <cmath>

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
  if (max_iterations && *max_iterations <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_iterations must be > 0, got ", *max_iterations));
  }
  SchedulePlan plan;
  int64_t step = 0;
  auto capped = [&] { return max_iterations && step >= *max_iterations; };
  for (int64_t e = 0; e < epochs && !capped(); ++e) {
    EpochPlan row;
    row.epoch = e;
    row.first_step = step;
    int64_t offset = 0;
    int64_t last_tried = base_batch;
    while (offset < samples && !capped()) {
      const int64_t b = schedule == nullptr
                            ? base_batch
                            : schedule->At(schedule->interval == BatchSchedule::Interval::kEpoch ? e : step,
                                           base_batch);
      last_tried = b;
      const int64_t remaining = samples - offset;
      if (drop_last && remaining < b) break;
      const int64_t bs = std::min(b, remaining);
      if (row.iterations == 0) row.first_batch_size = bs;
      row.last_batch_size = bs;
      offset += bs;
      row.samples += bs;
      ++row.iterations;
      ++step;
    }
    if (row.iterations == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch_size ", last_tried, " is larger than the ", samples,
          " training samples and drop_last is set: epoch ", e + 1,
          " would run no iteration. Lower the batch size (or its schedule's sizes) or unset "
          "drop_last."));
    }
    plan.total_iterations += row.iterations;
    plan.samples_seen += row.samples;
    plan.epochs.push_back(row);
  }
  return plan;
}

std::string FormatSchedulePlan(const SchedulePlan& plan) {
  std::string out;
  auto same = [](const EpochPlan& a, const EpochPlan& b) {
    return a.iterations == b.iterations && a.first_batch_size == b.first_batch_size &&
           a.last_batch_size == b.last_batch_size;
  };
  for (size_t i = 0; i < plan.epochs.size();) {
    size_t j = i;
    while (j + 1 < plan.epochs.size() && same(plan.epochs[j + 1], plan.epochs[i])) ++j;
    const EpochPlan& r = plan.epochs[i];
    std::string epochs = i == j ? absl::StrCat("epoch ", i + 1) : absl::StrCat("epochs ", i + 1, "-", j + 1);
    std::string batch = absl::StrCat("batch ", r.first_batch_size);
    if (r.last_batch_size < r.first_batch_size) {
      absl::StrAppend(&batch, " (last batch ", r.last_batch_size, ")");  // the remainder
    } else if (r.last_batch_size > r.first_batch_size) {
      absl::StrAppend(&batch, " -> ", r.last_batch_size);  // grew inside the epoch
    }
    absl::StrAppend(&out, "  ", epochs, ": ", batch, ", ", r.iterations,
                    r.iterations == 1 ? " iteration" : " iterations", " each, ", r.samples,
                    " samples each\n");
    i = j + 1;
  }
  absl::StrAppend(&out, "  total: ", plan.total_iterations, " iterations over ", plan.epochs.size(),
                  plan.epochs.size() == 1 ? " epoch" : " epochs", ", ", plan.samples_seen,
                  " samples seen\n");
  return out;
}

}  // namespace trainbus
