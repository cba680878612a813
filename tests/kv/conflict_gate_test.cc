// ConflictGate: shared passes run together; an escalated pass runs alone and is served before
// shared passes that arrive after it; a pass taken inside another never waits.
#include "meta/kv/conflict_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

namespace nexus::kv {
namespace {

using namespace std::chrono_literals;
constexpr int kAlone = ConflictGate::kEscalateAfter;

TEST(ConflictGateTest, SharedPassesRunTogether) {
  ConflictGate gate;
  ConflictGate::Pass a(gate, 0);
  auto other = std::async(std::launch::async, [&] {
    ConflictGate::Pass b(gate, kAlone - 1);
    return b.exclusive();
  });
  ASSERT_EQ(other.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(other.get());
  EXPECT_FALSE(a.exclusive());
  EXPECT_EQ(gate.exclusive_passes(), 0u);
}

TEST(ConflictGateTest, AnEscalatedPassWaitsForRunningOnesAndGoesBeforeNewOnes) {
  ConflictGate gate;
  std::atomic<int> order{0};
  int alone_at = -1, late_at = -1;
  auto running = std::make_unique<ConflictGate::Pass>(gate, 0);
  std::thread alone([&] {
    ConflictGate::Pass p(gate, kAlone);
    EXPECT_TRUE(p.exclusive());
    alone_at = order++;
    std::this_thread::sleep_for(20ms);
  });
  // Wait until the escalated request is queued: it cannot pass while `running` is held.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(order.load(), 0);
  std::thread late([&] {
    ConflictGate::Pass p(gate, 0);
    late_at = order++;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(order.load(), 0);  // the newcomer waits behind the escalated request
  running.reset();
  alone.join();
  late.join();
  EXPECT_EQ(alone_at, 0);
  EXPECT_EQ(late_at, 1);
  EXPECT_EQ(gate.exclusive_passes(), 1u);
}

TEST(ConflictGateTest, APassInsideAnotherNeverWaits) {
  ConflictGate gate, other_gate;
  auto outer = std::make_unique<ConflictGate::Pass>(gate, 0);
  std::thread alone([&] { ConflictGate::Pass p(gate, kAlone); });
  std::this_thread::sleep_for(50ms);  // the escalated request now waits for `outer`
  {
    ConflictGate::Pass nested(gate, 0);  // would deadlock if it queued behind `alone`
    ConflictGate::Pass in_other(other_gate, kAlone);
    EXPECT_FALSE(nested.exclusive());
    EXPECT_FALSE(in_other.exclusive());
  }
  outer.reset();
  alone.join();
  EXPECT_EQ(gate.exclusive_passes(), 1u);
  EXPECT_EQ(other_gate.exclusive_passes(), 0u);
}

}  // namespace
}  // namespace nexus::kv
