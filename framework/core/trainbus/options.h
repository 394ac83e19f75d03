// trainbus/options.h — declaring and reading a plugin's options.
//
// A plugin declares its options once, with a type, a default (as JSON text)
// and a one-line help:
//
//   static trainbus::PluginInfo Info() {
//     return {"progress", "1.0.0", "Console progress bar",
//             {{"every_n_seconds", trainbus::OptionType::kDouble, "1.0",
//               "Seconds between lines when output is not a terminal"},
//              {"bar_width", trainbus::OptionType::kInt, "30", "Width of the bar"}}};
//   }
//
// Before the plugin is created, the loader checks the options given in the
// run config against that list: an unknown key, a value of the wrong type or
// a malformed default is an error naming the plugin and the key (and listing
// the known keys). The plugin then reads typed values, defaults filled in:
//
//   double every = ctx.options.GetDouble("every_n_seconds");
//
// Range checks are the plugin's own: return
// absl::InvalidArgumentError("option 'bar_width' must be > 0, got -3") from
// Create(); the loader adds the plugin's name.
//
// Types: kBool, kInt (a JSON number with no fractional part), kDouble (any
// number), kString, kDoubleList / kIntList / kStringList (JSON arrays), kObject
// (a JSON object, read with GetValue()), kAny (anything, read with GetValue()).
#ifndef TRAINBUS_OPTIONS_H_
#define TRAINBUS_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"

namespace trainbus {

enum class OptionType { kBool, kInt, kDouble, kString, kDoubleList, kIntList, kStringList, kObject, kAny };

// "bool", "int", "double", "string", "list<double>", ... as shown by `trainbus plugins`.
const char* OptionTypeName(OptionType type);

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kString;
  std::string default_json;  // JSON text of the default; empty means "no default" (optional)
  std::string help;
};

// Checks `value` against `type`; on mismatch returns a message such as
// "expected int, got string \"abc\"".
absl::Status CheckOptionType(const google::protobuf::Value& value, OptionType type);

// A plugin's validated options: values given in the config, falling back to
// the declared defaults. Getters for an option that was not declared, or
// declared with another type, throw std::logic_error (a bug in the plugin).
class PluginOptions {
 public:
  PluginOptions() = default;

  // Checks that every declared default is valid JSON of its option's type
  // (a string default is written with its quotes: "\"stdout\""). The loader
  // checks this when it opens a library, so `trainbus plugins` already
  // reports a bad default, not only `train`.
  static absl::Status CheckDefaults(const std::vector<OptionSpec>& specs, absl::string_view where);

  // Validates `given` against `specs`. `where` names the plugin for messages,
  // e.g. "plugin 'progress'".
  static absl::StatusOr<PluginOptions> Create(const std::vector<OptionSpec>& specs,
                                              const google::protobuf::Struct& given,
                                              absl::string_view where);

  // Create() from JSON text such as R"({"every_n": 5})", for tests and hosts
  // that hold options as text. InvalidArgument names `where` for JSON that
  // does not parse or is not an object, then as Create().
  static absl::StatusOr<PluginOptions> FromJson(const std::vector<OptionSpec>& specs,
                                                absl::string_view json,
                                                absl::string_view where = "options");

  // True when the config set the option (defaults don't count).
  bool IsSet(absl::string_view name) const;
  // True when the option has a value: set, or with a non-empty default.
  bool Has(absl::string_view name) const;

  bool GetBool(absl::string_view name) const;
  int64_t GetInt(absl::string_view name) const;
  double GetDouble(absl::string_view name) const;
  std::string GetString(absl::string_view name) const;
  std::vector<double> GetDoubleList(absl::string_view name) const;
  std::vector<int64_t> GetIntList(absl::string_view name) const;
  std::vector<std::string> GetStringList(absl::string_view name) const;
  // The raw value (for kObject / kAny, or any type); a null Value when absent.
  const google::protobuf::Value& GetValue(absl::string_view name) const;

  // Every option with its effective value, as JSON text ("{"a":1,...}").
  std::string ToJson() const;
  const google::protobuf::Struct& values() const { return values_; }

 private:
  const OptionSpec& Spec(absl::string_view name, OptionType expected) const;

  std::vector<OptionSpec> specs_;
  google::protobuf::Struct values_;  // effective values (given or default)
  google::protobuf::Struct given_;   // what the config set
};

}  // namespace trainbus

#endif  // TRAINBUS_OPTIONS_H_
