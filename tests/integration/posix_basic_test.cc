// Basic POSIX behaviour over a real mount: data, persistence, namespace errnos, link counts,
// permissions, xattrs, timestamps and the internal files.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

class PosixTest : public MountTest {};

int Errno(int rc) { return rc < 0 ? errno : 0; }

std::set<std::string> List(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = readdir(d)) names.insert(e->d_name);
  closedir(d);
  return names;
}

TEST_F(PosixTest, WriteReadCloseAndPersistAcrossRemount) {
  std::string small = "hello nexusfs\n";
  std::string big = Pattern(9 << 20, 7);  // spans blocks: 4 MiB default block size
  WriteFile(P("small.txt"), small);
  WriteFile(P("big.bin"), big);
  EXPECT_EQ(ReadFile(P("small.txt")), small);
  EXPECT_EQ(ReadFile(P("big.bin")), big);
  struct stat st;
  ASSERT_EQ(stat(P("big.bin").c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), big.size());
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  WriteFile(P("d/inner"), "inner");

  Remount();
  EXPECT_EQ(ReadFile(P("small.txt")), small);
  EXPECT_EQ(ReadFile(P("big.bin")), big);
  EXPECT_EQ(ReadFile(P("d/inner")), "inner");
  EXPECT_EQ(List(mnt_), (std::set<std::string>{".", "..", "small.txt", "big.bin", "d"}));
}

TEST_F(PosixTest, OverwriteInTheMiddleAndPartialReads) {
  std::string data = Pattern(1 << 20, 1);
  WriteFile(P("f"), data);
  int fd = open(P("f").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::string patch = Pattern(5000, 2);
  ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), 300000), static_cast<ssize_t>(patch.size()));
  data.replace(300000, patch.size(), patch);
  char buf[10000];
  ASSERT_EQ(pread(fd, buf, sizeof(buf), 299000), static_cast<ssize_t>(sizeof(buf)));
  EXPECT_EQ(std::string(buf, sizeof(buf)), data.substr(299000, sizeof(buf)));
  ASSERT_EQ(pread(fd, buf, sizeof(buf), data.size() - 100), 100);  // short read at EOF
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadFile(P("f")), data);
}

TEST_F(PosixTest, CreateErrnos) {
  WriteFile(P("a"), "x");
  EXPECT_EQ(Errno(open(P("a").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644)), EEXIST);
  EXPECT_EQ(Errno(open(P("missing/a").c_str(), O_CREAT | O_WRONLY, 0644)), ENOENT);
  EXPECT_EQ(Errno(open(P("a/b").c_str(), O_CREAT | O_WRONLY, 0644)), ENOTDIR);
  EXPECT_EQ(Errno(mkdir(P("a").c_str(), 0755)), EEXIST);
  std::string longname(256, 'n');
  EXPECT_EQ(Errno(open(P(longname).c_str(), O_CREAT | O_WRONLY, 0644)), ENAMETOOLONG);
  int fd = open(P("a").c_str(), O_CREAT | O_WRONLY, 0644);  // without O_EXCL: opens
  EXPECT_GE(fd, 0);
  close(fd);
}

TEST_F(PosixTest, RenameErrnosAndFlags) {
  ASSERT_EQ(mkdir(P("d1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("d2").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("d1/sub").c_str(), 0755), 0);
  WriteFile(P("d2/f"), "f");
  WriteFile(P("file"), "file");
  WriteFile(P("other"), "other");
  EXPECT_EQ(Errno(rename(P("d1").c_str(), P("d2").c_str())), ENOTEMPTY);
  EXPECT_EQ(Errno(rename(P("file").c_str(), P("d1").c_str())), EISDIR);
  EXPECT_EQ(Errno(rename(P("d1").c_str(), P("file").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(rename(P("d1").c_str(), P("d1/sub/x").c_str())), EINVAL);
  EXPECT_EQ(Errno(rename(P("nope").c_str(), P("x").c_str())), ENOENT);
  EXPECT_EQ(
      Errno(renameat2(AT_FDCWD, P("file").c_str(), AT_FDCWD, P("other").c_str(), RENAME_NOREPLACE)),
      EEXIST);
  ASSERT_EQ(renameat2(AT_FDCWD, P("file").c_str(), AT_FDCWD, P("other").c_str(), RENAME_EXCHANGE),
            0);
  EXPECT_EQ(ReadFile(P("file")), "other");
  EXPECT_EQ(ReadFile(P("other")), "file");
  ASSERT_EQ(rename(P("file").c_str(), P("other").c_str()), 0);  // replaces
  EXPECT_EQ(ReadFile(P("other")), "other");
  EXPECT_EQ(Errno(access(P("file").c_str(), F_OK)), ENOENT);
  ASSERT_EQ(rename(P("d1/sub").c_str(), P("d2/sub").c_str()), 0);
  struct stat st;
  EXPECT_EQ(stat(P("d2/sub").c_str(), &st), 0);
}

TEST_F(PosixTest, LinkSymlinkUnlinkRmdirErrnos) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  WriteFile(P("d/f"), "f");
  EXPECT_EQ(Errno(link(P("d").c_str(), P("dl").c_str())), EPERM);
  EXPECT_EQ(Errno(link(P("d/f").c_str(), P("d/f").c_str())), EEXIST);
  EXPECT_EQ(Errno(unlink(P("d").c_str())), EISDIR);
  EXPECT_EQ(Errno(rmdir(P("d/f").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(rmdir(P("d").c_str())), ENOTEMPTY);
  EXPECT_EQ(Errno(unlink(P("d/none").c_str())), ENOENT);
  ASSERT_EQ(symlink("d/f", P("sl").c_str()), 0);
  char target[64] = {0};
  ASSERT_EQ(readlink(P("sl").c_str(), target, sizeof(target)), 3);
  EXPECT_STREQ(target, "d/f");
  EXPECT_EQ(ReadFile(P("sl")), "f");
  EXPECT_EQ(Errno(symlink("x", P("sl").c_str())), EEXIST);
  struct stat st;
  ASSERT_EQ(lstat(P("sl").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(unlink(P("d/f").c_str()), 0);
  EXPECT_EQ(Errno(stat(P("sl").c_str(), &st)), ENOENT);  // dangling
  ASSERT_EQ(rmdir(P("d").c_str()), 0);
}

TEST_F(PosixTest, LinkCounts) {
  struct stat st;
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  ASSERT_EQ(stat(P("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(mkdir(P("d/s1").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("d/s2").c_str(), 0755), 0);
  ASSERT_EQ(stat(P("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 4u);
  ASSERT_EQ(rmdir(P("d/s1").c_str()), 0);
  ASSERT_EQ(stat(P("d").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  WriteFile(P("d/f"), "data");
  ASSERT_EQ(link(P("d/f").c_str(), P("hard").c_str()), 0);
  ASSERT_EQ(stat(P("hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(unlink(P("d/f").c_str()), 0);
  ASSERT_EQ(stat(P("hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(ReadFile(P("hard")), "data");
}

TEST_F(PosixTest, UnlinkedOpenFileStaysReadable) {
  WriteFile(P("f"), "still here");
  int fd = open(P("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(P("f").c_str()), 0);
  char buf[32] = {0};
  EXPECT_EQ(pread(fd, buf, sizeof(buf), 0), 10);
  EXPECT_STREQ(buf, "still here");
  close(fd);
}

TEST_F(PosixTest, PermissionsAsNonRoot) {
  ASSERT_EQ(mkdir(P("closed").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("open").c_str(), 0777), 0);
  ASSERT_EQ(chmod(P("open").c_str(), 0777), 0);  // mkdir is subject to the umask
  WriteFile(P("secret"), "s");
  ASSERT_EQ(chmod(P("secret").c_str(), 0600), 0);
  WriteFile(P("public"), "p");
  ASSERT_EQ(chmod(P("public").c_str(), 0644), 0);
  std::string closed = P("closed/x"), open_dir = P("open/x"), secret = P("secret"),
              pub = P("public");
  EXPECT_EQ(RunAsNobody([&] { return Errno(open(closed.c_str(), O_CREAT | O_WRONLY, 0644)); }),
            EACCES);
  EXPECT_EQ(RunAsNobody([&] { return Errno(open(secret.c_str(), O_RDONLY)); }), EACCES);
  EXPECT_EQ(RunAsNobody([&] { return Errno(open(pub.c_str(), O_WRONLY)); }), EACCES);
  EXPECT_EQ(RunAsNobody([&] { return Errno(chmod(pub.c_str(), 0777)); }), EPERM);
  EXPECT_EQ(RunAsNobody([&] {
              int fd = open(open_dir.c_str(), O_CREAT | O_WRONLY, 0644);
              if (fd < 0) return errno;
              close(fd);
              struct stat st;
              if (stat(open_dir.c_str(), &st) != 0) return errno;
              return st.st_uid == 65534 && st.st_gid == 65534 ? 0 : 200;
            }),
            0);
  EXPECT_EQ(ReadFile(P("public")), "p");
}

TEST_F(PosixTest, StickyDirectory) {
  ASSERT_EQ(mkdir(P("tmp").c_str(), 01777), 0);
  ASSERT_EQ(chmod(P("tmp").c_str(), 01777), 0);
  WriteFile(P("tmp/roots"), "r");
  std::string roots = P("tmp/roots"), mine = P("tmp/mine");
  EXPECT_EQ(RunAsNobody([&] { return Errno(unlink(roots.c_str())); }), EPERM);
  EXPECT_EQ(RunAsNobody([&] {
              int fd = open(mine.c_str(), O_CREAT | O_WRONLY, 0644);
              if (fd < 0) return errno;
              close(fd);
              return Errno(unlink(mine.c_str()));
            }),
            0);
  EXPECT_EQ(ReadFile(roots), "r");
}

TEST_F(PosixTest, SetgidDirectoryAndUmask) {
  ASSERT_EQ(mkdir(P("g").c_str(), 0775), 0);
  ASSERT_EQ(chown(P("g").c_str(), 0, 1234), 0);
  ASSERT_EQ(chmod(P("g").c_str(), 02775), 0);
  WriteFile(P("g/f"), "x");
  ASSERT_EQ(mkdir(P("g/sub").c_str(), 0755), 0);
  struct stat st;
  ASSERT_EQ(stat(P("g/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 1234u);
  ASSERT_EQ(stat(P("g/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 1234u);
  EXPECT_TRUE(st.st_mode & S_ISGID);

  mode_t old = umask(027);
  ASSERT_EQ(mkdir(P("masked").c_str(), 0777), 0);
  int fd = open(P("maskedf").c_str(), O_CREAT | O_WRONLY, 0666);
  umask(old);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(stat(P("masked").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(stat(P("maskedf").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(PosixTest, Xattrs) {
  WriteFile(P("f"), "x");
  std::string f = P("f");
  ASSERT_EQ(setxattr(f.c_str(), "user.color", "blue", 4, 0), 0);
  EXPECT_EQ(getxattr(f.c_str(), "user.color", nullptr, 0), 4);
  char small[2];
  EXPECT_EQ(Errno(static_cast<int>(getxattr(f.c_str(), "user.color", small, sizeof(small)))),
            ERANGE);
  char buf[64] = {0};
  ASSERT_EQ(getxattr(f.c_str(), "user.color", buf, sizeof(buf)), 4);
  EXPECT_STREQ(buf, "blue");
  EXPECT_EQ(Errno(setxattr(f.c_str(), "user.color", "red", 3, XATTR_CREATE)), EEXIST);
  EXPECT_EQ(Errno(setxattr(f.c_str(), "user.none", "v", 1, XATTR_REPLACE)), ENODATA);
  ASSERT_EQ(setxattr(f.c_str(), "user.size", "", 0, 0), 0);
  char names[256];
  ssize_t n = listxattr(f.c_str(), names, sizeof(names));
  ASSERT_GT(n, 0);
  std::set<std::string> got;
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
    got.insert(names + i);
  }
  EXPECT_EQ(got, (std::set<std::string>{"user.color", "user.size"}));
  ASSERT_EQ(removexattr(f.c_str(), "user.color"), 0);
  EXPECT_EQ(Errno(static_cast<int>(getxattr(f.c_str(), "user.color", buf, sizeof(buf)))), ENODATA);
  EXPECT_EQ(Errno(removexattr(f.c_str(), "user.color")), ENODATA);
}

TEST_F(PosixTest, NanosecondTimestamps) {
  WriteFile(P("f"), "x");
  struct timespec times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  ASSERT_EQ(utimensat(AT_FDCWD, P("f").c_str(), times, 0), 0);
  struct stat st;
  ASSERT_EQ(stat(P("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
  Remount();
  ASSERT_EQ(stat(P("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
}

// cp -p writes, sets the times on the open descriptor, then closes: the commit at close must
// not replace the times set before it. A write also shows in mtime before it is committed.
TEST_F(PosixTest, TimesSetBeforeCloseSurviveTheCommit) {
  int fd = open(P("copy").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  struct stat before;
  ASSERT_EQ(fstat(fd, &before), 0);
  struct timespec pause = {0, 20000000};
  nanosleep(&pause, nullptr);
  std::string data = Pattern(100000, 8);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  struct stat during;
  ASSERT_EQ(fstat(fd, &during), 0);
  EXPECT_GT(during.st_mtim.tv_sec * 1000000000LL + during.st_mtim.tv_nsec,
            before.st_mtim.tv_sec * 1000000000LL + before.st_mtim.tv_nsec);
  struct timespec times[2] = {{1234567890, 5}, {1234567890, 6}};
  ASSERT_EQ(futimens(fd, times), 0);
  ASSERT_EQ(close(fd), 0);
  struct stat st;
  ASSERT_EQ(stat(P("copy").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 6);
  EXPECT_EQ(ReadFile(P("copy")), data);
}

TEST_F(PosixTest, TruncateShrinksAndGrowsWithZeros) {
  std::string data = Pattern(200000, 3);
  WriteFile(P("f"), data);
  ASSERT_EQ(truncate(P("f").c_str(), 1000), 0);
  EXPECT_EQ(ReadFile(P("f")), data.substr(0, 1000));
  ASSERT_EQ(truncate(P("f").c_str(), 5000), 0);
  EXPECT_EQ(ReadFile(P("f")), data.substr(0, 1000) + std::string(4000, '\0'));
  int fd = open(P("f").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  close(fd);
  struct stat st;
  ASSERT_EQ(stat(P("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST_F(PosixTest, InternalFilesAndStatfs) {
  WriteFile(P("f"), "abc");
  std::string stats = ReadFile(P(".stats"));
  EXPECT_NE(stats.find("nexusfs_vfs_ops_total{op=\"create\"}"), std::string::npos) << stats;
  EXPECT_NE(stats.find("nexusfs_vfs_write_bytes_total"), std::string::npos);
  std::string config = ReadFile(P(".config"));
  EXPECT_NE(config.find("\"itvol\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"mountpoint\""), std::string::npos) << config;
  EXPECT_EQ(List(mnt_).count(".stats"), 0u);
  EXPECT_EQ(List(mnt_).count(".config"), 0u);
  EXPECT_EQ(Errno(open(P(".stats").c_str(), O_WRONLY)), EACCES);
  struct statvfs sv;
  ASSERT_EQ(statvfs(mnt_.c_str(), &sv), 0);
  EXPECT_GT(sv.f_bsize, 0u);
  EXPECT_EQ(sv.f_namemax, 255u);
}

TEST_F(PosixTest, CopyFileRange) {
  std::string data = Pattern(3 << 20, 4);
  WriteFile(P("src"), data);
  int in = open(P("src").c_str(), O_RDONLY);
  int out = open(P("dst").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t off_in = 1000, off_out = 0;
  size_t left = 2000000;
  while (left > 0) {
    ssize_t n = copy_file_range(in, &off_in, out, &off_out, left, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    left -= static_cast<size_t>(n);
  }
  close(in);
  ASSERT_EQ(close(out), 0);
  EXPECT_EQ(ReadFile(P("dst")), data.substr(1000, 2000000));
}

}  // namespace
}  // namespace nexus::it
