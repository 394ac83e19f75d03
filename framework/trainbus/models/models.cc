#include "trainbus/models/models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "absl/strings/str_cat.h"

namespace trainbus {

absl::StatusOr<torch::nn::Sequential> MakeModel(const config::ModelConfig& config,
                                                InputShape in, int64_t num_classes) {
  namespace nn = torch::nn;
  if (num_classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat("a classifier needs >= 2 classes, got ", num_classes));
  }
  nn::Sequential model;
  if (config.type() == "cnn") {
    if (config.hidden_size() != 2) {
      return absl::InvalidArgumentError("model.hidden must hold two conv widths for \"cnn\"");
    }
    if (in.height < 4 || in.width < 4) {
      return absl::InvalidArgumentError(absl::StrCat("\"cnn\" needs inputs of at least 4x4, got ",
                                                     in.height, "x", in.width));
    }
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
  } else if (config.type() == "mlp") {
    model->push_back(nn::Flatten());
    int64_t width = in.channels * in.height * in.width;
    for (int64_t h : config.hidden()) {
      model->push_back(nn::Linear(width, h));
      model->push_back(nn::ReLU());
      width = h;
    }
    if (config.dropout() > 0) model->push_back(nn::Dropout(config.dropout()));
    model->push_back(nn::Linear(width, num_classes));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown model type \"", config.type(),
                                                   "\"; use \"cnn\" or \"mlp\""));
  }
  return model;
}

}  // namespace trainbus
