// ValueCache: what a reader at a sequence may use, pending keys, counters, and the byte bound.
#include "meta/kv/value_cache.h"

#include <gtest/gtest.h>

#include <string>

namespace nexus::kv {
namespace {

std::optional<std::string> Read(ValueCache& c, std::string_view key, uint64_t at, bool* hit) {
  std::optional<std::string> out;
  *hit = c.Get(key, at, &out);
  return out;
}

TEST(ValueCache, ReadersSeeOnlyEntriesAtOrBelowTheirSequence) {
  ValueCache c(1 << 20);
  bool hit = false;
  Read(c, "a", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  c.Put("a", std::string("v1"), 10);
  c.Put("gone", std::nullopt, 10);  // absence is cached too
  EXPECT_EQ(Read(c, "a", 10, &hit), std::optional<std::string>("v1"));
  EXPECT_TRUE(hit);
  EXPECT_EQ(Read(c, "gone", ValueCache::kLatest, &hit), std::nullopt);
  EXPECT_TRUE(hit);
  Read(c, "a", 9, &hit);  // a snapshot older than the entry reads the store
  EXPECT_FALSE(hit);
  c.MarkPending("a");  // a commit is writing it: nobody uses it, not even the writer's turn
  Read(c, "a", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  c.Put("a", std::string("v2"), 12);
  EXPECT_EQ(Read(c, "a", 12, &hit), std::optional<std::string>("v2"));
  Read(c, "a", 11, &hit);
  EXPECT_FALSE(hit);
  c.Erase("a");
  Read(c, "a", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  ValueCache::Stats st = c.GetStats();
  EXPECT_EQ(st.hits, 3u);
  EXPECT_EQ(st.entries, 1u);
}

TEST(ValueCache, CountersAddOnlyWhenCachedAndBigValuesAreNotKept) {
  ValueCache c(1 << 20);
  bool hit = false;
  c.AddToCounter("n", 5, 3);  // not cached: nothing to add to
  Read(c, "n", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  c.Put("n", std::string("\x02\0\0\0\0\0\0\0", 8), 3);
  c.AddToCounter("n", 5, 4);
  EXPECT_EQ(Read(c, "n", 4, &hit),
            std::optional<std::string>(std::string("\x07\0\0\0\0\0\0\0", 8)));
  Read(c, "n", 3, &hit);
  EXPECT_FALSE(hit);
  c.Put("absent", std::nullopt, 4);
  c.AddToCounter("absent", -1, 5);
  EXPECT_EQ(Read(c, "absent", 5, &hit),
            std::optional<std::string>(std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)));
  c.Put("text", std::string("abc"), 4);
  c.AddToCounter("text", 1, 5);  // not a counter: forgotten rather than corrupted
  Read(c, "text", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  c.Put("big", std::string(ValueCache::kMaxValue + 1, 'x'), 6);
  Read(c, "big", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
  c.Put("small", std::string("s"), 6);
  c.Put("small", std::string(ValueCache::kMaxValue + 1, 'x'), 7);  // replaced by a big one
  Read(c, "small", ValueCache::kLatest, &hit);
  EXPECT_FALSE(hit);
}

TEST(ValueCache, StaysWithinItsBytesDroppingTheLeastRecentlyUsed) {
  constexpr size_t kCapacity = 256 << 10;
  ValueCache c(kCapacity);
  const std::string value(1000, 'v');
  for (int i = 0; i < 2000; ++i) {
    c.Put("k" + std::to_string(i), value, 1);
    bool hit = false;
    Read(c, "k0", 1, &hit);  // kept in use: never the least recently used
    EXPECT_TRUE(hit) << i;
  }
  ValueCache::Stats st = c.GetStats();
  EXPECT_LE(st.bytes, kCapacity);
  EXPECT_GT(st.entries, 100u);
  EXPECT_LT(st.entries, 2000u);
  bool hit = true;
  Read(c, "k1", 1, &hit);
  EXPECT_FALSE(hit);
  Read(c, "k1999", 1, &hit);
  EXPECT_TRUE(hit);
}

}  // namespace
}  // namespace nexus::kv
