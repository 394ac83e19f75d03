// schedule_args.h — reading one schedule object's arguments (schedulers
// plugin, internal): types and ranges checked, the first error kept with the
// config place and option it names. Used by the factory
// (schedule_factory.cc); Describe and Num also by the schedules' messages.
#ifndef TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULE_ARGS_H_
#define TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULE_ARGS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"

namespace trainbus::schedulers::internal {

using google::protobuf::Struct;
using google::protobuf::Value;


#define SCHED_RETURN_IF_ERROR(expr)   \
  do {                                \
    absl::Status _s = (expr);         \
    if (!_s.ok()) return _s;          \
  } while (0)

inline std::string Describe(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue: return "null";
    case Value::kNumberValue: {
      char buf[40];
      std::snprintf(buf, sizeof(buf), "number %.17g", v.number_value());
      return buf;
    }
    case Value::kStringValue: return absl::StrCat("string \"", v.string_value(), "\"");
    case Value::kBoolValue: return v.bool_value() ? "bool true" : "bool false";
    case Value::kStructValue: return "an object";
    case Value::kListValue: return "a list";
    default: return "nothing";
  }
}

inline std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shorter when it round-trips (0.5 rather than 0.50000000000000000).
  for (int p = 1; p <= 17; ++p) {
    char b[40];
    std::snprintf(b, sizeof(b), "%.*g", p, v);
    if (std::strtod(b, nullptr) == v) return b;
  }
  return buf;
}

// Reads one schedule object's arguments, remembering the first error.
class Args {
 public:
  Args(const Struct& s, std::string where, bool validate_only, size_t num_groups)
      : s_(s), where_(std::move(where)), validate_only_(validate_only), num_groups_(num_groups) {}

  const std::string& where() const { return where_; }
  bool ok() const { return status_.ok(); }

  void Fail(absl::string_view message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat(where_, ": ", message));
  }
  void FailOption(absl::string_view name, absl::string_view message) {
    Fail(absl::StrCat("option '", name, "' ", message));
  }

  const Value* Find(absl::string_view name) {
    known_.push_back(std::string(name));
    auto it = s_.fields().find(std::string(name));
    if (it == s_.fields().end() || it->second.kind_case() == Value::kNullValue) return nullptr;
    return &it->second;
  }
  bool Has(absl::string_view name) {
    auto it = s_.fields().find(std::string(name));
    return it != s_.fields().end() && it->second.kind_case() != Value::kNullValue;
  }

  double Double(absl::string_view name, std::optional<double> def) {
    const Value* v = Find(name);
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return def.value_or(0.0);
    }
    if (v->kind_case() != Value::kNumberValue) {
      FailOption(name, absl::StrCat("must be a number, got ", Describe(*v)));
      return def.value_or(0.0);
    }
    if (!std::isfinite(v->number_value())) {
      FailOption(name, absl::StrCat("must be finite, got ", Num(v->number_value())));
    }
    return v->number_value();
  }

  int64_t Int(absl::string_view name, std::optional<int64_t> def) {
    const Value* v = Find(name);
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return def.value_or(0);
    }
    return ToInt(name, *v, def.value_or(0));
  }

  int64_t ToInt(absl::string_view name, const Value& v, int64_t fallback) {
    if (v.kind_case() != Value::kNumberValue) {
      FailOption(name, absl::StrCat("must be an integer, got ", Describe(v)));
      return fallback;
    }
    double d = v.number_value();
    if (!(std::fabs(d) < 9.0e15) || std::floor(d) != d) {
      FailOption(name, absl::StrCat("must be an integer, got ", Num(d)));
      return fallback;
    }
    return static_cast<int64_t>(d);
  }

  bool Bool(absl::string_view name, bool def) {
    const Value* v = Find(name);
    if (v == nullptr) return def;
    if (v->kind_case() != Value::kBoolValue) {
      FailOption(name, absl::StrCat("must be true or false, got ", Describe(*v)));
      return def;
    }
    return v->bool_value();
  }

  std::string String(absl::string_view name, const std::string& def,
                     const std::vector<std::string>& allowed) {
    const Value* v = Find(name);
    if (v == nullptr) return def;
    if (v->kind_case() != Value::kStringValue) {
      FailOption(name, absl::StrCat("must be a string, got ", Describe(*v)));
      return def;
    }
    if (std::find(allowed.begin(), allowed.end(), v->string_value()) == allowed.end()) {
      FailOption(name, absl::StrCat("must be one of \"", absl::StrJoin(allowed, "\", \""),
                                    "\", got \"", v->string_value(), "\""));
      return def;
    }
    return v->string_value();
  }

  std::vector<int64_t> IntList(absl::string_view name) {
    const Value* v = Find(name);
    std::vector<int64_t> out;
    if (v == nullptr) {
      FailOption(name, "is required");
      return out;
    }
    if (v->kind_case() != Value::kListValue) {
      FailOption(name, absl::StrCat("must be a list of integers, got ", Describe(*v)));
      return out;
    }
    for (const Value& e : v->list_value().values()) out.push_back(ToInt(name, e, 0));
    return out;
  }

  // A number for every group, or a list with one number per group (PyTorch's
  // "float or list" arguments).
  std::vector<double> PerGroup(absl::string_view name, std::optional<double> def) {
    const Value* v = Find(name);
    std::vector<double> out(num_groups_, def.value_or(0.0));
    if (v == nullptr) {
      if (!def) FailOption(name, "is required");
      return out;
    }
    if (v->kind_case() == Value::kNumberValue) {
      if (!std::isfinite(v->number_value())) {
        FailOption(name, absl::StrCat("must be finite, got ", Num(v->number_value())));
      }
      std::fill(out.begin(), out.end(), v->number_value());
      return out;
    }
    if (v->kind_case() != Value::kListValue) {
      FailOption(name, absl::StrCat("must be a number or a list of numbers (one per param "
                                    "group), got ",
                                    Describe(*v)));
      return out;
    }
    const auto& list = v->list_value().values();
    std::vector<double> given;
    for (const Value& e : list) {
      if (e.kind_case() != Value::kNumberValue || !std::isfinite(e.number_value())) {
        FailOption(name, absl::StrCat("must be a list of finite numbers, got an element ",
                                      Describe(e)));
        return out;
      }
      given.push_back(e.number_value());
    }
    if (validate_only_) {
      if (given.empty()) FailOption(name, "must not be an empty list");
      return out;  // group count unknown yet
    }
    if (given.size() != num_groups_) {
      FailOption(name, absl::StrCat("has ", given.size(), " values but the optimizer has ",
                                    num_groups_, " param group", num_groups_ == 1 ? "" : "s"));
      return out;
    }
    return given;
  }

  void Accept(absl::string_view name) { known_.push_back(std::string(name)); }

  // Unknown keys are errors; call after reading every argument.
  absl::Status Finish() {
    // An unknown key first: a misspelt name is the likely cause of a
    // "required" error about the right one.
    for (const auto& [key, value] : s_.fields()) {
      if (key == "type") continue;
      if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
        std::vector<std::string> known = known_;
        std::sort(known.begin(), known.end());
        known.erase(std::unique(known.begin(), known.end()), known.end());
        return absl::InvalidArgumentError(absl::StrCat(where_, ": unknown option '", key,
                                                       "' (known: ", absl::StrJoin(known, ", "),
                                                       ")"));
      }
    }
    return status_;
  }

  // Range checks.
  void Check(bool ok, absl::string_view name, absl::string_view requirement, double got) {
    if (!ok) FailOption(name, absl::StrCat(requirement, ", got ", Num(got)));
  }

 private:
  const Struct& s_;
  std::string where_;
  bool validate_only_;
  size_t num_groups_;
  std::vector<std::string> known_;
  absl::Status status_;
};

}  // namespace trainbus::schedulers::internal

#endif  // TRAINBUS_PLUGINS_SCHEDULERS_SCHEDULE_ARGS_H_
