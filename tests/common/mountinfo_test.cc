// ReadMountinfo and MountAt over mountinfo files written by the test (proc(5) format).
#include "common/mountinfo.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace nexus {
namespace {

class MountinfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-mountinfo-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text) { std::ofstream(path_) << text; }
  std::string path_;
};

TEST_F(MountinfoTest, ParsesFieldsUndoesEscapesAndSkipsMalformedLines) {
  Write(
      "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
      "90 22 0:52 / /mnt/with\\040space\\134x rw,nosuid - fuse.nexusfs nexusfs:v rw,user_id=0\n"
      "garbage\n"
      "91 22 0:53 / /no/dash rw shared:2 master:1\n"
      "92 22 0:54 / /two/optional rw shared:3 master:1 - tmpfs tmpfs rw\n");
  auto all = ReadMountinfo(path_);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].device, "254:1");
  EXPECT_EQ(all[0].mountpoint, "/");
  EXPECT_EQ(all[0].fstype, "ext4");
  EXPECT_EQ(all[1].device, "0:52");
  EXPECT_EQ(all[1].mountpoint, "/mnt/with space\\x");
  EXPECT_EQ(all[1].fstype, "fuse.nexusfs");
  EXPECT_EQ(all[2].mountpoint, "/two/optional");
  EXPECT_EQ(all[2].fstype, "tmpfs");
}

TEST_F(MountinfoTest, MountAtFindsTheTopmostMount) {
  Write(
      "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
      "90 22 0:52 / /m rw - fuse.nexusfs a rw\n"
      "95 90 0:60 / /m rw - tmpfs tmpfs rw\n");
  auto top = MountAt("/m", path_);
  ASSERT_TRUE(top);
  EXPECT_EQ(top->device, "0:60");
  EXPECT_EQ(top->fstype, "tmpfs");
  EXPECT_FALSE(MountAt("/nowhere", path_));
  EXPECT_TRUE(ReadMountinfo(path_ + ".missing").empty());
}

TEST(UnescapeMountinfo, LeavesWhatIsNotAnEscapeAlone) {
  EXPECT_EQ(UnescapeMountinfo("a\\011b\\012c"), "a\tb\nc");
  EXPECT_EQ(UnescapeMountinfo("a\\9zz"), "a\\9zz");
  EXPECT_EQ(UnescapeMountinfo("end\\04"), "end\\04");
  EXPECT_EQ(UnescapeMountinfo("\\"), "\\");
}

}  // namespace
}  // namespace nexus
