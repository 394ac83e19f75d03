// trainbus/plugin_loader.h — finds plugin libraries and creates plugins from them.
//
// Where plugins are looked for, in this order:
//   1. the plugin folder of this trainbus (the build tree's `plugins/`, or
//      `<libdir>/trainbus/plugins` of an installed trainbus);
//   2. each folder in the TRAINBUS_PLUGIN_PATH environment variable (':'-separated);
//   3. folders given in the run config (`plugin_paths`).
// A plugin named "x" is normally the file `libtrainbus_x.so`; any other `.so`
// in those folders that exports `trainbus_plugin_descriptor` is found too.
// A config entry may also name a library file directly (`library: "path.so"`).
//
// Loading opens the library with RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE (it is
// never unloaded, so objects whose code lives in it stay valid for the whole
// process), then checks the descriptor before any C++ object crosses:
// descriptor size, plugin API version, LibTorch major.minor and
// _GLIBCXX_USE_CXX11_ABI must equal the host's. Every failure is an
// absl::Status naming the file and what to do:
//   - NotFound: no library for the name (lists every folder searched), or the
//     given file does not exist;
//   - InvalidArgument: not a trainbus plugin (no entry symbol), or dlopen
//     failed (its message, e.g. a missing dependency);
//   - FailedPrecondition: API or ABI mismatch, with both values;
//   - AlreadyExists: two libraries provide the same plugin name;
//   - Internal / the plugin's own code: Create() failed or threw.
#ifndef TRAINBUS_PLUGIN_LOADER_H_
#define TRAINBUS_PLUGIN_LOADER_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "trainbus/plugin.h"

namespace trainbus {

// A library that passed the checks.
struct PluginLibrary {
  std::string path;  // as opened (absolute)
  const TrainbusPluginDescriptor* descriptor = nullptr;
  const PluginInfo& info() const { return *descriptor->info(); }
};

// A loader scans its folders once, at its first Find() or Discover(), and
// answers every later call from that scan: a session loading several plugins
// opens each library once. TRAINBUS_PLUGIN_PATH is read when the loader is
// made; a library added to a folder after the scan is seen by a new loader.
// Thread-safe.
class PluginLoader {
 public:
  // Searches the default folders (1 and 2 above) plus `extra_dirs`.
  explicit PluginLoader(std::vector<std::string> extra_dirs = {});

  // The folders searched, in order.
  const std::vector<std::string>& search_dirs() const { return dirs_; }

  // Opens and checks one library file.
  static absl::StatusOr<PluginLibrary> Open(const std::string& path);

  // Finds the library providing plugin `name` in the search folders.
  absl::StatusOr<PluginLibrary> Find(const std::string& name) const;

  // Every plugin library in the search folders. Files that fail the checks
  // are returned in `problems` (one message each) instead of failing the scan.
  std::vector<PluginLibrary> Discover(std::vector<std::string>* problems = nullptr) const;

  // The library of plugin `name`: `library_path` if not empty, else by
  // Find(); InvalidArgument when it provides another plugin.
  absl::StatusOr<PluginLibrary> Resolve(const std::string& name,
                                        const std::string& library_path) const;

  // Creates plugin `name` from `lib` as the instance `id` (PluginContext::id;
  // empty: the name), validating `options` against its declared options first.
  static absl::StatusOr<std::unique_ptr<Plugin>> Create(const PluginLibrary& lib,
                                                        const std::string& name,
                                                        const google::protobuf::Struct& options,
                                                        const std::string& log_dir,
                                                        const std::string& id = "");
  // Resolve() then Create().
  absl::StatusOr<std::unique_ptr<Plugin>> Create(const std::string& name,
                                                 const std::string& library_path,
                                                 const google::protobuf::Struct& options,
                                                 const std::string& log_dir) const;

  // The host's plugin folder (1 above).
  static std::string BuiltinPluginDir();

 private:
  // One `.so` of the search folders, in search order: the path as listed in
  // its folder, and the library or why it failed a check.
  struct ScannedFile {
    std::string listed;
    absl::StatusOr<PluginLibrary> lib;
  };
  const std::vector<ScannedFile>& ScanOnce() const;
  // Open() of an existing file's canonical path.
  static absl::StatusOr<PluginLibrary> OpenResolved(const std::string& abs);

  std::vector<std::string> dirs_;
  mutable std::once_flag scanned_;
  mutable std::vector<ScannedFile> scanned_files_;  // written once, under scanned_
};

}  // namespace trainbus

#endif  // TRAINBUS_PLUGIN_LOADER_H_
