// nexusfs dump / load / destroy as a user runs them: files and pipes, JSON and binary, clean
// one-line errors, destroy with and without --yes, and refusal while a session is live.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "run_nexusfs.h"

namespace {

namespace fs = std::filesystem;
using namespace nexus;

using nexus::clitest::Nexusfs;
using nexus::clitest::Output;
using nexus::clitest::Shell;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class DumpCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-dump-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Output f = Nexusfs("format " + Url("a") + " vol-a --bucket " + Bucket());
    ASSERT_EQ(f.code, 0) << f.out;
    // Some content, and block objects for destroy to remove.
    auto engine = kv::Engine::Open(Url("a"));
    ASSERT_TRUE(engine.has_value());
    auto m = meta::Meta::Create(std::move(*engine));
    ASSERT_TRUE(m->Load().has_value());
    auto d = m->Mkdir(meta::Context::Root(), meta::kRootIno, "docs", 0755);
    ASSERT_TRUE(d.has_value());
    auto file = m->Mknod(meta::Context::Root(), d->ino, "a.txt", meta::FileType::kFile, 0644, 0);
    ASSERT_TRUE(file.has_value());
    auto id = m->NewSliceId();
    ASSERT_TRUE(id.has_value());
    ASSERT_TRUE(m->WriteSlice(file->ino, 0, meta::Slice{0, *id, 5, 0, 5}, 1).ok());
    uuid_ = m->format().uuid;
    fs::create_directories(Bucket() + "/vol-a/chunks/0/0");
    std::ofstream(Bucket() + "/vol-a/chunks/0/0/" + std::to_string(*id) + "_0_5") << "hello";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Url(const std::string& name) const {
    return "sqlite3://" + dir_.string() + "/" + name + ".db";
  }
  std::string Bucket() const { return dir_.string() + "/data"; }
  fs::path dir_;
  std::string uuid_;
};

TEST_F(DumpCliTest, DumpLoadRoundTrip) {
  const std::string d = dir_.string();
  Output j = Nexusfs("dump " + Url("a") + " " + d + "/a.json");
  ASSERT_EQ(j.code, 0) << j.out;
  EXPECT_NE(j.out.find("dumped volume 'vol-a'"), std::string::npos) << j.out;
  Output b = Nexusfs("dump " + Url("a") + " " + d + "/a.bin --binary");
  ASSERT_EQ(b.code, 0) << b.out;
  // To a pipe: the same bytes as to a file.
  Output p = Shell(std::string(NEXUSFS_BIN) + " dump " + Url("a") + " - 2>/dev/null | cat > " + d +
                   "/pipe.json");
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_EQ(Slurp(d + "/pipe.json"), Slurp(d + "/a.json"));

  Output l = Nexusfs("load " + Url("b") + " " + d + "/a.json");
  ASSERT_EQ(l.code, 0) << l.out;
  EXPECT_NE(l.out.find("loaded volume 'vol-a'"), std::string::npos) << l.out;
  Output l2 =
      Shell("cat " + d + "/a.bin | " + NEXUSFS_BIN + " load " + Url("c") + " - --threads 2");
  ASSERT_EQ(l2.code, 0) << l2.out;
  ASSERT_EQ(Nexusfs("dump " + Url("b") + " " + d + "/b.json").code, 0);
  ASSERT_EQ(Nexusfs("dump " + Url("c") + " " + d + "/c.bin --binary").code, 0);
  EXPECT_EQ(Slurp(d + "/a.json"), Slurp(d + "/b.json"));
  EXPECT_EQ(Slurp(d + "/a.bin"), Slurp(d + "/c.bin"));
  Output s = Nexusfs("status " + Url("b"));
  EXPECT_EQ(s.code, 0) << s.out;
  EXPECT_NE(s.out.find(uuid_), std::string::npos);

  // Loading into a formatted engine is refused in one line.
  Output again = Nexusfs("load " + Url("b") + " " + d + "/a.json");
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.out.find("already holds volume 'vol-a'"), std::string::npos) << again.out;
  EXPECT_EQ(Lines(again.out), 1u) << again.out;

  // Truncated and corrupted files: one line, and the target stays empty (not formatted).
  std::string bin = Slurp(d + "/a.bin");
  std::ofstream(d + "/cut.bin", std::ios::binary) << bin.substr(0, bin.size() - 5);
  std::string json = Slurp(d + "/a.json");
  std::ofstream(d + "/cut.json", std::ios::binary) << json.substr(0, json.size() * 2 / 3);
  bin[bin.size() / 2] ^= 1;
  std::ofstream(d + "/flip.bin", std::ios::binary) << bin;
  for (const char* bad : {"cut.bin", "cut.json", "flip.bin"}) {
    Output r = Nexusfs("load " + Url("e") + " " + d + "/" + bad);
    EXPECT_EQ(r.code, 1) << bad << ": " << r.out;
    EXPECT_EQ(Lines(r.out), 1u) << r.out;
    EXPECT_NE(r.out.find("invalid dump"), std::string::npos) << r.out;
    EXPECT_NE(Nexusfs("status " + Url("e")).out.find("not formatted"), std::string::npos);
  }
  Output missing = Nexusfs("load " + Url("f") + " " + d + "/nope.json");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("cannot open"), std::string::npos) << missing.out;
}

TEST_F(DumpCliTest, Destroy) {
  // Without a terminal and without --yes: refused, nothing removed.
  Output r =
      Shell("echo vol-a | " + std::string(NEXUSFS_BIN) + " destroy " + Url("a") + " " + uuid_);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--yes"), std::string::npos) << r.out;
  EXPECT_EQ(Nexusfs("status " + Url("a")).code, 0);
  // On a terminal (script(1) gives it one): asks for the volume name; a wrong answer removes
  // nothing.
  if (Shell("command -v script").code == 0) {
    Output no = Shell("(sleep 1; echo wrong) | script -qec '" + std::string(NEXUSFS_BIN) +
                      " destroy " + Url("a") + " " + uuid_ + "' /dev/null");
    EXPECT_NE(no.out.find("Type the volume name to confirm"), std::string::npos) << no.out;
    EXPECT_NE(no.out.find("not confirmed; nothing was removed"), std::string::npos) << no.out;
    EXPECT_EQ(Nexusfs("status " + Url("a")).code, 0);
  }
  // A wrong UUID.
  Output w = Nexusfs("destroy " + Url("a") + " 11111111-2222-3333-4444-555555555555 --yes");
  EXPECT_EQ(w.code, 1);
  EXPECT_NE(w.out.find("has uuid " + uuid_), std::string::npos) << w.out;

  // A live session: refused.
  {
    auto engine = kv::Engine::Open(Url("a"));
    ASSERT_TRUE(engine.has_value());
    auto m = meta::Meta::Create(std::move(*engine));
    ASSERT_TRUE(m->Load().has_value());
    meta::SessionInfo info;
    info.host = "testhost";
    info.mount_point = "/mnt/x";
    ASSERT_TRUE(m->NewSession(info).has_value());
    Output busy = Nexusfs("destroy " + Url("a") + " " + uuid_ + " --yes");
    EXPECT_EQ(busy.code, 1) << busy.out;
    EXPECT_NE(busy.out.find("live session"), std::string::npos) << busy.out;
    EXPECT_NE(busy.out.find("testhost:/mnt/x"), std::string::npos) << busy.out;
    EXPECT_TRUE(fs::exists(Bucket() + "/vol-a/chunks"));
    ASSERT_TRUE(m->CloseSession().ok());
  }

  // The volume's default disk cache directory on this machine (cli_util.h, DefaultCacheDir)
  // goes with it.
  const char* xdg = getenv("XDG_CACHE_HOME");
  const fs::path cache =
      geteuid() == 0 ? fs::path("/var/cache/nexusfs") / uuid_
                     : fs::path(xdg && *xdg ? xdg : std::string(getenv("HOME")) + "/.cache") /
                           "nexusfs" / uuid_;
  fs::create_directories(cache / "blocks" / "0a");
  std::ofstream(cache / "blocks" / "0a" / "some-block") << "cached";
  Output ok = Nexusfs("destroy " + Url("a") + " " + uuid_ + " --yes");
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("removed 1 objects (5 bytes)"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("removed the volume's cache directory " + cache.string()),
            std::string::npos)
      << ok.out;
  EXPECT_FALSE(fs::exists(cache));
  EXPECT_NE(Nexusfs("status " + Url("a")).out.find("not formatted"), std::string::npos);
  size_t left = 0;
  for (const auto& e : fs::recursive_directory_iterator(Bucket())) left += e.is_regular_file();
  EXPECT_EQ(left, 0u);
  // The destroyed engine takes a load again.
  ASSERT_EQ(Nexusfs("format " + Url("g") + " vol-g --bucket " + Bucket()).code, 0);
  ASSERT_EQ(Nexusfs("dump " + Url("g") + " " + dir_.string() + "/g.json").code, 0);
  Output l = Nexusfs("load " + Url("a") + " " + dir_.string() + "/g.json");
  EXPECT_EQ(l.code, 0) << l.out;
}

}  // namespace
