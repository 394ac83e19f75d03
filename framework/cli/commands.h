// The `trainbus` subcommands. Each returns the process exit code and prints
// its own errors (to standard error), so main() stays a dispatcher.
#ifndef TRAINBUS_CLI_COMMANDS_H_
#define TRAINBUS_CLI_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace trainbus::cli {

int Train(const std::string& config_path, const std::vector<std::string>& overrides,
          const std::string& resume_path);
// `train --nproc N` (launch_command.cc): N local ranks of `trainbus train`.
int LaunchLocalRanks(int nproc, const std::vector<std::string>& child_args);
int ListPlugins(bool json);
int Plan(int64_t samples, int64_t batch_size, int64_t epochs, bool drop_last,
         int64_t max_iterations, const std::string& batch_schedule_json);
int Inspect(const std::string& logdir, bool json);

}  // namespace trainbus::cli

#endif  // TRAINBUS_CLI_COMMANDS_H_
