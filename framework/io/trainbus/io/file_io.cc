#include "trainbus/io/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace trainbus::io {

std::string ErrnoText(int err) {
  // strerror_r (GNU form): writer threads report errors concurrently.
  char buf[256];
  const char* text = ::strerror_r(err, buf, sizeof(buf));
  return absl::StrCat(text, " (errno ", err, ")");
}

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kPermissionDenied;
    case ENOENT:
    case ENOTDIR:
      return absl::StatusCode::kNotFound;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status ErrnoError(int err, absl::string_view context, absl::string_view action,
                        absl::string_view path, absl::string_view advice) {
  std::string message = absl::StrCat(context, context.empty() ? "" : ": ", "cannot ", action, " ",
                                     path, ": ", ErrnoText(err));
  if (!advice.empty()) absl::StrAppend(&message, "; ", advice);
  return absl::Status(CodeForErrno(err), message);
}

int WriteAll(int fd, const char* data, size_t size, size_t* written) {
  size_t done = 0;
  int err = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) {  // no progress and no error: treat as a full device
      err = ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (written != nullptr) *written = done;
  return err;
}

int WriteAllV(int fd, struct iovec* iov, int count, size_t* written) {
  size_t done = 0;
  int err = 0;
  while (count > 0) {
    const ssize_t n = ::writev(fd, iov, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) {
      err = ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  if (written != nullptr) *written = done;
  return err;
}

void TruncateTornTail(int fd, off_t size) {
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) (void)::ftruncate(fd, size);
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view contents,
                              absl::string_view context) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError(errno, context, "create", path);
  absl::Status s;
  if (int err = WriteAll(fd, contents.data(), contents.size()); err != 0) {
    s = ErrnoError(err, context, "write", path);
  } else if (::fsync(fd) != 0) {
    s = ErrnoError(errno, context, "fsync", path);
  }
  if (::close(fd) != 0 && s.ok()) s = ErrnoError(errno, context, "close", path);
  return s;
}

absl::Status AtomicReplace(const std::string& path, absl::string_view contents,
                           absl::string_view context, const std::string& tmp_path) {
  const std::string tmp = tmp_path.empty() ? absl::StrCat(path, ".tmp-", ::getpid()) : tmp_path;
  absl::Status s = WriteFileDurably(tmp, contents, context);
  if (s.ok()) s = DurableRename(tmp, path, context);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

absl::Status DurableRename(const std::string& from, const std::string& to,
                           absl::string_view context) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoError(errno, context, absl::StrCat("rename ", from, " onto"), to);
  }
  SyncDirectory(std::filesystem::path(to).parent_path().string());
  return absl::OkStatus();
}

void SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace trainbus::io
