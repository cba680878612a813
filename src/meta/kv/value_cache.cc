#include "meta/kv/value_cache.h"

#include <functional>

#include "meta/kv/engines.h"

namespace nexus::kv {

ValueCache::ValueCache(size_t capacity_bytes)
    : shard_capacity_(capacity_bytes / kShards), shards_(new Shard[kShards]) {}

ValueCache::Shard& ValueCache::ShardOf(std::string_view key) {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

void ValueCache::EraseLocked(Shard& s, std::list<Entry>::iterator it) {
  s.bytes -= Size(*it);
  s.index.erase(std::string_view(it->key));
  s.lru.erase(it);
}

bool ValueCache::Get(std::string_view key, uint64_t at, std::optional<std::string>* out) {
  Shard& s = ShardOf(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end() || it->second->seq > at) {
    s.misses++;
    return false;
  }
  s.hits++;
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  *out = it->second->value;
  return true;
}

void ValueCache::Put(std::string_view key, std::optional<std::string> value, uint64_t seq) {
  Shard& s = ShardOf(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (value && value->size() > kMaxValue) {
    if (it != s.index.end()) EraseLocked(s, it->second);
    return;
  }
  if (it != s.index.end()) {
    Entry& e = *it->second;
    s.bytes -= Size(e);
    e.value = std::move(value);
    e.seq = seq;
    s.bytes += Size(e);
    s.lru.splice(s.lru.begin(), s.lru, it->second);
  } else {
    s.lru.push_front(Entry{std::string(key), std::move(value), seq});
    s.index.emplace(std::string_view(s.lru.front().key), s.lru.begin());
    s.bytes += Size(s.lru.front());
  }
  while (s.bytes > shard_capacity_ && !s.lru.empty()) EraseLocked(s, std::prev(s.lru.end()));
}

void ValueCache::MarkPending(std::string_view key) {
  Shard& s = ShardOf(key);
  std::lock_guard lock(s.mu);
  if (auto it = s.index.find(key); it != s.index.end()) it->second->seq = kPending;
}

void ValueCache::AddToCounter(std::string_view key, int64_t delta, uint64_t seq) {
  Shard& s = ShardOf(key);
  std::lock_guard lock(s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) return;
  Entry& e = *it->second;
  if (e.value && e.value->size() != 8) {
    EraseLocked(s, it->second);
    return;
  }
  s.bytes -= Size(e);
  e.value = EncodeCounter((e.value ? DecodeCounter(*e.value) : 0) + delta);
  e.seq = seq;
  s.bytes += Size(e);
}

void ValueCache::Erase(std::string_view key) {
  Shard& s = ShardOf(key);
  std::lock_guard lock(s.mu);
  if (auto it = s.index.find(key); it != s.index.end()) EraseLocked(s, it->second);
}

ValueCache::Stats ValueCache::GetStats() const {
  Stats out;
  for (size_t i = 0; i < kShards; ++i) {
    const Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    out.hits += s.hits;
    out.misses += s.misses;
    out.entries += s.lru.size();
    out.bytes += s.bytes;
  }
  return out;
}

}  // namespace nexus::kv
