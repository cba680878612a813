// nexusfs objbench as a user runs it: its functional checks and throughput table on file:// and
// on a real S3 server (s3rver), and its errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "object/s3_server.h"
#include "run_nexusfs.h"

namespace {

namespace fs = std::filesystem;

using nexus::clitest::Nexusfs;
using nexus::clitest::Output;

void ExpectAllPassed(const Output& r) {
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* check : {"put ", "get ", "ranged get", "head ", "list ", "missing key",
                            "empty object", "multipart", "delete "}) {
    size_t at = r.out.find("\n" + std::string(check));
    ASSERT_NE(at, std::string::npos) << check << "\n" << r.out;
    EXPECT_NE(r.out.find("pass", at), std::string::npos) << check;
  }
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  for (const char* row :
       {"put big", "get big", "put small", "get small", "head small", "delete small", "MiB/s"}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  }
}

TEST(ObjbenchTest, FileStorePassesAndIsLeftClean) {
  char tmpl[] = "/tmp/nexus-objbench-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  Output r = Nexusfs(std::string("objbench file://") + tmpl +
                     " -p 3 --big-size 12M --block-size 1M --small-count 30 --small-size 4K");
  ExpectAllPassed(r);
  EXPECT_NE(r.out.find("      12 "), std::string::npos) << r.out;  // 12 big objects of 1 MiB
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmpl)) files += e.is_regular_file();
  EXPECT_EQ(files, 0u);
  fs::remove_all(tmpl);
}

TEST(ObjbenchTest, S3StorePasses) {
  nexus::testing::S3Server server;
  std::string error;
  if (nexus::testing::S3Server::FindBinary().empty()) GTEST_SKIP() << "s3rver is not installed";
  ASSERT_TRUE(server.Start(&error)) << error;
  Output r = Nexusfs("objbench " + server.BucketUrl("bench") +
                     " --access-key S3RVER --secret-key S3RVER -p 2 --big-size 8M "
                     "--small-count 20 --small-size 4K");
  ExpectAllPassed(r);
  EXPECT_EQ(r.out.find("--secret-key"), std::string::npos);
}

TEST(ObjbenchTest, Errors) {
  Output r = Nexusfs("objbench ftp://nowhere/x");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("unknown object store"), std::string::npos) << r.out;
  r = Nexusfs("objbench http://127.0.0.1:1/bucket-x --access-key a --secret-key hushhush");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out.find("hushhush"), std::string::npos) << r.out;
  r = Nexusfs("objbench mem:// -p 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("-p must be"), std::string::npos) << r.out;
}

}  // namespace
