// trainbus/seen_names.h — the distinct metric names a plugin has seen.
//
// A plugin that watches one metric (early stopping's `monitor`, a plateau
// schedule's) should say which names it did see when its metric never
// appears: "metrics seen: train/accuracy, train/loss". SeenNames keeps them,
// sorted, up to kMaxNames.
//
// Note() runs on every metric of every iteration, so a name already kept
// costs one lookup and no allocation.
//
// Example:
//   trainbus::SeenNames seen_;
//   void OnIterationEnd(const IterationEndEvent& e, Control&) override {
//     for (const Metric& m : e.metrics) seen_.Note(m.name);
//   }
//   ... absl::StrCat("metrics seen: ", seen_.Text())
#ifndef TRAINBUS_SEEN_NAMES_H_
#define TRAINBUS_SEEN_NAMES_H_

#include <cstddef>
#include <functional>
#include <set>
#include <string>

#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace trainbus {

class SeenNames {
 public:
  static constexpr size_t kMaxNames = 200;

  void Note(absl::string_view name) {
    if (names_.size() < kMaxNames && names_.find(name) == names_.end()) names_.emplace(name);
  }
  bool empty() const { return names_.empty(); }
  // "train/accuracy, train/loss", or "(none)".
  std::string Text() const { return names_.empty() ? "(none)" : absl::StrJoin(names_, ", "); }

 private:
  std::set<std::string, std::less<>> names_;  // std::less<>: find() takes a string_view
};

}  // namespace trainbus

#endif  // TRAINBUS_SEEN_NAMES_H_
