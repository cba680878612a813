// The mount lifecycle: SIGTERM flushes buffered writes, umount of a busy mount, a dead mount
// after kill -9 is reported, and the mount.nexusfs helper translates options.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "integration/mount_fixture.h"

#ifndef NEXUS_SOURCE_DIR
#error "NEXUS_SOURCE_DIR must name the source tree"
#endif

namespace nexus::it {
namespace {

class MountCliTest : public MountTest {
 protected:
  // Waits until no process serves this test's mount (at most ~10 s).
  bool WaitServerGone() {
    for (int i = 0; i < 200; ++i) {
      if (MountPid() == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
};

TEST_F(MountCliTest, SigtermFlushesBufferedWritesAndExits) {
  std::string data = Pattern(3 << 20, 21);
  int fd = open(P("pending").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  // No close, no fsync: the data sits in the mount's write buffers.
  pid_t server = MountPid();
  ASSERT_GT(server, 0);
  ASSERT_EQ(kill(server, SIGTERM), 0);
  ASSERT_TRUE(WaitServerGone()) << MountLog();
  close(fd);  // the connection is gone; the result does not matter
  RunCommand({"umount", "-l", mnt_});
  mounted_ = false;
  Mount(mount_args_);
  EXPECT_EQ(ReadFile(P("pending")), data);
  EXPECT_NE(MountLog().find("stopped"), std::string::npos) << MountLog();
}

TEST_F(MountCliTest, BusyUmountFailsAndForceDetaches) {
  int fd = open(P("held").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "abc", 3), 3);
  std::string out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", mnt_}, &out), 1);
  EXPECT_NE(out.find("busy"), std::string::npos) << out;
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", mnt_}, &out), 0) << out;
  mounted_ = false;
  EXPECT_TRUE(WaitServerGone());
  Mount(mount_args_);
  EXPECT_EQ(ReadFile(P("held")), "abc");
  // --force detaches even with a descriptor open; the process still flushes and exits.
  fd = open(P("held2").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "xyz", 3), 3);
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", "--force", mnt_}, &out), 0) << out;
  close(fd);
  mounted_ = false;
  EXPECT_TRUE(WaitServerGone()) << MountLog();
  Mount(mount_args_);
  EXPECT_EQ(ReadFile(P("held2")), "xyz");
}

TEST_F(MountCliTest, DeadMountIsReportedAndRecoverable) {
  WriteFile(P("f"), "before");
  pid_t server = MountPid();
  ASSERT_GT(server, 0);
  ASSERT_EQ(kill(server, SIGKILL), 0);
  ASSERT_TRUE(WaitServerGone());
  std::string out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "mount", meta_url_, mnt_, "-d"}, &out), 1);
  EXPECT_NE(out.find("dead FUSE mount"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", "--force", mnt_}, &out), 0) << out;
  mounted_ = false;
  Mount(mount_args_);  // the crashed client's session does not block a new mount
  EXPECT_EQ(ReadFile(P("f")), "before");
}

TEST_F(MountCliTest, MountHelperTranslatesOptions) {
  Unmount();
  std::string helper = std::string(NEXUS_SOURCE_DIR) + "/scripts/mount.nexusfs";
  std::string out;
  ASSERT_EQ(setenv("NEXUSFS_BIN", NEXUSFS_BIN, 1), 0);
  ASSERT_EQ(RunCommand({helper, meta_url_, mnt_, "-o",
                        "defaults,_netdev,allow_other,noatime,attr-cache=2,log=" + log_},
                       &out),
            0)
      << out << MountLog();
  mounted_ = true;
  std::string mounts = ReadFile("/proc/self/mounts");
  EXPECT_NE(mounts.find("nexusfs:itvol " + mnt_ + " fuse.nexusfs"), std::string::npos) << mounts;
  std::string config = ReadFile(P(".config"));
  EXPECT_NE(config.find("\"atime_mode\": \"noatime\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"attr_cache_s\": 2"), std::string::npos) << config;
  EXPECT_NE(config.find("allow_other"), std::string::npos) << config;
  ASSERT_EQ(RunCommand({helper, meta_url_, mnt_, "-f", "-o", "cache-size=64,ro"}, &out), 0);
  EXPECT_NE(out.find("--cache-size 64"), std::string::npos) << out;
  EXPECT_NE(out.find("-o ro"), std::string::npos) << out;
}

TEST_F(MountCliTest, WritebackCacheMode) {
  Unmount();
  Mount({"-o", "writeback_cache"});
  std::string config = ReadFile(P(".config"));
  EXPECT_NE(config.find("\"writeback_cache\": true"), std::string::npos) << config;
  std::string data = Pattern(5 << 20, 31);
  WriteFile(P("wb"), data);
  int fd = open(P("wb").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "appended", 8), 8);
  ASSERT_EQ(pwrite(fd, "X", 1, 10), 1);  // O_APPEND: Linux appends pwrite data too
  ASSERT_EQ(close(fd), 0);
  std::string want = data + "appended" + "X";
  EXPECT_EQ(ReadFile(P("wb")), want);
  Remount();
  EXPECT_EQ(ReadFile(P("wb")), want);
}

TEST_F(MountCliTest, ReadOnlyMount) {
  WriteFile(P("f"), "data");
  Unmount();
  Mount({"-o", "ro"});
  EXPECT_EQ(ReadFile(P("f")), "data");
  errno = 0;
  EXPECT_LT(open(P("g").c_str(), O_CREAT | O_WRONLY, 0644), 0);
  EXPECT_EQ(errno, EROFS);
  EXPECT_LT(mkdir(P("d").c_str(), 0755), 0);
  EXPECT_EQ(errno, EROFS);
}

// The kernel caps a FUSE connection's readahead at 128 KiB; the mount widens it (to 1 MiB by
// default) once the connection is up, through its bdi's read_ahead_kb.
TEST_F(MountCliTest, KernelReadaheadIsSetOnTheMountsBdi) {
  auto readahead_kb = [&]() -> std::string {
    struct stat st;
    if (stat(mnt_.c_str(), &st) != 0) return "stat failed";
    std::string v = ReadFile("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                             std::to_string(minor(st.st_dev)) + "/read_ahead_kb");
    while (!v.empty() && v.back() == '\n') v.pop_back();
    return v;
  };
  auto wait_for = [&](const std::string& want) {
    std::string got;
    for (int i = 0; i < 100 && (got = readahead_kb()) != want; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return got;
  };
  EXPECT_EQ(wait_for("1024"), "1024") << MountLog();
  const std::string data = Pattern(24 << 20, 41);
  WriteFile(P("seq"), data);
  Unmount();
  Mount({"--kernel-readahead", "4096"});
  EXPECT_EQ(wait_for("4096"), "4096") << MountLog();
  EXPECT_EQ(ReadFile(P("seq")), data) << "read with a 4 MiB window";
  EXPECT_NE(ReadFile(P(".config")).find("\"kernel_readahead_kb\": 4096"), std::string::npos);
  Unmount();
  Mount({"--kernel-readahead", "0"});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(readahead_kb(), "128") << "the kernel's own window";
  EXPECT_EQ(ReadFile(P("seq")), data);
  std::string out;
  EXPECT_NE(
      RunCommand({NEXUSFS_BIN, "mount", meta_url_, mnt_ + "-x", "--kernel-readahead", "-1"}, &out),
      0);
  EXPECT_NE(out.find("kernel-readahead"), std::string::npos) << out;
}

}  // namespace
}  // namespace nexus::it
