// MemoryBlockCache: the byte bound holds for the whole cache, least recently used blocks go first,
// and a working set as large as the cache stays whole however its keys hash to shards.
#include "cache/memory_cache.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

namespace nexus::cache {
namespace {

std::shared_ptr<const std::string> Block(size_t n, char c) {
  return std::make_shared<const std::string>(n, c);
}

TEST(MemoryBlockCacheTest, LeastRecentlyUsedGoesFirst) {
  MemoryBlockCache cache(3000, 1);
  cache.Put("a", Block(1000, 'a'));
  cache.Put("b", Block(1000, 'b'));
  cache.Put("c", Block(1000, 'c'));
  ASSERT_NE(cache.Get("a"), nullptr);  // b is now the least recently used
  cache.Put("d", Block(1000, 'd'));
  EXPECT_EQ(cache.Get("b"), nullptr);
  EXPECT_NE(cache.Get("a"), nullptr);
  EXPECT_NE(cache.Get("c"), nullptr);
  EXPECT_NE(cache.Get("d"), nullptr);
  EXPECT_EQ(cache.Stats().bytes, 3000u);
  EXPECT_EQ(cache.Stats().evictions, 1u);
  cache.Put("d", Block(500, 'D'));  // a replacement is accounted once
  EXPECT_EQ(cache.Stats().bytes, 2500u);
  EXPECT_EQ(*cache.Get("d"), std::string(500, 'D'));
  cache.Remove("a");
  EXPECT_EQ(cache.Get("a"), nullptr);
  EXPECT_EQ(cache.Stats().bytes, 1500u);
}

TEST(MemoryBlockCacheTest, AWorkingSetAsLargeAsTheCacheStaysWholeAcrossShards) {
  // 512 blocks in a cache of exactly 512 blocks and 16 shards: the keys hash unevenly (about
  // half the shards get more than 32), yet a sequential re-read hits every block.
  constexpr size_t kBlock = 4096, kBlocks = 512;
  MemoryBlockCache cache(kBlock * kBlocks, 16);
  auto key = [](size_t i) { return "vol/chunks/0/0/" + std::to_string(i) + "_0_4194304"; };
  for (size_t i = 0; i < kBlocks; ++i) cache.Put(key(i), Block(kBlock, char('a' + i % 26)));
  EXPECT_EQ(cache.Stats().bytes, kBlock * kBlocks);
  EXPECT_EQ(cache.Stats().evictions, 0u);
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < kBlocks; ++i) {
      auto b = cache.Get(key(i));
      ASSERT_NE(b, nullptr) << "block " << i << ", pass " << pass;
      EXPECT_EQ((*b)[0], char('a' + i % 26));
    }
  }
  // One more block: exactly one eviction, the least recently used of a shard over its share.
  cache.Put(key(kBlocks), Block(kBlock, 'z'));
  EXPECT_EQ(cache.Stats().evictions, 1u);
  EXPECT_EQ(cache.Stats().bytes, kBlock * kBlocks);
  EXPECT_NE(cache.Get(key(kBlocks)), nullptr);
}

TEST(MemoryBlockCacheTest, BoundHoldsUnderConcurrentUse) {
  constexpr size_t kCapacity = 64 * 1000;
  MemoryBlockCache cache(kCapacity, 8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        std::string k = "k" + std::to_string(rng() % 500);
        if (rng() % 3 == 0) {
          cache.Put(k, Block(500 + rng() % 1000, 'x'));
        } else if (auto b = cache.Get(k)) {
          EXPECT_EQ(b->front(), 'x');
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.Stats().bytes, kCapacity);
  EXPECT_GT(cache.Stats().bytes, kCapacity / 2);  // evictions stop once there is room
}

}  // namespace
}  // namespace nexus::cache
