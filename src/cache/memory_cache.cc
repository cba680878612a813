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
  while (s.bytes > shard_capacity_ && !s.lru.empty()) {
    auto& victim = s.lru.back();
    s.bytes -= victim.second->size();
    bytes_ -= victim.second->size();
    s.index.erase(victim.first);
    s.lru.pop_back();
    evictions_++;
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
