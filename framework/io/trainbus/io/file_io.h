// trainbus/io/file_io.h — the one way trainbus writes files.
//
// Event files, checkpoints, the csv plugin and the rewind of a resumed run
// all write through these functions, so every write
//   - retries interrupted and short writes (EINTR, partial write(2)),
//   - reports a failure as an absl::Status in one style, naming what was
//     being done, the file, the OS error and what to do:
//       "checkpoint: cannot write runs/x/checkpoints/step-9.tmp/model.pt:
//        No space left on device (errno 28); free some space ..."
//     with a code that says what kind of failure it is (CodeForErrno),
//   - and, where the data must survive a crash, is made durable (fsync of
//     the file, and of its folder after a rename).
//
// Internal to trainbus (not installed): a static library whose symbols stay
// inside each library that uses it.
#ifndef TRAINBUS_IO_FILE_IO_H_
#define TRAINBUS_IO_FILE_IO_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace trainbus::io {

// "No space left on device (errno 28)": how every trainbus message shows an
// OS error.
std::string ErrnoText(int err);

// The absl code for an errno: kResourceExhausted for a full disk, a file
// size limit or a quota (ENOSPC, EFBIG, EDQUOT), kPermissionDenied (EACCES,
// EPERM, EROFS), kNotFound (ENOENT, ENOTDIR), else kInternal.
absl::StatusCode CodeForErrno(int err);

// "<context>: cannot <action> <path>: <ErrnoText>" and, when given,
// "; <advice>". The code is CodeForErrno(err).
absl::Status ErrnoError(int err, absl::string_view context, absl::string_view action,
                        absl::string_view path, absl::string_view advice = {});

// Writes all of `data` to `fd`, retrying EINTR and short writes. Returns 0
// or the errno of the write that failed; *written (if given) is the number
// of bytes written either way.
int WriteAll(int fd, const char* data, size_t size, size_t* written = nullptr);
// The same for a gather list; `iov` is consumed (advanced past what was written).
int WriteAllV(int fd, struct iovec* iov, int count, size_t* written = nullptr);

// After a failed append that wrote part of its data: cut a regular file back
// to `size` so that no torn record stays (best effort; a pipe is left alone).
void TruncateTornTail(int fd, off_t size);

// Creates (or empties) `path`, writes `contents`, fsyncs and closes it.
absl::Status WriteFileDurably(const std::string& path, absl::string_view contents,
                              absl::string_view context);

// Replaces `path` with `contents` atomically: a reader sees the old file or
// the new one, never a mix, also after a crash. Writes `tmp_path` (default
// "<path>.tmp-<pid>"; choose a name readers of the folder ignore), fsyncs
// it, renames it over `path` and fsyncs the folder. The temporary file is
// removed on failure.
absl::Status AtomicReplace(const std::string& path, absl::string_view contents,
                           absl::string_view context, const std::string& tmp_path = {});

// rename(2) then an fsync of the destination's folder, so the rename
// survives a crash.
absl::Status DurableRename(const std::string& from, const std::string& to,
                           absl::string_view context);

// fsync of a folder (makes creations and renames in it durable). Best
// effort: some file systems cannot sync a folder.
void SyncDirectory(const std::string& dir);

}  // namespace trainbus::io

#endif  // TRAINBUS_IO_FILE_IO_H_
