// The FUSE request loop (fuse/request_loop.h) on a real mount: requests served in place by the
// reading thread, and the watchdog that hands the reading role on when one of them waits.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

using Clock = std::chrono::steady_clock;

class RequestLoopTest : public MountTest {
 protected:
  double Handoffs(const char* reason) {
    auto stats = metrics::ParseText(ReadFile(P(".stats")));
    EXPECT_TRUE(stats) << stats.error().ToString();
    if (!stats) return -1;
    return metrics::SumOf(*stats, "nexusfs_fuse_reader_handoffs_total", {{"reason", reason}});
  }

  // Closes a written file in another thread (the FLUSH waits for the block's upload, which the
  // mount's faulty store delays), and times 20 mkdirs made meanwhile.
  Clock::duration MkdirsDuringASlowClose() {
    std::atomic<bool> written{false};
    std::thread closer([&] {
      int fd = open(P("slow").c_str(), O_CREAT | O_WRONLY, 0644);
      EXPECT_GE(fd, 0);
      EXPECT_EQ(write(fd, "0123456789", 10), 10);
      written = true;
      EXPECT_EQ(close(fd), 0);
    });
    while (!written) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the FLUSH is under way
    Clock::time_point start = Clock::now();
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(mkdir(P("d" + std::to_string(i)).c_str(), 0755), 0) << i;
    }
    Clock::duration took = Clock::now() - start;
    closer.join();
    return took;
  }
};

TEST_F(RequestLoopTest, ARequestThatWaitsDoesNotHoldUpTheOthers) {
  Unmount();
  // Every object-store call takes 2 s: a close of a written file waits that long for its upload.
  Mount({"--inject-faults", "min_delay=2s"});
  const double stalls = Handoffs("stall");
  Clock::duration took = MkdirsDuringASlowClose();
  // The reader served the FLUSH in place; after 1 ms the watchdog gave the reading role to
  // another thread, which made the mkdirs while the upload slept. Without it they would all
  // wait for the close, about 1.7 s.
  EXPECT_LT(took, std::chrono::milliseconds(700))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_GE(Handoffs("stall"), stalls + 1);
  EXPECT_EQ(ReadFile(P("slow")), "0123456789");
}

TEST_F(RequestLoopTest, WithoutRequestsServedInPlaceEveryRequestIsHandedOff) {
  Unmount();
  Mount({"--inject-faults", "min_delay=2s", "--inline-requests", "off"});
  Clock::duration took = MkdirsDuringASlowClose();
  EXPECT_LT(took, std::chrono::milliseconds(700))
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(Handoffs("stall"), 0);
  EXPECT_EQ(Handoffs("io"), 0);  // handing off is not counted when it is the rule
  EXPECT_EQ(ReadFile(P("slow")), "0123456789");
}

TEST_F(RequestLoopTest, FsyncIsHandedOffAndReadsOfLocalObjectsAreServedInPlace) {
  std::string data = Pattern(8 << 20, 5);
  WriteFile(P("f"), data);
  Remount();  // no page cache: the reads reach the mount
  EXPECT_EQ(ReadFile(P("f")), data);
  EXPECT_EQ(Handoffs("io"), 0);  // the objects are files on this machine
  int fd = open(P("f").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "x", 1, 0), 1);
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(Handoffs("io"), 1);
}

}  // namespace
}  // namespace nexus::it
