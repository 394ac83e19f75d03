#include <iostream>

#include "cli/commands.h"

namespace trainbus::cli {

// Wired to the event-file reader in trainbus/tensorboard/inspect.h.
int Inspect(const std::string& logdir, bool json) {
  (void)json;
  std::cerr << "trainbus inspect " << logdir << ": the event-file reader is not built yet\n";
  return 2;
}

}  // namespace trainbus::cli
