// tests/common/test_util.h — what many suites need: a temporary folder,
// running a command (or the trainbus program), reading a file.
//
//   trainbus::test_util::TempDir dir;               // removed at scope end
//   std::string cfg = dir.Write("run.json", "{}");  // a file in it
//   CommandResult r = RunTrainbus("train --config " + cfg);
//   EXPECT_EQ(r.exit_code, 0) << r.output;          // stdout and stderr together
//
// RunTrainbus exists where the suite defines TRAINBUS_BIN (the path of the
// trainbus program, from CMake's $<TARGET_FILE:trainbus>).
// Header-only: every suite is one test program, so nothing is linked twice.
#ifndef TRAINBUS_TESTS_COMMON_TEST_UTIL_H_
#define TRAINBUS_TESTS_COMMON_TEST_UTIL_H_

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace trainbus::test_util {

// A fresh folder under the system's temporary folder, removed with all it
// holds when the object goes away, also when a test made parts of it
// read-only.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "trainbus_test_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_directory(ec)) fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The path of `name` inside the folder (nothing is created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }
  // Writes `text` to `name` inside the folder; returns its path.
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = Sub(name);
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

 private:
  std::string path_;
};

// The whole content of a file ("" if it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code;       // -1 if the command did not exit normally
  std::string output;  // stdout and stderr, interleaved as written
};

// Runs `command` with /bin/sh and waits for it.
inline CommandResult RunCommand(const std::string& command) {
  FILE* pipe = ::popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed: " + command};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

#ifdef TRAINBUS_BIN
// Runs the trainbus program with `args` (shell words).
inline CommandResult RunTrainbus(const std::string& args) {
  return RunCommand(std::string(TRAINBUS_BIN) + " " + args);
}
#endif

}  // namespace trainbus::test_util

#endif  // TRAINBUS_TESTS_COMMON_TEST_UTIL_H_
