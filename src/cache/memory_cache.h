// MemoryBlockCache: whole blocks kept in memory, bounded by bytes, least recently used evicted
// first. Sharded by key hash so that concurrent readers rarely share a lock. The bound is on the
// whole cache, not per shard: a shard may hold more than its share while others hold less, and
// room is made by evicting the least recently used block of a shard over its share. (With a hard
// per-shard bound, a working set the size of the cache overflowed the shards its keys happened to
// hash to more often, and a sequential re-read of it missed in every overflowing shard.)
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nexus::cache {

struct CacheStats {
  uint64_t hits = 0, misses = 0, bytes = 0, evictions = 0;
};

class MemoryBlockCache {
 public:
  explicit MemoryBlockCache(uint64_t capacity_bytes, int shards = 16);

  std::shared_ptr<const std::string> Get(std::string_view key);
  // Keeps `data` under `key`; a block larger than a shard's share of the capacity is not kept.
  void Put(std::string_view key, std::shared_ptr<const std::string> data);
  void Remove(std::string_view key);
  CacheStats Stats() const;
  uint64_t capacity() const { return capacity_; }
  // True when a block of `size` bytes would be kept (Put drops one larger than a shard's share).
  bool Admits(uint64_t size) const { return size <= shard_capacity_; }

 private:
  struct Shard {
    std::mutex mu;
    std::list<std::pair<std::string, std::shared_ptr<const std::string>>> lru;  // front = newest
    std::unordered_map<std::string_view, decltype(lru)::iterator> index;
    std::atomic<uint64_t> bytes{0};  // written under mu; read without it to pick a victim
  };
  Shard& ShardFor(std::string_view key);
  // Evicts until the cache is within its capacity; `own` is the shard the caller just added to.
  void MakeRoom(Shard& own);
  // Drops the least recently used block of `s` (locked by the caller); false when it is empty.
  bool EvictOneLocked(Shard& s);

  uint64_t capacity_;
  uint64_t shard_capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> hits_{0}, misses_{0}, bytes_{0}, evictions_{0};
  std::atomic<size_t> next_victim_{0};  // where the search for a shard over its share starts
};

}  // namespace nexus::cache
