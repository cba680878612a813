// rocksdb://PATH, the embedded default engine.
//
// The DB's lock file lets one process open it, so every transaction comes from this process and
// the engine orders them itself: Updates take turns on a mutex, and a body reads the latest
// committed state directly, buffers its writes, and commits them as one WriteBatch. A View reads
// at a snapshot and never waits for a writer. No body conflicts or runs twice. Counters changed
// with Txn::Add become merge operands (CounterAddOperator), so bumping one does not read it.
//
// Durability: every commit is written to the WAL before it returns (not fsynced), so it survives
// a kill -9 of the process; Sync() fsyncs the WAL, after which it survives power loss.
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

#include "meta/kv/buffered_txn.h"
#include "meta/kv/engines.h"
#include "meta/kv/value_cache.h"

namespace nexus::kv {
namespace {

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsBusy() || s.IsTryAgain())
    return Status::Conflict(std::string(what) + ": " + s.ToString());
  if (s.IsNoSpace()) return Status::NoSpace("rocksdb " + std::string(what) + ": " + s.ToString());
  if (s.IsCorruption())
    return Status::Corruption("rocksdb " + std::string(what) + ": " + s.ToString());
  return Status::IOError("rocksdb " + std::string(what) + ": " + s.ToString());
}

// Adds 8-byte little-endian counters; a malformed operand counts as 0.
class CounterAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    int64_t base =
        existing ? DecodeCounter(std::string_view(existing->data(), existing->size())) : 0;
    *new_value = EncodeCounter(base + DecodeCounter(std::string_view(value.data(), value.size())));
    return true;
  }
  const char* Name() const override { return "NexusCounterAdd"; }
};

using Visitor = std::function<bool(std::string_view, std::string_view)>;

// Scans [begin, end) with an iterator whose ReadOptions carry `end` as iterate_upper_bound. The
// explicit end check also covers the transaction's own writes, which a write-batch iterator
// merges in and which older RocksDB releases do not filter by the upper bound.
Status ScanIterator(rocksdb::Iterator* raw, std::string_view begin, std::string_view end,
                    size_t limit, const Visitor& visit) {
  std::unique_ptr<rocksdb::Iterator> it(raw);
  size_t n = 0;
  for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    if (!end.empty() && key >= end) break;
    if (!visit(key, std::string_view(it->value().data(), it->value().size()))) break;
    if (limit && ++n >= limit) break;
  }
  return FromRocks(it->status(), "scan");
}

// Opens an iterator with `base` plus an upper bound of `end` (none when empty) and scans it.
Status ScanBounded(const rocksdb::ReadOptions& base, std::string_view begin, std::string_view end,
                   size_t limit, const Visitor& visit,
                   const std::function<rocksdb::Iterator*(const rocksdb::ReadOptions&)>& open) {
  rocksdb::ReadOptions ro = base;
  std::string upper(end);
  rocksdb::Slice upper_slice(upper);
  if (!upper.empty()) ro.iterate_upper_bound = &upper_slice;
  return ScanIterator(open(ro), begin, end, limit, visit);
}

// Point reads through the engine's ValueCache: a key cached as of a sequence at or below `at` is
// answered from it, the others from the DB with `ro`. A reader that holds the writers' turn
// (at = kLatest) reads the latest state, which stays the latest until it commits, so it also
// caches what it read; a View reads at an older snapshot and leaves the cache alone.
class CachedReads {
 public:
  CachedReads(rocksdb::DB* db, ValueCache* cache, uint64_t at) : db_(db), cache_(cache), at_(at) {}
  rocksdb::ReadOptions& ro() { return ro_; }

  Result<std::optional<std::string>> Get(std::string_view key) {
    std::optional<std::string> out;
    if (cache_->Get(key, at_, &out)) return out;
    std::string v;
    auto s = db_->Get(ro_, rocksdb::Slice(key.data(), key.size()), &v);
    if (s.ok()) {
      out = std::move(v);
    } else if (!s.IsNotFound()) {
      return Err(FromRocks(s, "get"));
    }
    if (Fills()) cache_->Put(key, out, fill_seq_);
    return out;
  }
  // Reads keys[i] into (*out)[i] for every i with want(i).
  template <typename Want>
  Status MultiGet(const std::vector<std::string>& keys, Want want,
                  std::vector<std::optional<std::string>>* out) {
    std::vector<rocksdb::Slice> slices;
    std::vector<size_t> at;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!want(i) || cache_->Get(keys[i], at_, &(*out)[i])) continue;
      slices.emplace_back(keys[i]);
      at.push_back(i);
    }
    if (slices.empty()) return Status::OK();
    std::vector<std::string> values;
    auto st = db_->MultiGet(ro_, slices, &values);
    for (size_t j = 0; j < slices.size(); ++j) {
      std::optional<std::string>& v = (*out)[at[j]];
      if (st[j].ok()) {
        v = std::move(values[j]);
      } else if (!st[j].IsNotFound()) {
        return FromRocks(st[j], "multiget");
      }
      if (Fills()) cache_->Put(keys[at[j]], v, fill_seq_);
    }
    return Status::OK();
  }

 private:
  bool Fills() {
    if (at_ != ValueCache::kLatest) return false;
    if (fill_seq_ == 0) fill_seq_ = db_->GetLatestSequenceNumber();
    return true;
  }

  rocksdb::DB* db_;
  ValueCache* cache_;
  const uint64_t at_;
  uint64_t fill_seq_ = 0;  // the latest sequence, read once by a filling reader
  rocksdb::ReadOptions ro_;
};

// The transaction of an Update. Writers take turns (RocksEngine::Update), so a body reads the
// latest committed state, which nothing can change before it commits: no snapshot, no read set to
// validate. Writes are buffered (BufferedTxn) and applied as one WriteBatch. Adds of keys the
// body has not written become merge operands at commit, so a counter is not read to be bumped.
class RocksTxn final : public BufferedTxn {
 public:
  RocksTxn(rocksdb::DB* db, ValueCache* cache)
      : BufferedTxn(false), db_(db), reads_(db, cache, ValueCache::kLatest) {}

  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    std::vector<bool> own(keys.size());  // written or added by this body: read through Get
    for (size_t i = 0; i < keys.size(); ++i) {
      own[i] = writes().count(keys[i]) || adds_.count(keys[i]);
      if (own[i]) {
        NX_ASSIGN_OR_RETURN(out[i], Get(keys[i]));
      }
    }
    NX_TRY(reads_.MultiGet(
        keys, [&](size_t i) { return !own[i]; }, &out));
    return out;
  }
  Status Add(std::string_view key, int64_t delta) override {
    if (writes().count(key)) return Txn::Add(key, delta);  // a value of its own: bump it
    adds_[std::string(key)] += delta;
    return Status::OK();
  }

  // Runs `f(key, value)` for each buffered write (std::nullopt: a delete), then `g(key, delta)`
  // for each Add of a key not written since: what the commit applies, as a merge operand.
  template <typename F, typename G>
  void ForEachChange(F f, G g) const {
    for (const auto& [k, v] : writes()) f(k, v);
    for (const auto& [k, delta] : adds_) {
      if (delta != 0 && !writes().count(k)) g(k, delta);
    }
  }
  bool empty() const { return writes().empty() && adds_.empty(); }

 protected:
  Result<std::optional<std::string>> BaseGet(std::string_view key) override {
    NX_ASSIGN_OR_RETURN(std::optional<std::string> out, reads_.Get(key));
    if (auto it = adds_.find(key); it != adds_.end()) {
      out = EncodeCounter((out ? DecodeCounter(*out) : 0) + it->second);
    }
    return out;
  }
  Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) override {
    return ScanBounded(reads_.ro(), begin, end, 0, visit,
                       [&](const rocksdb::ReadOptions& ro) { return db_->NewIterator(ro); });
  }
  // A scan sees pending Adds in its range as the counters' new values.
  Status BeforeScan(std::string_view begin, std::string_view end) override {
    for (auto it = adds_.lower_bound(begin); it != adds_.end();) {
      if (!end.empty() && it->first >= end) break;
      NX_ASSIGN_OR_RETURN(auto v, Get(it->first));  // base + delta
      const std::string key = it->first;
      it = adds_.erase(it);
      NX_TRY(Put(key, *v));
    }
    return Status::OK();
  }

 private:
  rocksdb::DB* db_;
  CachedReads reads_;
  std::map<std::string, int64_t, std::less<>> adds_;
};

class RocksView final : public Txn {
 public:
  RocksView(rocksdb::DB* db, ValueCache* cache, const rocksdb::Snapshot* snap)
      : db_(db), reads_(db, cache, snap->GetSequenceNumber()) {
    reads_.ro().snapshot = snap;
  }
  Result<std::optional<std::string>> Get(std::string_view key) override { return reads_.Get(key); }
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    NX_TRY(reads_.MultiGet(
        keys, [](size_t) { return true; }, &out));
    return out;
  }
  Status Put(std::string_view, std::string_view) override {
    return Status::Errno(EROFS, "write in a read-only transaction");
  }
  Status Delete(std::string_view) override {
    return Status::Errno(EROFS, "write in a read-only transaction");
  }
  Status Add(std::string_view, int64_t) override {
    return Status::Errno(EROFS, "write in a read-only transaction");
  }
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const Visitor& visit) override {
    return ScanBounded(reads_.ro(), begin, end, limit, visit,
                       [&](const rocksdb::ReadOptions& ro) { return db_->NewIterator(ro); });
  }

 private:
  rocksdb::DB* db_;
  CachedReads reads_;
};

class RocksEngine final : public Engine {
 public:
  RocksEngine(rocksdb::DB* db, std::string path) : db_(db), path_(path) {}
  ~RocksEngine() override {
    db_->FlushWAL(true).PermitUncheckedError();
    delete db_;
  }

  Status Update(const std::function<Status(Txn&)>& body) override {
    if (in_update_ == this) {
      failures_++;
      return Status::Errno(EDEADLK, "rocksdb: an Update body called Update of the same engine");
    }
    // One writer at a time. The DB's lock file keeps every other process out, so all writers
    // are in this process, and taking turns costs less than optimistic validation (a snapshot,
    // an indexed write batch and a second memtable search per key read) while never running a
    // body twice: writers in one directory all write its attribute record and would conflict.
    std::lock_guard<std::mutex> lock(write_mu_);
    in_update_ = this;
    RocksTxn t(db_, &cache_);
    Status s = body(t);
    if (s.ok() && !t.empty()) s = Commit(t);
    in_update_ = nullptr;
    (s.ok() ? txns_ : failures_)++;
    return s;
  }

  Status View(const std::function<Status(Txn&)>& body) override {
    const rocksdb::Snapshot* snap = db_->GetSnapshot();
    RocksView v(db_, &cache_, snap);
    Status s = body(v);
    db_->ReleaseSnapshot(snap);
    return s;
  }

  Status Sync() override { return FromRocks(db_->FlushWAL(true), "sync WAL"); }
  std::string Name() const override { return "rocksdb://" + path_; }
  bool SingleProcess() const override { return true; }
  bool OneWriterAtATime() const override { return true; }
  bool Embedded() const override { return true; }
  Status Compact() override {
    rocksdb::CompactRangeOptions cro;
    cro.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    NX_TRY(FromRocks(db_->Flush(rocksdb::FlushOptions()), "flush"));
    return FromRocks(db_->CompactRange(cro, nullptr, nullptr), "compact");
  }

  EngineStats Stats() const override {
    EngineStats s{txns_.load(), 0, failures_.load()};
    db_->GetIntProperty("rocksdb.num-snapshots", &s.open_snapshots);
    ValueCache::Stats c = cache_.GetStats();
    s.cache_hits = c.hits;
    s.cache_misses = c.misses;
    s.writes = writes_.load();
    return s;
  }

 private:
  static thread_local const RocksEngine* in_update_;  // the engine whose Update this thread runs
  static constexpr size_t kValueCacheBytes = 32 << 20;

  // Writes what `t` changed as one batch and brings the cache to the new state. The keys are
  // pending meanwhile, so that a View whose snapshot already includes the batch reads them from
  // the DB, not the cache.
  Status Commit(const RocksTxn& t) {
    rocksdb::WriteBatch batch;
    rocksdb::Status added;
    t.ForEachChange(
        [&](const std::string& k, const std::optional<std::string>& v) {
          if (added.ok()) added = v ? batch.Put(k, *v) : batch.Delete(k);
          cache_.MarkPending(k);
        },
        [&](const std::string& k, int64_t delta) {
          if (added.ok()) added = batch.Merge(k, EncodeCounter(delta));
          cache_.MarkPending(k);
        });
    Status s = FromRocks(added, "batch");
    if (s.ok()) s = FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "commit");
    if (!s.ok()) {
      auto forget = [&](const std::string& k, auto&&) { cache_.Erase(k); };
      t.ForEachChange(forget, forget);
      return s;
    }
    writes_++;
    const uint64_t seq = db_->GetLatestSequenceNumber();
    t.ForEachChange(
        [&](const std::string& k, const std::optional<std::string>& v) { cache_.Put(k, v, seq); },
        [&](const std::string& k, int64_t delta) { cache_.AddToCounter(k, delta, seq); });
    return s;
  }

  rocksdb::DB* db_;
  std::string path_;
  std::mutex write_mu_;
  ValueCache cache_{kValueCacheBytes};
  std::atomic<uint64_t> txns_{0}, failures_{0}, writes_{0};
};

thread_local const RocksEngine* RocksEngine::in_update_ = nullptr;

rocksdb::Options MetaOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.merge_operator = std::make_shared<CounterAddOperator>();
  // LZ4 for the upper levels (cheap), ZSTD for the bottommost level (most of the data), each
  // only if this RocksDB build has it, so that Open never fails over a missing codec.
  auto codecs = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType c) {
    return std::find(codecs.begin(), codecs.end(), c) != codecs.end();
  };
  o.compression =
      has(rocksdb::kLZ4Compression) ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
  o.bottommost_compression = has(rocksdb::kZSTD) ? rocksdb::kZSTD : o.compression;
  o.level_compaction_dynamic_level_bytes = true;
  o.max_open_files = 1024;
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // An LRU cache refuses to keep a block larger than one of its shards: with the default 64
  // shards of 2 MiB, a 1M-file volume's 3.7 MB whole-file filter was read from disk again by
  // every point read (fsck of 1M files spent its time there). Filters and indexes are therefore
  // partitioned into small blocks (only their top level is pinned), and the cache has fewer,
  // larger shards so that the whole-file filters of volumes written before stay cached too.
  t.block_cache = rocksdb::NewLRUCache(128 << 20, /*num_shard_bits=*/3);
  t.cache_index_and_filter_blocks = true;
  t.cache_index_and_filter_blocks_with_high_priority = true;
  t.partition_filters = true;
  t.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  t.metadata_block_size = 4096;
  t.pin_top_level_index_and_filter = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

}  // namespace

Result<std::unique_ptr<Engine>> OpenRocksDB(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (std::filesystem::exists(p, ec) && !std::filesystem::is_directory(p, ec)) {
    return Err(ENOTDIR, "rocksdb path '" + path + "' exists and is not a directory");
  }
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (ec)
    return Err(ec.value(),
               "rocksdb: cannot create '" + p.parent_path().string() + "': " + ec.message());
  rocksdb::DB* db = nullptr;
  auto s = rocksdb::DB::Open(MetaOptions(), path, &db);
  if (!s.ok()) {
    Status st = FromRocks(s, "open '" + path + "'");
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Err(EBUSY,
                 "rocksdb '" + path + "' is in use by another process (" + s.ToString() + ")");
    }
    return Err(st.IsConflict() ? Status::Busy(st.message()) : st);
  }
  return std::make_unique<RocksEngine>(db, path);
}

}  // namespace nexus::kv
