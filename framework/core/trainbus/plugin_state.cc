#include "trainbus/plugin_state.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace trainbus {
namespace {

constexpr absl::string_view kHeader = "trainbus-plugin-state 1";

bool ValidKey(absl::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

const char* TypeName(char type) {
  switch (type) {
    case 'd': return "a double";
    case 'i': return "an int";
    case 'b': return "a bool";
    case 's': return "a string";
  }
  return "an unknown type";
}

}  // namespace

void PluginState::Set(absl::string_view key, char type, std::string text) {
  if (!ValidKey(key)) {
    if (!has_bad_key_) bad_key_ = std::string(key);
    has_bad_key_ = true;
    return;
  }
  values_[std::string(key)] = absl::StrCat(std::string(1, type), text);
}

void PluginState::SetDouble(absl::string_view key, double value) {
  // %.17g round-trips every finite double; nan and inf print as such.
  Set(key, 'd', absl::StrFormat("%.17g", value));
}
void PluginState::SetInt(absl::string_view key, int64_t value) { Set(key, 'i', absl::StrCat(value)); }
void PluginState::SetBool(absl::string_view key, bool value) { Set(key, 'b', value ? "1" : "0"); }
void PluginState::SetString(absl::string_view key, absl::string_view value) {
  Set(key, 's', absl::CEscape(value));  // no newline survives: one line per value
}

absl::StatusOr<std::string> PluginState::Serialize() const {
  if (has_bad_key_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plugin state: key '", absl::CEscape(bad_key_),
        "' is not 1-64 characters from [A-Za-z0-9_.-]; rename it"));
  }
  std::string out = absl::StrCat(kHeader, "\n");
  for (const auto& [key, typed] : values_) {
    absl::StrAppend(&out, key, " ", absl::string_view(typed).substr(0, 1), " ",
                    absl::string_view(typed).substr(1), "\n");
  }
  return out;
}

absl::StatusOr<PluginState> PluginState::Parse(absl::string_view bytes) {
  std::vector<absl::string_view> lines = absl::StrSplit(bytes, '\n');
  if (lines.empty() || lines[0] != kHeader) {
    return absl::DataLossError(absl::StrCat(
        "plugin state: does not start with '", kHeader,
        "' (it was not written by trainbus::PluginState, or by a newer version)"));
  }
  PluginState state;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty() && i + 1 == lines.size()) break;  // the final newline
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    const bool shaped = parts.size() == 3 && ValidKey(parts[0]) && parts[1].size() == 1;
    std::string text;
    bool ok = shaped;
    if (ok) {
      const char type = parts[1][0];
      switch (type) {
        case 'd': {
          double d;
          ok = absl::SimpleAtod(parts[2], &d);
          text = std::string(parts[2]);
          break;
        }
        case 'i': {
          int64_t v;
          ok = absl::SimpleAtoi(parts[2], &v);
          text = std::string(parts[2]);
          break;
        }
        case 'b':
          ok = parts[2] == "0" || parts[2] == "1";
          text = std::string(parts[2]);
          break;
        case 's':
          ok = absl::CUnescape(parts[2], &text);
          if (ok) text = absl::CEscape(text);
          break;
        default:
          ok = false;
      }
      if (ok) state.values_[std::string(parts[0])] = absl::StrCat(std::string(1, type), text);
    }
    if (!ok) {
      return absl::DataLossError(absl::StrCat("plugin state: line ", i + 1, " is not 'key type value': '",
                                              absl::CEscape(line.substr(0, 80)), "'"));
    }
  }
  return state;
}

absl::StatusOr<const std::string*> PluginState::Find(absl::string_view key, char type) const {
  auto it = values_.find(std::string(key));
  if (it == values_.end()) {
    return absl::NotFoundError(absl::StrCat("plugin state: no value '", key, "'"));
  }
  if (it->second[0] != type) {
    return absl::DataLossError(absl::StrCat("plugin state: value '", key, "' holds ",
                                            TypeName(it->second[0]), ", not ", TypeName(type)));
  }
  return &it->second;
}

absl::Status PluginState::GetDouble(absl::string_view key, double* out) const {
  auto text = Find(key, 'd');
  if (!text.ok()) return text.status();
  (void)absl::SimpleAtod(absl::string_view(**text).substr(1), out);  // checked by Parse
  return absl::OkStatus();
}

absl::Status PluginState::GetInt(absl::string_view key, int64_t* out) const {
  auto text = Find(key, 'i');
  if (!text.ok()) return text.status();
  (void)absl::SimpleAtoi(absl::string_view(**text).substr(1), out);
  return absl::OkStatus();
}

absl::Status PluginState::GetBool(absl::string_view key, bool* out) const {
  auto text = Find(key, 'b');
  if (!text.ok()) return text.status();
  *out = (**text)[1] == '1';
  return absl::OkStatus();
}

absl::Status PluginState::GetString(absl::string_view key, std::string* out) const {
  auto text = Find(key, 's');
  if (!text.ok()) return text.status();
  std::string value;
  (void)absl::CUnescape(absl::string_view(**text).substr(1), &value);
  *out = std::move(value);
  return absl::OkStatus();
}

}  // namespace trainbus
