#include "integration/mount_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#ifndef NEXUSFS_BIN
#error "NEXUSFS_BIN must name the nexusfs binary"
#endif

namespace nexus::it {

int RunCommand(const std::vector<std::string>& argv, std::string* output) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = out;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

int RunAsNobody(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(255);
    _exit(body());
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void WriteFile(const std::string& path, const std::string& data, int flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | flags, 0644);
  ASSERT_GE(fd, 0) << "open " << path << ": " << std::strerror(errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    ASSERT_GT(n, 0) << "write " << path << ": " << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
  ASSERT_EQ(close(fd), 0) << "close " << path << ": " << std::strerror(errno);
}

std::string ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<open failed: " + std::string(std::strerror(errno)) + ">";
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) out = "<read failed: " + std::string(std::strerror(errno)) + ">";
  close(fd);
  return out;
}

std::string Pattern(size_t len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(len, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

void MountTest::SetUp() {
  if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "FUSE integration tests need root and /dev/fuse";
  }
  char tmpl[] = "/tmp/nexusfs-it.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
  work_ = tmpl;
  ASSERT_EQ(chmod(work_.c_str(), 0755), 0);  // tests that run as nobody must reach the mount
  mnt_ = work_ + "/mnt";
  log_ = work_ + "/mount.log";
  meta_url_ = MetaUrl();
  ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0);
  std::string out;
  ASSERT_EQ(
      RunCommand({NEXUSFS_BIN, "format", meta_url_, "itvol", "--bucket", work_ + "/data"}, &out), 0)
      << out;
  Mount();
}

std::string MountTest::MetaUrl() const {
  return MetaScheme() == "sqlite3" ? "sqlite3://" + work_ + "/meta.db"
                                   : MetaScheme() + "://" + work_ + "/meta";
}

void MountTest::Mount(const std::vector<std::string>& extra) {
  mount_args_ = extra;
  // allow_other: tests that switch to another uid must be let into the mount.
  std::vector<std::string> argv = {NEXUSFS_BIN, "mount", meta_url_, mnt_,         "-d",
                                   "--log",     log_,    "-o",      "allow_other"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  std::string out;
  int rc = RunCommand(argv, &out);
  ASSERT_EQ(rc, 0) << out << "\n" << MountLog();
  mounted_ = true;
}

void MountTest::Unmount() {
  if (!mounted_) return;
  std::string out;
  int rc = RunCommand({NEXUSFS_BIN, "umount", mnt_}, &out);
  EXPECT_EQ(rc, 0) << out << "\n" << MountLog();
  mounted_ = rc != 0;
}

pid_t MountTest::MountPid() const {
  DIR* d = opendir("/proc");
  if (!d) return 0;
  pid_t found = 0;
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(std::string("mount") + '\0' + meta_url_ + '\0') != std::string::npos) {
      found = pid;
    }
  }
  closedir(d);
  return found;
}

std::string MountTest::MountLog() const {
  std::string log = ReadFile(log_);
  if (log.size() > 4000) log = log.substr(log.size() - 4000);
  return "--- mount log tail ---\n" + log;
}

void MountTest::TearDown() {
  if (work_.empty()) return;
  if (mounted_) {
    std::string out;
    if (RunCommand({NEXUSFS_BIN, "umount", mnt_}, &out) != 0) {
      ADD_FAILURE() << "umount in TearDown failed: " << out << "\n" << MountLog();
      RunCommand({"umount", "-l", mnt_});
    }
    mounted_ = false;
  }
  // A process left serving (after a failed umount) must not outlive the test.
  for (int i = 0; i < 100; ++i) {
    pid_t pid = MountPid();
    if (pid == 0) break;
    if (i == 50) kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::error_code ec;
  std::filesystem::remove_all(work_, ec);
}

}  // namespace nexus::it
