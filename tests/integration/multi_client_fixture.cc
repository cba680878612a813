#include "integration/multi_client_fixture.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "etcd_server.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "servers.h"

namespace nexus::it {

std::vector<std::string> SharedEngines() { return {"redis", "postgres", "etcd", "sqlite3"}; }

std::string EngineParamName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

std::string NewServerMetaUrl(const std::string& engine, std::string* skip) {
  std::string why;
  if (engine == "redis") {
    testsrv::RedisServer* r = testsrv::SharedRedis(&why);
    if (r) return r->NewUrl();
    *skip = testsrv::RedisServer::Missing().empty() ? "" : why;
    if (skip->empty()) ADD_FAILURE() << "redis-server did not start: " << why;
    return "";
  }
  if (engine == "postgres") {
    testsrv::PostgresServer* p = testsrv::SharedPostgres(&why);
    if (p) {
      auto url = p->NewUrl();
      if (url) return *url;
      ADD_FAILURE() << url.error().ToString();
      return "";
    }
    *skip = testsrv::PostgresServer::Missing().empty() ? "" : why;
    if (skip->empty()) ADD_FAILURE() << "postgres did not start: " << why;
    return "";
  }
  if (engine == "etcd") {
    test::EtcdServer* e = test::EtcdServer::Shared(&why);
    if (e) {
      std::random_device rd;
      return "etcd://" + e->endpoint() + "/itvol" + std::to_string(rd());
    }
    *skip = test::EtcdServer::Binary().empty() ? why : "";
    if (skip->empty()) ADD_FAILURE() << "etcd did not start: " << why;
    return "";
  }
  ADD_FAILURE() << "unknown engine " << engine;
  return "";
}

pid_t ServingPid(const std::string& mountpoint) {
  DIR* d = opendir("/proc");
  if (!d) return 0;
  pid_t found = 0;
  const std::string needle = '\0' + mountpoint + '\0';
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(std::string("mount") + '\0') != std::string::npos &&
        cmd.find(needle) != std::string::npos && cmd.find("nexusfs") != std::string::npos) {
      found = pid;
    }
  }
  closedir(d);
  return found;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() == ".nxtmp-spare") {  // empty files made ahead, not objects
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec)) ++n;
  }
  return n;
}

std::unique_ptr<meta::Meta> OpenMetaForCheck(const std::string& url) {
  auto engine = kv::Engine::Open(url);
  if (!engine) {
    ADD_FAILURE() << "open " << url << ": " << engine.error().ToString();
    return nullptr;
  }
  auto m = meta::Meta::Create(std::move(*engine));
  auto loaded = m->Load();
  if (!loaded) {
    ADD_FAILURE() << "load " << url << ": " << loaded.error().ToString();
    return nullptr;
  }
  return m;
}

std::string CheckTree(meta::Meta* m, bool no_sessions) {
  using meta::FileType;
  using meta::Ino;
  const meta::Context root = meta::Context::Root();
  std::map<Ino, uint32_t> refs;  // entries naming each non-directory inode
  std::set<Ino> dirs = {meta::kRootIno};
  std::vector<Ino> todo = {meta::kRootIno};
  std::string bad;
  auto fail = [&](const std::string& what) {
    if (bad.size() < 2000) bad += what + "\n";
  };
  while (!todo.empty()) {
    const Ino dir = todo.back();
    todo.pop_back();
    std::vector<meta::DirEntry> entries;
    if (Status s = m->ReadDir(root, dir, "", 0, false, &entries); !s.ok()) {
      fail("readdir " + std::to_string(dir) + ": " + s.ToString());
      continue;
    }
    uint32_t subdirs = 0;
    for (const meta::DirEntry& e : entries) {
      const std::string where = "entry '" + e.name + "' of dir " + std::to_string(dir);
      auto attr = m->GetAttr(e.ino);
      if (!attr) {
        fail(where + " names inode " + std::to_string(e.ino) + " with no record (" +
             attr.error().ToString() + ")");
        continue;
      }
      if (attr->type != e.type) fail(where + ": the entry's type differs from the inode's");
      if (e.type == FileType::kDir) {
        ++subdirs;
        if (!dirs.insert(e.ino).second) {
          fail(where + ": directory " + std::to_string(e.ino) + " reached twice (loop)");
          continue;
        }
        if (attr->parent != dir) fail(where + ": directory's parent is not " + std::to_string(dir));
        todo.push_back(e.ino);
      } else {
        ++refs[e.ino];
      }
    }
    auto attr = m->GetAttr(dir);
    if (attr && attr->nlink != 2 + subdirs) {
      fail("dir " + std::to_string(dir) + " has nlink " + std::to_string(attr->nlink) + " for " +
           std::to_string(subdirs) + " subdirectories");
    }
  }
  for (const auto& [ino, n] : refs) {
    auto attr = m->GetAttr(ino);
    if (attr && attr->nlink != n) {
      fail("inode " + std::to_string(ino) + " has nlink " + std::to_string(attr->nlink) + " but " +
           std::to_string(n) + " entries");
    }
  }
  // Every inode record is reachable, or unlinked and still open: a client's close() returns
  // before the kernel's asynchronous RELEASE reaches the daemon, so a file the other client
  // unlinked may still be held when the workers are done. Every other A<ino> key belongs to a
  // recorded inode. Chunk records of a removed file stay until background deletion releases its
  // data (a D record says so).
  std::set<Ino> records, pending, held;
  std::map<Ino, char> keyed;  // inode -> the kind of one of its other keys
  size_t session_keys = 0;
  Status s = m->engine()->View([&](kv::Txn& txn) -> Status {
    records.clear();
    pending.clear();
    held.clear();
    keyed.clear();
    session_keys = 0;
    NX_TRY(txn.Scan("A", "B", 0, [&](std::string_view k, std::string_view) {
      if (k.size() < 10) return true;
      const Ino ino = GetBE64(k.data() + 1);
      if (k.size() == 10 && k[9] == 'I') {
        records.insert(ino);
      } else {
        keyed[ino] = k[9];
      }
      return true;
    }));
    NX_TRY(txn.Scan("D", "E", 0, [&](std::string_view k, std::string_view) {
      if (k.size() >= 9) pending.insert(GetBE64(k.data() + 1));
      return true;
    }));
    for (const char* prefix : {"O", "SE", "SH", "SS", "F", "P"}) {
      std::string end(prefix);
      ++end.back();
      NX_TRY(txn.Scan(prefix, end, 0, [&](std::string_view k, std::string_view) {
        if (k[0] == 'O' && k.size() >= 9) held.insert(GetBE64(k.data() + 1));
        ++session_keys;
        return true;
      }));
    }
    return Status::OK();
  });
  if (!s.ok()) return "scan: " + s.ToString();
  for (Ino ino : records) {
    if (dirs.count(ino) || refs.count(ino)) continue;
    auto attr = m->GetAttr(ino);
    if (!no_sessions && held.count(ino) && attr && attr->nlink == 0) continue;
    fail("inode " + std::to_string(ino) + " is orphan (nlink " +
         (attr ? std::to_string(attr->nlink) : attr.error().ToString()) +
         (held.count(ino) ? ", open)" : ", not open)"));
  }
  for (const auto& [ino, kind] : keyed) {
    if (records.count(ino) || (kind == 'C' && pending.count(ino))) continue;
    fail("an " + std::string(1, kind) + " key of inode " + std::to_string(ino) +
         " outlives its record");
  }
  if (no_sessions && session_keys != 0) {
    fail(std::to_string(session_keys) + " session/open/lock records left after both unmounts");
  }
  return bad;
}

std::string MultiClientTest::MetaUrl() const {
  return GetParam() == "sqlite3" ? MountTest::MetaUrl() : server_url_;
}

void MultiClientTest::SetUp() {
  if (GetParam() != "sqlite3" && geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0) {
    std::string skip;
    server_url_ = NewServerMetaUrl(GetParam(), &skip);
    if (!skip.empty()) GTEST_SKIP() << skip;
    if (server_url_.empty()) return;
  }
  MountTest::SetUp();
  if (IsSkipped() || HasFatalFailure()) return;
  // Both clients without kernel caches of names and attributes, so that what one changes the
  // other sees at once (with caches, within their TTLs, it may see the old state).
  std::vector<std::string> args = {"--attr-cache",      "0", "--entry-cache", "0",
                                   "--dir-entry-cache", "0"};
  const std::vector<std::string> extra = ClientArgs();
  args.insert(args.end(), extra.begin(), extra.end());
  Unmount();
  Mount(args);
  mnt2_ = work_ + "/mnt2";
  ASSERT_EQ(mkdir(mnt2_.c_str(), 0755), 0);
  std::string out;
  std::vector<std::string> argv = {NEXUSFS_BIN, "mount", meta_url_,        mnt2_,
                                   "-d",        "--log", work_ + "/m2.log"};
  argv.insert(argv.end(), args.begin(), args.end());
  ASSERT_EQ(RunCommand(argv, &out), 0) << out;
  mounted2_ = true;
}

void MultiClientTest::UnmountSecond() {
  if (!mounted2_) return;
  std::string out;
  EXPECT_EQ(RunCommand({NEXUSFS_BIN, "umount", mnt2_}, &out), 0) << out;
  mounted2_ = false;
}

void MultiClientTest::TearDown() {
  if (mounted2_) {
    std::string out;
    if (RunCommand({NEXUSFS_BIN, "umount", mnt2_}, &out) != 0) {
      ADD_FAILURE() << "umount of the second mount: " << out;
      RunCommand({"umount", "-l", mnt2_});
    }
    mounted2_ = false;
  }
  MountTest::TearDown();
}

std::vector<int> MultiClientTest::StatusSessionPids() {
  std::string out;
  if (RunCommand({NEXUSFS_BIN, "status", meta_url_}, &out) != 0) {
    ADD_FAILURE() << "nexusfs status: " << out;
    return {};
  }
  std::vector<int> pids;
  try {
    // Warnings, if any, come before the JSON document.
    auto j = nlohmann::json::parse(out.substr(out.find('{')));
    for (const auto& s : j.at("sessions")) pids.push_back(s.at("pid").get<int>());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "status output is not the expected JSON (" << e.what() << "): " << out;
  }
  return pids;
}

}  // namespace nexus::it
