// Two mounts of one volume (a shared SQLite engine and object store), as two clients on two
// machines would see it: close-to-open consistency, locks across clients, and renames.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

class MultiClientTest : public MountTest {
 protected:
  std::string MetaScheme() const override { return "sqlite3"; }

  void SetUp() override {
    MountTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // Both clients without kernel caches of names and attributes, so that what one changes the
    // other sees at once (with caches, within their TTLs, it may see the old state).
    const std::vector<std::string> no_cache = {"--attr-cache",      "0", "--entry-cache", "0",
                                               "--dir-entry-cache", "0"};
    Unmount();
    Mount(no_cache);
    mnt2_ = work_ + "/mnt2";
    ASSERT_EQ(mkdir(mnt2_.c_str(), 0755), 0);
    std::string out;
    std::vector<std::string> argv = {NEXUSFS_BIN, "mount", meta_url_,        mnt2_,
                                     "-d",        "--log", work_ + "/m2.log"};
    argv.insert(argv.end(), no_cache.begin(), no_cache.end());
    ASSERT_EQ(RunCommand(argv, &out), 0) << out;
    mounted2_ = true;
  }

  void TearDown() override {
    if (mounted2_) {
      std::string out;
      if (RunCommand({NEXUSFS_BIN, "umount", mnt2_}, &out) != 0) {
        ADD_FAILURE() << "umount of the second mount: " << out;
        RunCommand({"umount", "-l", mnt2_});
      }
    }
    MountTest::TearDown();
  }

  std::string Q(const std::string& rel) const { return mnt2_ + "/" + rel; }

  std::string mnt2_;
  bool mounted2_ = false;
};

TEST_F(MultiClientTest, CloseToOpen) {
  WriteFile(P("f"), "from client one");
  EXPECT_EQ(ReadFile(Q("f")), "from client one");
  // Overwrite through the second client; the first sees it at its next open.
  std::string big = Pattern(2 << 20, 9);
  WriteFile(Q("f"), big);
  EXPECT_EQ(ReadFile(P("f")), big);
  int fd = open(P("f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "+tail", 5), 5);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadFile(Q("f")), big + "+tail");
}

TEST_F(MultiClientTest, NamespaceChangesAreVisible) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  WriteFile(P("d/a"), "a");
  struct stat st;
  ASSERT_EQ(stat(Q("d/a").c_str(), &st), 0);
  ASSERT_EQ(rename(Q("d/a").c_str(), Q("d/b").c_str()), 0);
  EXPECT_EQ(ReadFile(P("d/b")), "a");
  errno = 0;
  EXPECT_NE(stat(P("d/a").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(MultiClientTest, FlockAcrossClients) {
  WriteFile(P("lock"), "");
  int a = open(P("lock").c_str(), O_RDWR);
  int b = open(Q("lock").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(flock(a, LOCK_EX), 0);
  errno = 0;
  EXPECT_NE(flock(b, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ASSERT_EQ(flock(a, LOCK_UN), 0);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), 0) << std::strerror(errno);
  close(a);
  close(b);
}

}  // namespace
}  // namespace nexus::it
