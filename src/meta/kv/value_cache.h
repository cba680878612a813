// The latest committed value (or absence) of recently used keys, for an engine whose writers
// are all in this process and take turns (RocksDB): the engine fills it from what its writers
// read and commit, so a hot key (a directory's attribute, a file just created) is answered
// without searching the memtable. Each entry carries the sequence number as of which it is the
// latest value; a reader at a snapshot uses it only when that sequence is at or below the
// snapshot's. While a commit is being written its keys are marked pending and used by nobody.
// Bounded by bytes (keys, values and a fixed overhead per entry), least recently used first out.
// Thread-safe (sharded mutexes).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nexus::kv {

class ValueCache {
 public:
  static constexpr uint64_t kPending = UINT64_MAX;     // a commit is writing the key
  static constexpr uint64_t kLatest = UINT64_MAX - 1;  // a reader that holds the writers' turn
  // Values longer than this are not kept: they would crowd out many small hot ones.
  static constexpr size_t kMaxValue = 16 << 10;

  explicit ValueCache(size_t capacity_bytes);

  // True and *out set when `key` is cached with a sequence at or below `at`.
  bool Get(std::string_view key, uint64_t at, std::optional<std::string>* out);
  // Records `value` (std::nullopt: absent) as the latest value of `key` as of `seq`.
  void Put(std::string_view key, std::optional<std::string> value, uint64_t seq);
  // Marks `key` as being written (kPending) if it is cached.
  void MarkPending(std::string_view key);
  // Adds `delta` to a cached 8-byte little-endian counter, now the latest as of `seq`; forgets
  // the key when it is cached but not a counter.
  void AddToCounter(std::string_view key, int64_t delta, uint64_t seq);
  void Erase(std::string_view key);

  struct Stats {
    uint64_t hits = 0, misses = 0, entries = 0, bytes = 0;
  };
  Stats GetStats() const;

 private:
  struct Entry {
    std::string key;
    std::optional<std::string> value;
    uint64_t seq = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    std::list<Entry> lru;  // most recently used first
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;  // views of lru keys
    size_t bytes = 0;
    uint64_t hits = 0, misses = 0;
  };
  static constexpr size_t kShards = 16;
  static constexpr size_t kEntryOverhead = 96;  // list node, index node, bookkeeping

  Shard& ShardOf(std::string_view key);
  static size_t Size(const Entry& e) {
    return kEntryOverhead + e.key.size() + (e.value ? e.value->size() : 0);
  }
  void EraseLocked(Shard& s, std::list<Entry>::iterator it);

  const size_t shard_capacity_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace nexus::kv
