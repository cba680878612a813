// nexusfs gc: block objects no slice references, pending deletions, compaction.
//
// The referenced slice ids are one bit each (memory: the nextSlice counter / 8 bytes, 12.5 MB
// for 100 million slices), filled from every chunk record in one engine snapshot; the objects
// under "<volume>/chunks/" are then listed page by page and each one's slice id looked up. An
// object whose slice is neither referenced nor awaiting deletion is leaked (an upload whose
// commit never happened: a crash between the two, a failed compaction) once it is older than
// the safety window; younger ones may be an upload whose commit is under way.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "chunk/chunk_store.h"
#include "common/clock.h"
#include "common/logging.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"
#include "ops/fsck.h"

namespace nexus::ops {
namespace {

using meta::Ino;
using meta::Slice;
namespace keys = meta::keys;

constexpr size_t kScanBatch = 4096;
constexpr size_t kListPage = 1000;

class Bitmap {
 public:
  void Set(uint64_t i) {
    if (i / 64 >= bits_.size()) bits_.resize(i / 64 + 1 + bits_.size() / 4);
    bits_[i / 64] |= 1ULL << (i % 64);
  }
  bool Get(uint64_t i) const { return i / 64 < bits_.size() && (bits_[i / 64] >> (i % 64)) & 1; }
  void Reserve(uint64_t n) { bits_.reserve(n / 64 + 1); }

 private:
  std::vector<uint64_t> bits_;
};

Status ScanBatched(kv::Txn& txn, const std::string& from, const std::string& end,
                   const std::function<void(const std::string&, const std::string&)>& fn) {
  std::string begin = from;
  std::vector<std::pair<std::string, std::string>> batch;
  for (;;) {
    batch.clear();
    NX_TRY(txn.Scan(begin, end, kScanBatch, [&](std::string_view k, std::string_view v) {
      batch.emplace_back(std::string(k), std::string(v));
      return true;
    }));
    for (const auto& [k, v] : batch) fn(k, v);
    if (batch.size() < kScanBatch) return Status::OK();
    begin = batch.back().first + '\0';
  }
}

// Chunks with at least `min_slices` records, as (inode, index); at most `limit`.
Result<std::vector<std::pair<Ino, uint32_t>>> FragmentedChunks(meta::Meta* m, int min_slices,
                                                               size_t limit) {
  std::vector<std::pair<Ino, uint32_t>> out;
  NX_TRY(m->engine()->View([&](kv::Txn& txn) -> Status {
    out.clear();
    return ScanBatched(txn, "A", PrefixEnd("A"), [&](const std::string& k, const std::string& v) {
      if (k.size() != 14 || k[9] != 'C' || out.size() >= limit) return;
      if (v.size() / keys::kSliceRecordSize >= static_cast<size_t>(std::max(min_slices, 2))) {
        out.emplace_back(GetBE64(k.data() + 1), GetBE32(k.data() + 10));
      }
    });
  }));
  return out;
}

}  // namespace

Result<GcReport> Gc(meta::Meta* meta, object::ObjectStore* store, const GcOptions& o) {
  GcReport r;
  chunk::ChunkOptions co;
  co.block_size = o.block_size;
  co.prefix = o.block_prefix;
  co.background = false;
  co.mem_cache_size = 0;
  co.max_uploads = std::max(1, o.threads);
  co.max_downloads = std::max(1, o.threads);
  NX_ASSIGN_OR_RETURN(auto chunks, chunk::ChunkStore::Open(meta, store, co));

  // 1. Compaction (its replaced slices become pending deletions, released below).
  if (o.compact) {
    NX_ASSIGN_OR_RETURN(auto frag, FragmentedChunks(meta, o.compact_min_slices, SIZE_MAX));
    for (const auto& [ino, index] : frag) {
      Status s = chunks->Compact(ino, index);
      if (!s.ok()) {
        NX_LOG_WARN("compact chunk {} of inode {}: {}", index, ino, s.ToString());
        continue;
      }
      ++r.chunks_compacted;
    }
  }

  // 2. Pending deletions: counted, and with do_delete released (files' chunks, then the
  // objects of slices whose last reference went).
  NX_TRY(meta->engine()->View([&](kv::Txn& txn) -> Status {
    r.pending_files = r.pending_slices = 0;
    NX_TRY(ScanBatched(txn, "D", PrefixEnd("D"),
                       [&](const std::string&, const std::string&) { ++r.pending_files; }));
    return ScanBatched(txn, "L", PrefixEnd("L"),
                       [&](const std::string&, const std::string&) { ++r.pending_slices; });
  }));
  if (o.do_delete && (r.pending_files > 0 || r.pending_slices > 0)) {
    NX_ASSIGN_OR_RETURN(r.slices_released, chunks->CleanupDeleted());
  }
  NX_TRY(chunks->Shutdown());

  // 3. Referenced and pending slice ids, from one snapshot.
  Bitmap referenced, pending;
  NX_TRY(meta->engine()->View([&](kv::Txn& txn) -> Status {
    referenced = Bitmap();
    pending = Bitmap();
    NX_ASSIGN_OR_RETURN(auto next, txn.Get(keys::Counter("nextSlice")));
    referenced.Reserve(next ? keys::DecodeU64(*next) : 0);
    std::vector<Slice> recs;
    NX_TRY(ScanBatched(txn, "A", PrefixEnd("A"), [&](const std::string& k, const std::string& v) {
      if (k.size() != 14 || k[9] != 'C') return;
      if (!keys::DecodeSlices(v, &recs).ok()) return;
      for (const Slice& s : recs) {
        if (s.id != 0) referenced.Set(s.id);
      }
    }));
    return ScanBatched(txn, "L", PrefixEnd("L"), [&](const std::string& k, const std::string&) {
      if (k.size() == 13) pending.Set(GetBE64(k.data() + 1));
    });
  }));

  // 4. List the block objects, classify, delete the leaked ones.
  const int64_t cutoff = NowNanos() - o.min_age_ns;
  const std::string prefix = o.block_prefix + "chunks/";
  std::string marker;
  std::vector<object::ObjectInfo> doomed;
  auto delete_batch = [&]() {
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> ok{0}, ok_bytes{0}, failed{0};
    auto work = [&] {
      for (size_t i = next++; i < doomed.size(); i = next++) {
        Status s = store->Delete(doomed[i].key);
        if (s.ok()) {
          ++ok;
          ok_bytes += doomed[i].size;
        } else {
          ++failed;
          NX_LOG_WARN("delete {}: {}", doomed[i].key, s.ToString());
        }
      }
    };
    const int n = std::max(1, std::min<int>(o.threads, static_cast<int>(doomed.size())));
    std::vector<std::thread> ts;
    for (int t = 1; t < n; ++t) ts.emplace_back(work);
    work();
    for (auto& t : ts) t.join();
    r.deleted += ok;
    r.deleted_bytes += ok_bytes;
    r.delete_failed += failed;
    doomed.clear();
  };
  for (;;) {
    NX_ASSIGN_OR_RETURN(object::ListResult page, store->List(prefix, marker, kListPage));
    for (const auto& obj : page.objects) {
      ++r.objects;
      r.bytes += obj.size;
      uint64_t id = 0;
      uint32_t block = 0, size = 0;
      if (!ParseBlockKey(obj.key, o.block_prefix, &id, &block, &size)) {
        ++r.foreign;
        if (r.foreign_keys.size() < o.max_listed_keys) r.foreign_keys.push_back(obj.key);
        continue;
      }
      if (referenced.Get(id)) {
        ++r.referenced;
        r.referenced_bytes += obj.size;
      } else if (pending.Get(id)) {
        ++r.pending;
        r.pending_bytes += obj.size;
      } else if (obj.mtime > cutoff) {
        ++r.young;
        r.young_bytes += obj.size;
      } else {
        ++r.leaked;
        r.leaked_bytes += obj.size;
        if (r.leaked_keys.size() < o.max_listed_keys) r.leaked_keys.push_back(obj.key);
        if (o.do_delete) doomed.push_back(obj);
      }
    }
    if (doomed.size() >= kListPage) delete_batch();
    if (page.next_marker.empty() || page.objects.empty()) break;
    marker = page.next_marker;
  }
  if (!doomed.empty()) delete_batch();
  return r;
}

}  // namespace nexus::ops
