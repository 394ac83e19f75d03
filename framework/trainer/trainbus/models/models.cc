#include "trainbus/models/models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace trainbus {

namespace {

namespace nn = torch::nn;

// Two 3x3 conv + ReLU + 2x2 max-pool blocks, then a linear classifier.
absl::StatusOr<nn::Sequential> BuildCnn(const config::ModelConfig& config, InputShape in,
                                        int64_t num_classes) {
  if (config.hidden_size() != 2) {
    return absl::InvalidArgumentError("model.hidden must hold two conv widths for \"cnn\"");
  }
  if (in.height < 4 || in.width < 4) {
    return absl::InvalidArgumentError(absl::StrCat("\"cnn\" needs inputs of at least 4x4, got ",
                                                   in.height, "x", in.width));
  }
  nn::Sequential model;
  const int64_t c1 = config.hidden(0), c2 = config.hidden(1);
  model->push_back(nn::Conv2d(nn::Conv2dOptions(in.channels, c1, 3).padding(1)));
  model->push_back(nn::ReLU());
  model->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  model->push_back(nn::Conv2d(nn::Conv2dOptions(c1, c2, 3).padding(1)));
  model->push_back(nn::ReLU());
  model->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  model->push_back(nn::Flatten());
  if (config.dropout() > 0) model->push_back(nn::Dropout(config.dropout()));
  model->push_back(nn::Linear(c2 * (in.height / 4) * (in.width / 4), num_classes));
  return model;
}

// Linear + ReLU per hidden width, then a linear classifier.
absl::StatusOr<nn::Sequential> BuildMlp(const config::ModelConfig& config, InputShape in,
                                        int64_t num_classes) {
  nn::Sequential model;
  model->push_back(nn::Flatten());
  int64_t width = in.channels * in.height * in.width;
  for (int64_t h : config.hidden()) {
    model->push_back(nn::Linear(width, h));
    model->push_back(nn::ReLU());
    width = h;
  }
  if (config.dropout() > 0) model->push_back(nn::Dropout(config.dropout()));
  model->push_back(nn::Linear(width, num_classes));
  return model;
}

using ModelBuilder = absl::StatusOr<nn::Sequential> (*)(const config::ModelConfig&, InputShape,
                                                        int64_t);

// model.type -> builder. A new model is one function and one line here (and
// its name in config.cc's check of model.type).
const std::map<std::string, ModelBuilder>& Models() {
  static const auto* const kModels =
      new std::map<std::string, ModelBuilder>{{"cnn", BuildCnn}, {"mlp", BuildMlp}};
  return *kModels;
}

}  // namespace

absl::StatusOr<torch::nn::Sequential> MakeModel(const config::ModelConfig& config,
                                                InputShape in, int64_t num_classes) {
  if (num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat("a classifier needs >= 2 classes, got ", num_classes));
  }
  auto it = Models().find(config.type());
  if (it == Models().end()) {
    std::string known;
    for (const auto& [name, builder] : Models()) absl::StrAppend(&known, known.empty() ? "" : ", ", "\"", name, "\"");
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model type \"", config.type(), "\"; use one of ", known));
  }
  return it->second(config, in, num_classes);
}

}  // namespace trainbus
