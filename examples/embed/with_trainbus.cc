// with_trainbus.cc — plain_loop.cc with trainbus added: a Session runs the
// plugins of a config (TensorBoard files, an lr schedule, early stopping) on
// every iteration, and a SummaryWriter writes the program's own extra records
// (a PR curve per epoch). `diff -u plain_loop.cc with_trainbus.cc` shows all
// it takes.
//
//   with_trainbus [CONFIG [LOG_ROOT]]    default CONFIG: embed_config.json;
//                                        LOG_ROOT replaces the config's log_root
#include <torch/torch.h>

#include "trainbus/config.h"
#include "trainbus/session.h"
#include "trainbus/tensorboard/summary_writer.h"

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

int main(int argc, char** argv) {
  auto config = trainbus::LoadRunConfig(argc > 1 ? argv[1] : "embed_config.json");
  if (!config.ok()) { std::cerr << config.status().message() << "\n"; return 2; }
  if (argc > 2) config->set_log_root(argv[2]);  // the run's files go to <log_root>/<name>
  auto session = trainbus::Session::Create(*config);  // loads the plugins, claims runs/<name>
  if (!session.ok()) { std::cerr << session.status().message() << "\n"; return 2; }
  torch::manual_seed(0);
  XorDataset val(256, /*seed=*/2);
  auto loader = torch::data::make_data_loader<torch::data::samplers::RandomSampler>(
      XorDataset(1024, /*seed=*/1).map(torch::data::transforms::Stack<>()), kBatchSize);
  Net model;
  torch::optim::SGD optimizer(model.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  (*session)->Bind(&model, &optimizer);  // plugins may read the weights and set the lr
  trainbus::RunInfo run;
  run.epochs = kEpochs, run.batch_size = kBatchSize, run.train_samples = 1024;
  run.iterations_per_epoch = 1024 / kBatchSize, run.total_iterations = kEpochs * 1024 / kBatchSize;
  (*session)->Begin(run);
  trainbus::tensorboard::SummaryWriterOptions writer_options;
  writer_options.log_dir = (*session)->run().log_dir;  // our records go next to the plugins'
  auto writer = trainbus::tensorboard::SummaryWriter::Create(writer_options);
  if (!writer.ok()) { std::cerr << writer.status().message() << "\n"; return 2; }

  for (int epoch = 0; epoch < kEpochs && !(*session)->ShouldStop(); ++epoch) {
    (*session)->BeginEpoch();
    double loss_sum = 0;
    int64_t batches = 0;
    for (auto& batch : *loader) {
      optimizer.zero_grad();
      torch::Tensor loss =
          torch::nn::functional::cross_entropy(model.forward(batch.data), batch.target);
      loss.backward();
      // Gradient plugins (grad_clip, nonfinite_guard) act here; a skipped
      // step (a nan gradient) is not applied.
      (*session)->AfterBackward(loss.item<double>());
      if ((*session)->BeforeOptimizerStep(loss.item<double>())) optimizer.step();
      loss_sum += loss.item<double>();
      ++batches;
      (*session)->EndIteration(loss.item<double>(), batch.data.size(0));
      if ((*session)->ShouldStop()) break;
    }
    Validation v = Validate(model, val);
    (*session)->EndValidation({{"val/loss", v.loss}, {"val/accuracy", v.accuracy}});
    (*writer)->add_pr_curve("val/pr_curve", val.y(), v.probabilities, (*session)->step() - 1);
    (*session)->EndEpoch();
    std::printf("epoch %d: train loss %.4f, val loss %.4f, val accuracy %.3f\n", epoch + 1,
                loss_sum / batches, v.loss, v.accuracy);
  }
  absl::Status status = (*session)->End();  // closes the plugins' files: write errors show here
  if (status.ok()) status = (*writer)->close();
  if (!status.ok()) { std::cerr << status.message() << "\n"; return 1; }
  if ((*session)->ShouldStop()) std::cout << "stopped: " << (*session)->stop_reason() << "\n";
  return 0;
}
