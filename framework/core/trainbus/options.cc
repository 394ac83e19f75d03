#include "trainbus/options.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "google/protobuf/util/json_util.h"

namespace trainbus {
namespace {

using google::protobuf::Value;

std::string ValueToJson(const Value& v) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(v, &out);
  return out;
}

const char* KindName(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue: return "null";
    case Value::kNumberValue: return "number";
    case Value::kStringValue: return "string";
    case Value::kBoolValue: return "bool";
    case Value::kStructValue: return "object";
    case Value::kListValue: return "list";
    default: return "nothing";
  }
}

bool IsInteger(const Value& v) {
  if (v.kind_case() != Value::kNumberValue) return false;
  double d = v.number_value();
  return std::isfinite(d) && std::floor(d) == d && std::fabs(d) <= 9.007199254740992e15;
}

absl::Status Mismatch(const Value& v, OptionType type) {
  return absl::InvalidArgumentError(absl::StrCat("expected ", OptionTypeName(type), ", got ",
                                                 KindName(v), " ", ValueToJson(v)));
}

absl::Status CheckList(const Value& v, OptionType type, bool (*element_ok)(const Value&)) {
  if (v.kind_case() != Value::kListValue) return Mismatch(v, type);
  for (int i = 0; i < v.list_value().values_size(); ++i) {
    const Value& e = v.list_value().values(i);
    if (!element_ok(e)) {
      return absl::InvalidArgumentError(absl::StrCat("expected ", OptionTypeName(type),
                                                     ", element ", i, " is ", KindName(e), " ",
                                                     ValueToJson(e)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* OptionTypeName(OptionType type) {
  switch (type) {
    case OptionType::kBool: return "bool";
    case OptionType::kInt: return "int";
    case OptionType::kDouble: return "double";
    case OptionType::kString: return "string";
    case OptionType::kDoubleList: return "list<double>";
    case OptionType::kIntList: return "list<int>";
    case OptionType::kStringList: return "list<string>";
    case OptionType::kObject: return "object";
    case OptionType::kAny: return "any";
  }
  return "?";
}

absl::Status CheckOptionType(const Value& v, OptionType type) {
  switch (type) {
    case OptionType::kBool:
      return v.kind_case() == Value::kBoolValue ? absl::OkStatus() : Mismatch(v, type);
    case OptionType::kInt:
      return IsInteger(v) ? absl::OkStatus() : Mismatch(v, type);
    case OptionType::kDouble:
      return v.kind_case() == Value::kNumberValue ? absl::OkStatus() : Mismatch(v, type);
    case OptionType::kString:
      return v.kind_case() == Value::kStringValue ? absl::OkStatus() : Mismatch(v, type);
    case OptionType::kDoubleList:
      return CheckList(v, type,
                       [](const Value& e) { return e.kind_case() == Value::kNumberValue; });
    case OptionType::kIntList:
      return CheckList(v, type, [](const Value& e) { return IsInteger(e); });
    case OptionType::kStringList:
      return CheckList(v, type,
                       [](const Value& e) { return e.kind_case() == Value::kStringValue; });
    case OptionType::kObject:
      return v.kind_case() == Value::kStructValue ? absl::OkStatus() : Mismatch(v, type);
    case OptionType::kAny:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status PluginOptions::CheckDefaults(const std::vector<OptionSpec>& specs,
                                          absl::string_view where) {
  for (const OptionSpec& spec : specs) {
    if (spec.default_json.empty()) continue;
    Value def;
    auto parsed = google::protobuf::util::JsonStringToMessage(spec.default_json, &def);
    if (!parsed.ok() || !CheckOptionType(def, spec.type).ok()) {
      const bool bare_string = spec.type == OptionType::kString && !parsed.ok();
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the default of option '", spec.name, "' (", spec.default_json,
          ") is not a valid ", OptionTypeName(spec.type), " in JSON",
          bare_string ? absl::StrCat("; write a string default with its quotes, e.g. \"\\\"",
                                     spec.default_json, "\\\"\"")
                      : std::string(),
          ". Fix the plugin's Info()"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PluginOptions> PluginOptions::Create(const std::vector<OptionSpec>& specs,
                                                    const google::protobuf::Struct& given,
                                                    absl::string_view where) {
  PluginOptions out;
  out.specs_ = specs;
  out.given_ = given;
  for (const OptionSpec& spec : specs) {
    if (spec.default_json.empty()) continue;
    Value def;
    auto parsed = google::protobuf::util::JsonStringToMessage(spec.default_json, &def);
    if (!parsed.ok() || !CheckOptionType(def, spec.type).ok()) {
      return absl::InternalError(absl::StrCat(where, ": the default of option '", spec.name,
                                              "' (", spec.default_json, ") is not a valid ",
                                              OptionTypeName(spec.type),
                                              "; this is a bug in the plugin"));
    }
    (*out.values_.mutable_fields())[spec.name] = def;
  }
  for (const auto& [key, value] : given.fields()) {
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : specs) {
      if (s.name == key) spec = &s;
    }
    if (spec == nullptr) {
      std::vector<std::string> known;
      for (const OptionSpec& s : specs) known.push_back(s.name);
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown option '", key, "'; known options: ",
          known.empty() ? "(none)" : absl::StrJoin(known, ", "),
          ". Run `trainbus plugins` to see each option with its type and default."));
    }
    if (absl::Status s = CheckOptionType(value, spec->type); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": option '", key, "': ", s.message()));
    }
    (*out.values_.mutable_fields())[key] = value;
  }
  return out;
}

absl::StatusOr<PluginOptions> PluginOptions::FromJson(const std::vector<OptionSpec>& specs,
                                                      absl::string_view json,
                                                      absl::string_view where) {
  google::protobuf::Struct given;
  absl::string_view trimmed = absl::StripAsciiWhitespace(json);
  if (!trimmed.empty()) {
    auto parsed = google::protobuf::util::JsonStringToMessage(std::string(trimmed), &given);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the options are not a JSON object (", std::string(parsed.message()), "): ",
          json));
    }
  }
  return Create(specs, given, where);
}

bool PluginOptions::IsSet(absl::string_view name) const {
  return given_.fields().count(std::string(name)) > 0;
}

bool PluginOptions::Has(absl::string_view name) const {
  return values_.fields().count(std::string(name)) > 0;
}

const OptionSpec& PluginOptions::Spec(absl::string_view name, OptionType expected) const {
  for (const OptionSpec& s : specs_) {
    if (s.name == name) {
      if (s.type != expected && expected != OptionType::kAny) {
        throw std::logic_error(absl::StrCat("option '", name, "' is declared as ",
                                            OptionTypeName(s.type), ", read as ",
                                            OptionTypeName(expected)));
      }
      return s;
    }
  }
  throw std::logic_error(absl::StrCat("option '", name, "' was never declared in Info()"));
}

const Value& PluginOptions::GetValue(absl::string_view name) const {
  Spec(name, OptionType::kAny);
  auto it = values_.fields().find(std::string(name));
  if (it == values_.fields().end()) return Value::default_instance();
  return it->second;
}

bool PluginOptions::GetBool(absl::string_view name) const {
  Spec(name, OptionType::kBool);
  return GetValue(name).bool_value();
}

int64_t PluginOptions::GetInt(absl::string_view name) const {
  Spec(name, OptionType::kInt);
  return static_cast<int64_t>(GetValue(name).number_value());
}

double PluginOptions::GetDouble(absl::string_view name) const {
  Spec(name, OptionType::kDouble);
  return GetValue(name).number_value();
}

std::string PluginOptions::GetString(absl::string_view name) const {
  Spec(name, OptionType::kString);
  return GetValue(name).string_value();
}

std::vector<double> PluginOptions::GetDoubleList(absl::string_view name) const {
  Spec(name, OptionType::kDoubleList);
  std::vector<double> out;
  for (const Value& e : GetValue(name).list_value().values()) out.push_back(e.number_value());
  return out;
}

std::vector<int64_t> PluginOptions::GetIntList(absl::string_view name) const {
  Spec(name, OptionType::kIntList);
  std::vector<int64_t> out;
  for (const Value& e : GetValue(name).list_value().values()) {
    out.push_back(static_cast<int64_t>(e.number_value()));
  }
  return out;
}

std::vector<std::string> PluginOptions::GetStringList(absl::string_view name) const {
  Spec(name, OptionType::kStringList);
  std::vector<std::string> out;
  for (const Value& e : GetValue(name).list_value().values()) out.push_back(e.string_value());
  return out;
}

std::string PluginOptions::ToJson() const {
  // Keys in name order: the Struct's map has no stable order of its own.
  std::vector<std::string> keys;
  for (const auto& [key, value] : values_.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  std::string out = "{";
  for (const std::string& key : keys) {
    Value name;
    name.set_string_value(key);
    absl::StrAppend(&out, out.size() > 1 ? "," : "", ValueToJson(name), ":",
                    ValueToJson(values_.fields().at(key)));
  }
  return out + "}";
}

}  // namespace trainbus
