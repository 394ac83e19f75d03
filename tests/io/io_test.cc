// trainbus/io: writes retried to the end, one message style with a code
// that says what kind of failure it is, atomic replacement that leaves the
// old file whole when it fails, and torn tails cut back.
#include "trainbus/io/file_io.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_util.h"

namespace trainbus::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test_util::ReadFile;
using test_util::TempDir;

TEST(IoTest, MessagesNameContextActionPathErrorAndAdvice) {
  absl::Status s = ErrnoError(ENOSPC, "checkpoint", "write", "/runs/x/model.pt", "free some space");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "checkpoint: cannot write /runs/x/model.pt: No space left on device (errno 28); free "
            "some space");
  EXPECT_EQ(ErrnoError(EACCES, "csv", "open", "/a").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoError(ENOENT, "", "open", "/a").message(),
            "cannot open /a: No such file or directory (errno 2)");
  EXPECT_EQ(CodeForErrno(EFBIG), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CodeForErrno(EDQUOT), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(CodeForErrno(EROFS), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CodeForErrno(EIO), absl::StatusCode::kInternal);
}

TEST(IoTest, WriteAllReportsTheErrnoAndHowMuchWasWritten) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  size_t written = 99;
  EXPECT_EQ(WriteAll(fd, "abc", 3, &written), ENOSPC);
  EXPECT_EQ(written, 0u);
  ::close(fd);
}

TEST(IoTest, AtomicReplaceSwapsWholeFilesAndLeavesTheOldOneWhenItFails) {
  TempDir dir;
  const std::string path = dir.Write("latest", "old\n");
  ASSERT_TRUE(AtomicReplace(path, "new\n", "test").ok());
  EXPECT_EQ(ReadFile(path), "new\n");
  // No temporary file stays behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  // A temporary file that cannot be created: the old file stays as it was.
  absl::Status s = AtomicReplace(path, "newer\n", "test", dir.path() + "/no/such/dir/tmp");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("test: cannot create " + dir.path() +
                                                  "/no/such/dir/tmp: No such file or directory"));
  EXPECT_EQ(ReadFile(path), "new\n");
}

// A write that runs into the file size limit halfway: the torn part is cut
// back, so the file ends where the last whole write ended.
TEST(IoTest, ATornTailIsCutBack) {
  TempDir dir;
  const std::string path = dir.path() + "/rows";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAll(fd, "row 1\n", 6), 0);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 10;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  size_t written = 0;
  const int err = WriteAll(fd, "a long second row\n", 18, &written);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, SIG_DFL);
  EXPECT_EQ(err, EFBIG);
  EXPECT_EQ(written, 4u);  // up to the 10-byte limit
  TruncateTornTail(fd, 6);
  ::close(fd);
  EXPECT_EQ(ReadFile(path), "row 1\n");
}

TEST(IoTest, WriteFileDurablyAndDurableRename) {
  TempDir dir;
  const std::string a = dir.path() + "/a", b = dir.path() + "/b";
  ASSERT_TRUE(WriteFileDurably(a, "payload", "test").ok());
  ASSERT_TRUE(DurableRename(a, b, "test").ok());
  EXPECT_EQ(ReadFile(b), "payload");
  EXPECT_FALSE(fs::exists(a));
  absl::Status s = DurableRename(a, b, "test");
  EXPECT_THAT(std::string(s.message()), HasSubstr("test: cannot rename " + a + " onto " + b));
}

}  // namespace
}  // namespace trainbus::io
