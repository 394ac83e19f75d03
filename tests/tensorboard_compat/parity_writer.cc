// parity_writer <log_dir> — one fixed sequence of trainbus SummaryWriter
// calls, mirrored call for call by parity_writer.py through tensorboardX.
// test_parity.py runs both and compares what TensorBoard reads.
//
// Every input is computed with integer arithmetic and exact (dyadic) divisions,
// never with transcendental functions or RNGs, so numpy produces bit-identical
// arrays. Keep this file and parity_writer.py in step: same calls, same order,
// same formulas.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "formula_tensors.h"
#include "trainbus/tensorboard/summary_writer.h"

namespace tb = trainbus::tensorboard;

using trainbus::compat::Check;
using trainbus::compat::Make;

int main(int argc, char** argv) {
  // --one-experiment: leave out the add_hparams into a sub-run, so that the
  // log root holds one hparams experiment record (with two, TensorBoard's two
  // loaders each pick another one; see the README's known limits).
  const bool one_experiment = argc == 3 && std::string(argv[2]) == "--one-experiment";
  if (argc != 2 && !one_experiment) {
    std::fprintf(stderr, "usage: parity_writer <log_dir> [--one-experiment]\n");
    return 2;
  }
  tb::SummaryWriterOptions opt;
  opt.log_dir = argv[1];
  auto created = tb::SummaryWriter::Create(opt);
  if (!created.ok()) {
    std::fprintf(stderr, "parity_writer: %s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  tb::SummaryWriter& w = **created;

  // Scalars: values that round to float32, and a step beyond 32 bits.
  for (int i = 0; i < 5; ++i) Check(w.add_scalar("scalar/linear", 0.1 * i, i), "scalar/linear");
  const double special[] = {1.0 / 3.0, -2.5, 1e-8, 123456.789, 3.0e38};
  const int64_t special_steps[] = {0, 1, 2, 3, 1000000000000LL};
  for (int i = 0; i < 5; ++i) {
    Check(w.add_scalar("scalar/special", special[i], special_steps[i]), "scalar/special");
  }

  // add_scalars: one sub-run per series.
  for (int i = 0; i < 3; ++i) {
    Check(w.add_scalars("loss/multi", {{"train", 1.5 - 0.25 * i}, {"val", 2.0 - 0.125 * i}}, i),
          "add_scalars");
  }

  // Histograms.
  for (int s = 0; s < 2; ++s) {
    at::Tensor h = Make<float>(at::kFloat, {10, 100}, [s](int64_t j) {
      return static_cast<double>((j * 37 + 11 * s) % 101 - 50) / 8.0;
    });
    Check(w.add_histogram("hist/float32", h, s), "hist/float32");
  }
  Check(w.add_histogram("hist/int64", Make<int64_t>(at::kLong, {50}, [](int64_t j) {
                          return j % 7 - 3;
                        }),
                        0),
        "hist/int64");
  {
    std::vector<double> v;
    for (int64_t j = 0; j < 300; ++j) v.push_back(static_cast<double>(j * j % 97) / 16.0 - 3.0);
    Check(w.add_histogram("hist/span", v, 3), "hist/span");
    // Below the smallest limit (1e-12), zero, and far apart: many empty buckets.
    const std::vector<double> edges = {-std::ldexp(1.0, -50), std::ldexp(1.0, -50), 0.0, 1.5,
                                       -3.25, 4096.0};
    Check(w.add_histogram("hist/edges", edges, 4), "hist/edges");
  }

  // Images.
  Check(w.add_image("image/chw_u8", Make<uint8_t>(at::kByte, {3, 8, 12}, [](int64_t j) {
                      const int64_t c = j / 96, h = j / 12 % 8, x = j % 12;
                      return (c * 71 + h * 13 + x * 7) % 256;
                    }),
                    0, "CHW"),
        "image/chw_u8");
  Check(w.add_image("image/hwc_f32", Make<float>(at::kFloat, {6, 10, 3}, [](int64_t j) {
                      return static_cast<double>(j * 5 % 257) / 256.0;  // 0 .. 1 inclusive
                    }),
                    1, "HWC"),
        "image/hwc_f32");
  Check(w.add_image("image/hw_f64", Make<double>(at::kDouble, {5, 7}, [](int64_t j) {
                      return static_cast<double>(j * 9 % 64) / 64.0;
                    }),
                    2, "HW"),
        "image/hw_f64");
  Check(w.add_image("image/chw_gray_u8", Make<uint8_t>(at::kByte, {1, 4, 6}, [](int64_t j) {
                      return j * 11 % 256;
                    }),
                    3, "CHW"),
        "image/chw_gray_u8");
  Check(w.add_image("image/hwc_rgba_u8", Make<uint8_t>(at::kByte, {4, 5, 4}, [](int64_t j) {
                      return j * 29 % 256;
                    }),
                    4, "HWC"),
        "image/hwc_rgba_u8");
  // A batch of 10: two grid rows of 8 columns, the last 6 cells black.
  Check(w.add_images("images/nchw_f32", Make<float>(at::kFloat, {10, 3, 4, 5}, [](int64_t j) {
                       return static_cast<double>(j * 3 % 257) / 256.0;
                     }),
                     0, "NCHW"),
        "images/nchw_f32");
  Check(w.add_images("images/nchw_gray_u8", Make<uint8_t>(at::kByte, {3, 1, 4, 4}, [](int64_t j) {
                       return j * 5 % 256;
                     }),
                     1, "NCHW"),
        "images/nchw_gray_u8");

  // Text.
  const std::string markdown =
      "**bold** and `code`\n\n- item one\n- item two: caf\xc3\xa9 \xe2\x9c\x93\n\n| a | b |\n|---|---|\n| 1 | 2 |";
  Check(w.add_text("notes", markdown, 0), "text");
  Check(w.add_text("notes", "second *entry*", 5), "text");

  // Hyperparameters: once into a named sub-run (same layout as tensorboardX),
  // once with trainbus's default (into the run itself).
  if (!one_experiment) {
    Check(w.add_hparams({{"batch", 32.0}, {"lr", 0.01}, {"nesterov", true},
                         {"opt", std::string("sgd")}},
                        {{"hp/acc", 0.75}, {"hp/loss", 0.5}}, 7, "hp_named"),
          "add_hparams named");
  }
  Check(w.add_hparams({{"arch", std::string("resnet")}, {"dropout", 0.25}}, {{"hp/score", 1.25}},
                      9),
        "add_hparams default");

  // PR curves: int labels with the default 127 thresholds, bool labels with 11.
  {
    at::Tensor labels = Make<int64_t>(at::kLong, {200}, [](int64_t j) { return j % 3 == 0; });
    at::Tensor preds = Make<float>(at::kFloat, {200}, [](int64_t j) {
      return static_cast<double>(j * 29 % 257) / 256.0;
    });
    Check(w.add_pr_curve("pr/default", labels, preds, 0), "pr/default");
    at::Tensor blabels = Make<bool>(at::kBool, {8, 8}, [](int64_t j) { return (j * 5) % 7 < 3; });
    at::Tensor bpreds = Make<double>(at::kDouble, {8, 8}, [](int64_t j) {
      return static_cast<double>(j % 17) / 16.0;
    });
    Check(w.add_pr_curve("pr/eleven", blabels, bpreds, 1, 11), "pr/eleven");
  }

  // Custom scalars.
  {
    // Regexes that resolve to tags written here (the AllKinds scenario
    // checks each in TensorBoard).
    trainbus::CustomScalarChart loss{"loss", {"scalar/linear", "scalar/special"}, {}};
    trainbus::CustomScalarChart band{"band", {}, {{"scalar/linear", "scalar/linear", "scalar/special"}}};
    trainbus::CustomScalarChart ips{"ips", {"scalar/.*"}, {}};
    Check(w.add_custom_scalars({{"Losses", {loss, band}, false}, {"Speed", {ips}, false}}),
          "custom scalars");
  }

  // Audio: mono, and stereo with samples beyond [-1, 1] (clipped by both).
  Check(w.add_audio("audio/mono", Make<float>(at::kFloat, {1000}, [](int64_t j) {
                      return static_cast<double>(j * 73 % 201 - 100) / 128.0;
                    }),
                    0, 8000.0),
        "audio/mono");
  Check(w.add_audio("audio/stereo", Make<float>(at::kFloat, {500, 2}, [](int64_t j) {
                      const int64_t f = j / 2;
                      return j % 2 == 0 ? static_cast<double>(f % 64 - 32) / 32.0
                                        : static_cast<double>(40 - f % 81) / 32.0;
                    }),
                    1, 16000.0),
        "audio/stereo");

  absl::Status st = w.close();
  if (!st.ok()) {
    std::fprintf(stderr, "parity_writer: close: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return trainbus::compat::Failed() ? 1 : 0;
}
