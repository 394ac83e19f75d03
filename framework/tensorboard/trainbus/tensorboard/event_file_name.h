// trainbus/tensorboard/event_file_name.h — names of event files and runs.
//
// TensorBoard reads every file whose name contains "tfevents". trainbus uses
// the same name as TensorFlow and PyTorch:
//
//   events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid, 7 digits>.<n, 6 digits><suffix>
//
// where <n> is a process-wide counter, so two writers in one directory (in
// one process, in one second) never get the same name; the pid keeps
// processes apart. Numbers are zero-padded: TensorBoard reads a run's files
// in name order, and a resumed session's file must come after the files of
// the session it continues, also when both started in the same second.
//
//   std::string name = NewEventFileName(".train");  // takes the next <n>
//   std::string dir  = DefaultLogDir("_lr0.1");     // runs/May04_13-45-10_host_lr0.1
//
// All functions are thread-safe.
#ifndef TRAINBUS_TENSORBOARD_EVENT_FILE_NAME_H_
#define TRAINBUS_TENSORBOARD_EVENT_FILE_NAME_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

namespace trainbus::tensorboard {

// The file name for the given parts (no counter is taken).
std::string EventFileName(int64_t unix_seconds, absl::string_view hostname, int64_t pid,
                          uint64_t counter, absl::string_view suffix);

// A fresh name for now, this host and this process, taking the next value
// of the process-wide counter.
std::string NewEventFileName(absl::string_view suffix);

// "runs/<Mon><DD>_<HH>-<MM>-<SS>_<hostname><comment>" in local time, like
// torch.utils.tensorboard.SummaryWriter's default log_dir.
std::string DefaultLogDir(absl::string_view comment);

// This machine's host name ("localhost" if it cannot be found).
std::string HostName();

// Wall-clock time now, in seconds since the epoch, with sub-second precision.
double NowSeconds();

// The wall time add_scalar stamps when given none: the kernel's coarse
// real-time clock (CLOCK_REALTIME_COARSE), read in ~5 ns instead of ~25 ns,
// to the last scheduler tick (1-4 ms). TensorBoard's time axes never need
// more. Falls back to NowSeconds() where that clock is coarser than 4 ms.
double CoarseNowSeconds();

}  // namespace trainbus::tensorboard

#endif  // TRAINBUS_TENSORBOARD_EVENT_FILE_NAME_H_
