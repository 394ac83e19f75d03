// libFuzzer target: the run-config parser (trainbus/config.h): JSON and
// protobuf text format through ParseRunConfig, then FinalizeRunConfig and
// RunConfigToJson, and `--set` overrides through ApplyOverride.
//
// The first input byte picks the mode (the rest is the text):
//   0 mod 3: JSON config;   1 mod 3: text-format config;
//   2 mod 3: one override per line, applied to an empty config.
// A config that finalizes must survive a round trip: its JSON parses and
// finalizes again to an equal message (maps compared as maps). Checked for
// inputs that are valid UTF-8 only: a text-format config with invalid UTF-8
// in a string is accepted by protobuf's text parser but cannot be written as
// JSON faithfully (the bytes are dropped; see tests/fuzz_regressions).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/util/message_differencer.h"
#include "absl/strings/string_view.h"
#include "trainbus/config.h"

namespace {

// protobuf's own validator: the one the config parser and serializer use.
bool ValidUtf8(absl::string_view s) {
  return google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  const absl::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  trainbus::config::RunConfig config;
  if (mode == 2) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (!trainbus::ApplyOverride(&config, line).ok()) return 0;
    }
  } else {
    auto parsed = trainbus::ParseRunConfig(text, mode == 0 ? "json" : "text", "fuzz.cfg");
    if (!parsed.ok()) return 0;
    config = *std::move(parsed);
  }
  if (!trainbus::FinalizeRunConfig(&config, "fuzz.cfg").ok()) return 0;

  const std::string json = trainbus::RunConfigToJson(config);
  if (!ValidUtf8(text)) return 0;
  auto again = trainbus::ParseRunConfig(json, "json", "fuzz.json");
  if (!again.ok()) std::abort();  // our own output must parse
  if (!trainbus::FinalizeRunConfig(&*again, "fuzz.json").ok()) std::abort();
  if (!google::protobuf::util::MessageDifferencer::Equals(*again, config)) std::abort();
  return 0;
}
