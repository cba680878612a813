// Advanced behaviour over a real mount: locks between processes, shared mmap, concurrent
// O_APPEND, sparse files with SEEK_DATA/SEEK_HOLE, fallocate, huge directories, mount errors
// and a kill -9 of the mount process during writes.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

class AdvancedTest : public MountTest {};

// True when `fd` becomes readable within `ms`.
bool Readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) > 0;
}

// Forks a child that runs `acquire(fd)` on its own descriptor of `path` and then writes 'L' to
// a pipe. The parent, holding the lock, checks that the child stays blocked until `release`.
void ExpectBlockedUntilRelease(const std::string& path, int (*acquire)(int),
                               const std::function<void()>& release) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    int fd = open(path.c_str(), O_RDWR);
    if (fd < 0 || acquire(fd) != 0) _exit(1);
    (void)!write(fds[1], "L", 1);
    _exit(0);
  }
  close(fds[1]);
  EXPECT_FALSE(Readable(fds[0], 700)) << "the second process got the lock while it was held";
  release();
  EXPECT_TRUE(Readable(fds[0], 10000)) << "the second process did not get the released lock";
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(AdvancedTest, FlockBetweenProcesses) {
  WriteFile(P("lock"), "");
  int fd = open(P("lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX), 0);
  std::string path = P("lock");
  pid_t probe = fork();
  if (probe == 0) {
    int other = open(path.c_str(), O_RDWR);
    _exit(flock(other, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK ? 0 : 1);
  }
  int status = 0;
  waitpid(probe, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "LOCK_NB did not fail";
  ExpectBlockedUntilRelease(
      path, [](int f) { return flock(f, LOCK_EX); }, [&] { ASSERT_EQ(flock(fd, LOCK_UN), 0); });
  close(fd);
}

// More processes wait for one lock than libfuse has worker threads; the holder's unlock and
// other operations are still served, and every waiter gets the lock in turn.
TEST_F(AdvancedTest, ManyBlockedLockersDoNotStallTheMount) {
  constexpr int kWaiters = 16;
  WriteFile(P("many"), "");
  int fd = open(P("many").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX), 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string path = P("many");
  std::vector<pid_t> children;
  for (int i = 0; i < kWaiters; ++i) {
    pid_t c = fork();
    if (c == 0) {
      close(fds[0]);
      int other = open(path.c_str(), O_RDWR);
      if (other < 0 || flock(other, LOCK_EX) != 0) _exit(1);
      (void)!write(fds[1], "L", 1);
      usleep(20000);
      _exit(flock(other, LOCK_UN) == 0 ? 0 : 2);
    }
    children.push_back(c);
  }
  close(fds[1]);
  EXPECT_FALSE(Readable(fds[0], 1000)) << "a waiter got the lock while it was held";
  struct stat st;
  EXPECT_EQ(stat(P("many").c_str(), &st), 0) << "the mount stopped serving other requests";
  WriteFile(P("meanwhile"), "served");
  ASSERT_EQ(flock(fd, LOCK_UN), 0);
  int granted = 0;
  char c;
  while (granted < kWaiters && Readable(fds[0], 20000) && read(fds[0], &c, 1) == 1) ++granted;
  EXPECT_EQ(granted, kWaiters);
  close(fds[0]);
  for (pid_t child : children) {
    if (granted < kWaiters) kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
  }
  close(fd);
}

void OnAlarm(int) {}

// A process blocked on a held lock gets EINTR when a signal interrupts the wait (the kernel
// sends FUSE_INTERRUPT; the mount gives up the wait).
TEST_F(AdvancedTest, BlockedLockIsInterruptedBySignal) {
  WriteFile(P("ilock"), "");
  int fd = open(P("ilock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX), 0);
  std::string path = P("ilock");
  pid_t child = fork();
  if (child == 0) {
    struct sigaction sa = {};
    sa.sa_handler = OnAlarm;  // no SA_RESTART: the interrupted call fails with EINTR
    sigaction(SIGALRM, &sa, nullptr);
    int other = open(path.c_str(), O_RDWR);
    alarm(1);
    int rc = flock(other, LOCK_EX);
    _exit(rc != 0 && errno == EINTR ? 0 : 1);
  }
  int status = 0;
  for (int i = 0; i < 100 && waitpid(child, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  bool exited = WIFEXITED(status);
  if (!exited) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  EXPECT_TRUE(exited) << "the blocked flock was not interrupted within 10 s";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "flock did not fail with EINTR";
  close(fd);
}

TEST_F(AdvancedTest, FcntlLocksBetweenProcesses) {
  WriteFile(P("plock"), std::string(100, 'x'));
  int fd = open(P("plock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  struct flock l = {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = 10;
  l.l_len = 20;
  ASSERT_EQ(fcntl(fd, F_SETLK, &l), 0);
  std::string path = P("plock");
  pid_t probe = fork();
  if (probe == 0) {
    int other = open(path.c_str(), O_RDWR);
    struct flock q = {};
    q.l_type = F_WRLCK;
    q.l_whence = SEEK_SET;
    q.l_start = 0;
    q.l_len = 15;
    if (fcntl(other, F_GETLK, &q) != 0 || q.l_type != F_WRLCK || q.l_start != 10) _exit(2);
    struct flock free_range = {};
    free_range.l_type = F_WRLCK;
    free_range.l_whence = SEEK_SET;
    free_range.l_start = 50;
    free_range.l_len = 10;
    if (fcntl(other, F_SETLK, &free_range) != 0) _exit(3);  // no overlap: granted
    q.l_type = F_WRLCK;
    _exit(fcntl(other, F_SETLK, &q) != 0 && (errno == EAGAIN || errno == EACCES) ? 0 : 4);
  }
  int status = 0;
  waitpid(probe, &status, 0);
  EXPECT_TRUE(WIFEXITED(status)) << "probe crashed";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: F_GETLK, 3: free range, 4: conflicting F_SETLK";
  ExpectBlockedUntilRelease(
      path,
      [](int f) {
        struct flock w = {};
        w.l_type = F_WRLCK;
        w.l_whence = SEEK_SET;
        w.l_start = 0;
        w.l_len = 0;
        return fcntl(f, F_SETLKW, &w);
      },
      [&] { ASSERT_EQ(close(fd), 0); });  // close drops the process's POSIX locks
}

TEST_F(AdvancedTest, SharedMmapWritesAreVisibleAndPersist) {
  const size_t len = 1 << 20;
  std::string data = Pattern(len, 11);
  int fd = open(P("m").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, len), 0);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  std::memcpy(p, data.data(), len);
  ASSERT_EQ(msync(p, len, MS_SYNC), 0);
  ASSERT_EQ(munmap(p, len), 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadFile(P("m")), data);
  Remount();
  EXPECT_EQ(ReadFile(P("m")), data);
}

TEST_F(AdvancedTest, AppendFromTwoProcessesLosesNothing) {
  WriteFile(P("log"), "");
  constexpr int kRecords = 400;
  constexpr size_t kRecordLen = 64;
  std::string path = P("log");
  std::vector<pid_t> children;
  for (int id = 0; id < 2; ++id) {
    pid_t c = fork();
    if (c == 0) {
      int fd = open(path.c_str(), O_WRONLY | O_APPEND);
      if (fd < 0) _exit(1);
      for (int i = 0; i < kRecords; ++i) {
        char rec[kRecordLen];
        std::memset(rec, '.', sizeof(rec));
        int n = std::snprintf(rec, sizeof(rec), "p%d:%05d:", id, i);
        rec[n] = '.';
        rec[kRecordLen - 1] = '\n';
        if (write(fd, rec, sizeof(rec)) != static_cast<ssize_t>(sizeof(rec))) _exit(2);
      }
      _exit(close(fd) == 0 ? 0 : 3);
    }
    children.push_back(c);
  }
  for (pid_t c : children) {
    int status = 0;
    waitpid(c, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "appender exit " << WEXITSTATUS(status) << " (1 open, 2 write, 3 close)\n"
        << MountLog();
  }
  std::string log = ReadFile(path);
  ASSERT_EQ(log.size(), 2 * kRecords * kRecordLen);
  std::map<std::string, int> seen;
  for (size_t off = 0; off < log.size(); off += kRecordLen) {
    std::string rec = log.substr(off, kRecordLen);
    ASSERT_EQ(rec.back(), '\n') << "torn record at " << off;
    seen[rec.substr(0, 9)]++;
  }
  EXPECT_EQ(seen.size(), 2u * kRecords);
  for (const auto& [key, count] : seen) EXPECT_EQ(count, 1) << key;
}

TEST_F(AdvancedTest, SparseFileSeekDataAndHole) {
  const off_t far = 100LL << 20;  // in the second 64 MiB chunk
  int fd = open(P("sparse").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  std::string a(4096, 'A'), b(4096, 'B');
  ASSERT_EQ(pwrite(fd, a.data(), a.size(), 0), 4096);
  ASSERT_EQ(pwrite(fd, b.data(), b.size(), far), 4096);
  ASSERT_EQ(fsync(fd), 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, far + 4096);
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 0);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 4096);
  EXPECT_EQ(lseek(fd, 4096, SEEK_DATA), far);
  EXPECT_EQ(lseek(fd, far + 10, SEEK_HOLE), far + 4096);
  errno = 0;
  EXPECT_EQ(lseek(fd, far + 4096, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);
  char buf[8192];
  ASSERT_EQ(pread(fd, buf, sizeof(buf), 50LL << 20), static_cast<ssize_t>(sizeof(buf)));
  EXPECT_EQ(std::string(buf, sizeof(buf)), std::string(sizeof(buf), '\0'));
  ASSERT_EQ(pread(fd, buf, 4096, far), 4096);
  EXPECT_EQ(std::string(buf, 4096), b);
  close(fd);
}

TEST_F(AdvancedTest, FallocateAndPunchHole) {
  int fd = open(P("fa").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0) << std::strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 << 20), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 1 << 20);
  std::string data = Pattern(1 << 20, 5);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 << 10, 128 << 10), 0)
      << std::strerror(errno);
  data.replace(256 << 10, 128 << 10, std::string(128 << 10, '\0'));
  close(fd);
  EXPECT_EQ(ReadFile(P("fa")), data);
  Remount();
  EXPECT_EQ(ReadFile(P("fa")), data);
}

TEST_F(AdvancedTest, ReaddirOfAHugeDirectoryListsEveryNameOnce) {
  size_t count = 100000;
  if (const char* env = getenv("NEXUS_IT_READDIR_ENTRIES")) count = std::strtoul(env, nullptr, 10);
  ASSERT_EQ(mkdir(P("big").c_str(), 0755), 0);
  for (size_t i = 0; i < count; ++i) {
    std::string name = P("big/entry-" + std::to_string(i));
    ASSERT_EQ(mknod(name.c_str(), S_IFREG | 0644, 0), 0) << name << ": " << std::strerror(errno);
  }
  std::vector<uint8_t> seen(count, 0);
  DIR* d = opendir(P("big").c_str());
  ASSERT_NE(d, nullptr);
  size_t total = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    ASSERT_EQ(name.rfind("entry-", 0), 0u) << name;
    size_t i = std::stoul(name.substr(6));
    ASSERT_LT(i, count);
    EXPECT_EQ(seen[i]++, 0) << name << " listed twice";
    ++total;
  }
  closedir(d);
  EXPECT_EQ(total, count);
}

// Four processes create, rename, link and remove the same few names at once; every call either
// succeeds or fails with an errno the race explains, and the tree is consistent afterwards.
TEST_F(AdvancedTest, ConcurrentNamespaceChurnLeavesAConsistentTree) {
  ASSERT_EQ(mkdir(P("churn").c_str(), 0755), 0);
  std::string dir = P("churn");
  std::vector<pid_t> children;
  for (int id = 0; id < 4; ++id) {
    pid_t c = fork();
    if (c == 0) {
      srand(static_cast<unsigned>(id) * 7919u + 1u);
      for (int i = 0; i < 300; ++i) {
        std::string a = dir + "/n" + std::to_string(rand() % 12);
        std::string b = dir + "/n" + std::to_string(rand() % 12);
        int rc = 0;
        switch (rand() % 6) {
          case 0:
            rc = mkdir(a.c_str(), 0755);
            break;
          case 1:
            rc = mknod(a.c_str(), S_IFREG | 0644, 0);
            break;
          case 2:
            rc = rename(a.c_str(), b.c_str());
            break;
          case 3:
            rc = unlink(a.c_str());
            break;
          case 4:
            rc = rmdir(a.c_str());
            break;
          case 5:
            rc = link(a.c_str(), b.c_str());
            break;
        }
        if (rc != 0 && errno != ENOENT && errno != EEXIST && errno != ENOTEMPTY &&
            errno != EISDIR && errno != ENOTDIR && errno != EPERM && errno != EINVAL) {
          _exit(100 + errno);
        }
      }
      _exit(0);
    }
    children.push_back(c);
  }
  for (pid_t c : children) {
    int status = 0;
    waitpid(c, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "unexpected errno " << WEXITSTATUS(status) - 100;
  }
  DIR* d = opendir(dir.c_str());
  ASSERT_NE(d, nullptr);
  int subdirs = 0;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    ASSERT_EQ(lstat((dir + "/" + name).c_str(), &st), 0) << name << ": " << std::strerror(errno);
    if (S_ISDIR(st.st_mode)) {
      ++subdirs;
      EXPECT_EQ(st.st_nlink, 2u) << name;
    }
  }
  closedir(d);
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u + subdirs);
}

TEST_F(AdvancedTest, LargeFileAcrossChunks) {
  const size_t len = (64 << 20) + (3 << 20) + 12345;  // past the first 64 MiB chunk
  std::string data = Pattern(len, 41);
  WriteFile(P("large"), data);
  EXPECT_TRUE(ReadFile(P("large")) == data) << "content differs";
  int fd = open(P("large").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[8192];
  off_t at = (64 << 20) - 4096;  // a read that spans the chunk boundary
  ASSERT_EQ(pread(fd, buf, sizeof(buf), at), static_cast<ssize_t>(sizeof(buf)));
  EXPECT_EQ(std::string(buf, sizeof(buf)), data.substr(at, sizeof(buf)));
  close(fd);
}

TEST_F(AdvancedTest, MountErrorsAreOneLine) {
  std::string out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "mount", meta_url_, work_ + "/nowhere"}, &out), 1);
  EXPECT_NE(out.find("does not exist"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "mount", meta_url_, mnt_, "-d"}, &out), 1);
  EXPECT_NE(out.find("busy"), std::string::npos) << out;
  std::string other = work_ + "/other";
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  EXPECT_EQ(
      RunCommand({NEXUSFS_BIN, "mount", "sqlite3://" + work_ + "/empty.db", other, "-d"}, &out), 1);
  EXPECT_NE(out.find("not formatted"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "mount", "bogus://x", other, "-d"}, &out), 1);
  EXPECT_NE(out.find("unknown metadata engine 'bogus'"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "mount", "bogus://x", other}, &out), 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", other}, &out), 1);
  EXPECT_NE(out.find("not a mount point"), std::string::npos) << out;
}

// A writer creates files, each confirmed after fsync and close; the mount process is killed
// with SIGKILL in the middle. After a remount every confirmed file is intact and every entry
// of the tree can be stat'ed.
TEST_F(AdvancedTest, KillNineDuringWritesKeepsSyncedFiles) {
  ASSERT_EQ(mkdir(P("c").c_str(), 0755), 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string dir = P("c");
  pid_t writer = fork();
  if (writer == 0) {
    close(fds[0]);
    for (uint32_t i = 0;; ++i) {
      if (i % 10 == 0) mkdir((dir + "/d" + std::to_string(i / 10)).c_str(), 0755);
      std::string path = dir + "/d" + std::to_string(i / 10) + "/f" + std::to_string(i);
      std::string data = Pattern(64 << 10, i);
      int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      if (fd < 0) _exit(0);
      if (write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) _exit(0);
      if (fsync(fd) != 0 || close(fd) != 0) _exit(0);
      if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(0);
    }
  }
  close(fds[1]);
  std::vector<uint32_t> confirmed;
  uint32_t i;
  while (confirmed.size() < 30 && read(fds[0], &i, sizeof(i)) == sizeof(i)) {
    confirmed.push_back(i);
  }
  pid_t server = MountPid();
  ASSERT_GT(server, 0);
  ASSERT_EQ(kill(server, SIGKILL), 0);
  while (read(fds[0], &i, sizeof(i)) == sizeof(i)) confirmed.push_back(i);
  close(fds[0]);
  waitpid(writer, nullptr, 0);
  for (int k = 0; k < 100 && MountPid() != 0; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(RunCommand({"umount", "-l", mnt_}), 0);
  mounted_ = false;
  Mount(mount_args_);
  ASSERT_GE(confirmed.size(), 30u);
  for (uint32_t n : confirmed) {
    std::string path = P("c/d" + std::to_string(n / 10) + "/f" + std::to_string(n));
    EXPECT_EQ(ReadFile(path), Pattern(64 << 10, n)) << path;
  }
  DIR* top = opendir(P("c").c_str());
  ASSERT_NE(top, nullptr);
  while (dirent* e = readdir(top)) {
    std::string sub = e->d_name;
    if (sub == "." || sub == "..") continue;
    DIR* d = opendir(P("c/" + sub).c_str());
    ASSERT_NE(d, nullptr) << sub;
    while (dirent* f = readdir(d)) {
      struct stat st;
      std::string path = P("c/" + sub + "/" + f->d_name);
      EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
    }
    closedir(d);
  }
  closedir(top);
}

}  // namespace
}  // namespace nexus::it
