// trainbus/models/models.h — the classifiers a run config can name.
//
//   "cnn": conv3x3(C->c1) ReLU maxpool2, conv3x3(c1->c2) ReLU maxpool2,
//          flatten, dropout, linear(-> classes). hidden = [c1, c2].
//   "mlp": flatten, then linear+ReLU per hidden width, dropout, linear(-> classes).
// Both output logits; the trainer applies cross-entropy.
//
// This header pulls in torch::nn (about 8 s per translation unit); include it
// only where a model is built.
#ifndef TRAINBUS_MODELS_MODELS_H_
#define TRAINBUS_MODELS_MODELS_H_

#include <cstdint>

#include <torch/nn/modules/container/sequential.h>

#include "absl/status/statusor.h"
#include "trainbus/proto/run_config.pb.h"

namespace trainbus {

// Input shape [channels, height, width] of one sample.
struct InputShape {
  int64_t channels = 1, height = 28, width = 28;
};

absl::StatusOr<torch::nn::Sequential> MakeModel(const config::ModelConfig& config,
                                                InputShape input, int64_t num_classes);

}  // namespace trainbus

#endif  // TRAINBUS_MODELS_MODELS_H_
