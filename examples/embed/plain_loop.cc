// plain_loop.cc — a plain LibTorch training loop, the kind you already have:
// a model, an optimizer, a DataLoader over an in-memory dataset, a few epochs.
// with_trainbus.cc is the same program with trainbus added; the diff between
// the two files is what embedding trainbus costs (README: "Embedding").
#include <torch/torch.h>

#include <cstdio>
#include <iostream>
#include <utility>

// Points in the square [-1, 1]^2, labelled by the quadrant's sign of x*y (XOR):
// not linearly separable, so the hidden layer has something to learn.
class XorDataset : public torch::data::datasets::Dataset<XorDataset> {
 public:
  XorDataset(int64_t n, uint64_t seed) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    x_ = torch::rand({n, 2}, gen) * 2 - 1;
    y_ = (x_.select(1, 0) * x_.select(1, 1) > 0).to(torch::kLong);
  }
  torch::data::Example<> get(size_t i) override { return {x_[i], y_[i]}; }
  torch::optional<size_t> size() const override { return x_.size(0); }
  const torch::Tensor& x() const { return x_; }
  const torch::Tensor& y() const { return y_; }

 private:
  torch::Tensor x_, y_;
};

struct Net : torch::nn::Module {
  Net() : fc1(register_module("fc1", torch::nn::Linear(2, 32))),
          fc2(register_module("fc2", torch::nn::Linear(32, 2))) {}
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};

// Loss and accuracy on the whole validation set, and the class-1 probabilities.
struct Validation { double loss, accuracy; torch::Tensor probabilities; };
Validation Validate(Net& model, const XorDataset& val) {
  torch::NoGradGuard no_grad;
  model.eval();
  torch::Tensor logits = model.forward(val.x());
  double loss = torch::nn::functional::cross_entropy(logits, val.y()).item<double>();
  double accuracy = (logits.argmax(1) == val.y()).to(torch::kDouble).mean().item<double>();
  model.train();
  return {loss, accuracy, torch::softmax(logits, 1).select(1, 1)};
}

constexpr int kEpochs = 12;
constexpr int64_t kBatchSize = 32;

int main() {
  torch::manual_seed(0);
  XorDataset val(256, /*seed=*/2);
  auto loader = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
      XorDataset(1024, /*seed=*/1).map(torch::data::transforms::Stack<>()), kBatchSize);
  Net model;
  torch::optim::SGD optimizer(model.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));

  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    double loss_sum = 0;
    int64_t batches = 0;
    for (auto& batch : *loader) {
      optimizer.zero_grad();
      torch::Tensor loss =
          torch::nn::functional::cross_entropy(model.forward(batch.data), batch.target);
      loss.backward();
      optimizer.step();
      loss_sum += loss.item<double>();
      ++batches;
    }
    Validation v = Validate(model, val);
    std::printf("epoch %d: train loss %.4f, val loss %.4f, val accuracy %.3f\n", epoch + 1,
                loss_sum / batches, v.loss, v.accuracy);
  }
  return 0;
}
