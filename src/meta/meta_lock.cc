// MetaImpl's locks: flock(2) whole-file locks and POSIX byte-range locks, kept in the engine so
// every client sees them. A holder is (session id, owner).
//
// Record formats (docs/formats.md, "Lock records"); integers big-endian:
//   F<ino>: version:1 (=1), then per holder: sid:8 owner:8 type:1          (type 1 read, 2 write)
//   P<ino>: version:1 (=1), then per holder: sid:8 owner:8 pid:4 count:4,
//           then `count` ranges: type:1 start:8 end:8   (end inclusive, UINT64_MAX = to EOF)
// A holder's POSIX ranges are sorted by start, never overlap, and adjacent ranges of one type
// are merged. A record without holders is deleted.
#include <algorithm>
#include <chrono>

#include "common/logging.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

constexpr uint8_t kLockVersion = 1;

struct FlockHolder {
  uint64_t sid = 0, owner = 0;
  LockType type = LockType::kUnlock;
};

struct LockRange {
  LockType type = LockType::kUnlock;
  uint64_t start = 0, end = 0;
};

struct PlockHolder {
  uint64_t sid = 0, owner = 0;
  uint32_t pid = 0;
  std::vector<LockRange> ranges;
};

bool ValidLockType(uint8_t t) { return t == 1 || t == 2; }

Status BadRecord(std::string_view kind, Ino ino) {
  return Status::Corruption(std::string(kind) + " record of inode " + std::to_string(ino) +
                            " is damaged");
}

Result<std::vector<FlockHolder>> DecodeFlocks(const std::optional<std::string>& v, Ino ino) {
  std::vector<FlockHolder> out;
  if (!v) return out;
  Decoder d(*v);
  uint8_t version = 0;
  if (!d.GetU8(&version) || version != kLockVersion) return Err(BadRecord("flock", ino));
  while (!d.empty()) {
    FlockHolder h;
    uint8_t type = 0;
    if (!d.GetBE64(&h.sid) || !d.GetBE64(&h.owner) || !d.GetU8(&type) || !ValidLockType(type)) {
      return Err(BadRecord("flock", ino));
    }
    h.type = static_cast<LockType>(type);
    out.push_back(h);
  }
  return out;
}

std::string EncodeFlocks(const std::vector<FlockHolder>& holders) {
  std::string s;
  PutU8(&s, kLockVersion);
  for (const FlockHolder& h : holders) {
    PutBE64(&s, h.sid);
    PutBE64(&s, h.owner);
    PutU8(&s, static_cast<uint8_t>(h.type));
  }
  return s;
}

Result<std::vector<PlockHolder>> DecodePlocks(const std::optional<std::string>& v, Ino ino) {
  std::vector<PlockHolder> out;
  if (!v) return out;
  Decoder d(*v);
  uint8_t version = 0;
  if (!d.GetU8(&version) || version != kLockVersion) return Err(BadRecord("POSIX lock", ino));
  while (!d.empty()) {
    PlockHolder h;
    uint32_t count = 0;
    if (!d.GetBE64(&h.sid) || !d.GetBE64(&h.owner) || !d.GetBE32(&h.pid) || !d.GetBE32(&count) ||
        d.rest().size() < static_cast<uint64_t>(count) * 17) {
      return Err(BadRecord("POSIX lock", ino));
    }
    for (uint32_t i = 0; i < count; ++i) {
      LockRange r;
      uint8_t type = 0;
      d.GetU8(&type);
      d.GetBE64(&r.start);
      d.GetBE64(&r.end);
      if (!ValidLockType(type) || r.start > r.end) return Err(BadRecord("POSIX lock", ino));
      r.type = static_cast<LockType>(type);
      h.ranges.push_back(r);
    }
    out.push_back(std::move(h));
  }
  return out;
}

std::string EncodePlocks(const std::vector<PlockHolder>& holders) {
  std::string s;
  PutU8(&s, kLockVersion);
  for (const PlockHolder& h : holders) {
    PutBE64(&s, h.sid);
    PutBE64(&s, h.owner);
    PutBE32(&s, h.pid);
    PutBE32(&s, static_cast<uint32_t>(h.ranges.size()));
    for (const LockRange& r : h.ranges) {
      PutU8(&s, static_cast<uint8_t>(r.type));
      PutBE64(&s, r.start);
      PutBE64(&s, r.end);
    }
  }
  return s;
}

// Writes the record, or deletes it when no holder is left.
Status StoreLocks(kv::Txn& txn, const std::string& key, bool empty, const std::string& value) {
  return empty ? txn.Delete(key) : txn.Put(key, value);
}

bool Overlaps(const LockRange& r, uint64_t start, uint64_t end) {
  return r.start <= end && start <= r.end;
}

bool Conflicts(LockType a, LockType b) { return a == LockType::kWrite || b == LockType::kWrite; }

// Removes [start, end] from `ranges`, splitting the ranges it cuts. True if anything was removed.
bool CutRange(std::vector<LockRange>* ranges, uint64_t start, uint64_t end) {
  std::vector<LockRange> out;
  bool cut = false;
  for (const LockRange& r : *ranges) {
    if (!Overlaps(r, start, end)) {
      out.push_back(r);
      continue;
    }
    cut = true;
    if (r.start < start) out.push_back({r.type, r.start, start - 1});
    if (r.end > end) out.push_back({r.type, end + 1, r.end});
  }
  *ranges = std::move(out);
  return cut;
}

// Inserts `n` (which overlaps nothing in `ranges`) and merges adjacent ranges of one type.
void InsertRange(std::vector<LockRange>* ranges, const LockRange& n) {
  auto at =
      std::lower_bound(ranges->begin(), ranges->end(), n,
                       [](const LockRange& a, const LockRange& b) { return a.start < b.start; });
  ranges->insert(at, n);
  std::vector<LockRange> out;
  for (const LockRange& r : *ranges) {
    if (!out.empty() && out.back().type == r.type && out.back().end != UINT64_MAX &&
        out.back().end + 1 == r.start) {
      out.back().end = r.end;
      continue;
    }
    out.push_back(r);
  }
  *ranges = std::move(out);
}

std::string RangeText(uint64_t start, uint64_t end) {
  return "[" + std::to_string(start) + ", " + (end == UINT64_MAX ? "EOF" : std::to_string(end)) +
         "]";
}

// The lock epoch seen before this thread's last attempt that failed with EAGAIN, so that
// WaitLockChange also wakes for a release committed between that attempt and the wait.
struct LastConflict {
  const void* meta = nullptr;
  Ino ino = 0;
  uint64_t epoch = 0;
};
thread_local LastConflict last_conflict;

// Runs a lock attempt; on EAGAIN remembers the epoch read before it for WaitLockChange.
Status Attempt(const void* meta, Ino ino, const std::atomic<uint64_t>& epoch_counter,
               const std::function<Status()>& attempt) {
  const uint64_t epoch = epoch_counter.load();
  Status s = attempt();
  if (s.code() == EAGAIN) last_conflict = {meta, ino, epoch};
  return s;
}

}  // namespace

void MetaImpl::NotifyLockChange() {
  {
    std::lock_guard<std::mutex> lock(lock_mu_);
    lock_epoch_.fetch_add(1);
  }
  lock_cv_.notify_all();
}

void MetaImpl::WaitLockChange(Ino ino, int64_t timeout_ns) {
  // Releases by this client bump lock_epoch_; other clients' releases are seen on timeout.
  // When this thread's last Flock/SetLk on `ino` failed with EAGAIN, the wait starts from the
  // epoch read before that attempt, so a release committed in between ends it at once.
  ino = Real(ino);
  std::unique_lock<std::mutex> lock(lock_mu_);
  uint64_t epoch = lock_epoch_.load();
  if (last_conflict.meta == this && last_conflict.ino == ino) epoch = last_conflict.epoch;
  last_conflict = {};
  lock_cv_.wait_for(lock, std::chrono::nanoseconds(std::max<int64_t>(timeout_ns, 0)),
                    [&] { return lock_epoch_.load() != epoch; });
}

Status MetaImpl::Flock(Ino ino, uint64_t owner, LockType type) {
  ino = Real(ino);
  if (static_cast<uint8_t>(type) > 2) {
    return Status::InvalidArgument("flock inode " + std::to_string(ino) + ": bad lock type " +
                                   std::to_string(static_cast<int>(type)));
  }
  bool released = false;
  NX_TRY(Attempt(this, ino, lock_epoch_, [&] { return FlockOnce(ino, owner, type, &released); }));
  if (released) NotifyLockChange();
  return Status::OK();
}

Status MetaImpl::MarkLockedTxn(kv::Txn& txn, Ino ino) {
  if (format_.meta_version < 3) return Status::OK();
  Result<Attr> got = GetAttrTxn(txn, ino);
  // No such inode: nothing to mark (and nothing will purge it).
  if (!got) return got.error().IsNotFound() ? Status::OK() : got.error();
  Attr attr = *got;
  if (attr.flags & Attr::kAttrFlagLocks) return Status::OK();
  attr.flags |= Attr::kAttrFlagLocks;
  return PutAttrTxn(txn, ino, attr);
}

Status MetaImpl::FlockOnce(Ino ino, uint64_t owner, LockType type, bool* released_out) {
  bool& released = *released_out;
  return engine_->Update([&](kv::Txn& txn) -> Status {
    released = false;
    const std::string key = keys::Flock(ino);
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
    NX_ASSIGN_OR_RETURN(auto holders, DecodeFlocks(v, ino));
    auto mine = std::find_if(holders.begin(), holders.end(), [&](const FlockHolder& h) {
      return h.sid == sid_ && h.owner == owner;
    });
    if (type == LockType::kUnlock) {
      if (mine == holders.end()) return Status::OK();
      holders.erase(mine);
      released = true;
      return StoreLocks(txn, key, holders.empty(), EncodeFlocks(holders));
    }
    for (const FlockHolder& h : holders) {
      if ((h.sid != sid_ || h.owner != owner) && Conflicts(h.type, type)) {
        return Status::Errno(EAGAIN, "flock inode " + std::to_string(ino) +
                                         ": held by another owner (session " +
                                         std::to_string(h.sid) + ")");
      }
    }
    if (mine != holders.end()) {
      if (mine->type == type) return Status::OK();
      released = mine->type == LockType::kWrite;  // a downgrade lets readers in
      mine->type = type;
    } else {
      holders.push_back({sid_, owner, type});
    }
    if (!v) NX_TRY(MarkLockedTxn(txn, ino));  // a record that exists was marked when made
    return txn.Put(key, EncodeFlocks(holders));
  });
}

Result<PosixLock> MetaImpl::GetLk(Ino ino, uint64_t owner, const PosixLock& probe) {
  ino = Real(ino);
  if (probe.type == LockType::kUnlock || probe.start > probe.end) {
    return Err(Status::InvalidArgument("get lock of inode " + std::to_string(ino) + ": bad probe " +
                                       RangeText(probe.start, probe.end)));
  }
  PosixLock out = probe;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    out = probe;
    out.type = LockType::kUnlock;
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Plock(ino)));
    NX_ASSIGN_OR_RETURN(auto holders, DecodePlocks(v, ino));
    bool found = false;
    for (const PlockHolder& h : holders) {
      if (h.sid == sid_ && h.owner == owner) continue;
      for (const LockRange& r : h.ranges) {
        if (!Overlaps(r, probe.start, probe.end) || !Conflicts(r.type, probe.type)) continue;
        if (found && r.start >= out.start) continue;  // report the lowest conflicting range
        out = PosixLock{r.type, r.start, r.end, h.pid};
        found = true;
      }
    }
    return Status::OK();
  }));
  return out;
}

Status MetaImpl::SetLk(Ino ino, uint64_t owner, const PosixLock& lock) {
  ino = Real(ino);
  if (lock.start > lock.end || static_cast<uint8_t>(lock.type) > 2) {
    return Status::InvalidArgument("lock inode " + std::to_string(ino) + ": bad range " +
                                   RangeText(lock.start, lock.end));
  }
  bool released = false;
  NX_TRY(Attempt(this, ino, lock_epoch_, [&] { return SetLkOnce(ino, owner, lock, &released); }));
  if (released) NotifyLockChange();
  return Status::OK();
}

Status MetaImpl::SetLkOnce(Ino ino, uint64_t owner, const PosixLock& lock, bool* released_out) {
  bool& released = *released_out;
  return engine_->Update([&](kv::Txn& txn) -> Status {
    released = false;
    const std::string key = keys::Plock(ino);
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
    NX_ASSIGN_OR_RETURN(auto holders, DecodePlocks(v, ino));
    if (lock.type != LockType::kUnlock) {
      for (const PlockHolder& h : holders) {
        if (h.sid == sid_ && h.owner == owner) continue;
        for (const LockRange& r : h.ranges) {
          if (Overlaps(r, lock.start, lock.end) && Conflicts(r.type, lock.type)) {
            return Status::Errno(EAGAIN, "lock inode " + std::to_string(ino) + " " +
                                             RangeText(lock.start, lock.end) + ": " +
                                             RangeText(r.start, r.end) + " held by pid " +
                                             std::to_string(h.pid));
          }
        }
      }
    }
    auto mine = std::find_if(holders.begin(), holders.end(), [&](const PlockHolder& h) {
      return h.sid == sid_ && h.owner == owner;
    });
    if (mine == holders.end()) {
      if (lock.type == LockType::kUnlock) return Status::OK();
      mine = holders.insert(holders.end(), PlockHolder{sid_, owner, lock.pid, {}});
    }
    // Any replaced range may have blocked someone (an unlock, or a write turned read).
    released = CutRange(&mine->ranges, lock.start, lock.end);
    if (lock.type != LockType::kUnlock) {
      InsertRange(&mine->ranges, {lock.type, lock.start, lock.end});
      mine->pid = lock.pid;
      if (!v) NX_TRY(MarkLockedTxn(txn, ino));  // a record that exists was marked when made
    }
    if (mine->ranges.empty()) holders.erase(mine);
    return StoreLocks(txn, key, holders.empty(), EncodePlocks(holders));
  });
}

// Session cleanup: visits the F and P records in batches of kBatch keys, and in one
// transaction per record that names `sid`, removes that session's holders.
Status MetaImpl::ReleaseSessionLocks(uint64_t sid) {
  constexpr size_t kBatch = 1000;
  for (const std::string prefix : {"F", "P"}) {
    const bool flock = prefix == "F";
    std::string from = prefix;
    const std::string end = PrefixEnd(prefix);
    while (true) {
      std::vector<std::string> mine;
      size_t seen = 0;
      std::string last;
      NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
        mine.clear();
        seen = 0;
        return txn.Scan(from, end, kBatch, [&](std::string_view k, std::string_view v) {
          ++seen;
          last = std::string(k);
          if (k.size() != 9) return true;
          const Ino ino = GetBE64(k.data() + 1);
          const std::optional<std::string> value{std::string(v)};
          bool holds = false;
          if (flock) {
            auto hs = DecodeFlocks(value, ino);
            holds =
                hs && std::any_of(hs->begin(), hs->end(), [&](auto& h) { return h.sid == sid; });
          } else {
            auto hs = DecodePlocks(value, ino);
            holds =
                hs && std::any_of(hs->begin(), hs->end(), [&](auto& h) { return h.sid == sid; });
          }
          if (holds) mine.emplace_back(k);
          return true;
        });
      }));
      for (const std::string& key : mine) NX_TRY(DropSessionHoldersOf(key, sid, flock));
      if (seen < kBatch) break;
      from = last + std::string(1, '\0');
    }
  }
  NotifyLockChange();
  return Status::OK();
}

Status MetaImpl::DropSessionHoldersOf(const std::string& key, uint64_t sid, bool flock) {
  const Ino ino = GetBE64(key.data() + 1);
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
    if (!v) return Status::OK();
    if (flock) {
      NX_ASSIGN_OR_RETURN(auto hs, DecodeFlocks(v, ino));
      std::erase_if(hs, [&](const FlockHolder& h) { return h.sid == sid; });
      return StoreLocks(txn, key, hs.empty(), EncodeFlocks(hs));
    }
    NX_ASSIGN_OR_RETURN(auto hs, DecodePlocks(v, ino));
    std::erase_if(hs, [&](const PlockHolder& h) { return h.sid == sid; });
    return StoreLocks(txn, key, hs.empty(), EncodePlocks(hs));
  });
}

}  // namespace nexus::meta
