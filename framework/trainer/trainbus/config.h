// trainbus/config.h — reading, overriding and checking a run config.
//
// A run config is the protobuf message trainbus.config.RunConfig
// (framework/trainer/trainbus/proto/run_config.proto), written as JSON or as
// protobuf text format and parsed by protobuf's own parsers:
//
//   auto config = trainbus::LoadRunConfig("examples/shapes/config.json");
//   if (!config.ok()) { std::cerr << config.status().message(); return 1; }
//   absl::Status s = trainbus::ApplyOverride(&*config, "trainer.epochs=3");
//   s = trainbus::FinalizeRunConfig(&*config, "examples/shapes/config.json");
//
// The format comes from the extension (.json; .txtpb/.textproto/.pbtxt/.cfg)
// or, for any other name, from the first character ('{' means JSON).
//
// Every error names the file and the field or key, and what is wrong:
//   config.json: INVALID_ARGUMENT: ... Cannot find field: epochz
//   config.json: trainer.batch_size must be > 0, got 0
//   --set trainer.epochs=x: trainer.epochs expects an integer, got "x"
//
// Overrides (`trainbus train --set key=value`) address fields by their path:
//   trainer.epochs=3   optimizer.type=adam   name=my-run
//   plugins.<name>.<field>=...           (e.g. plugins.progress.enabled=false)
//   plugins.<name>.options.<key>=<JSON>  (e.g. plugins.tensorboard.options.flush_secs=5)
// A value for an option is parsed as JSON when it is valid JSON, else taken
// as a string.
#ifndef TRAINBUS_CONFIG_H_
#define TRAINBUS_CONFIG_H_

#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "trainbus/proto/run_config.pb.h"

namespace trainbus {

// Reads and parses a config file (no defaults applied, no range checks).
// Relative `plugin_paths` and plugin `library` entries become paths from the
// config file's folder.
absl::StatusOr<config::RunConfig> LoadRunConfig(const std::string& path);

// Parses config text. `format` is "json" or "text"; `origin` names the source
// in error messages.
absl::StatusOr<config::RunConfig> ParseRunConfig(absl::string_view text, absl::string_view format,
                                                 absl::string_view origin);

// Applies one "path=value" assignment (see above).
absl::Status ApplyOverride(config::RunConfig* config, absl::string_view assignment);

// Fills every unset field with its default and checks every value's range.
absl::Status FinalizeRunConfig(config::RunConfig* config, absl::string_view origin);

// trainer.batch_size as a number of samples: "full" is the training set's size.
int64_t ResolveBatchSize(const config::TrainerConfig& trainer, int64_t samples);

// The config as pretty JSON (for logs and for saving next to the run).
std::string RunConfigToJson(const config::RunConfig& config);

}  // namespace trainbus

#endif  // TRAINBUS_CONFIG_H_
