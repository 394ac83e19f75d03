// trainbus/tensorboard/inspect.h — what is in a TensorBoard log directory.
//
// The engine of `trainbus inspect LOGDIR [--json]`: finds every run (every
// directory, at any depth, holding a file whose name contains "tfevents"),
// reads all of its event files with EventFileReader and reports, per run,
// the tags by kind with the points TensorBoard shows (its rules replayed for
// both of its loaders, see InspectTag), first and last step and (scalars)
// last value, plus every problem: a truncated tail (tolerated, e.g. a writer that
// is still running or was killed) or corruption (bad checksum, unparsable
// record), each with file and byte offset.
//
//   absl::StatusOr<InspectReport> report = InspectLogDir("runs");
//   if (!report.ok()) { std::cerr << report.status() << "\n"; return 2; }
//   PrintInspectReport(*report, /*json=*/false, std::cout);
//   return InspectExitCode(*report);   // 1 if anything is corrupt, else 0
//
// Kinds: "scalar", "histogram", "image", "video" (an animated GIF image),
// "text", "hparams", "pr_curve", "custom_scalars", "audio", "mesh" — from
// the summary metadata's plugin name or, for legacy values, the value's
// field; other plugins by their plugin name, an untyped tensor as "tensor".
// Also "graph" (the run's model graph, tag "__run_graph__" as TensorBoard
// files it) and "embedding" (one per Projector entry of the run's
// projector_config.pbtxt, tagged with its name "<tag>:<step>").
//
// The JSON form (stable keys, for scripts):
//   {"logdir": "...", "corrupt": false, "truncated": 0, "runs": [
//     {"run": "train", "files": ["..."], "events": 1234,
//      "tags": [{"tag": "loss", "kind": "scalar", "count": 1000,
//                "count_legacy": 1000, "written": 1000, "duplicate_steps": 0,
//                "backward_steps": 0, "first_step": 0, "last_step": 999,
//                "last_value": 0.12}],
//      "problems": [{"file": "...", "offset": 4096, "kind": "truncated",
//                    "message": "..."}]}]}
// "last_value" appears for scalars only. Runs are sorted by path ("." is the
// log directory itself); tags by name.
#ifndef TRAINBUS_TENSORBOARD_INSPECT_H_
#define TRAINBUS_TENSORBOARD_INSPECT_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace trainbus::tensorboard {

struct InspectTag {
  std::string tag;
  std::string kind;
  // Points TensorBoard shows with its default loader (the Rust data server),
  // which keeps one point per step: a repeated or earlier step evicts the
  // points at steps >= it.
  int64_t count = 0;
  // Points the Python loader (--load_fast=false) shows, and how many of them
  // repeat a step or go back a step: it purges only on a second SessionLog
  // START (or, with no file version, on a step going back).
  int64_t count_legacy = 0;
  int64_t duplicate_steps = 0;
  int64_t backward_steps = 0;
  int64_t written = 0;  // records in the files
  // First and last step and (scalars) last value, of what `count` counts.
  int64_t first_step = 0;
  int64_t last_step = 0;
  std::optional<double> last_value;
};

struct InspectProblem {
  enum class Kind { kTruncated, kCorrupt, kUnreadable };
  std::string file;
  uint64_t offset = 0;
  Kind kind = Kind::kCorrupt;
  std::string message;
};

struct InspectRun {
  std::string run;  // path relative to the log directory, "." for itself
  std::vector<std::string> files;
  int64_t events = 0;
  std::vector<InspectTag> tags;
  std::vector<InspectProblem> problems;
};

struct InspectReport {
  std::string logdir;
  std::vector<InspectRun> runs;

  bool corrupt() const;        // any kCorrupt or kUnreadable problem
  int64_t truncated() const;   // number of truncated files
};

// NotFound if `logdir` does not exist or is not a directory. An empty log
// directory is a valid report with no runs.
absl::StatusOr<InspectReport> InspectLogDir(const std::string& logdir);

// Human-readable table, or JSON (see above).
void PrintInspectReport(const InspectReport& report, bool json, std::ostream& out);

// Process exit code for a CLI: 1 if anything is corrupt or unreadable, else 0.
int InspectExitCode(const InspectReport& report);

const char* InspectProblemKindName(InspectProblem::Kind kind);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_INSPECT_H_
