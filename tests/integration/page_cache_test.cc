// The kernel's page cache on the embedded default, where the mount is its volume's sole client:
// kept across close and open (a second read of a file makes no READ request), and still right
// after every way a file's bytes can change: writes through another descriptor, truncation,
// fallocate (punch hole, zero range), copy_file_range, O_DIRECT writes, shared mmap writes and
// O_TRUNC. Each change is followed by a close, an open and a whole-file read compared with a
// model of the file. Volumes on shared engines keep the cache only for files this client saw
// unchanged (multi_client_test checks that one client sees another's close).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

// "" when equal, else where `got` first differs from `want`.
std::string Diff(const std::string& got, const std::string& want) {
  if (got == want) return "";
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return "sizes " + std::to_string(got.size()) + " / " + std::to_string(want.size()) +
         ", first difference at byte " + std::to_string(i);
}

class PageCacheTest : public MountTest {
 protected:
  // Bytes of regular files the mount has returned to READ requests (reads of .stats itself are
  // not counted), from its .stats.
  uint64_t ReadBytes() {
    const std::string stats = ReadFile(P(".stats"));
    const std::string key = "\nnexusfs_vfs_read_bytes_total ";
    size_t at = stats.find(key);
    EXPECT_NE(at, std::string::npos);
    return at == std::string::npos ? 0
                                   : std::strtoull(stats.c_str() + at + key.size(), nullptr, 10);
  }
  // Changes the file every way there is; after each, reads it whole from a new open.
  void ChangeEveryWay();
};

TEST_F(PageCacheTest, KeptAcrossCloseAndOpen) {
  // Written through the kernel in whole pages, which it keeps: the reads after the close,
  // the first one included, find every page cached.
  const std::string data = Pattern(3 << 20, 11);
  WriteFile(P("f"), data);
  const uint64_t r1 = ReadBytes();
  ASSERT_EQ(Diff(ReadFile(P("f")), data), "");
  ASSERT_EQ(Diff(ReadFile(P("f")), data), "");
  EXPECT_EQ(ReadBytes() - r1, 0u) << "a file reopened after this mount wrote it was read again";
  // A hole punched through a descriptor that wrote nothing: the file's mtime changes, and the
  // kernel drops only the punched page. The next open keeps the rest: a little around the hole
  // is read again, not 3 MiB (a volume other clients can change drops the file's whole cache).
  int fd = open(P("f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4096), 0)
      << std::strerror(errno);
  ASSERT_EQ(close(fd), 0);
  std::string holed = data;
  holed.replace(1 << 20, 4096, std::string(4096, '\0'));
  const uint64_t r2 = ReadBytes();
  ASSERT_EQ(Diff(ReadFile(P("f")), holed), "");
  EXPECT_LT(ReadBytes() - r2, 1u << 20) << "the reopened file was read again beyond the hole";
  // A remount starts with an empty cache and reads the stored bytes.
  Remount();
  const uint64_t fresh = ReadBytes();
  EXPECT_EQ(Diff(ReadFile(P("f")), holed), "");
  EXPECT_GE(ReadBytes() - fresh, holed.size());
}

// The same on SQLite, which several mounts can share: the cache is kept only for a file this
// client saw unchanged, and the kernel drops pages whose file shows a new mtime.
class SharedEnginePageCacheTest : public PageCacheTest {
 protected:
  std::string MetaScheme() const override { return "sqlite3"; }
};

TEST_F(PageCacheTest, StaysRightAfterEveryKindOfChange) { ChangeEveryWay(); }
TEST_F(SharedEnginePageCacheTest, StaysRightAfterEveryKindOfChange) { ChangeEveryWay(); }

void PageCacheTest::ChangeEveryWay() {
  const std::string path = P("f");
  std::string model = Pattern(3 << 20, 12);
  WriteFile(path, model);
  ASSERT_EQ(ReadFile(path), model);  // every page cached
  auto check = [&](const char* step) { EXPECT_EQ(Diff(ReadFile(path), model), "") << step; };

  int fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::string piece = Pattern(70000, 13);
  ASSERT_EQ(pwrite(fd, piece.data(), piece.size(), 100001), static_cast<ssize_t>(piece.size()));
  model.replace(100001, piece.size(), piece);
  ASSERT_EQ(close(fd), 0);
  check("pwrite");

  ASSERT_EQ(truncate(path.c_str(), 1500000), 0);
  model.resize(1500000);
  ASSERT_EQ(truncate(path.c_str(), 2000000), 0);
  model.resize(2000000, '\0');
  check("truncate down and up");

  fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 300000, 200000), 0)
      << std::strerror(errno);
  model.replace(300000, 200000, std::string(200000, '\0'));
  ASSERT_EQ(fallocate(fd, FALLOC_FL_ZERO_RANGE, 700001, 99999), 0) << std::strerror(errno);
  model.replace(700001, 99999, std::string(99999, '\0'));
  ASSERT_EQ(close(fd), 0);
  check("punch hole and zero range");

  const std::string src_data = Pattern(150000, 14);
  WriteFile(P("src"), src_data);
  int in = open(P("src").c_str(), O_RDONLY);
  int out = open(path.c_str(), O_WRONLY);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t off_in = 0, off_out = 900000;
  size_t left = src_data.size();
  while (left > 0) {
    ssize_t n = copy_file_range(in, &off_in, out, &off_out, left, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    left -= static_cast<size_t>(n);
  }
  model.replace(900000, src_data.size(), src_data);
  close(in);
  ASSERT_EQ(close(out), 0);
  check("copy_file_range");

  fd = open(path.c_str(), O_WRONLY | O_DIRECT);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* buf = nullptr;
  ASSERT_EQ(posix_memalign(&buf, 4096, 8192), 0);
  const std::string direct = Pattern(8192, 15);
  std::memcpy(buf, direct.data(), direct.size());
  ASSERT_EQ(pwrite(fd, buf, 8192, 1 << 20), 8192) << std::strerror(errno);
  std::free(buf);
  model.replace(1 << 20, direct.size(), direct);
  ASSERT_EQ(close(fd), 0);
  check("O_DIRECT write");

  fd = open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  void* map = mmap(nullptr, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 1 << 19);
  ASSERT_NE(map, MAP_FAILED) << std::strerror(errno);
  const std::string mapped = Pattern(65536, 16);
  std::memcpy(map, mapped.data(), mapped.size());
  ASSERT_EQ(msync(map, 65536, MS_SYNC), 0);
  ASSERT_EQ(munmap(map, 65536), 0);
  model.replace(1 << 19, mapped.size(), mapped);
  ASSERT_EQ(close(fd), 0);
  check("shared mmap write");

  const std::string fresh = Pattern(5000, 17);
  WriteFile(path, fresh, O_TRUNC);
  model = fresh;
  check("O_TRUNC and a new write");

  // What the kernel served is what the volume holds.
  Remount();
  check("after a remount");
}

}  // namespace
}  // namespace nexus::it
