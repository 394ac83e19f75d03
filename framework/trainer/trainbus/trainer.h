// trainbus/trainer.h — the built-in LibTorch training loop.
//
// A Trainer turns a run config into a training run:
//   dataset (optionally normalised per channel)
//   -> reshuffled every epoch (seeded) -> batches (drop_last option; the
//      batch size may change per epoch or per iteration: batch_schedule.h)
//   -> forward, cross-entropy loss, backward, optimizer step = one iteration,
// publishing every step on its Session's bus. Validation (loss and accuracy)
// runs every `validate_every_n_epochs` epochs and/or every
// `validate_every_n_iterations` iterations. A stop request takes effect at the
// end of the current iteration. The same config and seed give the same losses.
//
//   auto config = trainbus::LoadRunConfig(path);           // trainbus/config.h
//   trainbus::FinalizeRunConfig(&*config, path);
//   auto trainer = trainbus::Trainer::Create(*config);     // loads the plugins too
//   auto result = (*trainer)->Run();
//
// Distributed data parallel: with WORLD_SIZE > 1 (and RANK, MASTER_ADDR,
// MASTER_PORT) in the environment, Create() meets the other ranks (see
// trainbus/distributed.h) and every rank starts from rank 0's weights. The
// global batch is world_size x trainer.batch_size; rank r trains on its r-th
// contiguous chunk, gradients, loss and train metrics are averaged (weighted
// by chunk size) every iteration, so the run matches one process with the
// global batch (models without batch norm or dropout). Validation runs on
// every rank (identical). The tensorboard, csv, checkpoint and progress
// plugins are loaded on rank 0 only; a stop requested on any rank stops all
// of them at the same step; a dead rank makes Run() fail on the others.
//
// Optimizers: "sgd" (momentum, nesterov, weight_decay), "adam", "adamw".
// Models and datasets: trainbus/models/models.h, trainbus/data/datasets.h.
#ifndef TRAINBUS_TRAINER_H_
#define TRAINBUS_TRAINER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainbus/batch_schedule.h"
#include "trainbus/events.h"
#include "trainbus/proto/run_config.pb.h"
#include "trainbus/session.h"

namespace trainbus {

struct TrainResult {
  EndReason reason = EndReason::kCompleted;
  std::string stop_reason;
  int64_t iterations_run = 0;
  int64_t last_step = -1;
  double last_loss = 0.0;       // train loss of the last iteration run (memory does not grow per iteration)
  Metrics final_metrics;        // last validation metrics
  double seconds = 0.0;
  // Iterations whose batch was gathered in the background while the one
  // before trained (trainer.prefetch_batches); the others (the first of each
  // epoch and of each Run(), one after a plugin changed the batch size, one
  // whose background gather threw) were gathered in line.
  int64_t prefetched_batches = 0;
};

class Trainer {
 public:
  // `config` must have been through FinalizeRunConfig(). Loads the dataset,
  // builds model and optimizer, and loads the config's plugins.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const config::RunConfig& config);
  // Same, with a session the caller prepared (e.g. with in-process plugins);
  // the config's plugins are added to it.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const config::RunConfig& config,
                                                         std::unique_ptr<Session> session);
  ~Trainer();

  // Continues a run from a checkpoint (a checkpoint folder, or a root such as
  // runs/<name>/checkpoints holding `latest`): model, optimizer, RNG, every
  // plugin's state and the position. Call before Run(). Fails, training
  // nothing, on a corrupt checkpoint or one saved with another plan (dataset
  // size, batch size, seed) or model.
  absl::Status Resume(const std::string& path);

  // Trains. Returns the run's error if the loop, a plugin hook (under the
  // stop policy) or a plugin's Close() failed; the result otherwise.
  absl::StatusOr<TrainResult> Run();

  // The run epoch by epoch (batch sizes follow the batch_size_schedule
  // plugin's schedule when the config enables it).
  const SchedulePlan& plan() const;
  // Size of the training set.
  int64_t train_samples() const;
  // Where Run() starts: 0, or the step after a resumed checkpoint.
  int64_t start_step() const;
  Session& session();
  // Per-channel input statistics in use (empty without trainer.normalize).
  const std::vector<double>& normalization_mean() const;
  const std::vector<double>& normalization_std() const;

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  static absl::StatusOr<std::unique_ptr<Trainer>> CreateImpl(const config::RunConfig& config,
                                                             std::unique_ptr<Session> session,
                                                             bool load_plugins);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trainbus

#endif  // TRAINBUS_TRAINER_H_
