// libFuzzer target: plugin options (trainbus/options.h). The input is the
// JSON object a run config gives a plugin ("options": {...}), validated by
// PluginOptions::Create against specs of every type; when it validates,
// every getter is called with its declared type and ToJson() must give JSON
// that validates again to the same values (compared as maps: ToJson's key
// order follows protobuf's hash map and is not stable).
//
// An input line starting with '#' is instead the default (JSON text) of an
// extra option whose type is picked by the line's second byte, which checks
// that a malformed default is an error, not a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "trainbus/options.h"

namespace {

using trainbus::OptionSpec;
using trainbus::OptionType;

constexpr OptionType kTypes[] = {OptionType::kBool,       OptionType::kInt,
                                 OptionType::kDouble,     OptionType::kString,
                                 OptionType::kDoubleList, OptionType::kIntList,
                                 OptionType::kStringList, OptionType::kObject,
                                 OptionType::kAny};

std::vector<OptionSpec> BaseSpecs() {
  return {
      {"flag", OptionType::kBool, "false", "a bool"},
      {"count", OptionType::kInt, "3", "an int"},
      {"rate", OptionType::kDouble, "0.5", "a double"},
      {"name", OptionType::kString, "\"x\"", "a string"},
      {"weights", OptionType::kDoubleList, "[1, 2.5]", "doubles"},
      {"ids", OptionType::kIntList, "[]", "ints"},
      {"tags", OptionType::kStringList, "[\"a\"]", "strings"},
      {"schedule", OptionType::kObject, "", "an object, no default"},
      {"anything", OptionType::kAny, "null", "any value"},
      {"optional_int", OptionType::kInt, "", "no default"},
  };
}

void ReadAll(const trainbus::PluginOptions& o, const std::vector<OptionSpec>& specs) {
  for (const OptionSpec& s : specs) {
    (void)o.IsSet(s.name);
    if (!o.Has(s.name)) continue;
    switch (s.type) {
      case OptionType::kBool: (void)o.GetBool(s.name); break;
      case OptionType::kInt: (void)o.GetInt(s.name); break;
      case OptionType::kDouble: (void)o.GetDouble(s.name); break;
      case OptionType::kString: (void)o.GetString(s.name); break;
      case OptionType::kDoubleList: (void)o.GetDoubleList(s.name); break;
      case OptionType::kIntList: (void)o.GetIntList(s.name); break;
      case OptionType::kStringList: (void)o.GetStringList(s.name); break;
      case OptionType::kObject:
      case OptionType::kAny: (void)o.GetValue(s.name); break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<OptionSpec> specs = BaseSpecs();
  std::string given_json;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    if (line.size() >= 2 && line[0] == '#') {
      const OptionType type = kTypes[static_cast<uint8_t>(line[1]) % 9];
      specs.push_back({"extra" + std::to_string(specs.size()), type,
                       std::string(line.substr(2)), "from the input"});
    } else {
      given_json.append(line.data(), line.size());
      given_json.push_back('\n');
    }
  }
  google::protobuf::Struct given;
  if (!google::protobuf::util::JsonStringToMessage(given_json, &given).ok()) return 0;

  auto options = trainbus::PluginOptions::Create(specs, given, "plugin 'fuzz'");
  if (!options.ok()) return 0;
  ReadAll(*options, specs);

  // Round trip: the effective values as JSON validate again, to the same values.
  const std::string json = options->ToJson();
  google::protobuf::Struct back;
  if (!google::protobuf::util::JsonStringToMessage(json, &back).ok()) std::abort();
  auto again = trainbus::PluginOptions::Create(specs, back, "plugin 'fuzz'");
  if (!again.ok()) std::abort();
  if (!google::protobuf::util::MessageDifferencer::Equals(again->values(), options->values())) {
    std::abort();
  }
  return 0;
}
