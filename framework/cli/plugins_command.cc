#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "google/protobuf/util/json_util.h"
#include "trainbus/plugin_loader.h"

namespace trainbus::cli {
namespace {

std::string JsonString(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(v, &out);
  return out;
}

// Where a plugin runs in a distributed run, from its capabilities.
const char* Ranks(const PluginInfo& info) {
  if (!(info.capabilities & kWritesOutput)) return "every rank";
  return (info.capabilities & kOnEveryRank) ? "every rank (writes per-rank output)"
                                            : "rank 0 only (writes output)";
}

}  // namespace

int ListPlugins(bool json) {
  PluginLoader loader;
  std::vector<std::string> problems;
  std::vector<PluginLibrary> libs = loader.Discover(&problems);
  if (json) {
    std::cout << "{\"search_dirs\": [";
    for (size_t i = 0; i < loader.search_dirs().size(); ++i) {
      std::cout << (i ? ", " : "") << JsonString(loader.search_dirs()[i]);
    }
    // The hook list of trainbus/hooks.h, for docs generated from it.
    std::cout << "], \"hooks\": [";
    for (int h = 0; h < kNumHooks; ++h) {
      std::cout << (h ? ", " : "") << "{\"name\": " << JsonString(HookName(h))
                << ", \"when\": " << JsonString(HookDescription(h)) << "}";
    }
    std::cout << "], \"plugins\": [";
    for (size_t i = 0; i < libs.size(); ++i) {
      const PluginInfo& info = libs[i].info();
      std::cout << (i ? ", " : "") << "{\"name\": " << JsonString(info.name)
                << ", \"version\": " << JsonString(info.version)
                << ", \"library\": " << JsonString(libs[i].path)
                << ", \"description\": " << JsonString(info.description)
                << ", \"hooks\": " << JsonString(HookMaskToString(libs[i].descriptor->hooks))
                << ", \"ranks\": " << JsonString(Ranks(info))
                << ", \"keeps_state\": "
                << ((libs[i].descriptor->extras & kKeepsState) ? "true" : "false")
                << ", \"default_priority\": " << info.default_priority
                << ", \"options\": [";
      for (size_t k = 0; k < info.options.size(); ++k) {
        const OptionSpec& o = info.options[k];
        std::cout << (k ? ", " : "") << "{\"name\": " << JsonString(o.name)
                  << ", \"type\": " << JsonString(OptionTypeName(o.type))
                  << ", \"default\": " << JsonString(o.default_json)
                  << ", \"help\": " << JsonString(o.help) << "}";
      }
      std::cout << "]}";
    }
    std::cout << "], \"problems\": [";
    for (size_t i = 0; i < problems.size(); ++i) std::cout << (i ? ", " : "") << JsonString(problems[i]);
    std::cout << "]}\n";
    return problems.empty() ? 0 : 1;
  }
  std::cout << "Plugin folders searched:\n";
  for (const std::string& d : loader.search_dirs()) std::cout << "  " << d << "\n";
  if (libs.empty()) std::cout << "\nNo plugins found.\n";
  for (const PluginLibrary& lib : libs) {
    const PluginInfo& info = lib.info();
    std::cout << "\n" << info.name << " " << info.version << " — " << info.description << "\n"
              << "  library: " << lib.path << "\n"
              << "  built with: LibTorch " << lib.descriptor->torch_version << ", "
              << lib.descriptor->compiler_id << "\n"
              << "  hooks:   " << HookMaskToString(lib.descriptor->hooks) << "\n"
              << "  runs on: " << Ranks(info) << ", priority " << info.default_priority << "\n"
              << "  state:   "
              << ((lib.descriptor->extras & kKeepsState) ? "saved with checkpoints, restored by --resume"
                                                          : "none (nothing to restore on --resume)")
              << "\n";
    if (info.options.empty()) {
      std::cout << "  options: (none)\n";
      continue;
    }
    std::cout << "  options:\n";
    for (const OptionSpec& o : info.options) {
      std::cout << "    " << o.name << " (" << OptionTypeName(o.type)
                << (o.default_json.empty() ? ", no default" : absl::StrCat(", default ", o.default_json))
                << ")\n        " << o.help << "\n";
    }
  }
  if (!problems.empty()) {
    std::cout << "\nLibraries that could not be loaded:\n";
    for (const std::string& p : problems) std::cout << "  " << p << "\n";
    return 1;
  }
  return 0;
}

}  // namespace trainbus::cli
