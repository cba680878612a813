// MetaImpl's attribute changes (SetAttr: chmod, chown, utimes, truncate) and open-file
// tracking (Open, Close).
//
// Open tracking: open_counts_ holds this client's handles per inode. The first handle writes
// O<ino><sid> and SS<sid><ino> in the transaction that checks the permission; the last Close
// deletes them and, when the inode was unlinked meanwhile and no other session has it open,
// removes it. With local opens (the sole client of a single-process engine) only an unlink
// writes those records, for an inode open here (RemoveInodeTxn), and only the last Close of such
// an inode (sustained_) has a transaction to run. Open and Close of one inode hold its stripe mutex
// across their transaction, so the local count and the engine's records change together.
// CloseDeferred (the FUSE release path) leaves the last handle's records to the closer thread,
// which releases the inodes closed meanwhile in one transaction: one engine read and one commit for
// many closes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "common/clock.h"
#include "common/logging.h"
#include "meta/meta_impl.h"

namespace nexus::meta {
namespace {

std::string InoName(Ino ino) { return "inode " + std::to_string(ino); }

bool Privileged(const Context& ctx) { return !ctx.check_permission || ctx.uid == 0; }

bool OwnerOrRoot(const Context& ctx, const Attr& a) { return Privileged(ctx) || ctx.uid == a.uid; }

Status NotOwner(const Context& ctx, const Attr& a, Ino ino, std::string_view op) {
  return Status::Errno(EPERM, std::string(op) + " " + InoName(ino) + ": uid " +
                                  std::to_string(ctx.uid) + " is not the owner (" +
                                  std::to_string(a.uid) + ")");
}

// chmod: the owner or root; S_ISGID is dropped when a non-root caller is not in the file's
// group (the kernel's setattr_copy()).
//
// One exception: a change that only drops S_ISUID/S_ISGID is what the kernel sends on behalf of
// a writer that is not the owner (file_remove_privs after a write or truncate), so anyone with
// write permission may make it.
Status ApplyMode(const Context& ctx, const SetAttrRequest& req, Ino ino, bool can_write, Attr* a) {
  if (!(req.mask & kSetMode)) return Status::OK();
  const uint32_t kill = S_ISUID | S_ISGID;
  const bool only_drops_privs = (req.mode & 07777 & ~kill) == (a->mode & ~kill) &&
                                (req.mode & kill) != (a->mode & kill) &&
                                (req.mode & kill & ~a->mode) == 0;
  if (!OwnerOrRoot(ctx, *a) && !(only_drops_privs && can_write)) {
    return NotOwner(ctx, *a, ino, "chmod");
  }
  uint32_t mode = req.mode & 07777;
  const uint32_t gid = (req.mask & kSetGid) ? req.gid : a->gid;
  if (!Privileged(ctx) && !ctx.InGroup(gid)) mode &= ~S_ISGID;
  a->mode = mode;
  return Status::OK();
}

// chown: only root changes the owner; the owner may change the group to one of its groups.
// On anything but a directory it drops S_ISUID, and S_ISGID when group-executable, even for
// root (Linux since 2.2.13), unless the same request sets the mode.
Status ApplyOwner(const Context& ctx, const SetAttrRequest& req, Ino ino, Attr* a) {
  if (!(req.mask & (kSetUid | kSetGid))) return Status::OK();
  if (!Privileged(ctx)) {
    if ((req.mask & kSetUid) && (ctx.uid != a->uid || req.uid != a->uid)) {
      return Status::Errno(EPERM, "chown " + InoName(ino) + " to uid " + std::to_string(req.uid) +
                                      ": only root may change the owner");
    }
    if ((req.mask & kSetGid) &&
        (ctx.uid != a->uid || (req.gid != a->gid && !ctx.InGroup(req.gid)))) {
      return Status::Errno(EPERM, "chgrp " + InoName(ino) + " to gid " + std::to_string(req.gid) +
                                      ": uid " + std::to_string(ctx.uid) +
                                      " is not the owner or not in that group");
    }
  }
  if (req.mask & kSetUid) a->uid = req.uid;
  if (req.mask & kSetGid) a->gid = req.gid;
  if (a->type != FileType::kDir && !(req.mask & kSetMode)) {
    a->mode &= ~S_ISUID;
    if (a->mode & S_IXGRP) a->mode &= ~S_ISGID;
  }
  return Status::OK();
}

// utimes: explicit times need the owner or root (EPERM); "now" also passes with write
// permission (EACCES otherwise).
Status ApplyTimes(const Context& ctx, const SetAttrRequest& req, Ino ino, bool can_write,
                  int64_t now, Attr* a) {
  if (req.mask & (kSetAtime | kSetMtime | kSetCtime)) {
    if (!OwnerOrRoot(ctx, *a)) return NotOwner(ctx, *a, ino, "set times of");
  }
  if (req.mask & (kSetAtimeNow | kSetMtimeNow)) {
    if (!OwnerOrRoot(ctx, *a) && !can_write) {
      return Status::Errno(EACCES, "set times of " + InoName(ino) + ": uid " +
                                       std::to_string(ctx.uid) + " may not write it");
    }
  }
  if (req.mask & kSetAtime) a->atime = req.atime;
  if (req.mask & kSetMtime) a->mtime = req.mtime;
  if (req.mask & kSetAtimeNow) a->atime = now;
  if (req.mask & kSetMtimeNow) a->mtime = now;
  return Status::OK();
}

}  // namespace

Result<Attr> MetaImpl::SetAttr(const Context& ctx, Ino ino, const SetAttrRequest& req) {
  Attr out;
  if (req.mask & kSetSize) {
    NX_ASSIGN_OR_RETURN(out, Truncate(ctx, ino, req.size));
    if ((req.mask & ~kSetSize) == 0) return Expose(out);
  }
  ino = Real(ino);
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    const bool can_write = CheckPermission(ctx, attr, W_OK).ok();
    const int64_t now = NowNanos();
    NX_TRY(ApplyOwner(ctx, req, ino, &attr));
    NX_TRY(ApplyMode(ctx, req, ino, can_write, &attr));
    NX_TRY(ApplyTimes(ctx, req, ino, can_write, now, &attr));
    attr.ctime = (req.mask & kSetCtime) ? req.ctime : now;
    out = attr;
    return PutAttrTxn(txn, ino, attr);
  }));
  return Expose(out);
}

Status MetaImpl::CheckOpen(const Context& ctx, const Attr& attr, Ino ino, int flags) {
  const int acc = flags & O_ACCMODE;
  if (attr.type == FileType::kDir && (acc != O_RDONLY || (flags & (O_CREAT | O_TRUNC)))) {
    return Status::Errno(EISDIR, "open " + InoName(ino) + " for writing: is a directory");
  }
  int mask = acc == O_RDONLY ? R_OK : acc == O_WRONLY ? W_OK : R_OK | W_OK;
  if (flags & O_TRUNC) mask |= W_OK;
  return CheckPermission(ctx, attr, mask).With("open " + InoName(ino));
}

Status MetaImpl::RegisterOpenTxn(kv::Txn& txn, Ino ino) {
  // Rewriting the attribute record (unchanged) makes a concurrent unlink, which reads it and
  // looks for O records, conflict with this open: the O record is new, so the unlink's scan of
  // them could not notice it by itself.
  NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
  NX_TRY(PutAttrTxn(txn, ino, attr));
  NX_TRY(txn.Put(keys::Open(ino, sid_), ""));
  return txn.Put(keys::Sustained(sid_, ino), "");
}

Result<Attr> MetaImpl::Open(const Context& ctx, Ino ino, int flags) {
  ino = Real(ino);
  std::lock_guard<std::mutex> stripe(OpenStripe(ino));
  bool first, revived = false;
  {
    std::unique_lock<std::mutex> lock(open_mu_);
    close_cv_.wait(lock, [&] { return closing_.count(ino) == 0; });
    auto it = open_counts_.find(ino);
    first = it == open_counts_.end() || it->second == 0;
    // The records of a deferred close are still there: keep them instead of rewriting them.
    if (first && pending_close_.erase(ino) > 0) first = false, revived = true;
    // A local open counts before its transaction: an unlink that runs after it keeps the inode
    // (RemoveInodeTxn), and one that ran before made the attribute this open reads disappear.
    if (local_opens_) ++open_counts_[ino];
  }
  Attr attr;
  auto body = [&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(attr, GetAttrTxn(txn, ino));
    NX_TRY(CheckOpen(ctx, attr, ino, flags));
    if (!first) return Status::OK();
    if (!local_opens_) return RegisterOpenTxn(txn, ino);
    // The first open must be ordered against an unlink: one that commits before it makes this
    // read fail, one after it sees the count taken above. Where Update bodies take turns, this
    // Update's turn does that even though it writes nothing; where they may overlap, rewriting
    // the attribute (unchanged) makes an unlink that read it conflict.
    return one_writer_ ? Status::OK() : PutAttrTxn(txn, ino, attr);
  };
  Status s = first ? engine_->Update(body) : engine_->View(body);
  std::unique_lock<std::mutex> lock(open_mu_);
  if (!s.ok()) {
    bool release = false;
    if (local_opens_) {
      if (--open_counts_[ino] == 0) {
        open_counts_.erase(ino);
        // An unlink kept the inode for this open, which failed: nobody else will release it.
        release = !revived && sustained_.count(ino) > 0;
      }
    }
    if (revived) {
      pending_close_.insert(ino);
      close_cv_.notify_all();
    }
    lock.unlock();
    if (release) {
      if (Status r = ReleaseOpenRecords(ino); !r.ok()) {
        NX_LOG_WARN("release of {} after a failed open: {}", InoName(ino), r.ToString());
      }
    }
    return Err(s);
  }
  if (!local_opens_) ++open_counts_[ino];
  return Expose(attr);
}

Result<bool> MetaImpl::DropHandleLocked(Ino ino) {
  auto it = open_counts_.find(ino);
  if (it == open_counts_.end() || it->second == 0) {
    return Err(Status::Errno(EBADF, "close " + InoName(ino) + ": not open in this client"));
  }
  if (it->second == 1) return true;
  --it->second;
  return false;
}

bool MetaImpl::DropLocalLastHandleLocked(Ino ino) {
  if (!local_opens_ || sustained_.count(ino)) return false;
  open_counts_.erase(ino);
  return true;
}

Status MetaImpl::ReleaseOpenRecords(Ino ino) {
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status { return ReleaseOpenTxn(txn, {ino}, sid_); }));
  std::lock_guard<std::mutex> lock(open_mu_);
  sustained_.erase(ino);
  return Status::OK();
}

Status MetaImpl::Close(Ino ino) {
  ino = Real(ino);
  std::lock_guard<std::mutex> stripe(OpenStripe(ino));
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    NX_ASSIGN_OR_RETURN(bool last, DropHandleLocked(ino));
    if (!last || DropLocalLastHandleLocked(ino)) return Status::OK();
  }
  NX_TRY(ReleaseOpenRecords(ino));
  std::lock_guard<std::mutex> lock(open_mu_);
  open_counts_.erase(ino);
  return Status::OK();
}

Status MetaImpl::CloseDeferred(Ino ino) {
  ino = Real(ino);
  {
    std::lock_guard<std::mutex> stripe(OpenStripe(ino));
    std::lock_guard<std::mutex> lock(open_mu_);
    NX_ASSIGN_OR_RETURN(bool last, DropHandleLocked(ino));
    if (!last || DropLocalLastHandleLocked(ino)) return Status::OK();
    if (!closer_stop_) {
      open_counts_.erase(ino);
      pending_close_.insert(ino);
      if (!closer_.joinable()) closer_ = std::thread([this] { CloserLoop(); });
      // The closer waits for the first close and, while lingering, for a full batch.
      if (pending_close_.size() == 1 || pending_close_.size() >= kCloseBatch) {
        close_cv_.notify_all();
      }
      return Status::OK();
    }
  }
  return Close(ino);  // the closer has stopped (session closing): release now
}

Status MetaImpl::FlushDeferredCloses() {
  std::unique_lock<std::mutex> lock(open_mu_);
  close_flush_ = true;  // no lingering for more closes
  close_cv_.notify_all();
  close_cv_.wait(lock, [&] {
    return closing_.empty() && (pending_close_.empty() || !close_error_.ok() || closer_stop_);
  });
  return close_error_;
}

void MetaImpl::CloserLoop() {
  constexpr auto kMaxRetryDelay = std::chrono::seconds(5);
  std::chrono::milliseconds delay{0};
  std::unique_lock<std::mutex> lock(open_mu_);
  while (true) {
    close_cv_.wait(lock, [&] { return closer_stop_ || !pending_close_.empty(); });
    if (closer_stop_) return;  // StopCloser releases what is left
    if (delay.count() > 0 && close_cv_.wait_for(lock, delay, [&] { return closer_stop_; })) return;
    // Linger for more closes, so that a steady stream of them (a create loop: a release per
    // file) shares transactions; nobody waits for a release, so the linger costs no latency.
    close_cv_.wait_for(lock, kCloseLinger, [&] {
      return closer_stop_ || close_flush_ || pending_close_.size() >= kCloseBatch;
    });
    if (closer_stop_) return;
    if (ReleasePending(lock)) {
      delay = std::chrono::milliseconds(0);
    } else {
      delay = std::min<std::chrono::milliseconds>(
          std::max(delay * 2, std::chrono::milliseconds(50)), kMaxRetryDelay);
    }
  }
}

bool MetaImpl::ReleasePending(std::unique_lock<std::mutex>& lock) {
  std::vector<Ino> batch;
  for (auto it = pending_close_.begin();
       it != pending_close_.end() && batch.size() < kCloseBatch;) {
    batch.push_back(*it);
    closing_.insert(*it);
    it = pending_close_.erase(it);
  }
  const uint64_t sid = sid_;
  lock.unlock();
  auto release = [&](const std::vector<Ino>& inos) {
    return engine_->Update([&](kv::Txn& txn) -> Status { return ReleaseOpenTxn(txn, inos, sid); });
  };
  Status s = release(batch);
  std::vector<Ino> failed;
  if (!s.ok() && batch.size() > 1) {
    // One bad inode must not hold back the others: try them one by one.
    for (Ino ino : batch) {
      Status one = release({ino});
      if (!one.ok()) {
        failed.push_back(ino);
        s = one;
      }
    }
  } else if (!s.ok()) {
    failed = batch;
  }
  if (!failed.empty()) {
    NX_LOG_WARN("release of {} closed file(s) (inode {} first) failed, will retry: {}",
                failed.size(), failed.front(), s.ToString());
  }
  lock.lock();
  for (Ino ino : batch) {
    closing_.erase(ino);
    sustained_.erase(ino);  // released (empty unless local opens)
  }
  for (Ino ino : failed) {
    pending_close_.insert(ino);
    if (local_opens_) sustained_.insert(ino);  // its records are still there
  }
  if (pending_close_.empty()) close_flush_ = false;
  close_error_ = failed.empty() ? Status::OK() : s;
  close_cv_.notify_all();
  return failed.empty();
}

void MetaImpl::StopCloser() {
  {
    std::lock_guard<std::mutex> lock(open_mu_);
    if (closer_stop_) return;
    closer_stop_ = true;
  }
  close_cv_.notify_all();
  if (closer_.joinable()) closer_.join();
  std::unique_lock<std::mutex> lock(open_mu_);
  while (!pending_close_.empty() && ReleasePending(lock)) {
  }
}

}  // namespace nexus::meta
