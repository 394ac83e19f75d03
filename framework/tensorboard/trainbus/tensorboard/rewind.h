// trainbus/tensorboard/rewind.h — take a run back to a step before a resume.
//
// A run resumed from a checkpoint at step S repeats steps S, S+1, ... that an
// earlier, interrupted or finished session may already have written. Left
// alone, TensorBoard shows those steps twice or drops them depending on the
// loader (the Python loader purges only on a *second* SessionLog START; the
// Rust data server evicts per tag by step; other tools do neither), and the
// HParams dashboard keeps the first session's hyperparameters, because it reads
// the first `_hparams_/session_start_info` of a run.
//
// RewindRun() makes the files say what happened, for every reader: each event
// file of the run folder and of its sub-run folders (add_scalars) is rewritten
// without
//   - every event at step >= `step` (the abandoned tail), and
//   - every hparams session record (`_hparams_/...`), which the resumed
//     session writes again with its own values,
// keeping everything else byte for byte; and the Projector's embeddings at
// steps >= `step` go from the run's projector_config.pbtxt, with their files. A file that needs no change is not
// touched. Each rewrite goes to a temporary file (its name holds no
// "tfevents", so no reader picks it up), is fsynced and renamed over the old
// file: a crash leaves either the old file or the new one, never a mix. A cut-
// off last record (a killed writer) is dropped; a corrupt file is left as it
// is and reported in the result (TensorBoard stops reading it at the fault in
// any case).
//
//   absl::StatusOr<RewindReport> r = RewindRun("runs/shapes-cnn", 252);
//   if (!r.ok()) ...;   // names the file and the OS error
//
// Not thread-safe against a writer appending to the same files: call it before
// the resumed session opens its writer.
#ifndef TRAINBUS_TENSORBOARD_REWIND_H_
#define TRAINBUS_TENSORBOARD_REWIND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace trainbus::tensorboard {

struct RewindReport {
  int64_t files_rewritten = 0;
  int64_t events_removed = 0;
  // Projector embeddings at steps >= the step (projector.h), dropped from
  // the run's projector_config.pbtxt with their files.
  int64_t embeddings_removed = 0;
  // Files left untouched because they are corrupt: "<path>: <problem>".
  std::vector<std::string> skipped;
};

// See the header comment. A missing `log_dir` is an empty run (OK, nothing
// done). Errors name the file and the OS error; files already rewritten stay
// rewritten (each one is complete).
absl::StatusOr<RewindReport> RewindRun(const std::string& log_dir, int64_t step);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_REWIND_H_
