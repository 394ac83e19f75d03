#include "trainbus/run_folder.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace trainbus {

absl::StatusOr<std::string> ClaimRunFolder(const std::string& log_root, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(log_root, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot create the log root ", log_root, ": ",
                                               ec.message(), "; check the path and permissions"));
  }
  for (int n = 1; n <= 100000; ++n) {
    const std::string candidate = n == 1 ? name : absl::StrCat(name, "-", n);
    const std::string path = (fs::path(log_root) / candidate).string();
    if (::mkdir(path.c_str(), 0755) == 0) return candidate;
    if (errno != EEXIST) {
      return absl::UnavailableError(absl::StrCat("cannot create the run folder ", path, ": ",
                                                 std::strerror(errno),
                                                 "; check the path and permissions"));
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "no free run folder name ", name, "-N in ", log_root, "; choose another name (--set name=...)"));
}

int RankFromEnvironment() {
  const char* world = std::getenv("WORLD_SIZE");
  const char* rank = std::getenv("RANK");
  if (world == nullptr || rank == nullptr || std::atoi(world) <= 1) return 0;
  return std::atoi(rank);
}

}  // namespace trainbus
