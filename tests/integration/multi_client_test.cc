// Two mounts of one volume (multi_client_fixture.h), on every engine that supports several
// clients: close-to-open consistency, namespace changes, open-unlinked files, and locks across
// clients with the wake-up latency of a blocked waiter.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <thread>

#include "integration/multi_client_fixture.h"
#include "meta/meta.h"

namespace nexus::it {
namespace {

using Clock = std::chrono::steady_clock;

TEST_P(MultiClientTest, CloseToOpen) {
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

TEST_P(MultiClientTest, NamespaceChangesAreVisible) {
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

TEST_P(MultiClientTest, FlockAcrossClients) {
  WriteFile(P("lock"), "");
  int a = open(P("lock").c_str(), O_RDWR);
  int b = open(Q("lock").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(flock(a, LOCK_EX), 0);
  errno = 0;
  EXPECT_NE(flock(b, LOCK_EX | LOCK_NB), 0);
  EXPECT_EQ(errno, EWOULDBLOCK);
  EXPECT_NE(flock(b, LOCK_SH | LOCK_NB), 0);
  ASSERT_EQ(flock(a, LOCK_UN), 0);
  EXPECT_EQ(flock(b, LOCK_EX | LOCK_NB), 0) << std::strerror(errno);
  EXPECT_NE(flock(a, LOCK_SH | LOCK_NB), 0);
  close(a);
  close(b);
}

// A file unlinked through one client while the other has it open stays readable and writable
// there until its last close; then its inode and its blocks go away.
TEST_P(MultiClientTest, UnlinkedWhileOpenElsewhere) {
  const std::string data = Pattern(3 << 20, 4);
  WriteFile(P("victim"), data);
  const size_t objects_with = CountFiles(work_ + "/data");
  ASSERT_GT(objects_with, 0u);
  struct stat st;
  ASSERT_EQ(stat(P("victim").c_str(), &st), 0);
  const meta::Ino ino = st.st_ino;

  int b = open(Q("victim").c_str(), O_RDWR);
  ASSERT_GE(b, 0) << std::strerror(errno);
  ASSERT_EQ(unlink(P("victim").c_str()), 0) << std::strerror(errno);
  errno = 0;
  EXPECT_NE(access(Q("victim").c_str(), F_OK), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(access(P("victim").c_str(), F_OK), 0);

  // B still reads the whole file and writes to it.
  std::string got(data.size(), '\0');
  ASSERT_EQ(pread(b, got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  EXPECT_TRUE(got == data) << "the open-unlinked file's data changed";
  const std::string more = Pattern(64 << 10, 5);
  ASSERT_EQ(pwrite(b, more.data(), more.size(), 1 << 20), static_cast<ssize_t>(more.size()));
  ASSERT_EQ(fsync(b), 0) << std::strerror(errno);
  std::string back(more.size(), '\0');
  ASSERT_EQ(pread(b, back.data(), back.size(), 1 << 20), static_cast<ssize_t>(back.size()));
  EXPECT_TRUE(back == more);
  ASSERT_EQ(fstat(b, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));

  // Still there for the engine while B holds it.
  auto m = OpenMetaForCheck(meta_url_);
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->GetAttr(ino).has_value()) << "inode removed while open on the other client";

  ASSERT_EQ(close(b), 0);
  // The last close removes the inode at once and its blocks in the background (within ~1 s).
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline && CountFiles(work_ + "/data") != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto gone = m->GetAttr(ino);
  ASSERT_FALSE(gone.has_value()) << "inode " << ino << " outlived its last close";
  EXPECT_EQ(gone.error().code(), ENOENT);
  EXPECT_EQ(CountFiles(work_ + "/data"), 0u) << "blocks of the deleted file are left";
}

// Waits until `blocked` (running a blocking lock call) finishes; returns how long after
// `released` it did, or -1 when it did not within 10 s.
double WakeDelayMs(std::future<int>& blocked, Clock::time_point released, int* rc) {
  if (blocked.wait_until(released + std::chrono::seconds(10)) != std::future_status::ready) {
    return -1;
  }
  *rc = blocked.get();
  return std::chrono::duration<double, std::milli>(Clock::now() - released).count();
}

TEST_P(MultiClientTest, BlockedFlockWakesPromptlyOnRemoteRelease) {
  WriteFile(P("lock"), "");
  int a = open(P("lock").c_str(), O_RDWR);
  int b = open(Q("lock").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_EQ(flock(a, LOCK_EX), 0);
    auto blocked = std::async(std::launch::async, [b] { return flock(b, LOCK_EX); });
    // Long enough for the waiter's retry backoff to reach its longest step.
    EXPECT_EQ(blocked.wait_for(std::chrono::milliseconds(round == 0 ? 300 : 1500)),
              std::future_status::timeout)
        << "flock on B did not wait for A's lock";
    const auto released = Clock::now();
    ASSERT_EQ(flock(a, LOCK_UN), 0);
    int rc = -1;
    const double ms = WakeDelayMs(blocked, released, &rc);
    ASSERT_GE(ms, 0) << "B's waiter was not woken within 10 s of A's release";
    EXPECT_EQ(rc, 0);
    std::printf("[ measure ] %s flock wake-up after remote release: %.1f ms\n", GetParam().c_str(),
                ms);
    EXPECT_LT(ms, 3000);
    // Now A is excluded until B lets go.
    EXPECT_NE(flock(a, LOCK_EX | LOCK_NB), 0);
    ASSERT_EQ(flock(b, LOCK_UN), 0);
  }
  close(a);
  close(b);
}

int SetLk(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return fcntl(fd, cmd, &fl);
}

TEST_P(MultiClientTest, FcntlLocksExcludeAcrossClients) {
  WriteFile(P("plock"), std::string(4096, 'x'));
  int a = open(P("plock").c_str(), O_RDWR);
  int b = open(Q("plock").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_EQ(SetLk(a, F_SETLK, F_WRLCK, 0, 100), 0) << std::strerror(errno);
  // Overlapping ranges conflict; disjoint ones do not; F_GETLK reports the holder's range.
  errno = 0;
  EXPECT_EQ(SetLk(b, F_SETLK, F_RDLCK, 50, 10), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << std::strerror(errno);
  EXPECT_EQ(SetLk(b, F_SETLK, F_WRLCK, 100, 100), 0) << std::strerror(errno);
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 0;
  ASSERT_EQ(fcntl(b, F_GETLK, &probe), 0);
  EXPECT_EQ(probe.l_type, F_WRLCK);
  EXPECT_EQ(probe.l_start, 0);
  EXPECT_EQ(probe.l_len, 100);

  // A blocked F_SETLKW on B wakes when A unlocks.
  auto blocked = std::async(std::launch::async, [b] { return SetLk(b, F_SETLKW, F_WRLCK, 0, 0); });
  EXPECT_EQ(blocked.wait_for(std::chrono::milliseconds(800)), std::future_status::timeout)
      << "F_SETLKW on B did not wait for A's lock";
  const auto released = Clock::now();
  ASSERT_EQ(SetLk(a, F_SETLK, F_UNLCK, 0, 0), 0);
  int rc = -1;
  const double ms = WakeDelayMs(blocked, released, &rc);
  ASSERT_GE(ms, 0) << "B's F_SETLKW was not woken within 10 s of A's release";
  EXPECT_EQ(rc, 0) << std::strerror(errno);
  std::printf("[ measure ] %s fcntl wake-up after remote release: %.1f ms\n", GetParam().c_str(),
              ms);
  EXPECT_LT(ms, 3000);
  // B now holds the whole file: A is refused anywhere.
  EXPECT_EQ(SetLk(a, F_SETLK, F_RDLCK, 4000, 1), -1);
  close(b);  // closing releases B's POSIX locks
  EXPECT_EQ(SetLk(a, F_SETLK, F_WRLCK, 0, 0), 0) << std::strerror(errno);
  close(a);
}

INSTANTIATE_TEST_SUITE_P(Engines, MultiClientTest, ::testing::ValuesIn(SharedEngines()),
                         EngineParamName);

}  // namespace
}  // namespace nexus::it
