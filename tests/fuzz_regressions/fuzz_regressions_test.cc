// Regression tests for the fuzz targets' findings (fuzz/README.md).
//
// Replays every committed seed (fuzz/corpus/<target>/) and every input that
// once failed (inputs/<target>/) through the targets' own code; the targets
// abort on any broken invariant, so a regression crashes this test. Then one
// test per finding, stating the expected behaviour.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "trainbus/config.h"
#include "trainbus/options.h"
#include "test_util.h"

extern "C" int FuzzEventFile(const uint8_t* data, size_t size);
extern "C" int FuzzRunConfig(const uint8_t* data, size_t size);
extern "C" int FuzzPluginOptions(const uint8_t* data, size_t size);

namespace {

using trainbus::test_util::ReadFile;

namespace fs = std::filesystem;

// Runs every file of <dir>/<target> through `fn`; returns how many ran.
int Replay(const std::string& dir, const std::string& target, int (*fn)(const uint8_t*, size_t)) {
  int n = 0;
  const fs::path folder = fs::path(dir) / target;
  if (!fs::exists(folder)) return 0;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& p : files) {
    SCOPED_TRACE(p.string());
    const std::string bytes = ReadFile(p);
    fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++n;
  }
  return n;
}

TEST(FuzzReplay, EventFile) {
  EXPECT_GT(Replay(FUZZ_CORPUS_DIR, "event_file", FuzzEventFile), 0);
  Replay(FUZZ_REGRESSIONS_DIR, "event_file", FuzzEventFile);
}

TEST(FuzzReplay, RunConfig) {
  EXPECT_GT(Replay(FUZZ_CORPUS_DIR, "run_config", FuzzRunConfig), 0);
  EXPECT_GT(Replay(FUZZ_REGRESSIONS_DIR, "run_config", FuzzRunConfig), 0);
}

TEST(FuzzReplay, PluginOptions) {
  EXPECT_GT(Replay(FUZZ_CORPUS_DIR, "plugin_options", FuzzPluginOptions), 0);
  EXPECT_GT(Replay(FUZZ_REGRESSIONS_DIR, "plugin_options", FuzzPluginOptions), 0);
}

// Finding (plugin_options, inputs/plugin_options/defaults_round_trip):
// PluginOptions::ToJson() lists keys in protobuf's hash-map order, which
// differs between two equal option sets; the values are the same. The
// target compares values as maps since. This pins that the values survive.
TEST(FuzzFindings, OptionsToJsonRoundTripKeepsValues) {
  const std::vector<trainbus::OptionSpec> specs = {
      {"flag", trainbus::OptionType::kBool, "false", ""},
      {"count", trainbus::OptionType::kInt, "3", ""},
      {"rate", trainbus::OptionType::kDouble, "0.5", ""},
      {"name", trainbus::OptionType::kString, "\"x\"", ""},
      {"weights", trainbus::OptionType::kDoubleList, "[1, 2.5]", ""},
      {"tags", trainbus::OptionType::kStringList, "[\"a\"]", ""},
      {"anything", trainbus::OptionType::kAny, "null", ""}};
  auto first = trainbus::PluginOptions::Create(specs, google::protobuf::Struct(), "plugin 'x'");
  ASSERT_TRUE(first.ok()) << first.status();
  google::protobuf::Struct back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(first->ToJson(), &back).ok());
  auto second = trainbus::PluginOptions::Create(specs, back, "plugin 'x'");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(first->values(), second->values()));
}

// Finding (run_config, inputs/run_config/invalid_utf8_key_in_text_format):
// a text-format config with invalid UTF-8 inside a string (here a plugin
// option's key) is accepted by ParseRunConfig, but RunConfigToJson() -- the
// copy saved next to the run -- silently drops the bad bytes
// ("every_n_epo\xe3hs" is written as "every_n_epos"), so the saved config is
// not the one that ran. Expected: ParseRunConfig rejects text that is not
// valid UTF-8, naming the origin and the byte offset. Disabled until
// framework/trainer/trainbus/config.cc checks it (see the report of the fuzzing work).
TEST(FuzzFindings, TextConfigWithInvalidUtf8IsRejected) {
  const std::string text =
      "name: \"t\"\nplugins { name: \"checkpoint\" options { fields { key: \"every_n_epo\xe3hs\" "
      "value { number_value: 1 } } } }";
  auto config = trainbus::ParseRunConfig(text, "text", "bad.cfg");
  EXPECT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              ::testing::HasSubstr("bad.cfg: not valid UTF-8 (first bad byte near offset"));
}

// Found by run_config_fuzzer in CI: an override with invalid UTF-8 (an
// overlong 0xC0 0x9F) was accepted and then lost when the config was saved.
TEST(FuzzFindings, OverrideWithInvalidUtf8IsRejected) {
  trainbus::config::RunConfig config;
  absl::Status s = trainbus::ApplyOverride(&config, "name=in\x6f\xc0\x9f.x");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("not valid UTF-8"));
  EXPECT_TRUE(trainbus::ApplyOverride(&config, "name=caf\xc3\xa9").ok());  // valid UTF-8 is fine
}

// What holds today for the same input: no crash, and everything that is
// valid UTF-8 survives the JSON round trip.
TEST(FuzzFindings, TextConfigWithInvalidUtf8DoesNotCrash) {
  const std::string text =
      "name: \"t\"\nplugins { name: \"checkpoint\" options { fields { key: \"every_n_epo\xe3hs\" "
      "value { number_value: 1 } } } }";
  auto config = trainbus::ParseRunConfig(text, "text", "bad.cfg");
  if (!config.ok()) return;  // the fix: rejected
  ASSERT_TRUE(trainbus::FinalizeRunConfig(&*config, "bad.cfg").ok());
  auto again = trainbus::ParseRunConfig(trainbus::RunConfigToJson(*config), "json", "saved.json");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name(), "t");
  ASSERT_EQ(again->plugins_size(), 1);
  EXPECT_EQ(again->plugins(0).name(), "checkpoint");
}

}  // namespace
