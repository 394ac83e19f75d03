#include "trainbus/data/datasets.h"

#include <map>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainbus/data/file_formats.h"

namespace trainbus {
namespace {

namespace fs = std::filesystem;

constexpr int kSide = 28;

// Uniform and normal variates from raw engine output, so the images are the
// same with every standard library (std::*_distribution are not specified
// bit for bit).
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  double Normal() {
    double u1 = std::max(Uniform(), 1e-300), u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  std::mt19937_64 engine_;
};

bool InsideShape(int shape, double dx, double dy, double r) {
  const double ax = std::fabs(dx), ay = std::fabs(dy);
  switch (shape) {
    case 0:  // disk
      return dx * dx + dy * dy <= r * r;
    case 1: {  // ring
      double d = std::sqrt(dx * dx + dy * dy);
      return std::fabs(d - 0.8 * r) <= 1.3;
    }
    case 2:  // square outline
      return std::fabs(std::max(ax, ay) - 0.8 * r) <= 1.0;
    case 3: {  // filled triangle, apex up
      double top = -r, bottom = 0.8 * r;
      if (dy < top || dy > bottom) return false;
      double half_width = r * (dy - top) / (bottom - top);
      return ax <= half_width;
    }
    case 4:  // plus
      return (ax <= 1.2 && ay <= r) || (ay <= 1.2 && ax <= r);
    case 5:  // diagonal cross
      return std::max(ax, ay) <= 0.8 * r &&
             (std::fabs(dx - dy) <= 1.7 || std::fabs(dx + dy) <= 1.7);
  }
  return false;
}

Dataset DrawShapes(int64_t n, uint64_t seed) {
  const int64_t classes = static_cast<int64_t>(ShapeClassNames().size());
  Dataset d;
  d.num_classes = classes;
  d.class_names = ShapeClassNames();
  d.inputs = at::empty({n, 1, kSide, kSide}, at::kFloat);
  d.targets = at::empty({n}, at::kLong);
  float* pixels = d.inputs.data_ptr<float>();
  int64_t* labels = d.targets.data_ptr<int64_t>();
  Rng rng(seed);
  for (int64_t i = 0; i < n; ++i) {
    const int shape = static_cast<int>(i % classes);
    labels[i] = shape;
    const double r = rng.Uniform(5.0, 9.0);
    const double cx = rng.Uniform(4.0 + r * 0.8, kSide - 4.0 - r * 0.8);
    const double cy = rng.Uniform(4.0 + r * 0.8, kSide - 4.0 - r * 0.8);
    const double brightness = rng.Uniform(0.6, 1.0);
    float* img = pixels + i * kSide * kSide;
    for (int y = 0; y < kSide; ++y) {
      for (int x = 0; x < kSide; ++x) {
        double v = InsideShape(shape, x + 0.5 - cx, y + 0.5 - cy, r) ? brightness : 0.0;
        v += 0.08 * rng.Normal();
        img[y * kSide + x] = static_cast<float>(std::clamp(v, 0.0, 1.0));
      }
    }
  }
  return d;
}

Dataset Cap(Dataset d, int64_t cap) {
  if (cap > 0 && cap < d.size()) {
    d.inputs = d.inputs.slice(0, 0, cap).contiguous();
    d.targets = d.targets.slice(0, 0, cap).contiguous();
  }
  return d;
}

absl::Status RequireFiles(const std::string& dir, const std::vector<std::string>& files,
                          absl::string_view what) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(what, " folder ", dir, " does not exist"));
  }
  for (const std::string& f : files) {
    if (!fs::is_regular_file(fs::path(dir) / f, ec)) {
      return absl::NotFoundError(absl::StrCat(what, ": ", (fs::path(dir) / f).string(),
                                              " is missing; the folder must hold the files ",
                                              absl::StrJoin(files, ", ")));
    }
  }
  return absl::OkStatus();
}

// Reads a whole file; DataLoss naming it when it cannot.
absl::StatusOr<std::vector<uint8_t>> ReadFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::DataLossError(absl::StrCat("cannot read ", file.string()));
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// An IDX file (MNIST's format, file_formats.h). LibTorch's MNIST reader
// insists on exactly 60000 and 10000 samples; this one takes any count
// (subsets, tests) and says which file is wrong and how.
absl::StatusOr<at::Tensor> ReadIdx(const fs::path& file, int rank) {
  auto bytes = ReadFile(file);
  if (!bytes.ok()) return bytes.status();
  const std::vector<uint8_t>& b = *bytes;
  auto layout = ParseIdx(absl::string_view(reinterpret_cast<const char*>(b.data()), b.size()), rank,
                         file.string());
  if (!layout.ok()) return layout.status();
  return at::from_blob(const_cast<uint8_t*>(b.data() + layout->data_offset), layout->sizes, at::kByte)
      .clone();
}

// One CIFAR-10 binary batch (file_formats.h).
absl::Status ReadCifarBatch(const fs::path& file, std::vector<uint8_t>* images,
                            std::vector<int64_t>* labels) {
  auto bytes = ReadFile(file);
  if (!bytes.ok()) return bytes.status();
  return ParseCifarBatch(absl::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()),
                         file.string(), images, labels);
}

Dataset CifarTensors(std::vector<uint8_t>& images, std::vector<int64_t>& labels) {
  const int64_t n = static_cast<int64_t>(labels.size());
  Dataset d;
  d.num_classes = 10;
  d.class_names = {"airplane", "automobile", "bird", "cat", "deer",
                   "dog",      "frog",       "horse", "ship", "truck"};
  d.inputs = at::from_blob(images.data(), {n, 3, 32, 32}, at::kByte).to(at::kFloat).div_(255.0);
  d.targets = at::from_blob(labels.data(), {n}, at::kLong).clone();
  return d;
}

}  // namespace

const std::vector<std::string>& ShapeClassNames() {
  static const std::vector<std::string> kNames = {"disk", "ring", "square",
                                                  "triangle", "plus", "cross"};
  return kNames;
}

absl::StatusOr<DatasetSplits> MakeShapesDataset(int64_t train_samples, int64_t val_samples,
                                                uint64_t seed) {
  if (train_samples <= 0 || val_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("shapes: need train_samples > 0 and ",
                                                   "val_samples >= 0, got ", train_samples, " and ",
                                                   val_samples));
  }
  DatasetSplits s;
  s.name = "shapes";
  s.train = DrawShapes(train_samples, seed);
  s.val = DrawShapes(val_samples, seed ^ 0x9E3779B97F4A7C15ull);
  return s;
}

absl::StatusOr<DatasetSplits> LoadMnist(const std::string& dir, int64_t train_cap,
                                        int64_t val_cap) {
  if (absl::Status s = RequireFiles(dir,
                                    {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
                                    "MNIST");
      !s.ok()) {
    return s;
  }
  DatasetSplits s;
  s.name = "mnist";
  for (auto [split, prefix] : {std::pair{&s.train, "train"}, std::pair{&s.val, "t10k"}}) {
    auto images = ReadIdx(fs::path(dir) / absl::StrCat(prefix, "-images-idx3-ubyte"), 3);
    if (!images.ok()) return images.status();
    auto labels = ReadIdx(fs::path(dir) / absl::StrCat(prefix, "-labels-idx1-ubyte"), 1);
    if (!labels.ok()) return labels.status();
    if (images->size(0) != labels->size(0)) {
      return absl::DataLossError(absl::StrCat("MNIST in ", dir, ": ", prefix, " has ",
                                              images->size(0), " images but ", labels->size(0),
                                              " labels"));
    }
    if (labels->numel() > 0 && labels->max().item<int>() > 9) {
      return absl::DataLossError(absl::StrCat("MNIST in ", dir, ": ", prefix,
                                              " labels must be 0..9"));
    }
    split->inputs = images->unsqueeze(1).to(at::kFloat).div_(255.0);
    split->targets = labels->to(at::kLong);
    split->num_classes = 10;
    for (int i = 0; i < 10; ++i) split->class_names.push_back(std::to_string(i));
  }
  s.train = Cap(std::move(s.train), train_cap);
  s.val = Cap(std::move(s.val), val_cap);
  return s;
}

absl::StatusOr<DatasetSplits> LoadCifar10(const std::string& dir, int64_t train_cap,
                                          int64_t val_cap) {
  std::vector<std::string> train_files;
  for (int i = 1; i <= 5; ++i) train_files.push_back(absl::StrCat("data_batch_", i, ".bin"));
  std::vector<std::string> all = train_files;
  all.push_back("test_batch.bin");
  if (absl::Status s = RequireFiles(dir, all, "CIFAR-10"); !s.ok()) return s;
  DatasetSplits s;
  s.name = "cifar10";
  std::vector<uint8_t> images;
  std::vector<int64_t> labels;
  for (const std::string& f : train_files) {
    if (absl::Status st = ReadCifarBatch(fs::path(dir) / f, &images, &labels); !st.ok()) return st;
  }
  s.train = Cap(CifarTensors(images, labels), train_cap);
  images.clear();
  labels.clear();
  if (absl::Status st = ReadCifarBatch(fs::path(dir) / "test_batch.bin", &images, &labels);
      !st.ok()) {
    return st;
  }
  s.val = Cap(CifarTensors(images, labels), val_cap);
  return s;
}

absl::StatusOr<DatasetSplits> LoadDataset(const config::DatasetConfig& c) {
  // dataset.type -> loader. A new dataset is one loader and one line here
  // (and its name in config.cc's check of dataset.type).
  using Loader = absl::StatusOr<DatasetSplits> (*)(const config::DatasetConfig&);
  static const auto* const kLoaders = new std::map<std::string, Loader>{
      {"shapes",
       [](const config::DatasetConfig& d) -> absl::StatusOr<DatasetSplits> {
         return MakeShapesDataset(d.train_samples(), d.val_samples(), d.seed());
       }},
      {"mnist",
       [](const config::DatasetConfig& d) -> absl::StatusOr<DatasetSplits> {
         return LoadMnist(d.dir(), d.train_samples(), d.val_samples());
       }},
      {"cifar10", [](const config::DatasetConfig& d) -> absl::StatusOr<DatasetSplits> {
         return LoadCifar10(d.dir(), d.train_samples(), d.val_samples());
       }}};
  auto it = kLoaders->find(c.type());
  if (it == kLoaders->end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown dataset type \"", c.type(), "\""));
  }
  return it->second(c);
}

}  // namespace trainbus
