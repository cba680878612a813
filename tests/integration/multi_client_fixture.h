// MultiClientTest: one volume mounted twice (two nexusfs processes, two sessions), as two
// clients on two machines would share it, on each engine that supports several clients:
// "sqlite3" (a shared file), and "redis", "postgres", "etcd" on a real server that the test
// binary starts once on loopback (tests/kv/servers.h, tests/kv/etcd_server.h). A test skips
// when its server is not installed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "integration/mount_fixture.h"

namespace nexus::meta {
class Meta;
}

namespace nexus::it {

// The engines a shared volume runs on; the networked ones first.
std::vector<std::string> SharedEngines();
std::string EngineParamName(const ::testing::TestParamInfo<std::string>& info);

// A fresh, empty metadata URL on the shared server of `engine` ("redis", "postgres", "etcd"),
// or "" with *skip set when the server is not installed.
std::string NewServerMetaUrl(const std::string& engine, std::string* skip);

// The pid of the nexusfs process serving `mountpoint` (0 when none).
pid_t ServingPid(const std::string& mountpoint);

// Files (objects) under `dir`, recursively; a file store's spare files are not objects.
size_t CountFiles(const std::string& dir);

// Opens the volume's Meta directly (a third client, without a session) for checks.
std::unique_ptr<meta::Meta> OpenMetaForCheck(const std::string& url);

// Walks the whole namespace of the volume and checks it is a consistent tree: every entry
// names a live inode of the entry's type, a file's nlink equals the entries naming it, a
// directory's nlink is 2 + its subdirectories, no directory is reached twice (no loop), every
// inode record is reachable (no orphan), no key of an inode without its record is left, and,
// when `no_sessions`, no session, open or lock record is left. Returns "" or what is wrong.
std::string CheckTree(meta::Meta* m, bool no_sessions);

class MultiClientTest : public MountTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string MetaScheme() const override { return GetParam(); }
  std::string MetaUrl() const override;
  void SetUp() override;
  void TearDown() override;

  // Extra arguments of both mounts (after the no-cache ones).
  virtual std::vector<std::string> ClientArgs() const { return {"--session-timeout", "3"}; }

  std::string Q(const std::string& rel) const { return mnt2_ + "/" + rel; }
  // Unmounts the second client (EXPECTs success).
  void UnmountSecond();
  // `nexusfs status` of the volume: the pids of the sessions it lists (empty on failure).
  std::vector<int> StatusSessionPids();

  std::string server_url_;
  std::string mnt2_;
  bool mounted2_ = false;
};

}  // namespace nexus::it
