// A mount on a networked engine across a restart of the server: a small write/read workload
// runs while the server goes away for ~2 s; operations wait or fail (EIO) during the outage,
// never return wrong data; afterwards the same mount carries on without a remount, and every
// file whose write and close succeeded reads back intact.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "integration/mount_fixture.h"
#include "servers.h"

namespace nexus::it {
namespace {

using Clock = std::chrono::steady_clock;

class MountRestartTest : public MountTest, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string MetaScheme() const override { return GetParam(); }
  std::string MetaUrl() const override { return url_; }

  void SetUp() override {
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "FUSE integration tests need root and /dev/fuse";
    }
    if (GetParam() == "redis") {
      if (std::string why = testsrv::RedisServer::Missing(); !why.empty()) GTEST_SKIP() << why;
      redis_ = std::make_unique<testsrv::RedisServer>(/*persistent=*/true);
      Status s = redis_->Start();
      ASSERT_TRUE(s.ok()) << s.ToString();
      url_ = redis_->NewUrl();
    } else {
      if (std::string why = testsrv::PostgresServer::Missing(); !why.empty()) GTEST_SKIP() << why;
      pg_ = std::make_unique<testsrv::PostgresServer>();
      Status s = pg_->Start();
      ASSERT_TRUE(s.ok()) << s.ToString();
      auto url = pg_->NewUrl();
      ASSERT_TRUE(url) << url.error().ToString();
      url_ = *url;
    }
    MountTest::SetUp();
  }

  // Takes the server down (a crash: SIGKILL / immediate shutdown), keeps it down for `outage`,
  // and starts it again on the same port and data.
  Status Outage(std::chrono::milliseconds outage) {
    if (redis_) redis_->Stop(/*kill9=*/true);
    if (pg_) pg_->Stop(/*immediate=*/true);
    std::this_thread::sleep_for(outage);
    return redis_ ? redis_->Restart(true) : pg_->Restart(true);
  }

  std::string url_;
  std::unique_ptr<testsrv::RedisServer> redis_;
  std::unique_ptr<testsrv::PostgresServer> pg_;
};

// The workload's descriptors are close-on-exec: the server restarted meanwhile is forked from
// this process and would otherwise keep a file of the mount open (and the mount busy).

// Writes `data` to `path` and closes it; true only when every call succeeded.
bool TryWrite(const std::string& path, const std::string& data, int* err) {
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  if (!ok) *err = errno;
  if (close(fd) != 0) {
    if (ok) *err = errno;
    ok = false;
  }
  return ok;
}

// The whole file, or "<error text>" when a call failed.
std::string TryRead(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<open failed: " + std::string(std::strerror(errno)) + ">";
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) out = "<read failed: " + std::string(std::strerror(errno)) + ">";
  close(fd);
  return out;
}

TEST_P(MountRestartTest, MountCarriesOnAcrossServerRestart) {
  ASSERT_EQ(mkdir(P("w").c_str(), 0755), 0);
  std::map<int, std::string> acked;  // file index -> content, for writes that succeeded
  std::map<std::string, int> errors;
  std::mutex mu;
  std::atomic<bool> stop{false}, restarted{false};
  std::atomic<int> ok_after{0}, wrong_reads{0};
  std::thread worker([&] {
    for (int i = 0; !stop; ++i) {
      const std::string path = P("w/f" + std::to_string(i));
      const std::string data = Pattern(64 << 10, static_cast<uint32_t>(i));
      const bool after = restarted;
      int err = 0;
      if (!TryWrite(path, data, &err)) {
        std::lock_guard lock(mu);
        ++errors[std::string("write: ") + std::strerror(err)];
        continue;
      }
      const std::string back = TryRead(path);
      if (back.rfind("<", 0) == 0) {  // a read that failed outright (EIO) is allowed
        std::lock_guard lock(mu);
        ++errors["read: " + back];
        continue;
      }
      if (back != data) ++wrong_reads;
      std::lock_guard lock(mu);
      acked[i] = data;
      if (after) ++ok_after;
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  size_t before_outage = 0;
  {
    std::lock_guard lock(mu);
    before_outage = acked.size();
  }
  const auto t0 = Clock::now();
  Status s = Outage(std::chrono::milliseconds(2000));
  ASSERT_TRUE(s.ok()) << s.ToString();
  restarted = true;
  const double outage_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // The mount must resume on its own: wait for successes after the restart.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (ok_after < 5 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double resumed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  worker.join();
  std::printf(
      "[ measure ] %s: %zu files before the outage (%.1f s), writes resumed %.1f s after "
      "it began; %zu acknowledged\n",
      GetParam().c_str(), before_outage, outage_s, resumed_s, acked.size());
  for (const auto& [what, n] : errors) std::printf("[ measure ]   %d x %s\n", n, what.c_str());
  EXPECT_GT(before_outage, 0u);
  EXPECT_GE(ok_after.load(), 5) << "the mount did not carry on after the server restart";
  EXPECT_EQ(wrong_reads.load(), 0) << "a read returned data other than what was written";
  for (const auto& [what, n] : errors) {
    EXPECT_TRUE(what.find("Input/output error") != std::string::npos)
        << n << " x " << what << " (only EIO is acceptable during the outage)";
  }
  // Everything acknowledged reads back, on this mount and after a remount.
  for (int pass = 0; pass < 2; ++pass) {
    for (const auto& [i, data] : acked) {
      EXPECT_TRUE(ReadFile(P("w/f" + std::to_string(i))) == data)
          << "file " << i << " differs (pass " << pass << ")";
    }
    if (pass == 0) Remount();
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, MountRestartTest, ::testing::Values("redis", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace nexus::it
