// trainbus/checkpoint.h — saving and restoring a whole run, atomically.
//
// A checkpoint is a folder `<root>/<name>/` holding
//   model.pt      the model's parameters and buffers (torch::serialize archive)
//   optimizer.pt  the optimizer's state (momentum buffers, Adam moments, lrs)
//   meta.pb       CheckpointMeta: position (next step, epoch, batch index),
//                 LibTorch's RNG state, every stateful plugin's SaveState(),
//                 sizes and CRC-32s of the two archives
// and `<root>/latest` names the newest complete checkpoint.
//
// Writes are atomic: everything goes to `<root>/.<name>.tmp-<pid>/`, is
// fsync'ed, then renamed into place, and only then is `latest` replaced
// (write-to-temp + rename). A crash at any moment leaves the previous
// checkpoint and `latest` intact; leftover temp folders are ignored and
// removed by the next successful save.
//
// Serialisation happens on the calling thread (it must see a consistent
// model); file I/O happens on the CheckpointWriter's own thread, so training
// does not wait on disk. Errors are sticky and returned by the next Save(),
// by Wait() and by Close().
//
// Loading checks the archives' sizes and CRCs against meta.pb before anything
// is touched, then loads model and optimizer; any mismatch (corrupt file,
// other model architecture, other optimizer) is an error naming the
// checkpoint and what differs, and leaves nothing half-loaded in the meta.
#ifndef TRAINBUS_CHECKPOINT_H_
#define TRAINBUS_CHECKPOINT_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainbus/checkpoint_meta.h"  // kCheckpointFormatVersion
#include "trainbus/control.h"

namespace trainbus {


// The position and plugin states a checkpoint restores.
struct CheckpointState {
  int64_t next_step = 0;
  int64_t epoch = 0;
  int64_t batch_index = 0;
  int64_t sample_offset = 0;  // samples of the epoch already used (0 when unknown)
  int64_t batch_size = 0;     // batch size of the next iteration (0 when unknown)
  int64_t epoch_iterations = 0;  // iterations of the current epoch so far
  double epoch_loss_sum = 0.0;   // and the sum of their losses
  std::string reason;
  std::map<std::string, std::string> plugin_states;
  // Each loaded plugin's options when it was saved (PluginOptions::ToJson).
  std::map<std::string, std::string> plugin_options;
  std::string host_state;
  double wall_time = 0.0;
};

// A checkpoint serialised in memory, ready to be written.
struct CheckpointBlob {
  std::string model;
  std::string optimizer;
  std::string meta;  // serialized CheckpointMeta
};

// Serialises model, optimizer (may be null), the RNG state and `state`.
absl::StatusOr<CheckpointBlob> SerializeCheckpoint(torch::nn::Module* model,
                                                   torch::optim::Optimizer* optimizer,
                                                   const CheckpointState& state);

// What must be on disk before a checkpoint may be committed: one plugin's
// Plugin::FlushForCheckpoint() result, with the plugin's name for errors.
struct FlushBarrier {
  std::string plugin;
  std::function<absl::Status()> wait;
};

// Writes a blob to <root>/<name> atomically and points <root>/latest at it
// (synchronously). Returns the folder's path. `before_commit`, if given, runs
// after the files are written and synced and before the folder is renamed
// into place; its error leaves the checkpoint uncommitted (and reported).
absl::StatusOr<std::string> WriteCheckpoint(
    const std::string& root, const std::string& name, const CheckpointBlob& blob,
    const std::function<absl::Status()>& before_commit = nullptr);

// `path` is a checkpoint folder, or a root holding `latest`: returns the folder.
absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path);

// Verifies and loads a checkpoint into model and optimizer (may be null), and
// restores the RNG state. Returns the position and plugin states.
absl::StatusOr<CheckpointState> LoadCheckpoint(const std::string& path, torch::nn::Module* model,
                                               torch::optim::Optimizer* optimizer);

// Writes checkpoints on a background thread, in order.
class CheckpointWriter {
 public:
  CheckpointWriter();
  ~CheckpointWriter();  // Close()

  // Queues `blob` for <root>/<name>; once written, removes the folders in
  // `remove_after` (older checkpoints the caller no longer keeps). Every
  // barrier is waited for before the commit (on this writer's thread).
  // Returns the first error of an earlier write, if any (the blob is then
  // not queued).
  absl::Status Save(std::string root, std::string name, CheckpointBlob blob,
                    std::vector<std::string> remove_after = {},
                    std::vector<FlushBarrier> barriers = {});
  // Waits until every queued checkpoint is written; returns the first error.
  absl::Status Wait();
  // The first error of a write so far (does not wait).
  absl::Status status();
  absl::Status Close();

 private:
  struct Job {
    std::string root, name;
    CheckpointBlob blob;
    std::vector<std::string> remove_after;
    std::vector<FlushBarrier> barriers;
  };
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool busy_ = false;
  bool stop_ = false;
  absl::Status error_;
  std::thread thread_;
};

}  // namespace trainbus

#endif  // TRAINBUS_CHECKPOINT_H_
