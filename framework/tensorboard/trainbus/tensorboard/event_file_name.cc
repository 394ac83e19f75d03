#include "trainbus/tensorboard/event_file_name.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace trainbus::tensorboard {
namespace {
std::atomic<uint64_t> g_file_counter{0};
}  // namespace

std::string EventFileName(int64_t unix_seconds, absl::string_view hostname, int64_t pid,
                          uint64_t counter, absl::string_view suffix) {
  // Zero-padded so that name order is creation order, which is the order
  // TensorBoard reads a run's files in (pid 9999 must sort before 10000).
  return absl::StrFormat("events.out.tfevents.%010d.%s.%07d.%06d%s", unix_seconds, hostname, pid,
                         counter, suffix);
}

std::string NewEventFileName(absl::string_view suffix) {
  return EventFileName(static_cast<int64_t>(::time(nullptr)), HostName(),
                       static_cast<int64_t>(::getpid()),
                       g_file_counter.fetch_add(1, std::memory_order_relaxed), suffix);
}

std::string DefaultLogDir(absl::string_view comment) {
  const time_t now = ::time(nullptr);
  struct tm local;
  ::localtime_r(&now, &local);
  char stamp[64];
  ::strftime(stamp, sizeof stamp, "%b%d_%H-%M-%S", &local);
  return absl::StrCat("runs/", stamp, "_", HostName(), absl::string_view(comment.data(), comment.size()));
}

std::string HostName() {
  char buf[256];
  if (::gethostname(buf, sizeof buf) != 0) return "localhost";
  buf[sizeof buf - 1] = '\0';
  return buf[0] ? std::string(buf) : std::string("localhost");
}

double CoarseNowSeconds() {
  static const bool usable = [] {
    struct timespec res;
    return ::clock_getres(CLOCK_REALTIME_COARSE, &res) == 0 && res.tv_sec == 0 &&
           res.tv_nsec <= 4'000'000;
  }();
  if (!usable) return NowSeconds();
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double NowSeconds() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace trainbus::tensorboard
