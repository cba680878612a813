// rocksdb://PATH, the embedded default engine.
//
// Transactions are optimistic (OptimisticTransactionDB): a body reads through GetForUpdate at a
// snapshot taken when it starts, so a key it read and that another transaction committed in the
// meantime makes the commit fail with Busy/TryAgain; the body then runs again after a jittered
// backoff, up to Backoff::kMaxAttempts. Metadata transactions are short and mostly touch
// disjoint inodes, so optimistic validation costs less than taking locks on every read.
// Counters changed with Txn::Add use a merge operator and MergeUntracked, so concurrent Adds
// never conflict, while a transaction that reads the counter (Get/Increment) still conflicts
// with them.
//
// Durability: every commit is written to the WAL before it returns (not fsynced), so it survives
// a kill -9 of the process; Sync() fsyncs the WAL, after which it survives power loss.
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/optimistic_transaction_db.h>
#include <rocksdb/utilities/transaction.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <vector>

#include "meta/kv/engines.h"

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

class RocksTxn final : public Txn {
 public:
  RocksTxn(rocksdb::Transaction* txn, const rocksdb::Snapshot* snap) : txn_(txn) {
    ro_.snapshot = snap;
  }
  Result<std::optional<std::string>> Get(std::string_view key) override {
    std::string v;
    auto s = txn_->GetForUpdate(ro_, rocksdb::Slice(key.data(), key.size()), &v);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return Err(FromRocks(s, "get"));
    return std::optional<std::string>(std::move(v));
  }
  Status Put(std::string_view key, std::string_view value) override {
    return FromRocks(txn_->Put(rocksdb::Slice(key.data(), key.size()),
                               rocksdb::Slice(value.data(), value.size())),
                     "put");
  }
  Status Delete(std::string_view key) override {
    return FromRocks(txn_->Delete(rocksdb::Slice(key.data(), key.size())), "delete");
  }
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const Visitor& visit) override {
    return ScanBounded(ro_, begin, end, limit, visit,
                       [&](const rocksdb::ReadOptions& ro) { return txn_->GetIterator(ro); });
  }
  Status Add(std::string_view key, int64_t delta) override {
    return FromRocks(
        txn_->MergeUntracked(rocksdb::Slice(key.data(), key.size()), EncodeCounter(delta)), "add");
  }

 private:
  rocksdb::Transaction* txn_;
  rocksdb::ReadOptions ro_;
};

class RocksView final : public Txn {
 public:
  RocksView(rocksdb::DB* db, const rocksdb::Snapshot* snap) : db_(db) { ro_.snapshot = snap; }
  Result<std::optional<std::string>> Get(std::string_view key) override {
    std::string v;
    auto s = db_->Get(ro_, rocksdb::Slice(key.data(), key.size()), &v);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return Err(FromRocks(s, "get"));
    return std::optional<std::string>(std::move(v));
  }
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<std::string> values;
    auto st = db_->MultiGet(ro_, slices, &values);
    std::vector<std::optional<std::string>> out(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (st[i].ok()) {
        out[i] = std::move(values[i]);
      } else if (!st[i].IsNotFound()) {
        return Err(FromRocks(st[i], "multiget"));
      }
    }
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
    return ScanBounded(ro_, begin, end, limit, visit,
                       [&](const rocksdb::ReadOptions& ro) { return db_->NewIterator(ro); });
  }

 private:
  rocksdb::DB* db_;
  rocksdb::ReadOptions ro_;
};

class RocksEngine final : public Engine {
 public:
  RocksEngine(rocksdb::OptimisticTransactionDB* db, std::string path) : db_(db), path_(path) {}
  ~RocksEngine() override {
    spare_txns_.clear();  // before the DB they belong to
    db_->FlushWAL(true).PermitUncheckedError();
    delete db_;
  }

  Status Update(const std::function<Status(Txn&)>& body) override {
    rocksdb::WriteOptions wo;
    rocksdb::OptimisticTransactionOptions to;
    to.set_snapshot = true;
    Status last;
    // Optimistic retries are not fair: on a hot key (one counter bumped by many threads) an
    // unlucky transaction can lose 50 times in a row. All clients of an embedded engine live in
    // this process, so one that keeps losing escalates: from its 8th attempt on it holds
    // `hot_`, and the transactions that escalated take turns instead of racing each other.
    std::unique_lock<std::mutex> hot(hot_, std::defer_lock);
    for (int attempt = 1; attempt <= Backoff::kMaxAttempts; ++attempt) {
      if (attempt == kEscalateAfter) hot.lock();
      Backoff::Wait(attempt);
      // A transaction object is reused (BeginTransaction reinitializes it): a new one costs a
      // dozen allocations (its write batch, index and key tracker), a tenth of a create.
      std::unique_ptr<rocksdb::Transaction> txn = TakeSpareTxn();
      txn.reset(db_->BeginTransaction(wo, to, txn.release()));
      RocksTxn t(txn.get(), txn->GetSnapshot());
      Status s = body(t);
      if (s.ok()) s = FromRocks(txn->Commit(), "commit");
      if (!s.ok()) txn->Rollback().PermitUncheckedError();
      // Neither Commit nor Rollback releases the snapshot: a spare holding one would keep every
      // version written after it from being compacted away.
      txn->ClearSnapshot();
      GiveBackTxn(std::move(txn));
      if (s.ok()) {
        txns_++;
        return s;
      }
      if (!s.IsConflict()) {
        failures_++;
        return s;
      }
      conflicts_++;
      last = s;
    }
    failures_++;
    return Status::Busy("rocksdb transaction gave up after " +
                        std::to_string(Backoff::kMaxAttempts) + " conflicts (" + last.message() +
                        ")");
  }

  Status View(const std::function<Status(Txn&)>& body) override {
    const rocksdb::Snapshot* snap = db_->GetSnapshot();
    RocksView v(db_, snap);
    Status s = body(v);
    db_->ReleaseSnapshot(snap);
    return s;
  }

  Status Sync() override { return FromRocks(db_->FlushWAL(true), "sync WAL"); }
  std::string Name() const override { return "rocksdb://" + path_; }
  EngineStats Stats() const override {
    EngineStats s{txns_.load(), conflicts_.load(), failures_.load()};
    db_->GetIntProperty("rocksdb.num-snapshots", &s.open_snapshots);
    return s;
  }
  Status Compact() override {
    rocksdb::CompactRangeOptions cro;
    cro.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    NX_TRY(FromRocks(db_->Flush(rocksdb::FlushOptions()), "flush"));
    return FromRocks(db_->CompactRange(cro, nullptr, nullptr), "compact");
  }

 private:
  static constexpr int kEscalateAfter = 8;  // attempts before taking hot_ (see Update)
  static constexpr size_t kMaxSpareTxns = 16;

  std::unique_ptr<rocksdb::Transaction> TakeSpareTxn() {
    std::lock_guard lock(spare_mu_);
    if (spare_txns_.empty()) return nullptr;
    auto txn = std::move(spare_txns_.back());
    spare_txns_.pop_back();
    return txn;
  }
  void GiveBackTxn(std::unique_ptr<rocksdb::Transaction> txn) {
    std::lock_guard lock(spare_mu_);
    if (spare_txns_.size() < kMaxSpareTxns) spare_txns_.push_back(std::move(txn));
  }

  rocksdb::OptimisticTransactionDB* db_;
  std::string path_;
  std::mutex hot_;
  std::mutex spare_mu_;
  std::vector<std::unique_ptr<rocksdb::Transaction>> spare_txns_;  // finished, for reuse
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0};
};

rocksdb::Options MetaOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  o.merge_operator = std::make_shared<CounterAddOperator>();
  // Optimistic validation looks at memtable history to find conflicting writes.
  o.max_write_buffer_size_to_maintain = 64 << 20;
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
  rocksdb::OptimisticTransactionDB* db = nullptr;
  auto s = rocksdb::OptimisticTransactionDB::Open(MetaOptions(), path, &db);
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
