// trainbus/plugin_state.h — a plugin's saved state as named values.
//
// Plugin::SaveState() returns bytes that the checkpoint stores and a resumed
// run hands back to LoadState(). PluginState turns named values into those
// bytes and back, exactly: doubles round-trip bit for bit (inf and -0
// included; a nan comes back as a quiet nan of the same sign), strings may
// hold any bytes.
//
//   absl::StatusOr<std::string> SaveState() override {
//     trainbus::PluginState state;
//     state.SetDouble("best", best_);
//     state.SetInt("bad_checks", bad_checks_);
//     state.SetString("mode", mode_);
//     return state.Serialize();
//   }
//
//   absl::Status LoadState(absl::string_view bytes) override {
//     absl::StatusOr<trainbus::PluginState> state = trainbus::PluginState::Parse(bytes);
//     if (!state.ok()) return state.status();
//     if (absl::Status s = state->GetDouble("best", &best_); !s.ok()) return s;
//     if (absl::Status s = state->GetInt("bad_checks", &bad_checks_); !s.ok()) return s;
//     // A value added in a later version of the plugin: keep the default when absent.
//     if (state->Has("mode")) (void)state->GetString("mode", &mode_);
//     return absl::OkStatus();
//   }
//
// The bytes are text: a header line, then one "key type value" line per
// value, keys sorted, so a checkpoint's state is readable and the same state
// gives the same bytes.
// Keys are 1-64 characters from [A-Za-z0-9_.-]; Set* with another key, and
// Get* of a missing key or of a value of another type, are errors that name
// the key. Serialize() reports a bad key given earlier.
#ifndef TRAINBUS_PLUGIN_STATE_H_
#define TRAINBUS_PLUGIN_STATE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace trainbus {

class PluginState {
 public:
  PluginState() = default;

  // Reads bytes written by Serialize(). DataLoss for anything else, naming
  // the line that is wrong.
  static absl::StatusOr<PluginState> Parse(absl::string_view bytes);
  // The bytes for Plugin::SaveState(); InvalidArgument after a bad key.
  absl::StatusOr<std::string> Serialize() const;

  void SetDouble(absl::string_view key, double value);
  void SetInt(absl::string_view key, int64_t value);
  void SetBool(absl::string_view key, bool value);
  void SetString(absl::string_view key, absl::string_view value);

  bool Has(absl::string_view key) const { return values_.count(std::string(key)) > 0; }
  // NotFound for a missing key, DataLoss for a value of another type; `out`
  // is left as it was then.
  absl::Status GetDouble(absl::string_view key, double* out) const;
  absl::Status GetInt(absl::string_view key, int64_t* out) const;
  absl::Status GetBool(absl::string_view key, bool* out) const;
  absl::Status GetString(absl::string_view key, std::string* out) const;

  size_t size() const { return values_.size(); }

 private:
  void Set(absl::string_view key, char type, std::string text);
  absl::StatusOr<const std::string*> Find(absl::string_view key, char type) const;

  // key -> type letter ('d', 'i', 'b', 's') followed by the value's text.
  std::map<std::string, std::string> values_;
  std::string bad_key_;  // the first invalid key given to Set*, if any
  bool has_bad_key_ = false;
};

}  // namespace trainbus

#endif  // TRAINBUS_PLUGIN_STATE_H_
