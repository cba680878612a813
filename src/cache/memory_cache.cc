#include "cache/memory_cache.h"

#include <functional>

namespace nexus::cache {

MemoryBlockCache::MemoryBlockCache(uint64_t capacity_bytes, int shards)
    : capacity_(capacity_bytes) {
  if (shards < 1) shards = 1;
  shard_capacity_ = capacity_bytes / static_cast<uint64_t>(shards);
  for (int i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

MemoryBlockCache::Shard& MemoryBlockCache::ShardFor(std::string_view key) {
  return *shards_[std::hash<std::string_view>()(key) % shards_.size()];
}

std::shared_ptr<const std::string> MemoryBlockCache::Get(std::string_view key) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    misses_++;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  hits_++;
  return it->second->second;
}

void MemoryBlockCache::Put(std::string_view key, std::shared_ptr<const std::string> data) {
  if (!data || data->size() > shard_capacity_) return;
  Shard& s = ShardFor(key);
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.index.find(key); it != s.index.end()) {
      s.bytes -= it->second->second->size();
      bytes_ -= it->second->second->size();
      s.lru.erase(it->second);
      s.index.erase(it);
    }
    s.lru.emplace_front(std::string(key), std::move(data));
    s.index.emplace(s.lru.front().first, s.lru.begin());
    s.bytes += s.lru.front().second->size();
    bytes_ += s.lru.front().second->size();
  }
  MakeRoom(s);
}

bool MemoryBlockCache::EvictOneLocked(Shard& s) {
  if (s.lru.empty()) return false;
  auto& victim = s.lru.back();
  s.bytes -= victim.second->size();
  bytes_ -= victim.second->size();
  s.index.erase(victim.first);
  s.lru.pop_back();
  evictions_++;
  return true;
}

void MemoryBlockCache::MakeRoom(Shard& own) {
  while (bytes_.load() > capacity_) {
    // Over the capacity, some shard holds more than its share: the one just added to if it
    // does, else the next one found. One lock at a time, so no order between shard locks.
    Shard* victim = nullptr;
    if (own.bytes.load() > shard_capacity_) {
      victim = &own;
    } else {
      const size_t n = shards_.size(), start = next_victim_.fetch_add(1) % n;
      for (size_t i = 0; i < n && !victim; ++i) {
        Shard& c = *shards_[(start + i) % n];
        if (c.bytes.load() > shard_capacity_) victim = &c;
      }
    }
    if (!victim) victim = &own;  // raced with evictions elsewhere: the total decides
    std::lock_guard lock(victim->mu);
    if (victim != &own && victim->bytes.load() <= shard_capacity_) continue;  // look again
    if (!EvictOneLocked(*victim)) {
      if (victim == &own) return;  // nothing left here; others are evicting too
    }
  }
}

void MemoryBlockCache::Remove(std::string_view key) {
  Shard& s = ShardFor(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  s.bytes -= it->second->second->size();
  bytes_ -= it->second->second->size();
  auto node = it->second;
  s.index.erase(it);
  s.lru.erase(node);
}

CacheStats MemoryBlockCache::Stats() const {
  return CacheStats{hits_.load(), misses_.load(), bytes_.load(), evictions_.load()};
}

}  // namespace nexus::cache
