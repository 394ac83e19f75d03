#include "trainbus/tensorboard/rewind.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/io/file_io.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/record_framing.h"

namespace trainbus::tensorboard {
namespace {

namespace fs = std::filesystem;

// Why a rewind writes, for every message it returns.
constexpr absl::string_view kContext = "rewinding the run's event files before a resume";
constexpr absl::string_view kAdvice = "check the folder's permissions and free space";

bool IsHParamsTag(const std::string& tag) { return absl::StartsWith(tag, "_hparams_/"); }

// The event as it should stay, or false if nothing of it stays. `changed` is
// set when the event had to be altered (some of its values removed).
bool Keep(proto::Event* event, int64_t step, bool* changed) {
  if (event->has_file_version()) return true;  // every file keeps its header
  if (event->step() >= step) return false;
  if (!event->has_summary()) return true;
  auto* values = event->mutable_summary()->mutable_value();
  const int before = values->size();
  values->erase(std::remove_if(values->begin(), values->end(),
                               [](const proto::Summary::Value& v) { return IsHParamsTag(v.tag()); }),
                values->end());
  if (values->size() == before) return true;
  *changed = true;
  return !values->empty();
}

// Writes `bytes` next to `path` and renames it over `path`, durably.
absl::Status ReplaceFile(const std::string& path, const std::string& bytes) {
  const fs::path p(path);
  // No "tfevents" in the name: TensorBoard must never read a half-written copy.
  const std::string tmp = (p.parent_path() / (".trainbus-rewind-" + std::to_string(::getpid()) +
                                              "-" + std::to_string(std::hash<std::string>{}(path))))
                              .string();
  absl::Status s = io::AtomicReplace(path, bytes, kContext, tmp);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), "; ", kAdvice));
}

// Rewrites one event file; adds to `report`.
absl::Status RewindFile(const std::string& path, int64_t step, RewindReport* report) {
  absl::StatusOr<std::unique_ptr<EventFileReader>> reader = EventFileReader::Open(path);
  if (!reader.ok()) return reader.status();
  std::string kept;
  std::string data;
  proto::Event event;
  bool changed = false;
  int64_t removed = 0;
  while ((*reader)->ReadRecord(&data)) {
    bool altered = false;
    if (!event.ParseFromString(data)) {
      report->skipped.push_back(
          absl::StrCat(path, ": unparsable event at byte ", (*reader)->offset()));
      return absl::OkStatus();
    }
    if (!Keep(&event, step, &altered)) {
      ++removed;
      changed = true;
      continue;
    }
    if (altered) {
      changed = true;
      AppendRecord(event.SerializeAsString(), &kept);
    } else {
      AppendRecord(data, &kept);  // unchanged records stay byte for byte
    }
  }
  switch ((*reader)->state()) {
    case EventFileReader::State::kEnd:
      break;
    case EventFileReader::State::kTruncated:
      changed = true;  // drop the cut-off tail of a killed writer
      break;
    default:
      report->skipped.push_back((*reader)->problem());
      return absl::OkStatus();
  }
  if (!changed) return absl::OkStatus();
  reader->reset();  // close before replacing
  if (absl::Status s = ReplaceFile(path, kept); !s.ok()) return s;
  report->files_rewritten += 1;
  report->events_removed += removed;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RewindReport> RewindRun(const std::string& log_dir, int64_t step) {
  RewindReport report;
  std::error_code ec;
  if (!fs::is_directory(log_dir, ec)) return report;
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(log_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        absl::StrContains(it->path().filename().string(), "tfevents")) {
      files.push_back(it->path().string());
    }
  }
  if (ec) return io::ErrnoError(ec.value(), kContext, "list", log_dir, kAdvice);
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    if (absl::Status s = RewindFile(f, step, &report); !s.ok()) return s;
  }
  absl::StatusOr<int64_t> embeddings = RemoveEmbeddingsFrom(log_dir, step);
  if (!embeddings.ok()) return embeddings.status();
  report.embeddings_removed = *embeddings;
  return report;
}

}  // namespace trainbus::tensorboard
