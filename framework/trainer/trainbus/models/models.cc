#include "trainbus/models/models.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

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

// Parameters of the model `config` describes, as the builders above make it
// (a double: the product of two widths cannot overflow).
double ParameterCount(const config::ModelConfig& config, InputShape in, int64_t num_classes) {
  double total = 0;
  if (config.type() == "cnn" && config.hidden_size() == 2) {
    const double c1 = config.hidden(0), c2 = config.hidden(1);
    total += in.channels * c1 * 9 + c1 + c1 * c2 * 9 + c2;
    total += c2 * (in.height / 4) * (in.width / 4) * num_classes + num_classes;
  } else if (config.type() == "mlp") {
    double width = static_cast<double>(in.channels) * in.height * in.width;
    for (int64_t h : config.hidden()) {
      total += width * h + h;
      width = static_cast<double>(h);
    }
    total += width * num_classes + num_classes;
  }
  return total;
}

constexpr double kMaxParameters = 1e9;

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
  // Counted before anything is allocated: a width typo must not ask the
  // machine for tens of gigabytes (weights, gradients and optimizer state).
  const double parameters = ParameterCount(config, in, num_classes);
  if (parameters > kMaxParameters) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "model.hidden [%s] gives the %s model %.3g parameters (about %.0f GB with gradients "
        "and optimizer state); at most %.0e: make model.hidden smaller",
        absl::StrJoin(config.hidden(), ", "), config.type(), parameters,
        parameters * 4 * 4 / 1e9, kMaxParameters));
  }
  return it->second(config, in, num_classes);
}

}  // namespace trainbus
