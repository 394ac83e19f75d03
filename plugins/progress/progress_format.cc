#include "progress_format.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace trainbus::progress {

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "--:--";
  int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return absl::StrFormat("%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%02d:%02d", s / 60, s % 60);
}

std::string FormatProgress(const ProgressLine& p, int bar_width) {
  std::string out = p.epochs > 0 ? absl::StrCat("epoch ", p.epoch + 1, "/", p.epochs)
                                 : absl::StrCat("epoch ", p.epoch + 1);
  if (p.total > 0 && bar_width > 0) {
    const int filled = static_cast<int>(static_cast<double>(bar_width) *
                                        std::min<int64_t>(p.done, p.total) / p.total);
    std::string bar(bar_width, ' ');
    for (int i = 0; i < filled; ++i) bar[i] = '=';
    if (filled < bar_width) bar[filled] = '>';
    absl::StrAppend(&out, " [", bar, "] ", p.done, "/", p.total);
  } else {
    absl::StrAppend(&out, " ", p.done);
  }
  absl::StrAppend(&out, " it ", absl::StrFormat("%.0f", p.its_per_second), " it/s loss ",
                  absl::StrFormat("%.3f", p.loss));
  if (p.lr) absl::StrAppend(&out, " lr ", absl::StrFormat("%.1e", *p.lr));
  if (p.total > 0) absl::StrAppend(&out, " ETA ", FormatDuration(p.eta_seconds));
  return out;
}

std::string FormatEpochSummary(int64_t epoch, int64_t epochs, int64_t iterations,
                               double seconds, double mean_loss,
                               absl::Span<const Metric> metrics, bool complete) {
  std::string out = epochs > 0 ? absl::StrCat("epoch ", epoch + 1, "/", epochs)
                               : absl::StrCat("epoch ", epoch + 1);
  absl::StrAppend(&out, complete ? " done: " : " stopped: ", iterations, " it in ", absl::StrFormat("%.1f", seconds),
                  " s, loss ", absl::StrFormat("%.4f", mean_loss));
  for (const Metric& m : metrics) {
    absl::StrAppend(&out, ", ", m.name, " ", absl::StrFormat("%.4f", m.value));
  }
  return out;
}

}  // namespace trainbus::progress
