#include "meta/slice_view.h"

#include <gtest/gtest.h>

#include <random>

namespace nexus::meta {
namespace {

// Reference: paint every byte position with the id/offset of the last record covering it.
std::vector<std::pair<uint64_t, uint32_t>> Paint(const std::vector<Slice>& recs, uint32_t n) {
  std::vector<std::pair<uint64_t, uint32_t>> px(n, {0, 0});
  for (const auto& r : recs)
    for (uint32_t i = 0; i < r.len; ++i) px[r.pos + i] = {r.id, r.id ? r.off + i : 0};
  return px;
}

TEST(SliceViewTest, OverlapsResolveNewestWins) {
  std::vector<Slice> recs = {{0, 1, 100, 0, 100}, {50, 2, 10, 0, 10}, {200, 3, 20, 5, 10}};
  auto v = BuildSliceView(recs);
  std::vector<Slice> want = {{0, 1, 100, 0, 50},
                             {50, 2, 10, 0, 10},
                             {60, 1, 100, 60, 40},
                             {100, 0, 0, 0, 100},
                             {200, 3, 20, 5, 10}};
  EXPECT_EQ(v, want);
}

TEST(SliceViewTest, RandomAgainstPainting) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 500; ++round) {
    std::vector<Slice> recs;
    const uint32_t n = 256;
    for (int i = 0; i < 1 + static_cast<int>(rng() % 12); ++i) {
      uint32_t pos = rng() % n, len = 1 + rng() % (n - pos);
      uint64_t id = rng() % 4 == 0 ? 0 : i + 1;
      recs.push_back({pos, id, 1000, id ? static_cast<uint32_t>(rng() % 100) : 0, len});
    }
    auto view = BuildSliceView(recs);
    uint32_t at = 0;
    std::vector<Slice> painted;
    for (const auto& p : view) {
      ASSERT_EQ(p.pos, at);
      at += p.len;
    }
    auto want = Paint(recs, n), got = Paint(view, n);
    ASSERT_EQ(want, got) << "round " << round;
  }
}

}  // namespace
}  // namespace nexus::meta
