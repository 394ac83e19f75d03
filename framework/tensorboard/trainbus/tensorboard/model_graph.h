// trainbus/tensorboard/model_graph.h — a LibTorch model as the GraphDef
// TensorBoard's Graphs dashboard draws (SummaryWriter::add_graph writes it).
//
// The graph holds, nested by module path (the dashboard folds each module
// into a box you can open):
//   - one node per parameter, "<Model>/<Type>[<name>]/weight", op
//     "Parameter", with its shape and dtype;
//   - one node per operation one forward pass ran, named by the module that
//     ran it ("Sequential/Conv2d[0]/convolution"), with the shape and dtype
//     of what it produced (the edge labels), connected to the nodes it read;
//   - an "output" node, and an "input" node for the sample batch when the
//     graph is recorded from it (RecordModelGraph);
//   - a node for each module that ran no operation (Dropout in eval mode,
//     Identity), so every module appears.
// Module names: the root is its class ("Sequential", "Net"), each child
// "<Class>[<name>]" (PyTorch's convention, "Conv2d[conv1]").
//
// The operations come from the autograd graph behind the output (LibTorch
// C++ modules have no forward hooks), so they are the ones that carry
// gradients: an operation on the input alone before the first parameter
// (a normalisation) does not appear.
//
//   // A forward pass you ran (grad enabled; model->eval() keeps dropout out):
//   at::Tensor out = model->forward(batch);
//   absl::StatusOr<proto::GraphDef> g = ModelGraph(*model, out);
//
//   // A Sequential: run child by child, in eval mode, the mode restored:
//   // parameterless modules (ReLU, MaxPool2d, Flatten) get their own ops.
//   absl::StatusOr<proto::GraphDef> g = RecordModelGraph(*model, batch);
//
//   // The same off the training thread (SummaryWriter::record_graph runs
//   // it on the writer thread on this copy):
//   absl::StatusOr<std::shared_ptr<torch::nn::Module>> copy = CopyModelForGraph(*model);
//
// Tensor layer (library trainbus::tensorboard). This header declares
// torch::nn::Module only; the implementation pulls in torch::nn.
#ifndef TRAINBUS_TENSORBOARD_MODEL_GRAPH_H_
#define TRAINBUS_TENSORBOARD_MODEL_GRAPH_H_

#include <ATen/core/Tensor.h>

#include <memory>

#include "absl/status/statusor.h"
#include "trainbus/tensorboard/proto/graph.pb.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace trainbus::tensorboard {

// From the autograd graph that produced `output`. Operations that read a
// parameter go in that parameter's module; the others in the root module.
// FailedPrecondition when `output` has no autograd graph (run the forward
// with grad enabled, outside torch::NoGradGuard).
absl::StatusOr<proto::GraphDef> ModelGraph(const torch::nn::Module& model,
                                           const at::Tensor& output);

// Runs `model` on `sample_input` and records its graph, in eval mode with
// grad enabled; each module's training mode is restored after. A Sequential
// (at any depth) runs child by child, so every operation lands in the module
// that ran it. Any other model's forward cannot be called through
// torch::nn::Module: the result is ModelHierarchyGraph (pass the output of
// your own forward to ModelGraph instead).
absl::StatusOr<proto::GraphDef> RecordModelGraph(torch::nn::Module& model,
                                                 const at::Tensor& sample_input);

// The module tree and its parameters only, no edges: what can be shown when
// no forward pass is observed.
proto::GraphDef ModelHierarchyGraph(const torch::nn::Module& model);

// A deep copy of a Sequential `model` (its own parameters and buffers) for
// RecordModelGraph to run on another thread while training goes on, so the
// training thread pays for a copy instead of a forward pass.
// Module::clone() re-initialises a copy's parameters before copying the
// values in; the default CPU generator's state is put back afterwards, so
// the run's random numbers are the same with or without the copy.
// Unimplemented for a model that is not a Sequential (RecordModelGraph runs
// no forward pass for it); FailedPrecondition, with LibTorch's reason, when a
// module in it cannot be cloned (not derived from torch::nn::Cloneable).
absl::StatusOr<std::shared_ptr<torch::nn::Module>> CopyModelForGraph(
    const torch::nn::Module& model);

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_MODEL_GRAPH_H_
