// dashboards_writer <log_dir> — writes one of each new kind with trainbus's
// SummaryWriter: a model graph, two embeddings, two meshes and a video.
// test_dashboards.py reads them back through the real TensorBoard and writes
// the same embeddings and meshes with tensorboardX to compare. Every input
// is integer arithmetic over the flat index with dyadic divisions, so numpy
// builds bit-identical arrays: keep the formulas in step with
// test_dashboards.py.
#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <cstdio>
#include <string>
#include <vector>

#include "trainbus/tensorboard/model_graph.h"
#include "formula_tensors.h"
#include "trainbus/tensorboard/summary_writer.h"

namespace tb = trainbus::tensorboard;
namespace nn = torch::nn;

using trainbus::compat::Check;
using trainbus::compat::Make;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: dashboards_writer <log_dir>\n");
    return 2;
  }
  tb::SummaryWriterOptions opt;
  opt.log_dir = argv[1];
  auto created = tb::SummaryWriter::Create(opt);
  if (!created.ok()) {
    std::fprintf(stderr, "dashboards_writer: %s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  tb::SummaryWriter& w = **created;

  // The graph of a small CNN on a [2, 1, 8, 8] batch.
  torch::manual_seed(0);
  nn::Sequential model;
  model->push_back(nn::Conv2d(nn::Conv2dOptions(1, 4, 3).padding(1)));
  model->push_back(nn::ReLU());
  model->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
  model->push_back(nn::Flatten());
  model->push_back(nn::Dropout(0.5));
  model->push_back(nn::Linear(64, 3));
  absl::StatusOr<tb::proto::GraphDef> graph =
      tb::RecordModelGraph(*model, at::full({2, 1, 8, 8}, 0.5));
  Check(graph.ok() && w.add_graph(*graph), "add_graph");

  // Embeddings: labels and thumbnails; a table of two columns.
  at::Tensor feat = Make<float>(at::kFloat, {10, 4}, [](int64_t j) {
    return static_cast<double>((j * 7) % 23 - 11) / 4.0;
  });
  std::vector<std::string> labels;
  for (int i = 0; i < 10; ++i) labels.push_back("p" + std::to_string(i));
  at::Tensor thumbs = Make<float>(at::kFloat, {10, 3, 4, 4}, [](int64_t j) {
    return static_cast<double>((j * 5) % 17) / 16.0;
  });
  Check(w.add_embedding(feat, tb::EmbeddingMetadata::Labels(labels), &thumbs, 3, "feat"),
        "add_embedding feat");
  at::Tensor table_mat = Make<float>(at::kFloat, {6, 3}, [](int64_t j) {
    return static_cast<double>(j) / 8.0;
  });
  tb::EmbeddingMetadata table;
  table.header = {"name", "group"};
  for (int i = 0; i < 6; ++i) {
    table.rows.push_back({"n" + std::to_string(i), i % 2 == 0 ? "even" : "odd"});
  }
  Check(w.add_embedding(table_mat, table, nullptr, 5, "table"), "add_embedding table");

  // Meshes: a coloured tetrahedron, and a batch of two point clouds.
  at::Tensor tetra = at::tensor({0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 1.f})
                         .reshape({1, 4, 3});
  at::Tensor faces = at::tensor({0, 1, 2, 0, 1, 3, 0, 2, 3, 1, 2, 3}, at::kInt).reshape({1, 4, 3});
  at::Tensor colors =
      at::tensor({255, 0, 0, 0, 255, 0, 0, 0, 255, 128, 128, 128}, at::kByte).reshape({1, 4, 3});
  Check(w.add_mesh("tetra", tetra, colors, faces, 2,
                   R"({"camera": {"cls": "PerspectiveCamera", "fov": 75}})"),
        "add_mesh tetra");
  at::Tensor cloud = Make<float>(at::kFloat, {2, 5, 3}, [](int64_t j) {
    return static_cast<double>(j % 11) / 4.0 - 1.0;
  });
  at::Tensor cloud_colors = Make<uint8_t>(at::kByte, {2, 5, 3}, [](int64_t j) {
    return (j * 37) % 256;
  });
  Check(w.add_mesh("cloud", cloud, cloud_colors, at::Tensor(), 2), "add_mesh cloud");

  // A video: three clips of four frames, 3 x 6 x 8, uint8.
  at::Tensor clip = Make<uint8_t>(at::kByte, {3, 4, 3, 6, 8}, [](int64_t j) {
    return (j * 5) % 256;
  });
  Check(w.add_video("clip", clip, 1, 8.0), "add_video");

  const absl::Status closed = w.close();
  if (!closed.ok()) {
    std::fprintf(stderr, "dashboards_writer: %s\n", std::string(closed.message()).c_str());
    return 1;
  }
  return trainbus::compat::Failed() ? 1 : 0;
}
