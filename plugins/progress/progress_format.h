// Formatting of the progress plugin's lines, kept apart from the plugin so
// that tests can check the exact text.
#ifndef TRAINBUS_PLUGINS_PROGRESS_PROGRESS_FORMAT_H_
#define TRAINBUS_PLUGINS_PROGRESS_PROGRESS_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/types/span.h"
#include "trainbus/events.h"

namespace trainbus::progress {

struct ProgressLine {
  int64_t epoch = 0;         // 0-based; shown 1-based
  int64_t epochs = 0;        // 0 when unknown
  int64_t done = 0;          // iterations done in this epoch
  int64_t total = 0;         // iterations in this epoch (0 when unknown)
  int64_t step = 0;          // global step of the last iteration
  double its_per_second = 0;
  double loss = 0;
  std::optional<double> lr;  // of param group 0
  double eta_seconds = -1;   // < 0: unknown
};

// "epoch 3/10 [=====>    ] 120/250 it 410 it/s loss 0.412 lr 1.0e-03 ETA 00:12"
std::string FormatProgress(const ProgressLine& p, int bar_width);

// "epoch 3/10 done: 250 it in 4.2 s, loss 0.412, val/loss 0.380, val/accuracy 0.912"
// or, for an epoch the run stopped inside, "epoch 3/10 stopped: 31 it in ...".
std::string FormatEpochSummary(int64_t epoch, int64_t epochs, int64_t iterations,
                               double seconds, double mean_loss,
                               absl::Span<const Metric> metrics, bool complete = true);

// "00:12", "01:02:03"
std::string FormatDuration(double seconds);

}  // namespace trainbus::progress

#endif  // TRAINBUS_PLUGINS_PROGRESS_PROGRESS_FORMAT_H_
