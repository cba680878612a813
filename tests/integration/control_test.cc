// The mount's .control file and the commands that use it, on a real mount: nexusfs info (chunks,
// slices and object keys of a file written in two slices, checked against the file:// store),
// nexusfs rmr done in the metadata engine (a large tree gone, no ghost dentry, usage back,
// fsck clean), permission errors, paths off NexusFS, and malformed requests.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

using nlohmann::json;

class ControlTest : public MountTest {
 protected:
  // Opens .control, writes each piece with its own write(2), reads the answer until EOF.
  std::string Ask(const std::vector<std::string>& pieces) {
    int fd = open(P(".control").c_str(), O_RDWR);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    if (fd < 0) return "";
    for (const auto& p : pieces) {
      EXPECT_EQ(write(fd, p.data(), p.size()), static_cast<ssize_t>(p.size()))
          << std::strerror(errno);
    }
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    EXPECT_EQ(n, 0) << std::strerror(errno);
    close(fd);
    return out;
  }

  // The last line of an answer, parsed.
  static json Final(const std::string& answer) {
    std::string text = answer;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    size_t nl = text.rfind('\n');
    return json::parse(nl == std::string::npos ? text : text.substr(nl + 1), nullptr, false);
  }

  std::set<std::string> List(const std::string& dir) {
    std::set<std::string> names;
    DIR* d = opendir(dir.c_str());
    EXPECT_NE(d, nullptr) << std::strerror(errno);
    if (!d) return names;
    while (struct dirent* e = readdir(d)) names.insert(e->d_name);
    closedir(d);
    return names;
  }

  // `dirs` directories of `files` empty files each (every 10th holds 4 bytes) under P(root),
  // created by 4 threads with plain syscalls.
  void MakeTree(const std::string& root, int dirs, int files) {
    ASSERT_EQ(mkdir(P(root).c_str(), 0755), 0);
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) {
      pool.emplace_back([&, t] {
        for (int d = t; d < dirs; d += 4) {
          std::string dir = P(root + "/d" + std::to_string(d));
          if (mkdir(dir.c_str(), 0755) != 0) ++failures;
          for (int f = 0; f < files; ++f) {
            int fd = open((dir + "/f" + std::to_string(f)).c_str(), O_CREAT | O_WRONLY, 0644);
            if (fd < 0) {
              ++failures;
              continue;
            }
            if (f % 10 == 0 && write(fd, "data", 4) != 4) ++failures;
            close(fd);
          }
        }
      });
    }
    for (auto& th : pool) th.join();
    ASSERT_EQ(failures.load(), 0);
  }
};

TEST_F(ControlTest, InfoShowsBothSlicesAndTheirObjects) {
  WriteFile(P("f"), Pattern(5000, 1));
  int fd = open(P("f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  std::string more = Pattern(3000, 2);
  ASSERT_EQ(write(fd, more.data(), more.size()), 3000);
  ASSERT_EQ(close(fd), 0);
  struct stat st;
  ASSERT_EQ(stat(P("f").c_str(), &st), 0);

  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "info", P("f"), "--json"}, &out), 0) << out;
  json j = json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["ino"], st.st_ino);
  EXPECT_EQ(j["type"], "file");
  EXPECT_EQ(j["size"], 8000);
  EXPECT_EQ(j["mode"], 0644);
  EXPECT_EQ(j["nlink"], 1);
  EXPECT_EQ(j["path"], P("f"));
  ASSERT_EQ(j["chunks"].size(), 1u) << out;
  const json& slices = j["chunks"][0]["slices"];
  ASSERT_EQ(slices.size(), 2u) << out;
  const uint32_t pos[2] = {0, 5000}, len[2] = {5000, 3000};
  std::vector<std::string> keys;
  for (int i = 0; i < 2; ++i) {
    const json& s = slices[i];
    EXPECT_EQ(s["pos"], pos[i]);
    EXPECT_EQ(s["off"], 0);
    EXPECT_EQ(s["len"], len[i]);
    EXPECT_EQ(s["size"], len[i]);
    uint64_t id = s["id"].get<uint64_t>();
    ASSERT_NE(id, 0u);
    std::string key = "itvol/chunks/" + std::to_string(id / 1000000) + "/" +
                      std::to_string(id / 1000) + "/" + std::to_string(id) + "_0_" +
                      std::to_string(len[i]);
    ASSERT_EQ(s["objects"].size(), 1u) << out;
    EXPECT_EQ(s["objects"][0], key);
    EXPECT_TRUE(std::filesystem::is_regular_file(work_ + "/data/" + key)) << key;
    keys.push_back(key);
  }
  EXPECT_NE(slices[0]["id"], slices[1]["id"]);
  EXPECT_EQ(j["totals"]["chunks"], 1);
  EXPECT_EQ(j["totals"]["slices"], 2);
  EXPECT_EQ(j["totals"]["objects"], 2);
  EXPECT_EQ(j["totals"]["bytes"], 8000);

  // The table names the same objects.
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "info", P("f")}, &out), 0) << out;
  EXPECT_NE(out.find("2 slices"), std::string::npos) << out;
  for (const auto& k : keys) EXPECT_NE(out.find(k), std::string::npos) << out;
}

TEST_F(ControlTest, InfoOfADirectoryCountsItsEntries) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0750), 0);
  for (int i = 0; i < 1500; ++i) WriteFile(P("d/e" + std::to_string(i)), "");
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "info", P("d"), "--json"}, &out), 0) << out;
  json j = json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["type"], "dir");
  EXPECT_EQ(j["mode"], 0750);
  EXPECT_EQ(j["entries"], 1500);
  EXPECT_FALSE(j.contains("chunks"));
  // The mount point itself is the root inode.
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "info", mnt_, "--json"}, &out), 0) << out;
  j = json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["ino"], 1);
  EXPECT_EQ(j["entries"], 1);
}

TEST_F(ControlTest, RequestsThatAreWrongGetClearErrors) {
  EXPECT_EQ(List(mnt_).count(".control"), 0u);
  json j = Final(Ask({"not json"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["errno"], EINVAL);
  EXPECT_NE(j["error"].get<std::string>().find("not JSON"), std::string::npos) << j;
  j = Final(Ask({R"({"op":"format-everything"})"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_NE(j["error"].get<std::string>().find("unknown .control op"), std::string::npos) << j;
  j = Final(Ask({R"([1,2,3])"}));
  EXPECT_EQ(j["ok"], false);
  j = Final(Ask({R"({"op":"info","ino":"one"})"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["errno"], EINVAL);
  j = Final(Ask({R"({"op":"info","ino":987654321})"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["errno"], ENOENT);
  j = Final(Ask({R"({"op":"rmr","parent":1,"name":"../x"})"}));
  EXPECT_EQ(j["ok"], false);
  j = Final(Ask({R"({"op":"rmr","parent":1,"name":".stats"})"}));
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["errno"], EPERM);
  // A request in two writes.
  j = Final(Ask({R"({"op":"in)", R"(fo","ino":1})"}));
  EXPECT_EQ(j["ok"], true) << j;
  EXPECT_EQ(j["type"], "dir");

  int fd = open(P(".control").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char buf[256];
  EXPECT_EQ(read(fd, buf, sizeof(buf)), -1);  // nothing asked yet
  EXPECT_EQ(errno, EINVAL);
  std::string huge(70000, ' ');  // never completes: refused past the bound
  EXPECT_EQ(write(fd, huge.data(), huge.size()), -1);
  EXPECT_EQ(errno, EFBIG);
  close(fd);
  fd = open(P(".control").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::string req = R"({"op":"info","ino":1})";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  EXPECT_EQ(write(fd, req.data(), req.size()), -1);  // one request per open
  EXPECT_EQ(errno, EBUSY);
  close(fd);
  // The mount still answers.
  j = Final(Ask({R"({"op":"info","ino":1})"}));
  EXPECT_EQ(j["ok"], true);
}

TEST_F(ControlTest, RmrOfALargeTreeThroughTheMount) {
  // 20,000 files in 100 directories (the 100,000-file run is measured in docs/benchmarks.md;
  // NEXUS_IT_RMR_FILES sets another size).
  int total = 20000;
  if (const char* e = std::getenv("NEXUS_IT_RMR_FILES")) total = std::max(100, std::atoi(e));
  const int dirs = 100, files = total / dirs;
  ASSERT_EQ(mkdir(P("keep").c_str(), 0755), 0);
  WriteFile(P("keep/k"), "kept");
  struct statvfs before;
  ASSERT_EQ(statvfs(mnt_.c_str(), &before), 0);
  auto t0 = std::chrono::steady_clock::now();
  MakeTree("tree", dirs, files);
  auto t1 = std::chrono::steady_clock::now();
  struct statvfs full;
  ASSERT_EQ(statvfs(mnt_.c_str(), &full), 0);
  ASSERT_GE(before.f_ffree - full.f_ffree, static_cast<fsfilcnt_t>(dirs * files));
  struct stat st;
  ASSERT_EQ(stat(P("tree/d7").c_str(), &st), 0);  // the kernel now caches these dentries
  ASSERT_EQ(stat(P("tree").c_str(), &st), 0);

  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "rmr", P("tree")}, &out), 0) << out;
  auto t2 = std::chrono::steady_clock::now();
  std::printf("created %d files in %.1f s, rmr took %.1f s\n", dirs * files,
              std::chrono::duration<double>(t1 - t0).count(),
              std::chrono::duration<double>(t2 - t1).count());
  // Gone (the ghost check with long cache timeouts is RmrLeavesNoGhostInTheKernelCache).
  EXPECT_NE(stat(P("tree").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(stat(P("tree/d7").c_str(), &st), 0);
  auto names = List(mnt_);
  EXPECT_EQ(names.count("tree"), 0u);
  EXPECT_EQ(names.count("keep"), 1u);
  EXPECT_EQ(ReadFile(P("keep/k")), "kept");
  struct statvfs after;
  ASSERT_EQ(statvfs(mnt_.c_str(), &after), 0);
  EXPECT_EQ(after.f_ffree, before.f_ffree);
  EXPECT_EQ(after.f_bfree, before.f_bfree);
  // A single file goes the same way.
  WriteFile(P("keep/one"), "x");
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "rmr", P("keep/one")}, &out), 0) << out;
  EXPECT_FALSE(std::filesystem::exists(P("keep/one")));

  Unmount();
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "fsck", meta_url_}, &out), 0) << out;
}

TEST_F(ControlTest, RmrLeavesNoGhostInTheKernelCache) {
  // Long entry and attribute timeouts: without the invalidation the kernel would go on showing
  // the removed tree for a minute.
  Unmount();
  Mount({"--entry-cache", "60", "--dir-entry-cache", "60", "--attr-cache", "60"});
  ASSERT_EQ(mkdir(P("g").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("g/sub").c_str(), 0755), 0);
  WriteFile(P("g/sub/f"), "x");
  WriteFile(P("g/top"), "y");
  struct stat st;
  ASSERT_EQ(stat(P("g/sub/f").c_str(), &st), 0);
  ASSERT_EQ(stat(P("g").c_str(), &st), 0);
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "rmr", P("g")}, &out), 0) << out;
  EXPECT_NE(stat(P("g").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(stat(P("g/sub/f").c_str(), &st), 0);
  EXPECT_EQ(List(mnt_).count("g"), 0u);
  // The name is free again at once.
  EXPECT_EQ(mkdir(P("g").c_str(), 0755), 0) << std::strerror(errno);
  EXPECT_TRUE(List(P("g")).size() == 2u);  // "." and ".."
}

TEST_F(ControlTest, RmrWithoutPermissionIsRefused) {
  ASSERT_EQ(mkdir(P("locked").c_str(), 0755), 0);  // root's: nobody may not remove in it
  ASSERT_EQ(mkdir(P("locked/sub").c_str(), 0777), 0);
  WriteFile(P("locked/sub/f"), "x");
  int rc = RunAsNobody([this] {
    std::string out;
    if (RunCommand({NEXUSFS_BIN, "rmr", P("locked/sub")}, &out) == 0) return 1;
    if (out.find("permission denied") == std::string::npos ||
        out.find(P("locked/sub")) == std::string::npos) {
      std::fprintf(stderr, "unexpected output: %s\n", out.c_str());
      return 2;
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_TRUE(std::filesystem::exists(P("locked/sub/f")));
  // Root may.
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "rmr", P("locked/sub")}, &out), 0) << out;
  EXPECT_FALSE(std::filesystem::exists(P("locked/sub")));
}

TEST_F(ControlTest, PathsOffNexusFSAreRefused) {
  std::string local = work_ + "/local";
  ASSERT_EQ(mkdir(local.c_str(), 0755), 0);
  WriteFile(local + "/f", "x");
  std::string out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "info", local + "/f"}, &out), 0);
  EXPECT_NE(out.find("not on a NexusFS mount"), std::string::npos) << out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "rmr", local}, &out), 0);
  EXPECT_NE(out.find("not on a NexusFS mount"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(local + "/f"));
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "rmr", P("missing")}, &out), 0);
  EXPECT_NE(out.find("No such file or directory"), std::string::npos) << out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "rmr", mnt_}, &out), 0);
  EXPECT_NE(out.find("mount point"), std::string::npos) << out;
}

}  // namespace
}  // namespace nexus::it
