#include "trainbus/tensorboard/projector.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/text_format.h"
#include "trainbus/io/file_io.h"
#include "trainbus/tensorboard/png_encoder.h"
#include "trainbus/tensorboard/proto/projector.pb.h"

namespace trainbus::tensorboard {
namespace {

constexpr int64_t kMaxSpriteSide = 8192;
constexpr char kConfigName[] = "projector_config.pbtxt";
constexpr char kContext[] = "add_embedding";

absl::Status Invalid(absl::string_view tag, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("embedding '", tag, "': ", what));
}

std::string TsvCell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"\t", " "}, {"\r\n", " "}, {"\n", " "}, {"\r", " "}});
}

std::string TensorsTsv(const ProjectorEmbedding& e) {
  std::string out;
  out.reserve(static_cast<size_t>(e.points * e.dim * 12));
  for (int64_t i = 0; i < e.points; ++i) {
    for (int64_t j = 0; j < e.dim; ++j) {
      if (j > 0) out += '\t';
      absl::StrAppendFormat(&out, "%.9g", e.values[static_cast<size_t>(i * e.dim + j)]);
    }
    out += '\n';
  }
  return out;
}

std::string MetadataTsv(const EmbeddingMetadata& m) {
  std::string out;
  auto row = [&out](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) out += '\t';
      out += TsvCell(cells[i]);
    }
    out += '\n';
  };
  if (!m.header.empty()) row(m.header);
  for (const auto& r : m.rows) row(r);
  return out;
}

absl::Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io::ErrnoError(ec.value(), kContext, "create the folder", dir,
                                "check that the log directory is writable");
  return absl::OkStatus();
}

// One process writes a run's config at a time; this keeps two writers of
// one process (two SummaryWriters on one log_dir) from losing an entry.
std::mutex& ConfigMutex() {
  static std::mutex* const mu = new std::mutex;
  return *mu;
}

std::string ConfigPath(const std::string& log_dir) { return absl::StrCat(log_dir, "/", kConfigName); }

// The run's config; empty when there is none. Caller holds ConfigMutex().
absl::StatusOr<proto::ProjectorConfig> ReadConfig(const std::string& path) {
  proto::ProjectorConfig config;
  std::ifstream in(path);
  if (!in) return config;
  std::stringstream text;
  text << in.rdbuf();
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &config)) {
    return absl::FailedPreconditionError(
        absl::StrCat(kContext, ": ", path,
                     " exists but is not a projector config; move it away and log again"));
  }
  return config;
}

// The whole config at once; the temporary name has no "tfevents", so
// TensorBoard ignores it.
absl::Status WriteConfig(const std::string& path, const proto::ProjectorConfig& config) {
  std::string out;
  google::protobuf::TextFormat::PrintToString(config, &out);
  return io::AtomicReplace(path, out, kContext, absl::StrCat(path, ".tmp"));
}

// Keeps the config's settings, not its embeddings.
proto::ProjectorConfig EmptyLike(const proto::ProjectorConfig& config) {
  proto::ProjectorConfig out;
  out.set_model_checkpoint_path(config.model_checkpoint_path());
  out.set_model_checkpoint_dir(config.model_checkpoint_dir());
  return out;
}

absl::Status UpdateConfig(const std::string& log_dir, const proto::EmbeddingInfo& info) {
  std::lock_guard<std::mutex> lock(ConfigMutex());
  absl::StatusOr<proto::ProjectorConfig> config = ReadConfig(ConfigPath(log_dir));
  if (!config.ok()) return config.status();
  proto::ProjectorConfig updated = EmptyLike(*config);
  for (const proto::EmbeddingInfo& old : config->embeddings()) {
    if (old.tensor_name() != info.tensor_name()) *updated.add_embeddings() = old;
  }
  *updated.add_embeddings() = info;
  return WriteConfig(ConfigPath(log_dir), updated);
}

}  // namespace

EmbeddingMetadata EmbeddingMetadata::Labels(std::vector<std::string> labels) {
  EmbeddingMetadata m;
  m.rows.reserve(labels.size());
  for (std::string& l : labels) m.rows.push_back({std::move(l)});
  return m;
}

int64_t SpriteColumns(int64_t points, int64_t width, int64_t height) {
  if (points <= 0 || width <= 0 || height <= 0) return 1;
  const double side = std::sqrt(static_cast<double>(points) * width * height);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(side / static_cast<double>(width))));
}

absl::StatusOr<int64_t> RemoveEmbeddingsFrom(const std::string& log_dir, int64_t step) {
  std::lock_guard<std::mutex> lock(ConfigMutex());
  absl::StatusOr<proto::ProjectorConfig> config = ReadConfig(ConfigPath(log_dir));
  if (!config.ok()) return config.status();
  proto::ProjectorConfig kept = EmptyLike(*config);
  std::vector<std::string> folders;
  for (const proto::EmbeddingInfo& e : config->embeddings()) {
    if (EmbeddingStep(e.tensor_name()) >= step) {
      // Only a folder of the form add_embedding writes ("<step>/<tag>"),
      // inside log_dir: never what a hand-edited path points at.
      const std::filesystem::path folder =
          std::filesystem::path(e.tensor_path()).parent_path().lexically_normal();
      std::vector<std::string> parts;
      for (const auto& p : folder) parts.push_back(p.string());
      const bool ours = parts.size() == 2 && !parts[0].empty() &&
                        std::all_of(parts[0].begin(), parts[0].end(), ::isdigit) &&
                        parts[1] != "." && parts[1] != ".." && !folder.is_absolute();
      if (ours) folders.push_back(absl::StrCat(log_dir, "/", folder.string()));
    } else {
      *kept.add_embeddings() = e;
    }
  }
  const int64_t removed = config->embeddings_size() - kept.embeddings_size();
  if (removed == 0) return 0;
  if (absl::Status s = WriteConfig(ConfigPath(log_dir), kept); !s.ok()) return s;
  // The config no longer names them; their files go too (best effort).
  for (const std::string& folder : folders) {
    std::error_code ec;
    std::filesystem::remove_all(folder, ec);
  }
  return removed;
}

std::string EmbeddingSubdir(absl::string_view tag, int64_t step) {
  return absl::StrFormat("%05d/%s", step, absl::StrReplaceAll(tag, {{"%", "%25"}, {"/", "%2f"}}));
}

absl::Status CheckEmbedding(absl::string_view tag, int64_t step, const ProjectorEmbedding& e) {
  if (tag.empty()) return Invalid(tag, "the tag is empty; name the embedding");
  // The tag is a folder name ('/' and '%' are escaped): "." and ".." would
  // point at the step's folder or the run's.
  if (tag == "." || tag == "..") {
    return Invalid(tag, "the tag cannot be \".\" or \"..\" (it names a folder); give it a name");
  }
  if (step < 0) return Invalid(tag, absl::StrCat("step must be >= 0, got ", step));
  if (e.points < 1 || e.dim < 1) {
    return Invalid(tag, absl::StrCat("needs at least one point of at least one dimension, got ",
                                     e.points, " x ", e.dim));
  }
  if (e.values.size() != static_cast<size_t>(e.points * e.dim)) {
    return Invalid(tag, absl::StrCat("expected points x dim = ", e.points * e.dim,
                                     " values, got ", e.values.size()));
  }
  for (size_t i = 0; i < e.values.size(); ++i) {
    if (!std::isfinite(e.values[i])) {
      return Invalid(tag, absl::StrCat("point ", i / e.dim, " has a non-finite value (",
                                       e.values[i], ") in dimension ", i % e.dim));
    }
  }
  if (!e.metadata.empty()) {
    if (e.metadata.rows.size() != static_cast<size_t>(e.points)) {
      return Invalid(tag, absl::StrCat(e.metadata.rows.size(), " metadata row(s) for ",
                                       e.points, " points; give one per point"));
    }
    const size_t columns = e.metadata.header.empty() ? 1 : e.metadata.header.size();
    if (e.metadata.header.size() == 1) {
      return Invalid(tag, "a header needs two or more columns (one column is written without "
                          "one, as the Projector expects); pass labels without a header");
    }
    for (size_t i = 0; i < e.metadata.rows.size(); ++i) {
      if (e.metadata.rows[i].size() != columns) {
        return Invalid(tag, absl::StrCat("metadata row ", i, " has ", e.metadata.rows[i].size(),
                                         " column(s); the header has ", columns));
      }
    }
  }
  if (e.sprite) {
    if (e.sprite->width > kMaxSpriteSide || e.sprite->height > kMaxSpriteSide) {
      return Invalid(tag, absl::StrCat("the sprite of ", e.points, " images of ", e.image_width,
                                       " x ", e.image_height, " would be ", e.sprite->width,
                                       " x ", e.sprite->height,
                                       " pixels; the Projector loads at most 8192 x 8192. Pass "
                                       "fewer or smaller images"));
    }
    if (e.image_width < 1 || e.image_height < 1) {
      return Invalid(tag, "the sprite's image size is not set");
    }
  }
  return absl::OkStatus();
}

absl::Status WriteProjectorEmbedding(const std::string& log_dir, absl::string_view tag,
                                     int64_t step, const ProjectorEmbedding& e) {
  if (absl::Status s = CheckEmbedding(tag, step, e); !s.ok()) return s;
  const std::string subdir = EmbeddingSubdir(tag, step);
  const std::string dir = absl::StrCat(log_dir, "/", subdir);
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;

  proto::EmbeddingInfo info;
  info.set_tensor_name(absl::StrFormat("%s:%05d", tag, step));
  info.set_tensor_path(absl::StrCat(subdir, "/tensors.tsv"));
  if (absl::Status s = io::WriteFileDurably(absl::StrCat(dir, "/tensors.tsv"), TensorsTsv(e),
                                            kContext);
      !s.ok()) {
    return s;
  }
  if (!e.metadata.empty()) {
    info.set_metadata_path(absl::StrCat(subdir, "/metadata.tsv"));
    if (absl::Status s = io::WriteFileDurably(absl::StrCat(dir, "/metadata.tsv"),
                                              MetadataTsv(e.metadata), kContext);
        !s.ok()) {
      return s;
    }
  }
  if (e.sprite) {
    absl::StatusOr<std::string> png =
        EncodePng(e.sprite->pixels.data(), static_cast<int>(e.sprite->width),
                  static_cast<int>(e.sprite->height), static_cast<int>(e.sprite->channels));
    if (!png.ok()) return Invalid(tag, png.status().message());
    info.mutable_sprite()->set_image_path(absl::StrCat(subdir, "/sprite.png"));
    info.mutable_sprite()->add_single_image_dim(static_cast<uint32_t>(e.image_width));
    info.mutable_sprite()->add_single_image_dim(static_cast<uint32_t>(e.image_height));
    if (absl::Status s = io::WriteFileDurably(absl::StrCat(dir, "/sprite.png"), *png, kContext);
        !s.ok()) {
      return s;
    }
  }
  return UpdateConfig(log_dir, info);
}

}  // namespace trainbus::tensorboard
