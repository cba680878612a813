// MountTest: a fresh volume formatted in a temporary directory and mounted with the built
// nexusfs binary (NEXUSFS_BIN). TearDown always unmounts (falling back to a lazy unmount) and
// removes the directory, also after a failed test. Needs root and /dev/fuse.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace nexus::it {

// Runs argv (no shell); returns the exit status (or 128 + signal) and, when `output` is set,
// stdout and stderr together.
int RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);

// Runs `body` in a child process with uid/gid 65534 and no supplementary groups; returns the
// child's exit code (body's return value, or 255 when the identity switch failed).
int RunAsNobody(const std::function<int()>& body);

// Whole-file helpers over real syscalls. WriteFile fails the test on error.
void WriteFile(const std::string& path, const std::string& data, int flags = 0);
std::string ReadFile(const std::string& path);
std::string Pattern(size_t len, uint32_t seed);  // deterministic pseudo-random bytes

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Formats the volume (once per test) and mounts it with `extra` mount arguments.
  void Mount(const std::vector<std::string>& extra = {});
  // nexusfs umount, waiting for the serving process; EXPECTs success.
  void Unmount();
  void Remount() {
    Unmount();
    Mount(mount_args_);
  }
  // The pid of the process serving this test's mount (0 when none found).
  pid_t MountPid() const;
  // Prints the tail of the mount log (for failures).
  std::string MountLog() const;

  std::string P(const std::string& rel) const { return mnt_ + "/" + rel; }
  // The metadata engine of the volume: "rocksdb" (one process at a time) or "sqlite3" (several
  // mounts of one volume).
  virtual std::string MetaScheme() const { return "rocksdb"; }
  // The volume's metadata URL, asked for once in SetUp. The default is a fresh embedded
  // database of MetaScheme() in the work directory; fixtures on a server return its URL.
  virtual std::string MetaUrl() const;

  std::string work_;
  std::string mnt_;
  std::string meta_url_;
  std::string log_;
  bool mounted_ = false;
  std::vector<std::string> mount_args_;
};

}  // namespace nexus::it
