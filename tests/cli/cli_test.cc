// The nexusfs command as a user runs it: format, status and config, and their errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "run_nexusfs.h"

namespace {

namespace fs = std::filesystem;

using nexus::clitest::Nexusfs;
using nexus::clitest::Output;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Meta() const { return dir_.string() + "/meta"; }
  std::string Bucket() const { return dir_.string() + "/data"; }
  fs::path dir_;
};

TEST_F(CliTest, VersionAndHelp) {
  Output v = Nexusfs("version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("nexusfs "), std::string::npos);
  for (const char* sub : {"format", "status", "config", "mount", "umount"}) {
    Output h = Nexusfs(std::string(sub) + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    EXPECT_NE(h.out.find("Usage"), std::string::npos) << sub << ": " << h.out;
  }
  EXPECT_NE(Nexusfs("no-such-command").code, 0);
}

TEST_F(CliTest, FormatStatusConfig) {
  Output f =
      Nexusfs("format " + Meta() + " vol-1 --bucket " + Bucket() + " --capacity 2 --inodes 1000");
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_NE(f.out.find("vol-1"), std::string::npos);
  // The object store was checked and left clean.
  EXPECT_TRUE(fs::exists(Bucket()));

  Output s = Nexusfs("status " + Meta());
  ASSERT_EQ(s.code, 0) << s.out;
  auto j = nlohmann::json::parse(s.out);
  EXPECT_EQ(j["setting"]["name"], "vol-1");
  EXPECT_EQ(j["setting"]["capacity"], 2ULL << 30);
  EXPECT_EQ(
      j["usage"]["used_inodes"].get<uint64_t>() + j["usage"]["available_inodes"].get<uint64_t>(),
      1000u);

  Output c = Nexusfs("config " + Meta() + " --capacity 5 --inodes 2000");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("capacity"), std::string::npos);
  auto j2 = nlohmann::json::parse(Nexusfs("status " + Meta()).out);
  EXPECT_EQ(j2["setting"]["capacity"], 5ULL << 30);
  EXPECT_EQ(j2["setting"]["inodes"], 2000);
  EXPECT_EQ(j2["setting"]["uuid"], j["setting"]["uuid"]);

  // Formatting again needs --force, which keeps the UUID and changes settings.
  Output again = Nexusfs("format " + Meta() + " vol-1 --bucket " + Bucket());
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.out.find("already formatted"), std::string::npos) << again.out;
  Output forced = Nexusfs("format " + Meta() + " vol-1 --force --inodes 3000");
  EXPECT_EQ(forced.code, 0) << forced.out;
  auto j3 = nlohmann::json::parse(Nexusfs("status " + Meta()).out);
  EXPECT_EQ(j3["setting"]["uuid"], j["setting"]["uuid"]);
  EXPECT_EQ(j3["setting"]["inodes"], 3000);
}

TEST_F(CliTest, SqliteEngine) {
  std::string url = "sqlite3://" + dir_.string() + "/m.db";
  ASSERT_EQ(Nexusfs("format " + url + " sqlvol --bucket " + Bucket()).code, 0);
  Output s = Nexusfs("status " + url);
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_EQ(nlohmann::json::parse(s.out)["setting"]["name"], "sqlvol");
}

// Each bad input gives one line naming the problem, a non-zero exit, and writes nothing.
TEST_F(CliTest, ErrorsAreOneClearLine) {
  struct Case {
    std::string args, needle;
  };
  std::vector<Case> cases = {
      {"status " + Meta(), "not formatted"},
      {"status nosuch://x", "unknown metadata engine 'nosuch'"},
      {"status redis://u:topsecret@127.0.0.1:1/0", "Connection refused"},
      {"format " + Meta() + " Bad_Name --bucket " + Bucket(), "volume name"},
      {"format " + Meta() + " vol --bucket " + Bucket() + " --block-size 3M", "power of two"},
      {"format " + Meta() + " vol --bucket " + Bucket() + " --storage ftp", "storage 'ftp'"},
      {"format " + Meta() + " vol --bucket /proc/nope", "object store"},
      {"config " + Meta() + " --capacity 1", "not formatted"},
  };
  for (const auto& c : cases) {
    Output r = Nexusfs(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_NE(r.out.find(c.needle), std::string::npos) << c.args << " -> " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << c.args << " -> " << r.out;
    EXPECT_EQ(r.out.find("topsecret"), std::string::npos) << r.out;
  }
  // None of the failed formats left a volume behind.
  EXPECT_NE(Nexusfs("status " + Meta()).code, 0);
}

}  // namespace
