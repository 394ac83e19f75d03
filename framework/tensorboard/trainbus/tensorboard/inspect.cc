#include "trainbus/tensorboard/inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <cstdlib>
#include <map>
#include <optional>
#include <vector>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "google/protobuf/text_format.h"
#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/projector.h"
#include "trainbus/tensorboard/proto/projector.pb.h"

namespace trainbus::tensorboard {
namespace fs = std::filesystem;
namespace {

std::string KindFromPlugin(const std::string& plugin) {
  static const std::map<std::string, std::string> kKinds = {
      {"scalars", "scalar"},   {"histograms", "histogram"},
      {"images", "image"},     {"text", "text"},
      {"hparams", "hparams"},  {"pr_curves", "pr_curve"},
      {"custom_scalars", "custom_scalars"}, {"audio", "audio"}};
  auto it = kKinds.find(plugin);
  return it == kKinds.end() ? plugin : it->second;
}

std::string KindFromValue(const proto::Summary::Value& v) {
  switch (v.value_case()) {
    case proto::Summary::Value::kSimpleValue:
      return "scalar";
    case proto::Summary::Value::kHisto:
      return "histogram";
    case proto::Summary::Value::kImage:
      // add_video's animated GIFs are images to TensorBoard.
      return absl::StartsWith(v.image().encoded_image_string(), "GIF8") ? "video" : "image";
    case proto::Summary::Value::kAudio:
      return "audio";
    default:
      return "tensor";
  }
}

std::optional<double> ScalarOf(const proto::Summary::Value& v) {
  if (v.value_case() == proto::Summary::Value::kSimpleValue) return v.simple_value();
  if (v.value_case() == proto::Summary::Value::kTensor) {
    const proto::TensorProto& t = v.tensor();
    if (t.float_val_size() > 0) return t.float_val(0);
    if (t.double_val_size() > 0) return t.double_val(0);
    if (t.dtype() == proto::DT_FLOAT && t.tensor_content().size() == 4) {
      float f;
      std::memcpy(&f, t.tensor_content().data(), 4);
      return f;
    }
    if (t.dtype() == proto::DT_DOUBLE && t.tensor_content().size() == 8) {
      double d;
      std::memcpy(&d, t.tensor_content().data(), 8);
      return d;
    }
  }
  return std::nullopt;
}

// One summary value as read, in file order: what both loaders are replayed on.
struct TagPoint {
  int64_t step = 0;
  std::optional<double> value;  // scalars
};

// Replays a run's events as TensorBoard's two loaders store them, per tag:
//  - the Rust data server (the default, --load_fast): a point at step s
//    evicts the tag's points at steps >= s, so steps only ever increase;
//  - the Python loader (--load_fast=false, purge_orphaned_data on): with
//    file_version >= 2, every SessionLog START after the run's first one
//    drops all points at steps >= its step; without a file version, a summary
//    whose step went back drops its own tags' points at steps >= that step.
//    Anything else stays, duplicates and steps going back included.
class LoaderReplay {
 public:
  void Event(const proto::Event& event) {
    if (event.has_file_version()) file_version_ = ParseFileVersion(event.file_version());
    if (file_version_ >= 2) {
      if (event.has_session_log() && event.session_log().status() == proto::SessionLog::START) {
        if (seen_start_) {
          for (auto& [tag, points] : legacy_) Drop(&points, event.step());
        }
        seen_start_ = true;
      }
    } else if (event.has_summary() && event.step() < most_recent_step_) {
      for (const proto::Summary::Value& v : event.summary().value()) {
        auto it = legacy_.find(v.tag());
        if (it != legacy_.end()) Drop(&it->second, event.step());
      }
    }
    if (event.has_summary()) most_recent_step_ = event.step();
  }

  void Point(const std::string& tag, const TagPoint& p) {
    legacy_[tag].push_back(p);
    std::vector<TagPoint>& fast = fast_[tag];
    while (!fast.empty() && fast.back().step >= p.step) fast.pop_back();
    fast.push_back(p);
  }

  // Fills count, the legacy figures and first/last step and value.
  void Finish(InspectTag* t) const {
    const std::vector<TagPoint>& fast = fast_.at(t->tag);
    const std::vector<TagPoint>& legacy = legacy_.at(t->tag);
    t->count = static_cast<int64_t>(fast.size());
    t->count_legacy = static_cast<int64_t>(legacy.size());
    std::vector<int64_t> steps;
    for (size_t i = 0; i < legacy.size(); ++i) {
      steps.push_back(legacy[i].step);
      if (i > 0 && legacy[i].step < legacy[i - 1].step) ++t->backward_steps;
    }
    std::sort(steps.begin(), steps.end());
    t->duplicate_steps = static_cast<int64_t>(steps.size() - static_cast<size_t>(
        std::unique(steps.begin(), steps.end()) - steps.begin()));
    if (!fast.empty()) {
      t->first_step = fast.front().step;
      t->last_step = fast.back().step;
      t->last_value = fast.back().value;
    }
  }

 private:
  // "brain.Event:2" -> 2; anything unparsable counts as no version.
  static double ParseFileVersion(const std::string& v) {
    const size_t colon = v.rfind(':');
    if (colon == std::string::npos) return 0;
    char* end = nullptr;
    const double d = std::strtod(v.c_str() + colon + 1, &end);
    return end != v.c_str() + colon + 1 ? d : 0;
  }
  static void Drop(std::vector<TagPoint>* points, int64_t step) {
    points->erase(std::remove_if(points->begin(), points->end(),
                                 [step](const TagPoint& p) { return p.step >= step; }),
                  points->end());
  }

  double file_version_ = 0;
  bool seen_start_ = false;
  int64_t most_recent_step_ = -1;
  std::map<std::string, std::vector<TagPoint>> legacy_;
  std::map<std::string, std::vector<TagPoint>> fast_;
};

constexpr char kRunGraphTag[] = "__run_graph__";

// The Projector's embeddings of a run (projector_config.pbtxt): one "tag"
// each, named as the Projector lists it, at the step its name ends with.
void InspectProjector(const std::string& dir, InspectRun* run) {
  const std::string path = dir + "/projector_config.pbtxt";
  std::ifstream in(path);
  if (!in) return;
  std::stringstream text;
  text << in.rdbuf();
  proto::ProjectorConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &config)) {
    run->problems.push_back({path, 0, InspectProblem::Kind::kCorrupt,
                             "not a projector config (protobuf text format)"});
    return;
  }
  for (const proto::EmbeddingInfo& e : config.embeddings()) {
    InspectTag t;
    t.tag = e.tensor_name();
    t.kind = "embedding";
    t.count = t.count_legacy = t.written = 1;
    t.first_step = t.last_step = std::max<int64_t>(0, EmbeddingStep(e.tensor_name()));
    run->tags.push_back(std::move(t));
  }
}

void InspectFile(const std::string& path, InspectRun* run, std::map<std::string, InspectTag>* tags,
                 LoaderReplay* replay) {
  absl::StatusOr<std::unique_ptr<EventFileReader>> reader = EventFileReader::Open(path);
  if (!reader.ok()) {
    run->problems.push_back(
        {path, 0, InspectProblem::Kind::kUnreadable, std::string(reader.status().message())});
    return;
  }
  proto::Event event;
  while ((*reader)->ReadEvent(&event)) {
    ++run->events;
    replay->Event(event);
    if (event.what_case() == proto::Event::kGraphDef) {
      // TensorBoard files the run's graph under this tag.
      auto [it, inserted] = tags->try_emplace(kRunGraphTag);
      if (inserted) {
        it->second.tag = kRunGraphTag;
        it->second.kind = "graph";
      }
      ++it->second.written;
      replay->Point(kRunGraphTag, TagPoint{event.step(), std::nullopt});
      continue;
    }
    if (!event.has_summary()) continue;
    for (const proto::Summary::Value& v : event.summary().value()) {
      auto [it, inserted] = tags->try_emplace(v.tag());
      InspectTag& t = it->second;
      if (inserted) t.tag = v.tag();
      if (t.kind.empty() || t.kind == "tensor") {
        t.kind = v.has_metadata() && !v.metadata().plugin_data().plugin_name().empty()
                     ? KindFromPlugin(v.metadata().plugin_data().plugin_name())
                     : KindFromValue(v);
      }
      ++t.written;
      TagPoint p;
      p.step = event.step();
      if (t.kind == "scalar") p.value = ScalarOf(v);
      replay->Point(v.tag(), p);
    }
  }
  const EventFileReader::State state = (*reader)->state();
  if (state == EventFileReader::State::kTruncated) {
    run->problems.push_back({path, (*reader)->offset(), InspectProblem::Kind::kTruncated,
                             (*reader)->problem()});
  } else if (state == EventFileReader::State::kCorrupt) {
    run->problems.push_back({path, (*reader)->offset(), InspectProblem::Kind::kCorrupt,
                             (*reader)->problem()});
  } else if (state == EventFileReader::State::kIoError) {
    run->problems.push_back({path, (*reader)->offset(), InspectProblem::Kind::kUnreadable,
                             (*reader)->problem()});
  }
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.9g", v);
}

}  // namespace

bool InspectReport::corrupt() const {
  for (const InspectRun& r : runs) {
    for (const InspectProblem& p : r.problems) {
      if (p.kind != InspectProblem::Kind::kTruncated) return true;
    }
  }
  return false;
}

int64_t InspectReport::truncated() const {
  int64_t n = 0;
  for (const InspectRun& r : runs) {
    for (const InspectProblem& p : r.problems) n += p.kind == InspectProblem::Kind::kTruncated;
  }
  return n;
}

const char* InspectProblemKindName(InspectProblem::Kind kind) {
  switch (kind) {
    case InspectProblem::Kind::kTruncated:
      return "truncated";
    case InspectProblem::Kind::kCorrupt:
      return "corrupt";
    case InspectProblem::Kind::kUnreadable:
      return "unreadable";
  }
  return "?";
}

absl::StatusOr<InspectReport> InspectLogDir(const std::string& logdir) {
  std::error_code ec;
  if (!fs::is_directory(logdir, ec)) {
    return absl::NotFoundError(absl::StrCat("log directory '", logdir,
                                            "' does not exist or is not a directory"));
  }
  std::map<std::string, std::vector<std::string>> files_by_dir;
  fs::recursive_directory_iterator it(logdir, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list log directory '", logdir, "': ", ec.message()));
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::directory_entry& entry = *it;
    if (!entry.is_regular_file(ec)) continue;
    if (entry.path().filename().string().find("tfevents") == std::string::npos) continue;
    files_by_dir[entry.path().parent_path().string()].push_back(entry.path().string());
  }
  InspectReport report;
  report.logdir = logdir;
  for (auto& [dir, files] : files_by_dir) {
    std::sort(files.begin(), files.end());
    InspectRun run;
    run.run = fs::path(dir).lexically_relative(logdir).string();
    if (run.run.empty()) run.run = ".";
    run.files = files;
    std::map<std::string, InspectTag> tags;
    LoaderReplay replay;
    for (const std::string& f : files) InspectFile(f, &run, &tags, &replay);
    for (auto& [name, tag] : tags) {
      replay.Finish(&tag);
      run.tags.push_back(std::move(tag));
    }
    InspectProjector(dir, &run);
    std::sort(run.tags.begin(), run.tags.end(),
              [](const InspectTag& a, const InspectTag& b) { return a.tag < b.tag; });
    report.runs.push_back(std::move(run));
  }
  return report;
}

void PrintInspectReport(const InspectReport& report, bool json, std::ostream& out) {
  if (json) {
    out << "{\"logdir\": " << JsonString(report.logdir)
        << ", \"corrupt\": " << (report.corrupt() ? "true" : "false")
        << ", \"truncated\": " << report.truncated() << ", \"runs\": [";
    for (size_t r = 0; r < report.runs.size(); ++r) {
      const InspectRun& run = report.runs[r];
      out << (r ? ", " : "") << "{\"run\": " << JsonString(run.run) << ", \"files\": [";
      for (size_t i = 0; i < run.files.size(); ++i) {
        out << (i ? ", " : "") << JsonString(run.files[i]);
      }
      out << "], \"events\": " << run.events << ", \"tags\": [";
      for (size_t i = 0; i < run.tags.size(); ++i) {
        const InspectTag& t = run.tags[i];
        out << (i ? ", " : "") << "{\"tag\": " << JsonString(t.tag)
            << ", \"kind\": " << JsonString(t.kind) << ", \"count\": " << t.count
            << ", \"count_legacy\": " << t.count_legacy << ", \"written\": " << t.written
            << ", \"duplicate_steps\": " << t.duplicate_steps
            << ", \"backward_steps\": " << t.backward_steps
            << ", \"first_step\": " << t.first_step << ", \"last_step\": " << t.last_step;
        if (t.last_value) out << ", \"last_value\": " << JsonNumber(*t.last_value);
        out << "}";
      }
      out << "], \"problems\": [";
      for (size_t i = 0; i < run.problems.size(); ++i) {
        const InspectProblem& p = run.problems[i];
        out << (i ? ", " : "") << "{\"file\": " << JsonString(p.file)
            << ", \"offset\": " << p.offset
            << ", \"kind\": " << JsonString(InspectProblemKindName(p.kind))
            << ", \"message\": " << JsonString(p.message) << "}";
      }
      out << "]}";
    }
    out << "]}\n";
    return;
  }
  out << "Log directory: " << report.logdir << "\n";
  if (report.runs.empty()) {
    out << "  no event files (names containing \"tfevents\") found\n";
  }
  for (const InspectRun& run : report.runs) {
    out << "\nRun " << run.run << "  (" << run.files.size() << " file"
        << (run.files.size() == 1 ? "" : "s") << ", " << run.events << " events)\n";
    size_t width = 3;
    for (const InspectTag& t : run.tags) width = std::max(width, t.tag.size());
    out << absl::StrFormat("  %-14s %-*s %8s %8s %12s %12s  %s\n", "KIND",
                           static_cast<int>(width), "TAG", "SHOWN", "WRITTEN", "FIRST STEP",
                           "LAST STEP", "LAST VALUE");
    for (const InspectTag& t : run.tags) {
      out << absl::StrFormat("  %-14s %-*s %8d %8d %12d %12d  %s\n", t.kind,
                             static_cast<int>(width), t.tag, t.count, t.written, t.first_step,
                             t.last_step,
                             t.last_value ? absl::StrFormat("%.6g", *t.last_value) : "");
      if (t.duplicate_steps > 0 || t.backward_steps > 0) {
        out << "  WARNING " << t.tag << ": TensorBoard's Python loader shows "
            << t.count_legacy << " points, " << t.duplicate_steps << " at a step shown before, "
            << t.backward_steps << " going back a step (the default loader shows " << t.count
            << "); a resumed run that did not rewind its event files?\n";
      }
    }
    for (const InspectProblem& p : run.problems) {
      out << "  " << (p.kind == InspectProblem::Kind::kTruncated ? "WARNING" : "ERROR") << " "
          << InspectProblemKindName(p.kind) << ": " << p.file << " at byte " << p.offset
          << ": " << p.message << "\n";
    }
  }
  int64_t tags = 0;
  int64_t disagree = 0;
  for (const InspectRun& run : report.runs) {
    tags += static_cast<int64_t>(run.tags.size());
    for (const InspectTag& t : run.tags) disagree += t.count != t.count_legacy;
  }
  out << "\n"
      << report.runs.size() << " run(s), " << tags << " tag(s), " << report.truncated()
      << " truncated file(s), " << (report.corrupt() ? "CORRUPT data found" : "no corruption")
      << (disagree > 0 ? absl::StrCat(", ", disagree, " tag(s) shown differently by "
                                                        "TensorBoard's two loaders")
                       : std::string())
      << "\n";
}

int InspectExitCode(const InspectReport& report) { return report.corrupt() ? 1 : 0; }

}  // namespace trainbus::tensorboard
