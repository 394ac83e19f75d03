// trainbus/plugin.h — writing a plugin.
//
// A plugin is a class derived from trainbus::Plugin that overrides the hooks
// it cares about, built as a shared library with TRAINBUS_PLUGIN(Class):
//
//   #include "trainbus/plugin.h"
//
//   class LossPrinter : public trainbus::Plugin {
//    public:
//     static trainbus::PluginInfo Info() {
//       return {"loss_printer", "1.0.0", "Prints the loss every N iterations",
//               {{"every_n", trainbus::OptionType::kInt, "100", "Iterations between lines"}}};
//     }
//     static absl::StatusOr<std::unique_ptr<LossPrinter>> Create(
//         const trainbus::PluginContext& ctx) {
//       int64_t n = ctx.options.GetInt("every_n");
//       if (n <= 0) return absl::InvalidArgumentError("option 'every_n' must be > 0");
//       return std::make_unique<LossPrinter>(n);
//     }
//     explicit LossPrinter(int64_t n) : n_(n) {}
//
//     void OnIterationEnd(const trainbus::IterationEndEvent& e,
//                         trainbus::Control& control) override {
//       if (e.step % n_ == 0) control.Log(absl::StrCat("loss ", e.loss));
//     }
//
//    private:
//     int64_t n_;
//   };
//
//   TRAINBUS_PLUGIN(LossPrinter)
//
// Hooks: trainbus/hooks.h lists every hook, its event and when it runs
// (docs/PLUGINS.md prints the list). In the order of one iteration: OnIterationBegin,
// OnAfterBackward, OnBeforeOptimizerStep, OnIterationEnd. Close() runs once
// after OnTrainEnd, on a thread of the bus's, within a time limit (the run
// config's plugin_close_timeout_seconds, default 120 s; see trainbus/bus.h).
//
// Rules:
//   - Hooks run synchronously on the training thread, in a stable order:
//     lower `priority` first, then config order. Keep them fast; do slow work
//     (disk, network, compression) on a thread of your own.
//   - Only overridden hooks (and Close()) are called: TRAINBUS_PLUGIN detects
//     overrides of Class at compile time, so a plugin costs nothing for events
//     it ignores. Create() must therefore return a Class, not a subclass that
//     overrides more: that subclass's extra hooks and Close() would be missed.
//   - A hook may throw. The bus catches it, names plugin, hook and step, and
//     applies the run's policy: stop the run cleanly (default; every plugin
//     still gets OnTrainEnd and Close) or disable this plugin and go on.
//   - State: override SaveState()/LoadState() when a resumed run must continue
//     exactly (counters, best values). The checkpoint plugin stores the bytes.
//   - Errors that must not be lost (e.g. a failed write) are returned from
//     Close(); the run then ends with that error.
//   - Plugins that write files override FlushForCheckpoint(): a checkpoint
//     commits only once they have written everything up to its step.
#ifndef TRAINBUS_PLUGIN_H_
#define TRAINBUS_PLUGIN_H_

#include <cstdint>
#include <functional>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainbus/control.h"
#include "trainbus/events.h"
#include "trainbus/hooks.h"
#include "trainbus/options.h"
#include "trainbus/record.h"
#include "trainbus/version.h"

namespace trainbus {

// What a plugin does that its host must know. The host decides from these,
// never from a plugin's name.
enum Capability : uint32_t {
  // Writes into the run folder (event files, csv, checkpoints) or draws on
  // the console: in a distributed run only rank 0 loads it.
  kWritesOutput = 1u << 0,
  // With kWritesOutput: load it on every rank anyway (it writes per-rank
  // files of its own, under a name that includes RunInfo::rank).
  kOnEveryRank = 1u << 1,
};

// What a plugin tells about itself; shown by `trainbus plugins`.
struct PluginInfo {
  std::string name;         // unique; the name used in run configs
  std::string version;      // the plugin's own version, e.g. "1.2.0"
  std::string description;  // one line
  std::vector<OptionSpec> options;
  // Delivery priority when the run config gives none (lower runs first).
  int default_priority = 0;
  // Capability bits (kWritesOutput, ...); 0: runs on every rank, writes nothing.
  uint32_t capabilities = 0;
};

// Whether a plugin with `info` is loaded on `rank` of a distributed run.
inline bool LoadsOnRank(const PluginInfo& info, int rank) {
  return rank == 0 || !(info.capabilities & kWritesOutput) || (info.capabilities & kOnEveryRank);
}

// Everything a plugin's Create() gets.
struct PluginContext {
  std::string name;        // the plugin's name, e.g. "early_stopping"
  // This instance's name: the config's `id`, or `name` when it gives none. A
  // run may hold several instances of one plugin, each with its own id; use
  // it (not `name`) as the prefix of the tags you publish and of your files:
  // instance() gives it, falling back to `name` when a host left it empty.
  std::string id;
  PluginOptions options;   // validated, defaults filled in
  std::string log_dir;     // the run's directory for files (may not exist yet)
  std::string library_path;  // where the plugin was loaded from ("" if built in)

  const std::string& instance() const { return id.empty() ? name : id; }
};

class Plugin {
 public:
  virtual ~Plugin() = default;

  // One virtual per hook of trainbus/hooks.h, each doing nothing:
  //   virtual void OnTrainBegin(const TrainBeginEvent&, Control&) {}
  //   virtual void OnIterationEnd(const IterationEndEvent&, Control&) {}
  //   ... and OnRecord(const Record&, Control&).
#define TRAINBUS_PLUGIN_VIRTUAL_(name, event, when) \
  virtual void On##name(const event&, Control&) {}
  TRAINBUS_HOOKS(TRAINBUS_PLUGIN_VIRTUAL_)
#undef TRAINBUS_PLUGIN_VIRTUAL_

  // Called once after OnTrainEnd: flush and close files, join threads.
  // A non-OK status makes the run end with that error. Runs on a thread of
  // the bus's within the run's close time limit; past it, the run ends
  // with a kDeadlineExceeded error naming this plugin, and the plugin is
  // never destroyed while Close() may still be running.
  virtual absl::Status Close() { return absl::OkStatus(); }

  // Durability barrier for checkpoints: a checkpoint is committed (renamed
  // into place, `latest` updated) only after every plugin has written what
  // it was given up to the checkpoint's step, so a kill at any moment
  // followed by --resume loses and doubles nothing. Called on the training
  // thread while a checkpoint is taken: start writing if you buffer (never
  // wait here) and return a function that the checkpoint thread calls
  // before the commit; it waits until that data is written to the OS (or
  // to the disk, if the plugin fsyncs) and returns the error if it could not
  // be. Plugins that write no files keep the default: nullptr.
  virtual std::function<absl::Status()> FlushForCheckpoint() { return nullptr; }

  // State for exact resume. An empty string means "nothing to save".
  virtual absl::StatusOr<std::string> SaveState() { return std::string(); }
  virtual absl::Status LoadState(absl::string_view /*state*/) { return absl::OkStatus(); }

  // Which hooks this plugin implements, and kClosesNothing when it does not
  // override Close() (set by TRAINBUS_PLUGIN / MakePlugin). Set by hand, use
  // kHook* bits or kAllHooks: other bits are reserved.
  uint32_t hooks() const { return hooks_; }
  void set_hooks(uint32_t mask) { hooks_ = mask; }

 private:
  uint32_t hooks_ = kAllHooks;
};

// Not a hook: the mask bit HooksOf() sets when a plugin keeps the default,
// empty Close(). Bus::CloseAll skips such a plugin instead of handing it to
// its closer thread (two thread wake-ups each). It says "nothing to close"
// rather than "closes", so that a mask without it (set by hand, or by a plugin
// built before the bit existed) still gets Close() called, as it always did.
inline constexpr uint32_t kClosesNothing = 1u << 31;
static_assert(kNumHooks < 31, "kClosesNothing must not overlap a hook's bit");

// True when a plugin with hook mask `mask` need not have Close() called: the
// mask is HooksOf()'s and says so. A mask with any other reserved bit set
// (e.g. ~0u written by hand for "everything") is closed, as before the bit.
constexpr bool ClosesNothing(uint32_t mask) { return (mask & ~kAllHooks) == kClosesNothing; }

namespace internal {
// Overrides<member>::value: T (or a base between it and Plugin) declares the
// member. `&T::OnX` has type `void (Plugin::*)(...)` unless T redeclares OnX.
// A redeclaration made private or protected cannot be named from here
// (substitution fails): it is an override too, as only one can hide Plugin's.
#define TRAINBUS_OVERRIDES_(member)                                                       \
  template <class T, class = void>                                                       \
  struct Overrides##member : std::true_type {};                                          \
  template <class T>                                                                     \
  struct Overrides##member<T, std::void_t<decltype(&T::member)>>                         \
      : std::bool_constant<!std::is_same_v<decltype(&T::member), decltype(&Plugin::member)>> {};
#define TRAINBUS_OVERRIDES_HOOK_(name, event, when) TRAINBUS_OVERRIDES_(On##name)
TRAINBUS_HOOKS(TRAINBUS_OVERRIDES_HOOK_)
TRAINBUS_OVERRIDES_(Close)
TRAINBUS_OVERRIDES_(SaveState)
TRAINBUS_OVERRIDES_(FlushForCheckpoint)
#undef TRAINBUS_OVERRIDES_HOOK_
#undef TRAINBUS_OVERRIDES_
}  // namespace internal

// The hooks `T` overrides, found at compile time, plus kClosesNothing when it
// does not override Close(). Overrides may be public, protected or private.
template <class T>
constexpr uint32_t HooksOf() {
  static_assert(std::is_base_of_v<Plugin, T>, "T must derive from trainbus::Plugin");
  uint32_t m = 0;
#define TRAINBUS_HOOK_BIT_(name, event, when) \
  if (internal::OverridesOn##name<T>::value) m |= kHook##name;
  TRAINBUS_HOOKS(TRAINBUS_HOOK_BIT_)
#undef TRAINBUS_HOOK_BIT_
  if (!internal::OverridesClose<T>::value) m |= kClosesNothing;
  return m;
}

// Other overrides the host reports (`trainbus plugins`), found the same way.
enum PluginExtra : uint32_t {
  kKeepsState = 1u << 0,            // overrides SaveState: restored by --resume
  kFlushesForCheckpoint = 1u << 1,  // overrides FlushForCheckpoint: writes files
};
template <class T>
constexpr uint32_t ExtrasOf() {
  uint32_t m = 0;
  if (internal::OverridesSaveState<T>::value) m |= kKeepsState;
  if (internal::OverridesFlushForCheckpoint<T>::value) m |= kFlushesForCheckpoint;
  return m;
}

// Creates a plugin object in-process (no shared library) with its hook mask
// set, e.g. for a Session in a user's own program or in tests.
template <class T, class... Args>
std::unique_ptr<T> MakePlugin(Args&&... args) {
  auto p = std::make_unique<T>(std::forward<Args>(args)...);
  p->set_hooks(HooksOf<T>());
  return p;
}

}  // namespace trainbus

// ---------------------------------------------------------------------------
// The shared-library boundary.
//
// Each plugin library exports one C function, `trainbus_plugin_descriptor`,
// returning a descriptor whose leading fields are plain C so that the loader
// can check compatibility before any C++ object crosses. The loader rejects a
// library whose api_version, descriptor_size, LibTorch version or
// _GLIBCXX_USE_CXX11_ABI differ from its own, naming the file and both values.
extern "C" {
struct TrainbusPluginDescriptor {
  uint32_t descriptor_size;  // sizeof(TrainbusPluginDescriptor) the plugin was built with
  uint32_t api_version;      // TRAINBUS_PLUGIN_API_VERSION
  const char* name;
  const char* version;
  const char* torch_version;  // "major.minor" of the LibTorch headers
  int32_t cxx11_abi;          // _GLIBCXX_USE_CXX11_ABI
  const char* compiler_id;    // e.g. "GCC 12.2.0"
  uint32_t hooks;             // trainbus::Hook bits the plugin implements (+ kClosesNothing)
  uint32_t extras;            // trainbus::PluginExtra bits (keeps state, ...)
  // Valid only once the fields above matched the host:
  const trainbus::PluginInfo* (*info)();
  absl::StatusOr<std::unique_ptr<trainbus::Plugin>> (*create)(const trainbus::PluginContext&);
};
typedef const TrainbusPluginDescriptor* (*TrainbusPluginEntryFn)();
}

#define TRAINBUS_PLUGIN_ENTRY_SYMBOL "trainbus_plugin_descriptor"

namespace trainbus::internal {

template <class T>
const TrainbusPluginDescriptor* DescriptorFor() {
  static const PluginInfo info = T::Info();
  static const TrainbusPluginDescriptor descriptor = {
      sizeof(TrainbusPluginDescriptor),
      TRAINBUS_PLUGIN_API_VERSION,
      info.name.c_str(),
      info.version.c_str(),
      TRAINBUS_TORCH_VERSION,
      TRAINBUS_CXX11_ABI,
      TRAINBUS_COMPILER_ID,
      HooksOf<T>(),
      ExtrasOf<T>(),
      []() -> const PluginInfo* { return &info; },
      [](const PluginContext& ctx) -> absl::StatusOr<std::unique_ptr<Plugin>> {
        auto made = T::Create(ctx);
        if (!made.ok()) return made.status();
        std::unique_ptr<Plugin> plugin = std::move(made).value();
        if (plugin == nullptr) return absl::InternalError("Create() returned null");
        plugin->set_hooks(HooksOf<T>());
        return plugin;
      },
  };
  return &descriptor;
}

}  // namespace trainbus::internal

// Makes the enclosing shared library a trainbus plugin for class `Class`,
// which must provide `static trainbus::PluginInfo Info()` and
// `static absl::StatusOr<std::unique_ptr<Class>> Create(const trainbus::PluginContext&)`.
// Use once per library.
#define TRAINBUS_PLUGIN(Class)                                                    \
  extern "C" __attribute__((visibility("default"))) const TrainbusPluginDescriptor* \
  trainbus_plugin_descriptor() {                                                  \
    return ::trainbus::internal::DescriptorFor<Class>();                          \
  }

#endif  // TRAINBUS_PLUGIN_H_
