#include <iostream>

#include "cli/commands.h"
#include "trainbus/tensorboard/inspect.h"

namespace trainbus::cli {

int Inspect(const std::string& logdir, bool json) {
  auto report = tensorboard::InspectLogDir(logdir);
  if (!report.ok()) {
    std::cerr << "trainbus inspect: " << report.status().message() << "\n";
    return 2;
  }
  tensorboard::PrintInspectReport(*report, json, std::cout);
  return tensorboard::InspectExitCode(*report);
}

}  // namespace trainbus::cli
