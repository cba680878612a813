// The libfuse3 low-level operations: translate a request, call the Vfs, reply exactly once.
#include "fuse/fuse_ops.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/xattr.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "chunk/chunk_store.h"
#include "common/logging.h"
#include "fuse/fuse_server.h"
#include "fuse/fuse_trace.h"
#include "fuse/lock_waiter.h"
#include "meta/types.h"
#include "vfs/vfs.h"

namespace nexus::fuse {
namespace {

using meta::Attr;
using meta::Context;

FuseServer* Server(fuse_req_t req) { return static_cast<FuseServer*>(fuse_req_userdata(req)); }
vfs::Vfs* V(fuse_req_t req) { return Server(req)->vfs(); }

Context MakeContext(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  Context ctx;
  ctx.uid = c->uid;
  ctx.gid = c->gid;
  ctx.pid = static_cast<uint32_t>(c->pid);
  ctx.umask = c->umask;
  if (c->uid != 0) {  // root passes permission checks; others need their groups
    gid_t groups[64];
    int n = fuse_req_getgroups(req, 64, groups);
    for (int i = 0; i < n && i < 64; ++i) ctx.gids.push_back(groups[i]);
  }
  return ctx;
}

void ReplyErr(fuse_req_t req, const Status& s, const char* op) {
  if (s.code() != ENOENT && s.code() != EEXIST && s.code() != ENODATA && s.code() != EAGAIN) {
    NX_LOG_DEBUG("{}: {}", op, s.ToString());
  }
  NoteReplyError(s.ToErrno());
  fuse_reply_err(req, s.ToErrno());
}

struct timespec ToTimespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_sec -= 1;
    ts.tv_nsec += 1000000000;
  }
  return ts;
}

struct stat ToStat(fuse_ino_t ino, const Attr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = ino;
  st.st_mode = a.StMode();
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = a.rdev;
  st.st_size = static_cast<off_t>(a.length);
  st.st_blksize = 4096;
  st.st_blocks = static_cast<blkcnt_t>((a.length + 511) / 512);
  st.st_atim = ToTimespec(a.atime);
  st.st_mtim = ToTimespec(a.mtime);
  st.st_ctim = ToTimespec(a.ctime);
  return st;
}

fuse_entry_param ToEntry(const meta::Entry& e, const FuseOptions& o) {
  fuse_entry_param p;
  std::memset(&p, 0, sizeof(p));
  p.ino = e.ino;
  p.generation = 1;
  p.attr = ToStat(e.ino, e.attr);
  p.attr_timeout = o.attr_timeout;
  p.entry_timeout = e.attr.type == meta::FileType::kDir ? o.dir_entry_timeout : o.entry_timeout;
  return p;
}

void ReplyEntry(fuse_req_t req, const Result<meta::Entry>& r, const char* op) {
  if (!r) return ReplyErr(req, r.error(), op);
  fuse_entry_param p = ToEntry(*r, Server(req)->options());
  fuse_reply_entry(req, &p);
}

// ---- namespace ----

void OpInit(void* userdata, struct fuse_conn_info* conn) {
  auto* server = static_cast<FuseServer*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  want(FUSE_CAP_FLOCK_LOCKS);
  want(FUSE_CAP_POSIX_LOCKS);
  // No splice of requests: write data would be copied into a pipe by the kernel and out of it
  // by us; a plain read of the request is one copy, and write_buf then uses it in place.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_MOVE);
  want(FUSE_CAP_SPLICE_WRITE);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_PARALLEL_DIROPS);
  if (server->options().auto_inval_data) {
    want(FUSE_CAP_AUTO_INVAL_DATA);
  } else {
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  }
  // Always readdirplus (a directory handle serves one kind of batch best); O_TRUNC arrives as
  // setattr; the kernel clears suid/sgid itself.
  conn->want &= ~(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_HANDLE_KILLPRIV);
  if (server->options().writeback_cache) {
    want(FUSE_CAP_WRITEBACK_CACHE);
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  conn->max_write = 1 << 20;
  NX_LOG_INFO(
      "FUSE connection: protocol {}.{}, max_write {}, writeback_cache {}, auto_inval_data {}",
      conn->proto_major, conn->proto_minor, conn->max_write,
      (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? "on" : "off",
      (conn->want & FUSE_CAP_AUTO_INVAL_DATA) ? "on" : "off");
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, V(req)->Lookup(MakeContext(req), parent, name), "lookup");
}

void OpForget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }

void OpForgetMulti(fuse_req_t req, size_t, struct fuse_forget_data*) { fuse_reply_none(req); }

void OpGetAttr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
  auto r = V(req)->GetAttr(ino);
  if (!r) return ReplyErr(req, r.error(), "getattr");
  struct stat st = ToStat(ino, *r);
  fuse_reply_attr(req, &st, Server(req)->options().attr_timeout);
}

meta::SetAttrRequest ToSetAttr(const struct stat* st, int to_set) {
  meta::SetAttrRequest r;
  if (to_set & FUSE_SET_ATTR_MODE) r.mask |= meta::kSetMode, r.mode = st->st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) r.mask |= meta::kSetUid, r.uid = st->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) r.mask |= meta::kSetGid, r.gid = st->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) r.mask |= meta::kSetSize, r.size = st->st_size;
  auto ns = [](const struct timespec& ts) { return ts.tv_sec * 1000000000LL + ts.tv_nsec; };
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    r.mask |= meta::kSetAtimeNow;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    r.mask |= meta::kSetAtime, r.atime = ns(st->st_atim);
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    r.mask |= meta::kSetMtimeNow;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    r.mask |= meta::kSetMtime, r.mtime = ns(st->st_mtim);
  }
  if (to_set & FUSE_SET_ATTR_CTIME) r.mask |= meta::kSetCtime, r.ctime = ns(st->st_ctim);
  return r;
}

void OpSetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               struct fuse_file_info* fi) {
  auto r = V(req)->SetAttr(MakeContext(req), ino, ToSetAttr(attr, to_set), fi ? fi->fh : 0);
  if (!r) return ReplyErr(req, r.error(), "setattr");
  struct stat st = ToStat(ino, *r);
  fuse_reply_attr(req, &st, Server(req)->options().attr_timeout);
}

void OpReadLink(fuse_req_t req, fuse_ino_t ino) {
  auto r = V(req)->ReadLink(MakeContext(req), ino);
  if (!r) return ReplyErr(req, r.error(), "readlink");
  fuse_reply_readlink(req, r->c_str());
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntry(req, V(req)->Mknod(MakeContext(req), parent, name, mode, rdev), "mknod");
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, V(req)->Mkdir(MakeContext(req), parent, name, mode), "mkdir");
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = V(req)->Unlink(MakeContext(req), parent, name);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "unlink");
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = V(req)->Rmdir(MakeContext(req), parent, name);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "rmdir");
}

void OpSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, V(req)->Symlink(MakeContext(req), parent, name, target), "symlink");
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  Status s = V(req)->Rename(MakeContext(req), parent, name, newparent, newname, flags);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "rename");
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  ReplyEntry(req, V(req)->Link(MakeContext(req), ino, newparent, newname), "link");
}

void OpStatFs(fuse_req_t req, fuse_ino_t ino) {
  auto r = V(req)->StatFs(ino);
  if (!r) return ReplyErr(req, r.error(), "statfs");
  struct statvfs sv;
  std::memset(&sv, 0, sizeof(sv));
  constexpr uint64_t kBlock = 4096;
  sv.f_bsize = kBlock;
  sv.f_frsize = kBlock;
  sv.f_blocks = r->total_space / kBlock;
  sv.f_bfree = r->avail_space / kBlock;
  sv.f_bavail = r->avail_space / kBlock;
  sv.f_files = r->used_inodes + r->avail_inodes;
  sv.f_ffree = r->avail_inodes;
  sv.f_favail = r->avail_inodes;
  sv.f_namemax = meta::kMaxNameLen;
  fuse_reply_statfs(req, &sv);
}

void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Status s = V(req)->Access(MakeContext(req), ino, mask);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "access");
}

// ---- xattrs ----

void OpSetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Status s = V(req)->SetXattr(MakeContext(req), ino, name, std::string_view(value, size), flags);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "setxattr");
}

void OpGetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto r = V(req)->GetXattr(MakeContext(req), ino, name);
  if (!r) return ReplyErr(req, r.error(), "getxattr");
  if (size == 0) return (void)fuse_reply_xattr(req, r->size());
  if (r->size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, r->data(), r->size());
}

void OpListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto r = V(req)->ListXattr(MakeContext(req), ino);
  if (!r) return ReplyErr(req, r.error(), "listxattr");
  std::string names;
  for (const std::string& n : *r) names.append(n).push_back('\0');
  if (size == 0) return (void)fuse_reply_xattr(req, names.size());
  if (names.size() > size) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, names.data(), names.size());
}

void OpRemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Status s = V(req)->RemoveXattr(MakeContext(req), ino, name);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "removexattr");
}

// ---- files ----

void FillOpen(struct fuse_file_info* fi, const vfs::OpenResult& r) {
  fi->fh = r.fh;
  fi->keep_cache = r.keep_cache ? 1 : 0;
  fi->direct_io = r.direct_io ? 1 : 0;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto r = V(req)->Open(MakeContext(req), ino, fi->flags);
  if (!r) return ReplyErr(req, r.error(), "open");
  FillOpen(fi, *r);
  if (!r->keep_cache && !r->direct_io && !Server(req)->options().writeback_cache) {
    // Close-to-open: the file may have changed elsewhere, and the open reply carries no
    // attributes; make the kernel fetch them again instead of trusting a cached size. (Attribute
    // invalidation takes no inode lock, so it is safe inside this request.)
    fuse_lowlevel_notify_inval_inode(Server(req)->session(), ino, -1, 0);
  }
  if (fuse_reply_open(req, fi) == -ENOENT) {  // the opener was interrupted: undo the open
    (void)V(req)->Release(ino, r->fh, std::nullopt);
  }
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              struct fuse_file_info* fi) {
  auto r = V(req)->Create(MakeContext(req), parent, name, mode, fi->flags);
  if (!r) return ReplyErr(req, r.error(), "create");
  FillOpen(fi, r->open);
  fuse_entry_param p = ToEntry(r->entry, Server(req)->options());
  if (fuse_reply_create(req, &p, fi) == -ENOENT) {
    (void)V(req)->Release(r->entry.ino, r->open.fh, std::nullopt);
  }
}

// A worker's buffer for the bytes of a read that are not in a cached block (kept across requests:
// a fresh 1 MiB allocation per read costs page faults).
char* ReadBuffer(size_t size) {
  thread_local std::unique_ptr<char[]> buf;
  thread_local size_t capacity = 0;
  if (capacity < size) {
    buf.reset(new char[size]);
    capacity = size;
  }
  return buf.get();
}

constexpr size_t kMaxReplyPieces = 256;

// The reply points into the cached blocks (pieces) instead of copying them into a buffer first:
// the kernel's copy out of the reply is the only one.
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  thread_local std::vector<chunk::ReadPiece> pieces;
  thread_local std::vector<struct iovec> iov;
  char* buf = ReadBuffer(size);
  auto r =
      V(req)->Read(MakeContext(req), ino, fi->fh, static_cast<uint64_t>(off), buf, size, &pieces);
  if (!r) {
    pieces.clear();
    return ReplyErr(req, r.error(), "read");
  }
  // A range of many small slices goes out as one buffer (writev takes at most IOV_MAX pieces).
  if (pieces.size() > kMaxReplyPieces) {
    size_t at = 0;
    for (const chunk::ReadPiece& p : pieces) {
      if (p.data != buf + at) std::memcpy(buf + at, p.data, p.len);
      at += p.len;
    }
    pieces.clear();
  }
  if (pieces.empty()) return (void)fuse_reply_buf(req, buf, *r);
  iov.clear();
  for (const chunk::ReadPiece& p : pieces) {
    iov.push_back(iovec{const_cast<char*>(p.data), p.len});
  }
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
  pieces.clear();  // releases the blocks
}

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec* in, off_t off,
                struct fuse_file_info* fi) {
  size_t size = fuse_buf_size(in);
  if (in->count == 1 && in->idx == 0 && in->off == 0 && !(in->buf[0].flags & FUSE_BUF_IS_FD)) {
    // The data is already in memory (libfuse read the request into its buffer): no copy.
    auto r = V(req)->Write(MakeContext(req), ino, fi->fh, static_cast<uint64_t>(off),
                           static_cast<const char*>(in->buf[0].mem), size);
    if (!r) return ReplyErr(req, r.error(), "write");
    return (void)fuse_reply_write(req, *r);
  }
  std::unique_ptr<char[]> buf(new char[size > 0 ? size : 1]);
  struct fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
  dst.buf[0].mem = buf.get();
  ssize_t copied = fuse_buf_copy(&dst, in, static_cast<enum fuse_buf_copy_flags>(0));
  if (copied < 0) return (void)fuse_reply_err(req, static_cast<int>(-copied));
  auto r = V(req)->Write(MakeContext(req), ino, fi->fh, static_cast<uint64_t>(off), buf.get(),
                         static_cast<size_t>(copied));
  if (!r) return ReplyErr(req, r.error(), "write");
  fuse_reply_write(req, *r);
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Status s = V(req)->Flush(MakeContext(req), ino, fi->fh, fi->lock_owner);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "flush");
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  std::optional<uint64_t> flock_owner;
  if (fi->flock_release) flock_owner = fi->lock_owner;
  Status s = V(req)->Release(ino, fi->fh, flock_owner);
  if (!s.ok()) NX_LOG_WARN("release of inode {}: {}", ino, s.ToString());
  fuse_reply_err(req, s.ok() ? 0 : s.ToErrno());
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info* fi) {
  Status s = V(req)->Fsync(ino, fi ? fi->fh : 0, datasync != 0);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "fsync");
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 struct fuse_file_info*) {
  if (offset < 0 || length <= 0) return (void)fuse_reply_err(req, EINVAL);
  Status s = V(req)->Fallocate(MakeContext(req), ino, mode, static_cast<uint64_t>(offset),
                               static_cast<uint64_t>(length));
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "fallocate");
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info*,
                     fuse_ino_t ino_out, off_t off_out, struct fuse_file_info*, size_t len,
                     int flags) {
  if (flags != 0) return (void)fuse_reply_err(req, EINVAL);
  auto r = V(req)->CopyFileRange(MakeContext(req), ino_in, static_cast<uint64_t>(off_in), ino_out,
                                 static_cast<uint64_t>(off_out), len);
  if (!r) return ReplyErr(req, r.error(), "copy_file_range");
  fuse_reply_write(req, *r);
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi) {
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  auto r = V(req)->Lseek(ino, fi->fh, static_cast<uint64_t>(off), whence);
  if (!r) return ReplyErr(req, r.error(), "lseek");
  fuse_reply_lseek(req, static_cast<off_t>(*r));
}

// ---- directories ----

void OpOpenDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto r = V(req)->OpenDir(MakeContext(req), ino, fi->flags);
  if (!r) return ReplyErr(req, r.error(), "opendir");
  fi->fh = *r;
  if (fuse_reply_open(req, fi) == -ENOENT) (void)V(req)->ReleaseDir(ino, *r);
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info* fi, bool plus) {
  std::unique_ptr<char[]> buf(new char[size]);
  size_t used = 0;
  const FuseOptions& o = Server(req)->options();
  auto fill = [&](const meta::DirEntry& e, uint64_t next) -> bool {
    size_t need;
    if (plus) {
      fuse_entry_param p = ToEntry(meta::Entry{e.ino, e.attr}, o);
      need = fuse_add_direntry_plus(req, buf.get() + used, size - used, e.name.c_str(), &p,
                                    static_cast<off_t>(next));
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = e.ino;
      st.st_mode = meta::ModeFromFileType(e.type);
      need = fuse_add_direntry(req, buf.get() + used, size - used, e.name.c_str(), &st,
                               static_cast<off_t>(next));
    }
    if (need > size - used) return false;
    used += need;
    return true;
  };
  Status s = V(req)->ReadDir(MakeContext(req), ino, fi->fh, static_cast<uint64_t>(off), plus, fill);
  // Entries already placed are returned even if a later batch failed; the error comes next time.
  if (!s.ok() && used == 0) return ReplyErr(req, s, "readdir");
  fuse_reply_buf(req, buf.get(), used);
}

void OpReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, false);
}

void OpReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, true);
}

void OpReleaseDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Status s = V(req)->ReleaseDir(ino, fi->fh);
  fuse_reply_err(req, s.ok() ? 0 : s.ToErrno());
}

void OpFsyncDir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info*) {
  Status s = V(req)->FsyncDir(ino, datasync != 0);
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "fsyncdir");
}

// ---- locks ----

meta::LockType FromFcntlType(short type) {
  if (type == F_RDLCK) return meta::LockType::kRead;
  if (type == F_WRLCK) return meta::LockType::kWrite;
  return meta::LockType::kUnlock;
}

// libfuse hands locks over as start + length (0 = to EOF); meta uses inclusive ends.
meta::PosixLock FromFlock(const struct flock* l) {
  meta::PosixLock p;
  p.type = FromFcntlType(l->l_type);
  p.start = static_cast<uint64_t>(l->l_start);
  p.end = l->l_len == 0 ? UINT64_MAX : p.start + static_cast<uint64_t>(l->l_len) - 1;
  p.pid = static_cast<uint32_t>(l->l_pid);
  return p;
}

void OpGetLk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi, struct flock* lock) {
  auto r = V(req)->GetLk(ino, fi->lock_owner, FromFlock(lock));
  if (!r) return ReplyErr(req, r.error(), "getlk");
  struct flock out = *lock;
  if (r->type == meta::LockType::kUnlock) {
    out.l_type = F_UNLCK;
  } else {
    out.l_type = r->type == meta::LockType::kRead ? F_RDLCK : F_WRLCK;
    out.l_whence = SEEK_SET;
    out.l_start = static_cast<off_t>(r->start);
    out.l_len = r->end == UINT64_MAX ? 0 : static_cast<off_t>(r->end - r->start + 1);
    out.l_pid = static_cast<pid_t>(r->pid);
  }
  fuse_reply_lock(req, &out);
}

void OpSetLk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi, struct flock* lock,
             int sleep) {
  vfs::Vfs* v = V(req);
  uint64_t owner = fi->lock_owner;
  meta::PosixLock l = FromFlock(lock);
  Status s = v->SetLk(ino, owner, l, false, nullptr);
  if (s.code() == EAGAIN && sleep) {  // F_SETLKW: wait without holding this worker
    return Server(req)->lock_waiter()->Add(
        req, ino, [v, ino, owner, l] { return v->SetLk(ino, owner, l, false, nullptr); });
  }
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "setlk");
}

void OpFlock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi, int op) {
  meta::LockType type = meta::LockType::kUnlock;
  if (op & LOCK_SH) type = meta::LockType::kRead;
  if (op & LOCK_EX) type = meta::LockType::kWrite;
  vfs::Vfs* v = V(req);
  uint64_t owner = fi->lock_owner;
  Status s = v->Flock(ino, owner, type, false, nullptr);
  if (s.code() == EAGAIN && (op & LOCK_NB) == 0) {
    return Server(req)->lock_waiter()->Add(
        req, ino, [v, ino, owner, type] { return v->Flock(ino, owner, type, false, nullptr); });
  }
  s.ok() ? (void)fuse_reply_err(req, 0) : ReplyErr(req, s, "flock");
}

struct fuse_lowlevel_ops MakeOps() {
  struct fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.lookup = Traced<"lookup", OpLookup>::Call;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = Traced<"getattr", OpGetAttr>::Call;
  ops.setattr = Traced<"setattr", OpSetAttr>::Call;
  ops.readlink = Traced<"readlink", OpReadLink>::Call;
  ops.mknod = Traced<"mknod", OpMknod>::Call;
  ops.mkdir = Traced<"mkdir", OpMkdir>::Call;
  ops.unlink = Traced<"unlink", OpUnlink>::Call;
  ops.rmdir = Traced<"rmdir", OpRmdir>::Call;
  ops.symlink = Traced<"symlink", OpSymlink>::Call;
  ops.rename = Traced<"rename", OpRename>::Call;
  ops.link = Traced<"link", OpLink>::Call;
  ops.open = Traced<"open", OpOpen>::Call;
  ops.create = Traced<"create", OpCreate>::Call;
  ops.read = Traced<"read", OpRead>::Call;
  ops.write_buf = Traced<"write_buf", OpWriteBuf>::Call;
  ops.flush = Traced<"flush", OpFlush>::Call;
  ops.release = Traced<"release", OpRelease>::Call;
  ops.fsync = Traced<"fsync", OpFsync>::Call;
  ops.opendir = Traced<"opendir", OpOpenDir>::Call;
  ops.readdir = Traced<"readdir", OpReadDir>::Call;
  ops.readdirplus = Traced<"readdirplus", OpReadDirPlus>::Call;
  ops.releasedir = Traced<"releasedir", OpReleaseDir>::Call;
  ops.fsyncdir = Traced<"fsyncdir", OpFsyncDir>::Call;
  ops.statfs = Traced<"statfs", OpStatFs>::Call;
  ops.setxattr = Traced<"setxattr", OpSetXattr>::Call;
  ops.getxattr = Traced<"getxattr", OpGetXattr>::Call;
  ops.listxattr = Traced<"listxattr", OpListXattr>::Call;
  ops.removexattr = Traced<"removexattr", OpRemoveXattr>::Call;
  ops.access = Traced<"access", OpAccess>::Call;
  ops.getlk = Traced<"getlk", OpGetLk>::Call;
  ops.setlk = Traced<"setlk", OpSetLk>::Call;
  ops.flock = Traced<"flock", OpFlock>::Call;
  ops.fallocate = Traced<"fallocate", OpFallocate>::Call;
  ops.copy_file_range = Traced<"copy_file_range", OpCopyFileRange>::Call;
  ops.lseek = Traced<"lseek", OpLseek>::Call;
  return ops;
}

}  // namespace

const struct fuse_lowlevel_ops& LowLevelOps() {
  static const struct fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace nexus::fuse
