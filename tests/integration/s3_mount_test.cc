// A volume on a real S3 server (s3rver): format with the built nexusfs, mount it, and drive it
// with real syscalls: write, read, rename, unlink, remount. Needs root, /dev/fuse and s3rver.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "integration/mount_fixture.h"
#include "object/object_store.h"
#include "object/s3_server.h"

namespace nexus::it {
namespace {

class S3MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "FUSE integration tests need root and /dev/fuse";
    }
    if (testing::S3Server::FindBinary().empty()) GTEST_SKIP() << "s3rver is not installed";
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    char tmpl[] = "/tmp/nexusfs-s3it.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    work_ = tmpl;
    mnt_ = work_ + "/mnt";
    log_ = work_ + "/mount.log";
    meta_ = "rocksdb://" + work_ + "/meta";
    ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0);
    bucket_url_ = server_.Endpoint() + "/s3-volumes/team";  // the bucket does not exist yet
  }
  void TearDown() override {
    if (mounted_) Unmount();
    std::error_code ec;
    // The default disk cache of the volume (mounts without --cache-dir) lives outside work_.
    if (const std::string dir = DefaultCacheDir(); !dir.empty())
      std::filesystem::remove_all(dir, ec);
    if (!work_.empty()) std::filesystem::remove_all(work_, ec);
    server_.Stop();
  }
  void Mount(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {NEXUSFS_BIN, "mount", meta_, mnt_, "-d", "--log", log_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string out;
    ASSERT_EQ(RunCommand(argv, &out), 0) << out << "\n" << ReadFile(log_);
    mounted_ = true;
  }
  void Unmount() {
    std::string out;
    int rc = RunCommand({NEXUSFS_BIN, "umount", mnt_}, &out);
    if (rc != 0) RunCommand({"umount", "-l", mnt_});
    EXPECT_EQ(rc, 0) << out << "\n" << ReadFile(log_);
    mounted_ = false;
  }
  std::string P(const std::string& rel) const { return mnt_ + "/" + rel; }
  void Format() {
    std::string out;
    ASSERT_EQ(RunCommand({NEXUSFS_BIN, "format", meta_, "s3vol", "--storage", "s3", "--bucket",
                          bucket_url_, "--access-key", testing::S3Server::kAccessKey,
                          "--secret-key", testing::S3Server::kSecretKey},
                         &out),
              0)
        << out;
  }
  // Where a mount without --cache-dir keeps the volume's disk cache (running as root), or ""
  // when the volume was not formatted.
  std::string DefaultCacheDir() {
    std::string out;
    if (RunCommand({NEXUSFS_BIN, "status", meta_}, &out) != 0) return "";
    const std::string tag = "\"uuid\": \"";
    size_t at = out.find(tag);
    if (at == std::string::npos) return "";
    at += tag.size();
    return "/var/cache/nexusfs/" + out.substr(at, out.find('"', at) - at);
  }
  // The value of a sample in the mount's .stats (its name with labels, if any), or -1.
  double Stat(const std::string& name) {
    const std::string text = ReadFile(P(".stats"));
    size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
  }

  testing::S3Server server_;
  std::string work_, mnt_, log_, meta_, bucket_url_;
  bool mounted_ = false;
};

TEST_F(S3MountTest, WriteReadRenameUnlinkRemount) {
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "format", meta_, "s3vol", "--storage", "s3", "--bucket",
                        bucket_url_, "--access-key", testing::S3Server::kAccessKey, "--secret-key",
                        testing::S3Server::kSecretKey},
                       &out),
            0)
      << out;
  EXPECT_NE(out.find(bucket_url_), std::string::npos) << out;
  // s3rver's access key and secret are both "S3RVER": neither may be printed.
  EXPECT_EQ(out.find(testing::S3Server::kSecretKey), std::string::npos) << out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "status", meta_}, &out), 0) << out;
  EXPECT_NE(out.find("\"secret_key\": \"removed\""), std::string::npos) << out;

  Mount();
  const std::string big = Pattern((9 << 20) + 12345, 7);  // three 4 MiB blocks, the last short
  WriteFile(P("big.bin"), big);
  WriteFile(P("small.txt"), "hello s3\n");
  ASSERT_EQ(mkdir(P("dir").c_str(), 0755), 0);
  WriteFile(P("dir/doomed"), Pattern(100000, 8));
  EXPECT_EQ(ReadFile(P("big.bin")), big);
  ASSERT_EQ(rename(P("small.txt").c_str(), P("dir/renamed.txt").c_str()), 0)
      << std::strerror(errno);
  ASSERT_EQ(unlink(P("dir/doomed").c_str()), 0);
  // Overwrite the middle of the big file through an open descriptor and fsync it.
  int fd = open(P("big.bin").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  const std::string patch(5000, 'z');
  ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), 4 << 20), static_cast<ssize_t>(patch.size()));
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(close(fd), 0);
  std::string expect = big;
  expect.replace(4 << 20, patch.size(), patch);

  Unmount();
  Mount();
  EXPECT_EQ(ReadFile(P("big.bin")), expect);
  EXPECT_EQ(ReadFile(P("dir/renamed.txt")), "hello s3\n");
  struct stat st;
  EXPECT_NE(stat(P("small.txt").c_str(), &st), 0);
  EXPECT_NE(stat(P("dir/doomed").c_str(), &st), 0);
  Unmount();

  // The blocks are in the bucket, under the URL's prefix and the volume's name.
  object::StoreOptions o;
  o.access_key = testing::S3Server::kAccessKey;
  o.secret_key = testing::S3Server::kSecretKey;
  auto store = object::ObjectStore::Open(bucket_url_, o);
  ASSERT_TRUE(store) << store.error().ToString();
  auto blocks = (*store)->List("s3vol/chunks/", "", 0);
  ASSERT_TRUE(blocks) << blocks.error().ToString();
  EXPECT_GE(blocks->objects.size(), 3u);
}

// --writeback: close and fsync return once the data is staged in the cache directory, so they
// complete while the S3 server is unresponsive (paused), reads are served meanwhile, and the
// unmount after the server is back uploads everything: a mount without a cache reads it all.
TEST_F(S3MountTest, WritebackClosesDuringAnOutageAndUploadsAfterIt) {
  ASSERT_NO_FATAL_FAILURE(Format());
  const std::string cache = work_ + "/cache";
  ASSERT_NO_FATAL_FAILURE(Mount({"--writeback", "--cache-dir", cache}));
  WriteFile(P("before"), Pattern(5000, 1));  // the server is up: uploads as usual
  server_.Pause();
  constexpr int kFiles = 30;
  for (int i = 0; i < kFiles; ++i) WriteFile(P("f" + std::to_string(i)), Pattern(10000 + i, i));
  int fd = open(P("synced").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  const std::string synced = Pattern(70000, 99);
  ASSERT_EQ(write(fd, synced.data(), synced.size()), static_cast<ssize_t>(synced.size()));
  EXPECT_EQ(fsync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(close(fd), 0);
  // Staged, not uploaded: the server has answered nothing since the pause.
  EXPECT_GE(Stat("nexusfs_writeback_staged_blocks"), kFiles + 1) << ReadFile(P(".stats"));
  EXPECT_EQ(ReadFile(P("f7")), Pattern(10007, 7));
  server_.Resume();
  Unmount();  // waits for the uploads
  size_t left = 0;
  for (const auto& e : std::filesystem::directory_iterator(cache + "/staging")) {
    (void)e;
    ++left;
  }
  EXPECT_EQ(left, 0u) << "blocks still staged after the unmount";

  // No cache directory: every block comes from the server.
  ASSERT_NO_FATAL_FAILURE(Mount({"--cache-dir", "none"}));
  EXPECT_EQ(ReadFile(P("before")), Pattern(5000, 1));
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(ReadFile(P("f" + std::to_string(i))), Pattern(10000 + i, i)) << "file f" << i;
  }
  EXPECT_EQ(ReadFile(P("synced")), synced);
}

TEST_F(S3MountTest, WritebackNeedsACacheDirectory) {
  ASSERT_NO_FATAL_FAILURE(Format());
  std::string out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "mount", meta_, mnt_, "-d", "--log", log_, "--writeback",
                        "--cache-dir", "none"},
                       &out),
            0);
  EXPECT_NE(out.find("--writeback needs --cache-dir"), std::string::npos) << out;
}

// Without --cache-dir a volume on S3 caches on local disk, in /var/cache/nexusfs/<uuid> (as
// root), what it reads and what it writes: after a remount the file reads back with no GET.
// --cache-dir none turns it off; a default directory that cannot be used is not fatal.
TEST_F(S3MountTest, RemoteVolumesCacheWhatTheyWriteByDefault) {
  ASSERT_NO_FATAL_FAILURE(Format());
  const std::string dir = DefaultCacheDir();
  ASSERT_FALSE(dir.empty());
  const std::string gets = "nexusfs_object_request_duration_seconds_count{op=\"get\"}";
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_NE(ReadFile(P(".config")).find("\"cache_dir\": \"" + dir + "\""), std::string::npos)
      << ReadFile(P(".config"));
  const std::string big = Pattern((9 << 20) + 4321, 5);  // two whole blocks and a partial one
  WriteFile(P("big"), big);
  Unmount();
  ASSERT_TRUE(std::filesystem::is_directory(dir + "/blocks"));

  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ReadFile(P("big")), big);
  EXPECT_EQ(Stat(gets), 0) << ReadFile(P(".stats"));
  Unmount();

  ASSERT_NO_FATAL_FAILURE(Mount({"--cache-dir", "none"}));
  EXPECT_NE(ReadFile(P(".config")).find("\"cache_dir\": \"\""), std::string::npos);
  EXPECT_EQ(ReadFile(P("big")), big);
  EXPECT_GE(Stat(gets), 3) << ReadFile(P(".stats"));
  Unmount();

  // The default directory is unusable (a file stands where it would be): the mount serves
  // without a disk cache and says so in its log.
  std::filesystem::remove_all(dir);
  std::ofstream(dir) << "in the way";
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ReadFile(P("big")), big);
  EXPECT_GE(Stat(gets), 3);
  EXPECT_NE(ReadFile(log_).find("mounting without a disk cache"), std::string::npos)
      << ReadFile(log_);
}

TEST_F(S3MountTest, FormatFailsClearlyWithoutTheServer) {
  std::string dead = "http://127.0.0.1:1/s3-volumes";
  std::string out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "format", meta_, "s3vol", "--storage", "s3", "--bucket", dead,
                        "--access-key", "AK", "--secret-key", "very-secret-value"},
                       &out),
            0);
  EXPECT_NE(out.find("object store"), std::string::npos) << out;
  EXPECT_EQ(out.find("very-secret-value"), std::string::npos) << out;
  // Nothing was left behind.
  EXPECT_FALSE(std::filesystem::exists(work_ + "/meta"));
}

}  // namespace
}  // namespace nexus::it
