// nexusfs gc: block objects no slice references, pending deletions, compaction.
//
// The referenced slice ids are one bit each (memory: the nextSlice counter / 8 bytes, 12.5 MB
// for 100 million slices), filled from every chunk record in one engine snapshot. An object
// whose slice is neither referenced nor awaiting deletion is leaked (an upload whose commit
// never happened: a crash between the two, a failed compaction) once it is older than the
// safety window; younger ones may be an upload whose commit is under way.
//
// Default mode: every batch of slice ids a client takes from the counter is recorded in the
// same transaction (R<first>: [first, end), session, time; meta_data.cc NewSliceId). Only the
// ids of those batches that no chunk references and that await no deletion can have leaked, so
// only their objects are looked up: one List of "<id>_" per id, or of the 1000-id directory
// when many of its ids are candidates. A batch is closed (its leaked objects deleted, its record
// removed) once no id of it can still be handed out and uploaded: its session is gone (no
// record, or a stale heartbeat) and quiet for the window, or the session took a later batch
// longer than the window ago. A live session's current batch is looked at but never closed.
//
// --full: the objects under "<volume>/chunks/" are listed page by page and each one's slice id
// looked up (volumes from before the records, and a cross-check).
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

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

namespace {

// Deletes leaked objects in parallel batches; `on_fail(tag)` names the batch entry that failed.
class Deleter {
 public:
  Deleter(object::ObjectStore* store, int threads, GcReport* r)
      : store_(store), threads_(threads), r_(r) {}

  void Add(const object::ObjectInfo& obj, size_t tag) {
    doomed_.push_back({obj, tag});
    if (doomed_.size() >= kListPage) Flush();
  }

  void Flush() {
    if (doomed_.empty()) return;
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> ok{0}, ok_bytes{0};
    std::mutex mu;
    auto work = [&] {
      for (size_t i = next++; i < doomed_.size(); i = next++) {
        Status s = store_->Delete(doomed_[i].first.key);
        if (s.ok()) {
          ++ok;
          ok_bytes += doomed_[i].first.size;
        } else {
          NX_LOG_WARN("delete {}: {}", doomed_[i].first.key, s.ToString());
          std::lock_guard<std::mutex> lock(mu);
          failed_tags_.push_back(doomed_[i].second);
        }
      }
    };
    const size_t before = failed_tags_.size();
    const int n = std::max(1, std::min<int>(threads_, static_cast<int>(doomed_.size())));
    std::vector<std::thread> ts;
    for (int t = 1; t < n; ++t) ts.emplace_back(work);
    work();
    for (auto& t : ts) t.join();
    r_->deleted += ok;
    r_->deleted_bytes += ok_bytes;
    r_->delete_failed += failed_tags_.size() - before;
    doomed_.clear();
  }

  const std::vector<size_t>& failed_tags() const { return failed_tags_; }

 private:
  object::ObjectStore* store_;
  int threads_;
  GcReport* r_;
  std::vector<std::pair<object::ObjectInfo, size_t>> doomed_;
  std::vector<size_t> failed_tags_;
};

// Every object under `prefix`, page by page.
Status ListAll(object::ObjectStore* store, const std::string& prefix, GcReport* r,
               const std::function<void(const object::ObjectInfo&)>& fn) {
  std::string marker;
  for (;;) {
    ++r->list_calls;
    NX_ASSIGN_OR_RETURN(object::ListResult page, store->List(prefix, marker, kListPage));
    for (const auto& obj : page.objects) fn(obj);
    if (page.next_marker.empty() || page.objects.empty()) return Status::OK();
    marker = page.next_marker;
  }
}

std::string BlockDir(const std::string& block_prefix, uint64_t id) {
  return block_prefix + "chunks/" + std::to_string(id / 1000000) + "/" + std::to_string(id / 1000) +
         "/";
}

// A directory with more candidate ids than this is listed whole, else one List per id.
constexpr size_t kPerIdLists = 8;

struct Snapshot {
  Bitmap referenced, pending;
  uint64_t next_slice = 0;
  std::vector<keys::SliceRangeRecord> ranges;  // ascending first
  std::optional<uint64_t> floor;
  uint64_t bad_ranges = 0;
};

Status FullScan(object::ObjectStore* store, const GcOptions& o, const Snapshot& snap, GcReport& r) {
  const int64_t cutoff = NowNanos() - o.min_age_ns;
  Deleter del(store, o.threads, &r);
  NX_TRY(ListAll(store, o.block_prefix + "chunks/", &r, [&](const object::ObjectInfo& obj) {
    ++r.objects;
    r.bytes += obj.size;
    uint64_t id = 0;
    uint32_t block = 0, size = 0;
    if (!ParseBlockKey(obj.key, o.block_prefix, &id, &block, &size)) {
      ++r.foreign;
      if (r.foreign_keys.size() < o.max_listed_keys) r.foreign_keys.push_back(obj.key);
      return;
    }
    if (snap.referenced.Get(id)) {
      ++r.referenced;
      r.referenced_bytes += obj.size;
    } else if (snap.pending.Get(id)) {
      ++r.pending;
      r.pending_bytes += obj.size;
    } else if (obj.mtime > cutoff) {
      ++r.young;
      r.young_bytes += obj.size;
    } else {
      ++r.leaked;
      r.leaked_bytes += obj.size;
      if (r.leaked_keys.size() < o.max_listed_keys) r.leaked_keys.push_back(obj.key);
      if (o.do_delete) del.Add(obj, 0);
    }
  }));
  del.Flush();
  return Status::OK();
}

Status RangeScan(meta::Meta* meta, object::ObjectStore* store, const GcOptions& o,
                 const Snapshot& snap, GcReport& r) {
  // Sessions are read after the snapshot: a session that started since has no batch in it.
  NX_ASSIGN_OR_RETURN(auto sessions, meta->ListSessions());
  std::unordered_map<uint64_t, const meta::SessionInfo*> by_sid;
  for (const auto& s : sessions) by_sid[s.sid] = &s;
  const int64_t now = NowNanos();
  const int64_t cutoff = now - o.min_age_ns;

  enum class State { kActive, kWaiting, kClosable };
  const auto& ranges = snap.ranges;
  std::vector<State> state(ranges.size(), State::kWaiting);
  // The time the same session took its next batch: every id of this one was handed out by
  // then.
  std::vector<std::optional<int64_t>> next_time(ranges.size());
  std::unordered_map<uint64_t, int64_t> later;  // sid -> time of its next batch
  for (size_t i = ranges.size(); i-- > 0;) {
    const auto& rg = ranges[i];
    if (rg.sid == 0) continue;
    auto it = later.find(rg.sid);
    if (it != later.end()) next_time[i] = it->second;
    later[rg.sid] = rg.time;
  }
  for (size_t i = 0; i < ranges.size(); ++i) {
    const auto& rg = ranges[i];
    int64_t quiet = rg.time;
    if (next_time[i]) {
      quiet = *next_time[i];
    } else if (auto it = by_sid.find(rg.sid); rg.sid != 0 && it != by_sid.end()) {
      const meta::SessionInfo& s = *it->second;
      const int64_t timeout = s.timeout > 0 ? s.timeout : o.session_timeout_ns;
      if (s.heartbeat >= now - timeout) {
        state[i] = State::kActive;  // the current batch of a live client
        ++r.ranges_active;
        continue;
      }
      quiet = std::max(quiet, s.heartbeat);
    }
    if (quiet <= cutoff) {
      state[i] = State::kClosable;
    } else {
      ++r.ranges_waiting;
    }
  }

  // Candidates: the recorded ids nothing references and nothing awaits deleting, by 1000-id
  // directory.
  std::map<uint64_t, std::vector<std::pair<uint64_t, size_t>>> dirs;  // id/1000 -> (id, range)
  for (size_t i = 0; i < ranges.size(); ++i) {
    for (uint64_t id = std::max<uint64_t>(ranges[i].first, 1); id < ranges[i].end; ++id) {
      if (!snap.referenced.Get(id) && !snap.pending.Get(id)) dirs[id / 1000].emplace_back(id, i);
    }
  }

  std::vector<char> keep(ranges.size(), 0);  // young objects, or a failed delete
  Deleter del(store, o.threads, &r);
  auto visit = [&](const object::ObjectInfo& obj, size_t range) {
    ++r.objects;
    r.bytes += obj.size;
    if (state[range] == State::kClosable && obj.mtime <= cutoff) {
      ++r.leaked;
      r.leaked_bytes += obj.size;
      if (r.leaked_keys.size() < o.max_listed_keys) r.leaked_keys.push_back(obj.key);
      if (o.do_delete) del.Add(obj, range);
    } else {
      ++r.young;
      r.young_bytes += obj.size;
      keep[range] = 1;
    }
  };
  for (const auto& [dir, ids] : dirs) {
    const std::string dir_prefix = BlockDir(o.block_prefix, ids.front().first);
    if (ids.size() > kPerIdLists) {
      std::unordered_map<uint64_t, size_t> want(ids.begin(), ids.end());
      NX_TRY(ListAll(store, dir_prefix, &r, [&](const object::ObjectInfo& obj) {
        uint64_t id = 0;
        uint32_t block = 0, size = 0;
        if (!ParseBlockKey(obj.key, o.block_prefix, &id, &block, &size)) {
          ++r.foreign;
          if (r.foreign_keys.size() < o.max_listed_keys) r.foreign_keys.push_back(obj.key);
          return;
        }
        auto it = want.find(id);
        if (it != want.end()) visit(obj, it->second);
      }));
    } else {
      for (const auto& [id, range] : ids) {
        NX_TRY(ListAll(
            store, dir_prefix + std::to_string(id) + "_", &r, [&](const object::ObjectInfo& obj) {
              uint64_t pid = 0;
              uint32_t block = 0, size = 0;
              if (ParseBlockKey(obj.key, o.block_prefix, &pid, &block, &size) && pid == id) {
                visit(obj, range);
              }
            }));
      }
    }
  }
  del.Flush();
  for (size_t tag : del.failed_tags()) keep[tag] = 1;

  // Closed batches: every id committed, awaiting deletion, or with its objects deleted.
  if (o.do_delete) {
    std::vector<std::string> done;
    for (size_t i = 0; i < ranges.size(); ++i) {
      if (state[i] == State::kClosable && !keep[i])
        done.push_back(keys::SliceRange(ranges[i].first));
    }
    for (size_t i = 0; i < done.size(); i += kScanBatch) {
      NX_TRY(meta->engine()->Update([&](kv::Txn& txn) -> Status {
        for (size_t j = i; j < std::min(done.size(), i + kScanBatch); ++j) {
          NX_TRY(txn.Delete(done[j]));
        }
        return Status::OK();
      }));
    }
    r.ranges_removed = done.size();
  }
  return Status::OK();
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

  // 3. Referenced and pending slice ids, and the recorded batches, from one snapshot.
  Snapshot snap;
  NX_TRY(meta->engine()->View([&](kv::Txn& txn) -> Status {
    snap = Snapshot();
    NX_ASSIGN_OR_RETURN(auto next, txn.Get(keys::Counter("nextSlice")));
    snap.next_slice = next ? keys::DecodeU64(*next) : 0;
    snap.referenced.Reserve(snap.next_slice);
    std::vector<Slice> recs;
    NX_TRY(ScanBatched(txn, "A", PrefixEnd("A"), [&](const std::string& k, const std::string& v) {
      if (k.size() != 14 || k[9] != 'C') return;
      if (!keys::DecodeSlices(v, &recs).ok()) return;
      for (const Slice& s : recs) {
        if (s.id != 0) snap.referenced.Set(s.id);
      }
    }));
    NX_TRY(ScanBatched(txn, "L", PrefixEnd("L"), [&](const std::string& k, const std::string&) {
      if (k.size() == 13) snap.pending.Set(GetBE64(k.data() + 1));
    }));
    return ScanBatched(txn, "R", PrefixEnd("R"), [&](const std::string& k, const std::string& v) {
      if (k == keys::SliceRangeFloor()) {
        if (v.size() == 8) snap.floor = GetBE64(v.data());
        return;
      }
      keys::SliceRangeRecord rg;
      if (!keys::DecodeSliceRange(k, v, &rg) || rg.end > snap.next_slice) {
        ++snap.bad_ranges;  // fsck reports it; its ids are left to gc --full
        return;
      }
      snap.ranges.push_back(rg);
    });
  }));
  if (snap.bad_ranges) {
    NX_LOG_WARN("{} damaged slice batch records skipped (nexusfs fsck names them)",
                snap.bad_ranges);
  }

  // 4. The objects of unreferenced slices: classify, delete the leaked ones.
  if (o.full) {
    NX_TRY(FullScan(store, o, snap, r));
    // Every id below the recorded batches was looked at: the default mode now covers all.
    const bool all_clean = r.young == 0 && r.delete_failed == 0 && r.leaked == r.deleted;
    if (all_clean && snap.floor.value_or(UINT64_MAX) > 1 && snap.next_slice > 0) {
      NX_TRY(meta->engine()->Update([&](kv::Txn& txn) -> Status {
        std::string f;
        PutBE64(&f, 1);
        return txn.Put(keys::SliceRangeFloor(), f);
      }));
    }
  } else {
    r.ranges = snap.ranges.size();
    if (!snap.floor) {
      r.unrecorded_below = snap.next_slice > 1 ? snap.next_slice : 0;
    } else if (*snap.floor > 1) {
      r.unrecorded_below = *snap.floor;
    }
    NX_TRY(RangeScan(meta, store, o, snap, r));
  }
  // 5. What unfinished Puts left in the store (file://: temporary files of killed clients).
  object::ObjectStore::Leftovers lo;
  NX_TRY(store->SweepLeftovers(o.block_prefix, NowNanos() - o.min_age_ns, o.do_delete, &lo));
  r.leftovers = lo.count;
  r.leftover_bytes = lo.bytes;
  r.leftovers_removed = lo.removed;
  return r;
}

}  // namespace nexus::ops
