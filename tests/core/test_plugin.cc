// Plugins for the loader tests, one library per TEST_PLUGIN_KIND:
//   good           a working plugin named "test_good" (counts iterations, takes options)
//   no_entry       exports no trainbus_plugin_descriptor
//   wrong_api      claims plugin API version 999
//   wrong_abi      claims the other _GLIBCXX_USE_CXX11_ABI
//   wrong_torch    claims LibTorch 0.1
//   throws         its Create() throws
//   dup            a second library that is also named "test_good"
//   hangs          "test_hangs_in_close": its Close() never returns
//   crashes        "test_crashes": raises SIGSEGV or aborts (option "how") at
//                  step "crash_at" in OnIterationEnd, or in Close() (crash_at -2);
//                  how "thread": SIGSEGV on a thread the hook starts
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "trainbus/plugin.h"

namespace {

class TestPlugin : public trainbus::Plugin {
 public:
  static trainbus::PluginInfo Info() {
#if defined(TEST_PLUGIN_HANGS)
    const char* name = "test_hangs_in_close";
#elif defined(TEST_PLUGIN_CRASHES)
    const char* name = "test_crashes";
#else
    const char* name = "test_good";
#endif
    return {name, "2.3.4", "Loader test plugin",
            {{"stop_at", trainbus::OptionType::kInt, "-1", "Request a stop at this step"},
             {"label", trainbus::OptionType::kString, "\"x\"", "Any text"},
             {"crash_at", trainbus::OptionType::kInt, "-1", "crashes: step to crash at"},
             {"how", trainbus::OptionType::kString, "\"segv\"", "crashes: segv, abort or thread"}}};
  }
  static absl::StatusOr<std::unique_ptr<TestPlugin>> Create(const trainbus::PluginContext& ctx) {
#if defined(TEST_PLUGIN_THROWS)
    throw std::runtime_error("factory exploded on purpose");
#endif
    if (ctx.options.GetString("label") == "bad") {
      return absl::InvalidArgumentError("option 'label' must not be \"bad\"");
    }
    auto p = std::make_unique<TestPlugin>(ctx.options.GetInt("stop_at"));
    p->crash_at_ = ctx.options.GetInt("crash_at");
    const std::string how = ctx.options.GetString("how");
    p->abort_ = how == "abort";
    p->on_a_thread_ = how == "thread";
    return p;
  }
  explicit TestPlugin(int64_t stop_at) : stop_at_(stop_at) {}

  void OnIterationEnd(const trainbus::IterationEndEvent& e, trainbus::Control& c) override {
#if defined(TEST_PLUGIN_CRASHES)
    if (e.step == crash_at_) Crash();
#endif
    if (e.step == stop_at_) c.RequestStop(absl::StrCat("asked to stop at ", stop_at_));
    c.Publish(trainbus::Record::Scalar("test/iterations", static_cast<double>(e.step + 1), e.step));
  }

#if defined(TEST_PLUGIN_HANGS)
  absl::Status Close() override {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
#endif
#if defined(TEST_PLUGIN_CRASHES)
  absl::Status Close() override {
    if (crash_at_ == -2) Crash();
    return absl::OkStatus();
  }
  void Crash() {
    if (abort_) std::abort();
    if (on_a_thread_) std::thread([] { std::raise(SIGSEGV); }).join();  // raise(): this thread
    std::raise(SIGSEGV);
  }
#endif

 private:
  int64_t stop_at_;
  int64_t crash_at_ = -1;
  bool abort_ = false;
  bool on_a_thread_ = false;
};

}  // namespace

#if defined(TEST_PLUGIN_NO_ENTRY)
extern "C" __attribute__((visibility("default"))) int not_a_plugin() { return 1; }
#elif defined(TEST_PLUGIN_WRONG_API) || defined(TEST_PLUGIN_WRONG_ABI) || defined(TEST_PLUGIN_WRONG_TORCH)
extern "C" __attribute__((visibility("default"))) const TrainbusPluginDescriptor*
trainbus_plugin_descriptor() {
  static TrainbusPluginDescriptor d = *trainbus::internal::DescriptorFor<TestPlugin>();
#if defined(TEST_PLUGIN_WRONG_API)
  d.api_version = 999;
#elif defined(TEST_PLUGIN_WRONG_ABI)
  d.cxx11_abi = TRAINBUS_CXX11_ABI == 1 ? 0 : 1;
#else
  d.torch_version = "0.1";
#endif
  return &d;
}
#else
TRAINBUS_PLUGIN(TestPlugin)
#endif
