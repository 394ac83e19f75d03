#include "trainbus/plugin_loader.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"

namespace trainbus {
namespace fs = std::filesystem;
namespace {

std::string Canonical(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

std::string LibraryFileFor(const std::string& name) { return absl::StrCat("libtrainbus_", name, ".so"); }

// The folder holding the shared library that contains this function.
std::string ThisLibraryDir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ThisLibraryDir), &info) == 0 || info.dli_fname == nullptr) {
    return "";
  }
  return fs::path(Canonical(info.dli_fname)).parent_path().string();
}

absl::Status Mismatch(const std::string& path, absl::string_view what, absl::string_view plugin_value,
                      absl::string_view host_value) {
  return absl::FailedPreconditionError(absl::StrCat(
      path, ": ", what, " mismatch: the plugin was built with ", plugin_value,
      ", this trainbus has ", host_value,
      ". Rebuild the plugin against this trainbus (same LibTorch and compiler settings)."));
}

}  // namespace

std::string PluginLoader::BuiltinPluginDir() {
  std::string here = ThisLibraryDir();
#if defined(TRAINBUS_BUILD_FRAMEWORK_DIR) && defined(TRAINBUS_BUILD_PLUGIN_DIR)
  // Running from the build tree: plugins sit in the build's plugin folder.
  if (here.empty() || here == Canonical(TRAINBUS_BUILD_FRAMEWORK_DIR)) {
    return TRAINBUS_BUILD_PLUGIN_DIR;
  }
#endif
  // Installed: <libdir>/libtrainbus_core.so and <libdir>/trainbus/plugins/.
  return (fs::path(here) / "trainbus" / "plugins").string();
}

PluginLoader::PluginLoader(std::vector<std::string> extra_dirs) {
  std::set<std::string> seen;
  auto add = [&](const std::string& dir) {
    if (dir.empty()) return;
    std::string c = Canonical(dir);
    if (seen.insert(c).second) dirs_.push_back(c);
  };
  add(BuiltinPluginDir());
  if (const char* env = std::getenv("TRAINBUS_PLUGIN_PATH")) {
    for (absl::string_view d : absl::StrSplit(env, ':', absl::SkipEmpty())) add(std::string(d));
  }
  for (const std::string& d : extra_dirs) add(d);
}

absl::StatusOr<PluginLibrary> PluginLoader::Open(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat("plugin library ", path, " does not exist"));
  }
  return OpenResolved(Canonical(path));
}

absl::StatusOr<PluginLibrary> PluginLoader::OpenResolved(const std::string& abs) {
  void* handle = dlopen(abs.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    return absl::InvalidArgumentError(absl::StrCat("cannot load plugin library ", abs, ": ",
                                                   err ? err : "dlopen failed",
                                                   ". Check that its dependencies are installed."));
  }
  // The library stays loaded (RTLD_NODELETE): plugin objects, their vtables
  // and tensors with plugin deleters must outlive any handle we hold.
  auto entry = reinterpret_cast<TrainbusPluginEntryFn>(dlsym(handle, TRAINBUS_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    dlclose(handle);
    return absl::InvalidArgumentError(absl::StrCat(
        abs, " is not a trainbus plugin: it does not export ", TRAINBUS_PLUGIN_ENTRY_SYMBOL,
        ". Add TRAINBUS_PLUGIN(YourPluginClass) to one source file of the library."));
  }
  const TrainbusPluginDescriptor* d = entry();
  if (d == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(abs, ": ", TRAINBUS_PLUGIN_ENTRY_SYMBOL, "() returned null"));
  }
  // Compare the C fields first; nothing C++ is touched until they all match.
  if (d->descriptor_size != sizeof(TrainbusPluginDescriptor)) {
    return Mismatch(abs, "plugin descriptor size", absl::StrCat(d->descriptor_size, " bytes"),
                    absl::StrCat(sizeof(TrainbusPluginDescriptor), " bytes"));
  }
  if (d->api_version != TRAINBUS_PLUGIN_API_VERSION) {
    return Mismatch(abs, "plugin API version", absl::StrCat("API ", d->api_version),
                    absl::StrCat("API ", TRAINBUS_PLUGIN_API_VERSION));
  }
  if (d->torch_version == nullptr || std::strcmp(d->torch_version, TRAINBUS_TORCH_VERSION) != 0) {
    return Mismatch(abs, "LibTorch version",
                    absl::StrCat("LibTorch ", d->torch_version ? d->torch_version : "(null)"),
                    absl::StrCat("LibTorch ", TRAINBUS_TORCH_VERSION));
  }
  if (d->cxx11_abi != TRAINBUS_CXX11_ABI) {
    return Mismatch(abs, "C++ ABI", absl::StrCat("_GLIBCXX_USE_CXX11_ABI=", d->cxx11_abi),
                    absl::StrCat("_GLIBCXX_USE_CXX11_ABI=", TRAINBUS_CXX11_ABI));
  }
  if (d->info == nullptr || d->create == nullptr || d->name == nullptr || d->name[0] == '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat(abs, ": the plugin descriptor has no name, info or create function"));
  }
  PluginLibrary lib{abs, d};
  if (absl::Status s = PluginOptions::CheckDefaults(
          lib.info().options, absl::StrCat(abs, ": plugin '", d->name, "'"));
      !s.ok()) {
    return s;
  }
  return lib;
}

std::vector<PluginLibrary> PluginLoader::Discover(std::vector<std::string>* problems) const {
  std::vector<PluginLibrary> found;
  for (const ScannedFile& f : ScanOnce()) {
    if (f.lib.ok()) {
      found.push_back(*f.lib);
    } else if (problems != nullptr) {
      problems->push_back(std::string(f.lib.status().message()));
    }
  }
  return found;
}

const std::vector<PluginLoader::ScannedFile>& PluginLoader::ScanOnce() const {
  // Opening and canonicalising every library of every folder costs hundreds
  // of readlink calls: once per loader, not once per plugin looked up. Built
  // aside and kept whole: a scan that throws leaves nothing half done.
  std::call_once(scanned_, [this] {
    std::vector<ScannedFile> scan;
    std::set<std::string> seen_files;
    for (const std::string& dir : dirs_) {
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) continue;
      std::vector<std::string> files;
      for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
           it.increment(ec)) {
        const std::string f = it->path().string();
        std::error_code type_ec;
        if (absl::EndsWith(f, ".so") && it->is_regular_file(type_ec)) files.push_back(f);
      }
      std::sort(files.begin(), files.end());
      for (const std::string& f : files) {
        // Listed as a regular file: resolved once, for the check and the load.
        std::string abs = Canonical(f);
        if (!seen_files.insert(abs).second) continue;
        scan.push_back(ScannedFile{f, OpenResolved(abs)});
      }
    }
    scanned_files_ = std::move(scan);
  });
  return scanned_files_;
}

absl::StatusOr<PluginLibrary> PluginLoader::Find(const std::string& name) const {
  const std::vector<ScannedFile>& scan = ScanOnce();
  // The conventional file name first, in search order: when it fails a
  // check, that failure is the answer.
  std::vector<PluginLibrary> matches;
  for (const std::string& dir : dirs_) {
    const std::string candidate = (fs::path(dir) / LibraryFileFor(name)).string();
    for (const ScannedFile& f : scan) {
      if (f.listed != candidate) continue;
      if (!f.lib.ok()) return f.lib.status();
      if (f.lib->descriptor->name == name) matches.push_back(*f.lib);
    }
  }
  // Any other library in the folders that declares this name.
  for (const ScannedFile& f : scan) {
    if (!f.lib.ok() || f.lib->descriptor->name != name) continue;
    bool dup = false;
    for (const auto& m : matches) dup |= (m.path == f.lib->path);
    if (!dup) matches.push_back(*f.lib);
  }
  if (matches.size() > 1) {
    std::vector<std::string> paths;
    for (const auto& m : matches) paths.push_back(m.path);
    return absl::AlreadyExistsError(absl::StrCat(
        "two plugins are named '", name, "': ", absl::StrJoin(paths, " and "),
        ". Remove one, or give the one you want with `library:` in the plugin's config entry."));
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no plugin named '", name, "' (looked for ", LibraryFileFor(name),
        " and any trainbus plugin library in: ", absl::StrJoin(dirs_, ", "),
        "). Build it, add its folder to TRAINBUS_PLUGIN_PATH or `plugin_paths`, or give "
        "`library:` in the config; `trainbus plugins` lists what is found."));
  }
  return matches.front();
}

absl::StatusOr<PluginLibrary> PluginLoader::Resolve(const std::string& name,
                                                    const std::string& library_path) const {
  absl::StatusOr<PluginLibrary> lib =
      library_path.empty() ? Find(name) : Open(library_path);
  if (!lib.ok()) {
    if (!library_path.empty() && absl::IsNotFound(lib.status())) {
      return absl::NotFoundError(absl::StrCat("plugin '", name, "': library ", library_path,
                                              " does not exist (a relative path in a config file is "
                                              "taken from that file's folder; from --set, from ",
                                              fs::current_path().string(), ")"));
    }
    return lib.status();
  }
  if (lib->descriptor->name != name) {
    return absl::InvalidArgumentError(absl::StrCat("plugin '", name, "': ", lib->path,
                                                   " provides plugin '", lib->descriptor->name,
                                                   "', not '", name, "'"));
  }
  return lib;
}

absl::StatusOr<std::unique_ptr<Plugin>> PluginLoader::Create(
    const std::string& name, const std::string& library_path,
    const google::protobuf::Struct& options, const std::string& log_dir) const {
  absl::StatusOr<PluginLibrary> lib = Resolve(name, library_path);
  if (!lib.ok()) return lib.status();
  return Create(*lib, name, options, log_dir);
}

absl::StatusOr<std::unique_ptr<Plugin>> PluginLoader::Create(
    const PluginLibrary& lib, const std::string& name, const google::protobuf::Struct& options,
    const std::string& log_dir, const std::string& id) {
  const std::string instance = id.empty() ? name : id;
  std::string where = instance == name ? absl::StrCat("plugin '", name, "'")
                                       : absl::StrCat("plugin '", instance, "' (", name, ")");
  PluginContext ctx;
  ctx.name = name;
  ctx.id = instance;
  ctx.log_dir = log_dir;
  ctx.library_path = lib.path;
  try {
    auto opts = PluginOptions::Create(lib.info().options, options, where);
    if (!opts.ok()) return opts.status();
    ctx.options = *std::move(opts);
    auto plugin = lib.descriptor->create(ctx);
    if (!plugin.ok()) {
      return absl::Status(plugin.status().code(),
                          absl::StrCat(where, " (", lib.path, "): ", plugin.status().message()));
    }
    return std::move(plugin).value();
  } catch (const std::exception& ex) {
    return absl::InternalError(
        absl::StrCat(where, " (", lib.path, "): creating the plugin threw: ", ex.what()));
  } catch (...) {
    return absl::InternalError(
        absl::StrCat(where, " (", lib.path, "): creating the plugin threw an unknown exception"));
  }
}

}  // namespace trainbus
