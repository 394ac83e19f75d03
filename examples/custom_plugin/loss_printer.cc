// loss_printer — the smallest useful plugin: the one the README shows, built
// by the sdk test from the installed package, so the README's code compiles.
#include <cstdint>
#include <memory>

#include "absl/strings/str_cat.h"
#include "trainbus/plugin.h"

class LossPrinter : public trainbus::Plugin {
 public:
  static trainbus::PluginInfo Info() {
    return {"loss_printer", "1.0.0", "Prints the loss every N iterations",
            {{"every_n", trainbus::OptionType::kInt, "100", "Iterations between lines"}}};
  }
  static absl::StatusOr<std::unique_ptr<LossPrinter>> Create(const trainbus::PluginContext& ctx) {
    int64_t n = ctx.options.GetInt("every_n");
    if (n <= 0) return absl::InvalidArgumentError(absl::StrCat("option 'every_n' must be > 0, got ", n));
    return std::make_unique<LossPrinter>(n);
  }
  explicit LossPrinter(int64_t n) : n_(n) {}
  void OnIterationEnd(const trainbus::IterationEndEvent& e, trainbus::Control& control) override {
    if (trainbus::EveryN(n_, e.step)) control.Log(absl::StrCat("loss ", e.loss));  // the Nth, 2Nth, ...
  }
 private:
  int64_t n_;
};
TRAINBUS_PLUGIN(LossPrinter)
