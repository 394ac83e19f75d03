// libFuzzer target: the event-file reader and the summary behind
// `trainbus inspect` (EventFileReader, ReadEventFile, InspectLogDir and both
// report formats) on arbitrary bytes.
//
// The first input byte picks how the rest becomes a file:
//   even: the bytes are the file, as is (framing, length/data checksums,
//         truncation at any offset);
//   odd:  the bytes are a sequence of payloads, each preceded by a 2-byte
//         little-endian length, framed as records with valid checksums, so
//         that the fuzzer reaches Event parsing and inspect's summaries
//         instead of stopping at a checksum. Bit 1 of the first byte then
//         flips one bit of the last record's data checksum.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include "absl/strings/string_view.h"

#include "trainbus/tensorboard/event_file_reader.h"
#include "trainbus/tensorboard/inspect.h"
#include "trainbus/tensorboard/record_framing.h"

namespace {

namespace fs = std::filesystem;
namespace tb = trainbus::tensorboard;

// One folder per process, removed at exit; the event file is rewritten for
// every input.
struct Scratch {
  Scratch() {
    const char* base = fs::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/trainbus_fuzz_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir = tmpl;
    file = dir + "/events.out.tfevents.1700000000.fuzz.1.0";
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string dir;
  std::string file;
};

std::string Frame(const uint8_t* data, size_t size, bool corrupt_last) {
  std::string out;
  size_t last_footer = std::string::npos;
  while (size >= 2) {
    size_t len = data[0] | (static_cast<size_t>(data[1]) << 8);
    data += 2;
    size -= 2;
    if (len > size) len = size;
    tb::AppendRecord(absl::string_view(reinterpret_cast<const char*>(data), len), &out);
    last_footer = out.size() - tb::kRecordFooterSize;
    data += len;
    size -= len;
  }
  if (corrupt_last && last_footer != std::string::npos) out[last_footer] ^= 1;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch* scratch = new Scratch;  // removed by atexit below
  static const bool registered = [] {
    std::atexit([] { delete scratch; });
    return true;
  }();
  (void)registered;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string bytes = (mode & 1) ? Frame(data + 1, size - 1, (mode & 2) != 0)
                                       : std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  {
    std::FILE* f = std::fopen(scratch->file.c_str(), "wb");
    if (f == nullptr) std::abort();
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
    std::fclose(f);
  }

  // The reader alone: every record, then how it ended.
  auto contents = tb::ReadEventFile(scratch->file);
  if (!contents.ok()) std::abort();  // the file exists: opening cannot fail
  if (contents->end == tb::EventFileReader::State::kOk) std::abort();  // reading stopped early
  if (contents->end != tb::EventFileReader::State::kEnd && contents->problem.empty()) std::abort();
  if (contents->problem_offset > bytes.size()) std::abort();

  // What `trainbus inspect` does with the folder.
  auto report = tb::InspectLogDir(scratch->dir);
  if (!report.ok()) std::abort();
  std::ostringstream text, json;
  tb::PrintInspectReport(*report, /*json=*/false, text);
  tb::PrintInspectReport(*report, /*json=*/true, json);
  const int code = tb::InspectExitCode(*report);
  if (code != 0 && code != 1) std::abort();
  return 0;
}
