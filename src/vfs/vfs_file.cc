// Vfs: open files — open/create, read/write, flush/release/fsync, fallocate, copy_file_range,
// SEEK_DATA/SEEK_HOLE and locks.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "chunk/chunk_store.h"
#include "common/clock.h"
#include "common/logging.h"
#include "meta/meta.h"
#include "meta/slice_view.h"
#include "vfs/vfs.h"
#include "vfs/vfs_handles.h"

namespace nexus::vfs {
namespace {

constexpr int64_t kLockWaitSliceNs = 200'000'000;  // re-check interruption this often
constexpr int64_t kRelatimeWindowNs = 24LL * 3600 * 1'000'000'000;
// A read of .accesslog waits this long for a line before returning a keep-alive "#".
constexpr int64_t kAccessLogWaitNs = 1'000'000'000;

}  // namespace

std::shared_ptr<Vfs::FileHandle> Vfs::FindFile(uint64_t fh) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  auto it = files_.find(fh);
  return it == files_.end() ? nullptr : it->second;
}

uint64_t Vfs::AddFile(std::shared_ptr<FileHandle> h) {
  std::lock_guard<std::mutex> lock(handles_mu_);
  uint64_t fh = next_fh_++;
  files_.emplace(fh, std::move(h));
  open_files_.fetch_add(1, std::memory_order_relaxed);
  return fh;
}

void Vfs::RememberSeen(Ino ino, const Attr& attr) {
  if (options_.sole_client) return;  // its opens keep the cache whatever this client saw
  std::lock_guard<std::mutex> lock(seen_mu_);
  if (seen_.size() >= kMaxSeen) seen_.clear();
  seen_[ino] = Seen{attr.mtime, attr.length};
}

OpenResult Vfs::FinishOpen(Ino ino, int flags, const Attr& attr, uint64_t epoch) {
  OpenResult r;
  r.attr = attr;
  if (options_.sole_client) {
    r.keep_cache = true;
  } else {
    std::lock_guard<std::mutex> lock(seen_mu_);
    auto it = seen_.find(ino);
    r.keep_cache =
        it != seen_.end() && it->second.mtime == attr.mtime && it->second.length == attr.length;
  }
  RememberSeen(ino, attr);
  auto h = std::make_shared<FileHandle>();
  h->ino = ino;
  h->flags = flags;
  if (attr.type == meta::FileType::kFile) {
    h->attr = attr;
    h->attr_epoch = epoch;
    h->attr_ns = MonoNanos();
    h->attr_valid = true;
  }
  r.fh = AddFile(std::move(h));
  return r;
}

Status Vfs::FlushData(Ino ino) {
  Status s = chunks_->Flush(ino);
  if (!s.ok()) {
    NX_LOG_WARN("flush of inode {} failed: {}", ino, s.ToString());
    return s;
  }
  std::lock_guard<std::mutex> lock(pending_mu_);
  pending_mtime_.erase(ino);
  return s;
}

void Vfs::MergePending(Ino ino, Attr* attr, uint64_t commits) {
  if (attr->type != meta::FileType::kFile) return;
  // `attr` was read after `commits`: if no commit ran since, every write missing from the
  // pending ones was in Meta before it. Otherwise read it again (see ChunkStore::Commits).
  uint64_t pending = 0;
  for (int attempt = 0;; ++attempt) {
    pending = chunks_->PendingLength(ino);
    const uint64_t now = chunks_->Commits();
    if (now == commits || attempt == 3) break;
    commits = now;
    auto fresh = meta_->GetAttr(ino);
    if (!fresh) break;
    *attr = *fresh;
  }
  attr->length = std::max(attr->length, pending);
  std::lock_guard<std::mutex> lock(pending_mu_);
  auto it = pending_mtime_.find(ino);
  if (it != pending_mtime_.end()) {
    attr->mtime = std::max(attr->mtime, it->second);
    attr->ctime = std::max(attr->ctime, it->second);
  }
}

Result<uint64_t> Vfs::CurrentLength(Ino ino) {
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->GetAttr(ino));
  MergePending(ino, &attr, commits);
  return attr.length;
}

Result<OpenResult> Vfs::Open(const Context& ctx, Ino ino, int flags) {
  Count(Op::kOpen);
  if (IsInternalIno(ino)) return OpenInternal(ino, flags);
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) NX_TRY(CheckWritable());
  const uint64_t epoch = change_epoch_.load(std::memory_order_acquire);
  const uint64_t commits = chunks_->Commits();
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->Open(ctx, ino, flags));
  chunks_->Invalidate(ino);  // close-to-open: another client may have changed the slices
  if ((flags & O_TRUNC) && attr.type == meta::FileType::kFile && attr.length > 0) {
    Status s = FlushData(ino);
    auto truncated = s.ok() ? meta_->Truncate(ctx, ino, 0) : Result<Attr>(Err(s));
    chunks_->Invalidate(ino);
    FileChanged();  // the handles of this file (this one too) ask Meta on their next read
    if (!truncated) {
      (void)meta_->Close(ino);
      return Err(truncated.error());
    }
    attr = *truncated;
  }
  MergePending(ino, &attr, commits);
  return FinishOpen(ino, flags, attr, epoch);
}

Result<CreateResult> Vfs::Create(const Context& ctx, Ino parent, std::string_view name, mode_t mode,
                                 int flags) {
  Count(Op::kCreate);
  NX_TRY(CheckWritable());
  if (InternalIno(parent, name)) return Err(EEXIST, std::string(name) + " is an internal file");
  const uint64_t epoch = change_epoch_.load(std::memory_order_acquire);
  NX_ASSIGN_OR_RETURN(Entry e, meta_->Create(ctx, parent, name, mode & 07777, flags));
  chunks_->Invalidate(e.ino);
  CreateResult r;
  r.entry = e;
  r.open = FinishOpen(e.ino, flags, e.attr, epoch);
  return r;
}

std::optional<Attr> Vfs::UpdateAtime(Ino ino, const Attr& attr) {
  if (options_.read_only || options_.atime_mode == AtimeMode::kNoAtime) return std::nullopt;
  int64_t now = NowNanos();
  if (options_.atime_mode == AtimeMode::kRelAtime && attr.atime >= attr.mtime &&
      attr.atime >= attr.ctime && now - attr.atime < kRelatimeWindowNs) {
    return std::nullopt;
  }
  Context root;
  root.check_permission = false;
  meta::SetAttrRequest req;
  req.mask = meta::kSetAtimeNow;
  auto r = meta_->SetAttr(root, ino, req);
  if (!r) {
    NX_LOG_DEBUG("atime update of inode {}: {}", ino, r.error().ToString());
    return std::nullopt;
  }
  return *r;
}

Result<size_t> Vfs::Read(const Context& ctx, Ino ino, uint64_t fh, uint64_t off, char* buf,
                         size_t len, std::vector<chunk::ReadPiece>* pieces) {
  Count(Op::kRead);
  auto h = FindFile(fh);
  if (!h) return Err(EBADF, "read: no open file " + std::to_string(fh));
  if (h->control) return ControlRead(*h, off, buf, len);
  if (h->internal && h->ino == kAccessLogIno) {
    std::string lines = access_log_.Read(h->log_reader, len, kAccessLogWaitNs);
    std::copy_n(lines.data(), lines.size(), buf);
    return lines.size();
  }
  if (h->internal) {
    if (off >= h->content.size()) return size_t{0};
    size_t n = std::min(len, h->content.size() - off);
    std::copy_n(h->content.data() + off, n, buf);
    return n;
  }
  if ((h->flags & O_ACCMODE) == O_WRONLY && !options_.writeback_cache) {
    return Err(EBADF, "read: inode " + std::to_string(ino) + " is open write-only");
  }
  auto read = [&](uint64_t file_len) {
    return pieces ? chunks_->ReadPieces(ino, off, buf, len, file_len, pieces)
                  : chunks_->Read(ino, off, buf, len, file_len);
  };
  Attr attr;
  size_t n = 0;
  bool known = false;  // the handle's attributes cover this read: no need to ask Meta
  {
    std::lock_guard<std::mutex> lock(h->attr_mu);
    if (h->attr_valid && off + len <= h->attr.length &&
        h->attr_epoch == change_epoch_.load(std::memory_order_acquire) &&
        MonoNanos() - h->attr_ns < kHandleAttrTtlNs) {
      attr = h->attr;
      known = true;
    }
  }
  if (known) {
    // Inside the committed length: the bytes are there (written, or a hole), so the read is full.
    NX_ASSIGN_OR_RETURN(n, read(attr.length));
  } else {
    for (int attempt = 0;; ++attempt) {
      const uint64_t epoch = change_epoch_.load(std::memory_order_acquire);
      const uint64_t commits = chunks_->Commits();
      NX_ASSIGN_OR_RETURN(attr, meta_->GetAttr(ino));
      NX_ASSIGN_OR_RETURN(n, read(attr.length));
      // Short means EOF, at the committed length or at the end of this client's pending writes.
      // A commit of those writes between GetAttr and Read (a flush by another thread, such as a
      // release) drops them from the pending ones after the length was read: both miss the end.
      if (n == len || attempt == 3 || chunks_->Commits() == commits) {
        std::lock_guard<std::mutex> lock(h->attr_mu);
        h->attr = attr;
        h->attr_epoch = epoch;
        h->attr_ns = MonoNanos();
        h->attr_valid = true;
        break;
      }
    }
  }
  bytes_read_.fetch_add(n, std::memory_order_relaxed);
  if (auto updated = UpdateAtime(ino, attr)) {
    std::lock_guard<std::mutex> lock(h->attr_mu);
    h->attr.atime = updated->atime;
  }
  return n;
}

Result<size_t> Vfs::Write(const Context& ctx, Ino ino, uint64_t fh, uint64_t off, const char* data,
                          size_t len) {
  Count(Op::kWrite);
  auto h = FindFile(fh);
  if (!h) return Err(EBADF, "write: no open file " + std::to_string(fh));
  if (h->control) return ControlWrite(ctx, *h, data, len);
  if (h->internal) return Err(EBADF, "internal files are read-only");
  if (!h->Writable() && !options_.writeback_cache) {
    return Err(EBADF, "write: inode " + std::to_string(ino) + " is open read-only");
  }
  NX_TRY(CheckWritable());
  if (off + len < off || off + len > (1ULL << 50)) {
    return Err(EFBIG, "write past the largest file size at inode " + std::to_string(ino));
  }
  h->wrote.store(true, std::memory_order_relaxed);
  if ((h->flags & O_APPEND) && !options_.writeback_cache) {
    // The offset the kernel computed comes from its cached size; append at the real end.
    std::lock_guard<std::mutex> lock(append_mu_);
    NX_ASSIGN_OR_RETURN(uint64_t end, CurrentLength(ino));
    NX_TRY(chunks_->Write(ino, end, data, len));
  } else {
    NX_TRY(chunks_->Write(ino, off, data, len));
  }
  bytes_written_.fetch_add(len, std::memory_order_relaxed);
  FileChanged();
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_mtime_[ino] = NowNanos();
  }
  return len;
}

Status Vfs::Flush(const Context& ctx, Ino ino, uint64_t fh, uint64_t lock_owner) {
  Count(Op::kFlush);
  auto h = FindFile(fh);
  if (!h) return Status::Errno(EBADF, "flush: no open file " + std::to_string(fh));
  if (h->internal) return Status::OK();
  Status s = h->wrote.load() ? FlushData(ino) : Status::OK();
  bool had_locks = false;
  {
    std::lock_guard<std::mutex> lock(lock_owners_mu_);
    auto it = lock_owners_.find(ino);
    if (it != lock_owners_.end() && it->second.erase(lock_owner)) {
      had_locks = true;
      if (it->second.empty()) lock_owners_.erase(it);
    }
  }
  if (had_locks) {
    meta::PosixLock all{meta::LockType::kUnlock, 0, UINT64_MAX, ctx.pid};
    Status u = meta_->SetLk(ino, lock_owner, all);
    if (!u.ok()) NX_LOG_WARN("unlock of inode {} at close: {}", ino, u.ToString());
  }
  return s;
}

Status Vfs::Release(Ino ino, uint64_t fh, std::optional<uint64_t> flock_owner) {
  Count(Op::kRelease);
  std::shared_ptr<FileHandle> h;
  {
    std::lock_guard<std::mutex> lock(handles_mu_);
    auto it = files_.find(fh);
    if (it == files_.end())
      return Status::Errno(EBADF, "release: no open file " + std::to_string(fh));
    h = std::move(it->second);
    files_.erase(it);
    open_files_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (h->internal) {
    if (h->log_reader) access_log_.CloseReader(h->log_reader);
    return Status::OK();
  }
  Status s = h->wrote.load() ? FlushData(ino) : Status::OK();
  if (flock_owner) {
    Status u = meta_->Flock(ino, *flock_owner, meta::LockType::kUnlock);
    if (!u.ok()) NX_LOG_WARN("flock unlock of inode {} at release: {}", ino, u.ToString());
  }
  if (h->wrote.load() && s.ok() && !options_.sole_client) {
    if (auto attr = meta_->GetAttr(ino)) RememberSeen(ino, *attr);
  }
  // The kernel does not wait for a release: the engine records go in a later batch.
  Status c = meta_->CloseDeferred(ino);
  if (!c.ok()) NX_LOG_WARN("close of inode {}: {}", ino, c.ToString());
  return s.ok() ? c : s;
}

Status Vfs::Fsync(Ino ino, uint64_t fh, bool datasync) {
  Count(Op::kFsync);
  if (IsInternalIno(ino)) return Status::OK();
  NX_TRY(FlushData(ino));
  NX_TRY(chunks_->Sync());  // writeback: the staged blocks the commits point to
  return meta_->Sync();
}

Status Vfs::Fallocate(const Context& ctx, Ino ino, int mode, uint64_t off, uint64_t len) {
  Count(Op::kFallocate);
  if (IsInternalIno(ino)) return Status::Errno(EPERM, "internal files cannot be changed");
  NX_TRY(CheckWritable());
  NX_TRY(FlushData(ino));
  Status s = meta_->Fallocate(ctx, ino, mode, off, len);
  chunks_->Invalidate(ino);
  FileChanged();
  return s;
}

Result<uint64_t> Vfs::CopyFileRange(const Context& ctx, Ino in, uint64_t off_in, Ino out,
                                    uint64_t off_out, uint64_t len) {
  Count(Op::kCopyRange);
  if (IsInternalIno(in) || IsInternalIno(out)) {
    return Err(EXDEV, "internal files cannot be copied by reference");
  }
  NX_TRY(CheckWritable());
  NX_TRY(FlushData(in));
  if (out != in) NX_TRY(FlushData(out));
  auto r = meta_->CopyRange(ctx, in, off_in, out, off_out, len);
  chunks_->Invalidate(out);
  FileChanged();
  return r;
}

Result<uint64_t> Vfs::Lseek(Ino ino, uint64_t fh, uint64_t off, int whence) {
  Count(Op::kLseek);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    return Err(EINVAL, "lseek: only SEEK_DATA and SEEK_HOLE are served by the file system");
  }
  if (IsInternalIno(ino)) return Err(ENXIO, "internal files do not support SEEK_DATA/HOLE");
  NX_TRY(FlushData(ino));
  NX_ASSIGN_OR_RETURN(Attr attr, meta_->GetAttr(ino));
  uint64_t length = attr.length;
  if (off >= length) return Err(ENXIO, "lseek: offset at or past the end of the file");
  for (uint64_t index = off / meta::kChunkSize; index * meta::kChunkSize < length; ++index) {
    uint64_t base = index * meta::kChunkSize;
    uint64_t pos = off > base ? off - base : 0;
    NX_ASSIGN_OR_RETURN(auto records, meta_->ReadChunk(ino, static_cast<uint32_t>(index)));
    for (const meta::Slice& p : meta::BuildSliceView(records)) {
      uint64_t end = uint64_t{p.pos} + p.len;
      if (end <= pos) continue;
      if (whence == SEEK_DATA && p.id != 0) {
        uint64_t start = base + std::max<uint64_t>(p.pos, pos);
        if (start >= length) break;  // stale records past EOF are not data
        return start;
      }
      if (whence == SEEK_HOLE) {
        if (p.pos > pos || p.id == 0)
          return std::min(base + std::max<uint64_t>(p.pos, pos), length);
        pos = end;
      }
    }
    if (whence == SEEK_HOLE && pos < meta::kChunkSize) return std::min(base + pos, length);
  }
  if (whence == SEEK_DATA) return Err(ENXIO, "lseek: no data past the offset");
  return length;
}

Result<meta::PosixLock> Vfs::GetLk(Ino ino, uint64_t owner, const meta::PosixLock& probe) {
  Count(Op::kLock);
  if (IsInternalIno(ino)) return meta::PosixLock{};
  return meta_->GetLk(ino, owner, probe);
}

Status Vfs::WaitLock(Ino ino, const std::function<Status()>& attempt, bool wait,
                     const Interrupted& interrupted) {
  for (;;) {
    Status s = attempt();
    if (s.code() != EAGAIN || !wait) return s;
    if (interrupted && interrupted()) {
      return Status::Errno(EINTR, "lock wait on inode " + std::to_string(ino) + " interrupted");
    }
    meta_->WaitLockChange(ino, kLockWaitSliceNs);
  }
}

void Vfs::WaitLockChange(Ino ino, int64_t timeout_ns) { meta_->WaitLockChange(ino, timeout_ns); }

Status Vfs::SetLk(Ino ino, uint64_t owner, const meta::PosixLock& lock, bool wait,
                  const Interrupted& interrupted) {
  Count(Op::kLock);
  if (IsInternalIno(ino)) return Status::Errno(EPERM, "internal files cannot be locked");
  if (lock.type != meta::LockType::kUnlock) {
    std::lock_guard<std::mutex> guard(lock_owners_mu_);
    lock_owners_[ino].insert(owner);
  }
  return WaitLock(
      ino, [&] { return meta_->SetLk(ino, owner, lock); }, wait, interrupted);
}

Status Vfs::Flock(Ino ino, uint64_t owner, meta::LockType type, bool wait,
                  const Interrupted& interrupted) {
  Count(Op::kLock);
  if (IsInternalIno(ino)) return Status::Errno(EPERM, "internal files cannot be locked");
  return WaitLock(
      ino, [&] { return meta_->Flock(ino, owner, type); }, wait, interrupted);
}

}  // namespace nexus::vfs
