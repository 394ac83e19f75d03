// Helpers shared by the tensorboard test suites: reading a run back, making
// a writer, decoding a PNG.
#ifndef TRAINBUS_TESTS_TENSORBOARD_TB_TEST_HELPERS_H_
#define TRAINBUS_TESTS_TENSORBOARD_TB_TEST_HELPERS_H_

#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/proto/event.pb.h"
#include "trainbus/tensorboard/summary_writer.h"

namespace trainbus::tb_test {

namespace fs = std::filesystem;
namespace tb = trainbus::tensorboard;
using tb::proto::Event;

inline std::vector<std::string> EventFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().filename().string().find("tfevents") != std::string::npos) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// All events of the only event file in `dir`; the file must end cleanly.
inline std::vector<Event> ReadRun(const std::string& dir) {
  const std::vector<std::string> files = EventFiles(dir);
  EXPECT_EQ(files.size(), 1u) << dir;
  if (files.empty()) return {};
  absl::StatusOr<tb::EventFileContents> c = tb::ReadEventFile(files[0]);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return {};
  EXPECT_EQ(c->end, tb::EventFileReader::State::kEnd) << c->problem;
  return c->events;
}

inline std::unique_ptr<tb::SummaryWriter> MakeWriter(const std::string& dir,
                                              tb::SummaryWriterOptions opt = {}) {
  opt.log_dir = dir;
  absl::StatusOr<std::unique_ptr<tb::SummaryWriter>> w = tb::SummaryWriter::Create(opt);
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : nullptr;
}

// The summary values of every event with a summary, in order.
inline std::vector<std::pair<int64_t, tb::proto::Summary::Value>> Values(const std::vector<Event>& ev) {
  std::vector<std::pair<int64_t, tb::proto::Summary::Value>> out;
  for (const Event& e : ev) {
    for (const auto& v : e.summary().value()) out.emplace_back(e.step(), v);
  }
  return out;
}

struct DecodedPng {
  int width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  bool ok = false;
};

inline DecodedPng DecodePng(const std::string& data) {
  DecodedPng out;
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data.data(), data.size())) return out;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  const bool color = image.format & PNG_FORMAT_FLAG_COLOR;
  const bool alpha = image.format & PNG_FORMAT_FLAG_ALPHA;
  out.channels = (color ? 3 : 1) + (alpha ? 1 : 0);
  // Keep the file's own format.
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  out.ok = png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr) != 0;
  return out;
}

}  // namespace trainbus::tb_test

#endif  // TRAINBUS_TESTS_TENSORBOARD_TB_TEST_HELPERS_H_
