// log_numbers — the TensorBoard writer on its own, without LibTorch.
//
// Logs a sine curve, a histogram from a float array, a tiny gradient image
// and a line of text into <log_dir> (default runs/standalone), then closes
// the writer and reports any error. Links only trainbus::tensorboard_core
// (pkg-config: trainbus-tensorboard):
//
//   c++ -std=c++17 log_numbers.cc $(pkg-config --cflags --libs trainbus-tensorboard)
//
// With -DLOG_A_TENSOR it also logs an at::Tensor histogram, and must then
// link trainbus::tensorboard (the tensor layer) and LibTorch:
// bench/tensorboard builds both, and `scripts/bench.sh standalone` compares
// the two programs' start-up time and memory.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "trainbus/tensorboard/summary_writer.h"

#ifdef LOG_A_TENSOR
#include <ATen/ATen.h>
#endif

namespace tb = trainbus::tensorboard;

int main(int argc, char** argv) {
  tb::SummaryWriterOptions options;
  options.log_dir = argc > 1 ? argv[1] : "runs/standalone";
  const int64_t steps = argc > 2 ? std::atoll(argv[2]) : 1000;
  auto writer = tb::SummaryWriter::Create(options);
  if (!writer.ok()) {
    std::cerr << writer.status().message() << "\n";
    return 1;
  }
  tb::SummaryWriter& w = **writer;
  std::vector<float> values;
  for (int64_t step = 0; step < steps; ++step) {
    const double x = 0.01 * static_cast<double>(step);
    w.add_scalar("curve/sin", std::sin(x), step);
    values.push_back(static_cast<float>(std::sin(x) + 0.1 * std::cos(37 * x)));
  }
  w.add_histogram("curve/values", absl::MakeConstSpan(values), steps - 1);
  std::vector<uint8_t> pixels(16 * 16);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i);
  w.add_image("gradient", tb::ImagePixels{pixels, 16, 16, 1}, steps - 1);
  w.add_text("notes", "written by **log_numbers**, without LibTorch", steps - 1);
#ifdef LOG_A_TENSOR
  w.add_histogram("curve/tensor", at::tensor(values), steps - 1);
#endif
  if (absl::Status s = w.close(); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  std::cout << "wrote " << w.counters().records_written << " records to " << w.log_dir() << "\n";
  return 0;
}
