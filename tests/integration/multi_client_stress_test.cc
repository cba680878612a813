// Two mounts of one volume under concurrent namespace changes, and the crash of one of them:
// the namespace stays a consistent tree, and the survivor's session cleanup releases the dead
// client's locks and open-unlinked files within the session timeout.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "integration/multi_client_fixture.h"
#include "meta/meta.h"

namespace nexus::it {
namespace {

using Clock = std::chrono::steady_clock;

// Random create/mkdir/rename/link/unlink/rmdir in a few shared directories through `root` for
// `run`. Errors that a racing client explains (ENOENT, EEXIST, ...) are counted as such; any
// other is recorded in *unexpected.
void Churn(const std::string& root, uint32_t seed, Clock::duration run, std::atomic<int>* done_ops,
           std::mutex* mu, std::map<std::string, int>* unexpected, int* stale) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  // Paths two levels deep: d<k>/n<i> and d<k>/n<i>/n<j> (n<i> may be a directory).
  auto path = [&] {
    std::string p = root + "/d" + std::to_string(pick(3)) + "/n" + std::to_string(pick(6));
    if (pick(3) == 0) p += "/n" + std::to_string(pick(6));
    return p;
  };
  const auto end = Clock::now() + run;
  while (Clock::now() < end) {
    const int op = pick(12);
    const std::string a = path(), b = path();
    int rc = 0;
    const char* what = "";
    if (op < 3) {
      what = "create";
      int fd = open(a.c_str(), O_CREAT | O_WRONLY, 0644);
      rc = fd;
      if (fd >= 0) {
        rc = static_cast<int>(write(fd, "data", 4)) == 4 ? 0 : -1;
        if (close(fd) != 0) rc = -1;
      }
    } else if (op < 4) {
      what = "mkdir";
      rc = mkdir(a.c_str(), 0755);
    } else if (op < 7) {
      what = "rename";
      rc = rename(a.c_str(), b.c_str());
    } else if (op < 9) {
      what = "link";
      rc = link(a.c_str(), b.c_str());
    } else if (op < 11) {
      what = "unlink";
      rc = unlink(a.c_str());
    } else {
      what = "rmdir";
      rc = rmdir(a.c_str());
    }
    ++*done_ops;
    if (rc >= 0) continue;
    switch (errno) {
      case ENOENT:
      case EEXIST:
      case ENOTEMPTY:
      case ENOTDIR:
      case EISDIR:
      case EINVAL:  // a directory renamed into its own subtree
      case EPERM:   // link() of a directory
        break;
      case ESTALE: {  // a directory on the path was removed by the other client meanwhile
        std::lock_guard lock(*mu);
        ++(*stale);
        break;
      }
      default: {
        std::lock_guard lock(*mu);
        ++(*unexpected)[std::string(what) + ": " + std::strerror(errno)];
      }
    }
  }
}

TEST_P(MultiClientTest, ConcurrentNamespaceChangesKeepATree) {
  for (int d = 0; d < 3; ++d) ASSERT_EQ(mkdir(P("d" + std::to_string(d)).c_str(), 0755), 0);
  std::atomic<int> ops{0};
  std::mutex mu;
  std::map<std::string, int> unexpected;
  int stale = 0;
  const auto run = std::chrono::seconds(4);
  std::vector<std::thread> workers;
  // Two workers per mount.
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back(Churn, i % 2 == 0 ? mnt_ : mnt2_, 1000 + i, run, &ops, &mu, &unexpected,
                         &stale);
  }
  for (auto& t : workers) t.join();
  std::printf(
      "[ measure ] %s churn: %d operations in 4 s from 4 workers over 2 mounts (%d ESTALE)\n",
      GetParam().c_str(), ops.load(), stale);
  for (const auto& [what, n] : unexpected) ADD_FAILURE() << n << " x " << what;
  EXPECT_GT(ops.load(), 40);

  // Check while mounted (sessions exist), then after both clients are gone (no session, open
  // or lock record may be left).
  auto m = OpenMetaForCheck(meta_url_);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(CheckTree(m.get(), false), "");
  Unmount();
  UnmountSecond();
  EXPECT_EQ(CheckTree(m.get(), true), "");
}

class CrashTest : public MultiClientTest {
 protected:
  std::vector<std::string> ClientArgs() const override { return {"--session-timeout", "2"}; }
};

// kill -9 of mount B while it holds a flock, a POSIX lock and an open-unlinked file: A's
// session cleanup releases them about 2 s (B's timeout) + 1/4 of A's after B's last heartbeat.
TEST_P(CrashTest, SurvivorCleansTheDeadClientsSession) {
  const pid_t pid_a = ServingPid(mnt_), pid_b = ServingPid(mnt2_);
  ASSERT_GT(pid_a, 0);
  ASSERT_GT(pid_b, 0);
  auto pids = StatusSessionPids();
  std::sort(pids.begin(), pids.end());
  std::vector<int> both = {pid_a, pid_b};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(pids, both) << "nexusfs status should list both mounts' sessions";

  WriteFile(P("lockf"), "");
  WriteFile(P("plk"), "");
  int lf = open(Q("lockf").c_str(), O_RDWR);
  int pl = open(Q("plk").c_str(), O_RDWR);
  int ghost = open(Q("ghost").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(lf, 0);
  ASSERT_GE(pl, 0);
  ASSERT_GE(ghost, 0);
  ASSERT_EQ(flock(lf, LOCK_EX), 0);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  ASSERT_EQ(fcntl(pl, F_SETLK, &fl), 0);
  const std::string data = Pattern(2 << 20, 3);
  ASSERT_EQ(write(ghost, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(ghost), 0);
  struct stat st;
  ASSERT_EQ(fstat(ghost, &st), 0);
  const meta::Ino ghost_ino = st.st_ino;
  ASSERT_EQ(unlink(P("ghost").c_str()), 0);
  ASSERT_GT(CountFiles(work_ + "/data"), 0u);

  ASSERT_EQ(kill(pid_b, SIGKILL), 0);
  const auto killed = Clock::now();
  // The descriptors on the dead mount are useless now; their release reaches no one.
  close(lf);
  close(pl);
  close(ghost);
  RunCommand({"umount", "-l", mnt2_});
  mounted2_ = false;

  int a = open(P("lockf").c_str(), O_RDWR);
  int ap = open(P("plk").c_str(), O_RDWR);
  ASSERT_GE(a, 0);
  ASSERT_GE(ap, 0);
  errno = 0;
  EXPECT_NE(flock(a, LOCK_EX | LOCK_NB), 0) << "the dead client's flock vanished at once";
  // Released by A's cleanup; a blocking flock waits for it.
  ASSERT_EQ(flock(a, LOCK_EX), 0) << std::strerror(errno);
  const double lock_s = std::chrono::duration<double>(Clock::now() - killed).count();
  std::printf("[ measure ] %s flock of a killed client released after %.2f s\n", GetParam().c_str(),
              lock_s);
  EXPECT_LT(lock_s, 10.0);
  fl.l_type = F_WRLCK;
  EXPECT_EQ(fcntl(ap, F_SETLK, &fl), 0) << "the dead client's POSIX lock was not released";

  auto m = OpenMetaForCheck(meta_url_);
  ASSERT_NE(m, nullptr);
  const auto deadline = killed + std::chrono::seconds(15);
  while (Clock::now() < deadline &&
         (m->GetAttr(ghost_ino).has_value() || CountFiles(work_ + "/data") != 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(m->GetAttr(ghost_ino).has_value()) << "the dead client's open-unlinked file is left";
  EXPECT_EQ(CountFiles(work_ + "/data"), 0u) << "its blocks are left";
  std::printf("[ measure ] %s open-unlinked file of a killed client deleted after %.2f s\n",
              GetParam().c_str(), std::chrono::duration<double>(Clock::now() - killed).count());
  EXPECT_EQ(StatusSessionPids(), std::vector<int>{pid_a});
  close(a);
  close(ap);
}

INSTANTIATE_TEST_SUITE_P(Engines, CrashTest, ::testing::ValuesIn(SharedEngines()), EngineParamName);

}  // namespace
}  // namespace nexus::it
