// Privilege rules found by pjdfstest: a write by another user drops set-id bits, and a
// descriptor opened for writing may ftruncate whatever the mode says now.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

class PrivsTest : public MountTest {};

int Errno(int rc) { return rc < 0 ? errno : 0; }

TEST_F(PrivsTest, WriteByAnotherUserDropsSetIdBits) {
  for (mode_t mode : {04777, 02777, 06777}) {
    std::string f = P("setid");
    int fd = open(f.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(chmod(f.c_str(), mode), 0);
    EXPECT_EQ(RunAsNobody([&] {
                int w = open(f.c_str(), O_WRONLY);
                if (w < 0) return 1;
                int rc = write(w, "x", 1) == 1 ? 0 : 2;
                struct stat st;
                if (fstat(w, &st) != 0 || (st.st_mode & 07777) != 0777) rc = 3;
                close(w);
                return rc;
              }),
              0)
        << std::oct << mode;
    struct stat st;
    ASSERT_EQ(stat(f.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777u) << std::oct << mode;
    ASSERT_EQ(unlink(f.c_str()), 0);
  }
  // The owner may not be bypassed otherwise: another user cannot chmod, even to drop bits
  // together with other changes.
  std::string g = P("other");
  int fd = open(g.c_str(), O_CREAT | O_WRONLY, 0666);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(chmod(g.c_str(), 04666), 0);
  EXPECT_EQ(RunAsNobody([&] { return Errno(chmod(g.c_str(), 0644)); }), EPERM);
}

TEST_F(PrivsTest, FtruncateThroughAWritableDescriptorIgnoresTheCurrentMode) {
  ASSERT_EQ(chmod(mnt_.c_str(), 0777), 0);
  std::string f = P("mode0");
  EXPECT_EQ(RunAsNobody([&] {
              int fd = open(f.c_str(), O_CREAT | O_RDWR, 0);
              if (fd < 0) return 1;
              if (write(fd, "data", 4) != 4) return 2;
              int rc = ftruncate(fd, 1) == 0 ? 0 : 3;
              close(fd);
              // Through the path, permission is checked again: mode 0 refuses it.
              if (truncate(f.c_str(), 0) == 0 || errno != EACCES) rc = 4;
              return rc;
            }),
            0);
  struct stat st;
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1);
}

}  // namespace
}  // namespace nexus::it
