#include "trainbus/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include "absl/strings/str_cat.h"
#include "trainbus/io/file_io.h"
#include "trainbus/proto/checkpoint.pb.h"
#include "trainbus/version.h"

namespace trainbus {
namespace internal {
// Called between the stages of WriteCheckpoint ("model", "optimizer", "meta",
// "rename"); tests use it to crash a child process mid-write.
void (*checkpoint_stage_hook)(const char* stage) = nullptr;
}  // namespace internal

namespace {

namespace fs = std::filesystem;

constexpr const char* kModelFile = "model.pt";
constexpr const char* kOptimizerFile = "optimizer.pt";
constexpr const char* kMetaFile = "meta.pb";
constexpr const char* kLatestFile = "latest";

void Stage(const char* stage) {
  if (internal::checkpoint_stage_hook) internal::checkpoint_stage_hook(stage);
}


// Every write of a checkpoint goes through trainbus/io (one message style).
constexpr absl::string_view kContext = "checkpoint";

absl::Status WriteFileDurably(const std::string& path, const std::string& bytes) {
  return io::WriteFileDurably(path, bytes, kContext);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("checkpoint: cannot read ", path, ": ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Module::load() silently takes tensors of another shape; compare first,
// walking the archive the way Module::save() nested it.
absl::Status CheckShapes(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                         const std::string& prefix) {
  auto check = [&](const std::string& name, const at::Tensor& mine, bool is_buffer) -> absl::Status {
    at::Tensor stored;
    if (!archive.try_read(name, stored, is_buffer)) {
      return absl::FailedPreconditionError(absl::StrCat("it has no tensor '", prefix, name, "'"));
    }
    if (stored.sizes() != mine.sizes()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "'", prefix, name, "' has shape ", c10::str(stored.sizes()), " there and ",
          c10::str(mine.sizes()), " here"));
    }
    return absl::OkStatus();
  };
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    if (absl::Status s = check(p.key(), p.value(), false); !s.ok()) return s;
  }
  for (const auto& b : module.named_buffers(/*recurse=*/false)) {
    if (absl::Status s = check(b.key(), b.value(), true); !s.ok()) return s;
  }
  for (const auto& child : module.named_children()) {
    torch::serialize::InputArchive sub;
    if (!archive.try_read(child.key(), sub)) {
      return absl::FailedPreconditionError(absl::StrCat("it has no submodule '", prefix, child.key(), "'"));
    }
    if (absl::Status s = CheckShapes(*child.value(), sub, prefix + child.key() + "."); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CheckpointBlob> SerializeCheckpoint(torch::nn::Module* model,
                                                   torch::optim::Optimizer* optimizer,
                                                   const CheckpointState& state) {
  CheckpointBlob blob;
  try {
    if (model != nullptr) {
      torch::serialize::OutputArchive archive;
      model->save(archive);
      std::ostringstream out;
      archive.save_to(out);
      blob.model = out.str();
    }
    if (optimizer != nullptr) {
      torch::serialize::OutputArchive archive;
      optimizer->save(archive);
      std::ostringstream out;
      archive.save_to(out);
      blob.optimizer = out.str();
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("checkpoint: serialising the model or optimizer failed: ", e.what()));
  }
  checkpoint::CheckpointMeta meta;
  meta.set_format_version(kCheckpointFormatVersion);
  meta.set_next_step(state.next_step);
  meta.set_epoch(state.epoch);
  meta.set_batch_index(state.batch_index);
  meta.set_sample_offset(state.sample_offset);
  meta.set_epoch_iterations(state.epoch_iterations);
  meta.set_epoch_loss_sum(state.epoch_loss_sum);
  if (optimizer != nullptr) {
    for (auto& group : optimizer->param_groups()) meta.add_learning_rates(group.options().get_lr());
  }
  meta.set_batch_size(state.batch_size);
  meta.set_wall_time(state.wall_time > 0 ? state.wall_time : NowSeconds());
  meta.set_reason(state.reason);
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor rng = gen.get_state();
    meta.set_rng_state(std::string(static_cast<const char*>(rng.data_ptr()), rng.numel()));
  }
  for (const auto& [name, bytes] : state.plugin_states) (*meta.mutable_plugin_states())[name] = bytes;
  for (const auto& [name, json] : state.plugin_options) (*meta.mutable_plugin_options())[name] = json;
  meta.set_host_state(state.host_state);
  meta.set_torch_version(TRAINBUS_TORCH_VERSION);
  meta.set_trainbus_version(TRAINBUS_VERSION_STRING);
  for (const auto& [file, bytes] : {std::pair<const char*, const std::string*>{kModelFile, &blob.model},
                                    {kOptimizerFile, &blob.optimizer}}) {
    auto* d = meta.add_files();
    d->set_name(file);
    d->set_size(bytes->size());
    d->set_crc32(Crc32(*bytes));
  }
  blob.meta = meta.SerializeAsString();
  return blob;
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& root, const std::string& name,
                                            const CheckpointBlob& blob,
                                            const std::function<absl::Status()>& before_commit) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.' || name == kLatestFile) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: bad checkpoint name '", name, "'"));
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) {
    return io::ErrnoError(ec.value(), kContext, "create folder", root,
                          "Check the path and permissions.");
  }
  const std::string tmp = (fs::path(root) / absl::StrCat(".", name, ".tmp-", ::getpid())).string();
  const std::string final_dir = (fs::path(root) / name).string();
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec) {
    return io::ErrnoError(ec ? ec.value() : EEXIST, kContext, "create", tmp);
  }
  // A failed write (disk full, file size limit, I/O error) says which
  // checkpoint is missing, that the previous one is intact and what to do.
  auto fail = [&](absl::Status s) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    const fs::path latest = fs::path(root) / kLatestFile;
    return absl::Status(
        s.code(),
        absl::StrCat(s.message(), ". Checkpoint ", final_dir, " was not saved; ",
                     fs::exists(latest, ignored)
                         ? absl::StrCat(latest.string(), " still names the newest complete checkpoint")
                         : absl::StrCat("there is no earlier checkpoint in ", root),
                     ". To go on, free disk space (or raise the file size limit) or give the "
                     "checkpoint plugin another 'dir'"));
  };
  if (absl::Status s = WriteFileDurably((fs::path(tmp) / kModelFile).string(), blob.model); !s.ok()) return fail(s);
  Stage("model");
  if (absl::Status s = WriteFileDurably((fs::path(tmp) / kOptimizerFile).string(), blob.optimizer); !s.ok()) {
    return fail(s);
  }
  Stage("optimizer");
  if (absl::Status s = WriteFileDurably((fs::path(tmp) / kMetaFile).string(), blob.meta); !s.ok()) return fail(s);
  Stage("meta");
  io::SyncDirectory(tmp);
  if (before_commit) {
    if (absl::Status s = before_commit(); !s.ok()) return fail(s);
  }
  Stage("barrier");
  fs::remove_all(final_dir, ec);  // an older checkpoint of the same name
  if (absl::Status s = io::DurableRename(tmp, final_dir, kContext); !s.ok()) return fail(s);
  Stage("rename");
  // Point `latest` at it, atomically.
  const std::string latest = (fs::path(root) / kLatestFile).string();
  const std::string latest_tmp = (fs::path(root) / absl::StrCat(".latest.tmp-", ::getpid())).string();
  if (absl::Status s = io::AtomicReplace(latest, name + "\n", kContext, latest_tmp); !s.ok()) {
    return s;
  }
  // Leftovers of crashed writes.
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string f = entry.path().filename().string();
    if (f.size() > 1 && f[0] == '.' && f.find(".tmp-") != std::string::npos && entry.path() != tmp) {
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
  }
  return final_dir;
}

namespace {

// The complete checkpoint folder under `root` written last (its meta.pb is
// written last of its files), or "" if there is none.
std::string NewestCompleteCheckpoint(const fs::path& root) {
  std::error_code ec;
  std::string best;
  fs::file_time_type best_time;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !fs::is_regular_file(entry.path() / kMetaFile, ec)) continue;
    const fs::file_time_type t = fs::last_write_time(entry.path() / kMetaFile, ec);
    if (ec) continue;
    if (best.empty() || t > best_time || (t == best_time && entry.path().string() > best)) {
      best = entry.path().string();
      best_time = t;
    }
  }
  return best;
}

}  // namespace

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(fs::path(path) / kMetaFile, ec)) return path;
  const fs::path latest = fs::path(path) / kLatestFile;
  if (fs::is_regular_file(latest, ec)) {
    auto name = ReadFile(latest.string());
    if (!name.ok()) return name.status();
    std::string n = *name;
    while (!n.empty() && (n.back() == '\n' || n.back() == '\r' || n.back() == ' ')) n.pop_back();
    const fs::path dir = fs::path(path) / n;
    if (n.empty() || !fs::is_regular_file(dir / kMetaFile, ec)) {
      const std::string newest = NewestCompleteCheckpoint(path);
      return absl::DataLossError(absl::StrCat(
          "checkpoint: ", latest.string(), " names '", n, "', which is not a complete checkpoint in ",
          path,
          newest.empty() ? std::string(" (and there is no other)")
                         : absl::StrCat("; the newest complete one is ", newest,
                                        ": resume with --resume ", newest)));
    }
    return dir.string();
  }
  if (!fs::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint: ", path, " does not exist"));
  }
  // No `latest`: a run killed between renaming a checkpoint into place and
  // writing `latest` (or one that never got that far). Every folder here
  // with a meta.pb is complete (it was renamed into place whole).
  if (std::string newest = NewestCompleteCheckpoint(path); !newest.empty()) return newest;
  return absl::NotFoundError(absl::StrCat(
      "checkpoint: ", path, " is neither a checkpoint folder (no ", kMetaFile,
      ") nor a checkpoint root (no 'latest' file and no complete checkpoint folder). Give the "
      "run's checkpoints folder, e.g. runs/<name>/checkpoints"));
}

absl::StatusOr<CheckpointState> LoadCheckpoint(const std::string& path, torch::nn::Module* model,
                                               torch::optim::Optimizer* optimizer) {
  auto dir = ResolveCheckpoint(path);
  if (!dir.ok()) return dir.status();
  auto meta_bytes = ReadFile((fs::path(*dir) / kMetaFile).string());
  if (!meta_bytes.ok()) return meta_bytes.status();
  auto parsed = ParseCheckpointMeta(*meta_bytes, *dir);  // checkpoint_meta.h: no LibTorch
  if (!parsed.ok()) return parsed.status();
  const checkpoint::CheckpointMeta& meta = *parsed;
  std::map<std::string, std::string> files;
  for (const auto& d : meta.files()) {
    auto bytes = ReadFile((fs::path(*dir) / d.name()).string());
    if (!bytes.ok()) return bytes.status();
    if (absl::Status s = VerifyCheckpointFile(d, *bytes, *dir); !s.ok()) return s;
    files[d.name()] = std::move(*bytes);
  }
  try {
    if (model != nullptr) {
      if (files[kModelFile].empty()) {
        return absl::FailedPreconditionError(absl::StrCat("checkpoint ", *dir, " holds no model"));
      }
      torch::serialize::InputArchive archive;
      archive.load_from(files[kModelFile].data(), files[kModelFile].size());
      if (absl::Status s = CheckShapes(*model, archive, ""); !s.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "checkpoint ", *dir, " does not fit this model (was it saved with another model "
            "config?): ", s.message()));
      }
      model->load(archive);
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", *dir, " does not fit this model (was it saved with another model config?): ", what));
  }
  try {
    if (optimizer != nullptr && !files[kOptimizerFile].empty()) {
      torch::serialize::InputArchive archive;
      archive.load_from(files[kOptimizerFile].data(), files[kOptimizerFile].size());
      optimizer->load(archive);
      auto& groups = optimizer->param_groups();
      if (meta.learning_rates_size() > 0 &&
          meta.learning_rates_size() != static_cast<int>(groups.size())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "checkpoint ", *dir, " has ", meta.learning_rates_size(),
            " optimizer param groups, this optimizer has ", groups.size()));
      }
      for (int g = 0; g < meta.learning_rates_size(); ++g) {
        groups[g].options().set_lr(meta.learning_rates(g));
      }
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", *dir, " does not fit this optimizer (was it saved with another optimizer type?): ", what));
  }
  if (!meta.rng_state().empty()) {
    at::Tensor state = at::empty({static_cast<int64_t>(meta.rng_state().size())}, at::kByte);
    std::memcpy(state.data_ptr(), meta.rng_state().data(), meta.rng_state().size());
    try {
      at::Generator gen = at::detail::getDefaultCPUGenerator();  // shares the default
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(state);
    } catch (const std::exception& e) {
      return absl::DataLossError(absl::StrCat("checkpoint ", *dir, ": bad RNG state: ", e.what()));
    }
  }
  CheckpointState s;
  s.next_step = meta.next_step();
  s.epoch = meta.epoch();
  s.batch_index = meta.batch_index();
  s.sample_offset = meta.sample_offset();
  s.epoch_iterations = meta.epoch_iterations();
  s.epoch_loss_sum = meta.epoch_loss_sum();
  s.batch_size = meta.batch_size();
  s.reason = meta.reason();
  s.wall_time = meta.wall_time();
  s.host_state = meta.host_state();
  for (const auto& [name, bytes] : meta.plugin_states()) s.plugin_states[name] = bytes;
  for (const auto& [name, json] : meta.plugin_options()) s.plugin_options[name] = json;
  return s;
}

CheckpointWriter::CheckpointWriter() : thread_([this] { Loop(); }) {}

CheckpointWriter::~CheckpointWriter() { Close().IgnoreError(); }

absl::Status CheckpointWriter::Save(std::string root, std::string name, CheckpointBlob blob,
                                    std::vector<std::string> remove_after,
                                    std::vector<FlushBarrier> barriers) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) {
    return absl::Status(error_.code(),
                        absl::StrCat("not written, because an earlier write failed: ", error_.message()));
  }
  if (stop_) return absl::FailedPreconditionError("checkpoint: the writer is closed");
  queue_.push_back(Job{std::move(root), std::move(name), std::move(blob), std::move(remove_after),
                      std::move(barriers)});
  cv_.notify_all();
  return absl::OkStatus();
}

absl::Status CheckpointWriter::status() {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

absl::Status CheckpointWriter::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  return error_;
}

absl::Status CheckpointWriter::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return error_;
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  return error_;
}

void CheckpointWriter::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    Job job = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    // The checkpoint says "resume after step N": commit it only once every
    // plugin's files hold everything up to step N, or a kill right after
    // the commit would lose those steps for good.
    auto wait_for_plugins = [&job]() -> absl::Status {
      for (const FlushBarrier& b : job.barriers) {
        absl::Status s = b.wait();
        if (!s.ok()) {
          return absl::Status(s.code(), absl::StrCat("plugin '", b.plugin,
                                                     "' could not write its data up to this "
                                                     "checkpoint: ", s.message()));
        }
      }
      return absl::OkStatus();
    };
    auto written = WriteCheckpoint(job.root, job.name, job.blob, wait_for_plugins);
    if (written.ok()) {
      for (const std::string& old : job.remove_after) {
        std::error_code ignored;
        if (old != *written) fs::remove_all(old, ignored);
      }
    }
    lock.lock();
    busy_ = false;
    if (!written.ok() && error_.ok()) error_ = written.status();
    cv_.notify_all();
  }
}

}  // namespace trainbus
