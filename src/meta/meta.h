// Meta: every POSIX metadata operation, each one transaction over kv::Engine.
//
// Contract for all methods:
//  - Thread-safe; any number of callers at once.
//  - Errors are errno-valued Statuses (ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, EINVAL,
//    ELOOP, EACCES, EPERM, ENAMETOOLONG, ENOSPC, EDQUOT, EXDEV, ...) whose message names the
//    object. Engine failures come back as EIO/EBUSY with the engine's message.
//  - Every change is atomic: it happens completely or not at all, whatever other clients do.
//  - Names are single path components: no '/', not "." or "..", at most kMaxNameLen bytes.
//  - Permission checks follow POSIX with ctx.uid/gid/gids when ctx.check_permission is set.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "meta/types.h"

namespace nexus::kv {
class Engine;
}

namespace nexus::meta {

struct MetaOptions {
  // Inodes and slice ids are taken from the engine's counters in batches of this size.
  uint32_t ino_batch = 1024;
  uint32_t slice_batch = 4096;
  bool read_only = false;
  // Mount-level subdirectory: operations see this inode as the root. 0 = the volume root.
  Ino subdir_root = 0;
  // This Meta is the only client of its engine (the mount's): when the engine is single-process
  // too (kv::Engine::SingleProcess), which files are open is kept in memory only, and the open
  // records O<ino><sid> and SS<sid><ino> are written only for a file unlinked while open (so a
  // crash still leaves it for the session cleanup to remove), not on every first open and last
  // close. Never set it for one of several clients of one engine: their unlinks could not see
  // this client's open files.
  bool sole_client = false;
};

class Meta {
 public:
  // Wraps an opened engine. Does not read the volume: call Load() (or Format()) next.
  static std::unique_ptr<Meta> Create(std::unique_ptr<kv::Engine> engine, MetaOptions options = {});
  virtual ~Meta() = default;

  virtual kv::Engine* engine() = 0;

  // ---- volume ----
  // Writes the volume settings and the root directory. Fails with EEXIST when the engine
  // already holds a volume, unless `force` (which keeps the data, and may only change
  // settings that are safe to change; the name and UUID are kept). Synced to disk.
  virtual Status Format(const meta::Format& format, bool force) = 0;
  // Reads and checks the settings (ENOENT "not formatted" when absent).
  virtual Result<meta::Format> Load() = 0;
  // The settings read by the last Load/Format.
  virtual const meta::Format& format() const = 0;
  // Replaces the settings (capacity, inodes, trash days...) with `format`, atomically.
  virtual Status UpdateFormat(const meta::Format& format) = 0;
  virtual Result<StatFs> GetStatFs(Ino ino) = 0;
  // Makes every committed change durable against power loss.
  virtual Status Sync() = 0;

  // ---- sessions ----
  virtual Result<uint64_t> NewSession(const SessionInfo& info) = 0;
  virtual Status Heartbeat() = 0;
  // Ends this client's session: releases its locks and deletes its open-but-unlinked files.
  virtual Status CloseSession() = 0;
  virtual Result<std::vector<SessionInfo>> ListSessions() = 0;
  // Cleans every session whose heartbeat is older than its recorded SessionInfo::timeout, or
  // than `timeout_ns` when it recorded none; returns how many. Never cleans this client's own.
  virtual Result<int> CleanStaleSessions(int64_t timeout_ns) = 0;

  // ---- namespace ----
  virtual Result<Entry> Lookup(const Context& ctx, Ino parent, std::string_view name) = 0;
  virtual Result<Attr> GetAttr(Ino ino) = 0;
  // Changes what req.mask selects; size changes go through Truncate's rules. Returns the new
  // attributes.
  virtual Result<Attr> SetAttr(const Context& ctx, Ino ino, const SetAttrRequest& req) = 0;
  virtual Status Access(const Context& ctx, Ino ino, int mask) = 0;  // R_OK|W_OK|X_OK|F_OK
  // mode: permission bits (07777); ctx.umask is applied. rdev for devices.
  virtual Result<Entry> Mknod(const Context& ctx, Ino parent, std::string_view name, FileType type,
                              uint32_t mode, uint32_t rdev) = 0;
  virtual Result<Entry> Mkdir(const Context& ctx, Ino parent, std::string_view name,
                              uint32_t mode) = 0;
  // Creates a regular file and opens it (as Open would, with `flags`). With O_EXCL an existing
  // name fails with EEXIST; without it an existing file is opened instead.
  virtual Result<Entry> Create(const Context& ctx, Ino parent, std::string_view name, uint32_t mode,
                               int flags) = 0;
  virtual Result<Entry> Symlink(const Context& ctx, Ino parent, std::string_view name,
                                std::string_view target) = 0;
  virtual Result<std::string> ReadLink(Ino ino) = 0;
  virtual Result<Entry> Link(const Context& ctx, Ino ino, Ino new_parent,
                             std::string_view new_name) = 0;
  virtual Status Unlink(const Context& ctx, Ino parent, std::string_view name) = 0;
  virtual Status Rmdir(const Context& ctx, Ino parent, std::string_view name) = 0;
  // Removes the entry `name` of directory `parent` and, when it is a directory, everything under
  // it, as unlink/rmdir by `ctx` would (same permission checks, sticky bit, open-but-unlinked
  // files kept until their last close, data queued for deletion, counters updated), in many
  // transactions of bounded size (a tree of millions of entries never makes one huge
  // transaction). `progress`, if set, is called now and then with the number of entries removed
  // so far. Returns the number of entries removed. A concurrent change from another client
  // (an entry added meanwhile) is handled: the directory is re-listed until empty.
  virtual Result<uint64_t> RemoveTree(const Context& ctx, Ino parent, std::string_view name,
                                      const std::function<void(uint64_t)>& progress = {}) = 0;
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE. Moving a directory into its own subtree
  // fails with EINVAL; the ancestry check runs inside the transaction.
  virtual Status Rename(const Context& ctx, Ino parent, std::string_view name, Ino new_parent,
                        std::string_view new_name, uint32_t flags) = 0;
  // Lists `dir` in name order starting after `after` ("" = from the start), at most `limit`
  // entries (0 = no limit), without "." and "..". With `plus`, fills each entry's attr.
  virtual Status ReadDir(const Context& ctx, Ino dir, std::string_view after, size_t limit,
                         bool plus, std::vector<DirEntry>* out) = 0;

  // ---- open files ----
  // Checks permission for `flags` (O_RDONLY/O_WRONLY/O_RDWR, O_TRUNC...) and registers the
  // open so that an unlinked inode survives until its last Close. Returns fresh attributes.
  virtual Result<Attr> Open(const Context& ctx, Ino ino, int flags) = 0;
  // Drops one handle; the last one deletes the open records (purging an unlinked inode open
  // nowhere else) before returning.
  virtual Status Close(Ino ino) = 0;
  // Drops one handle like Close, but the records of the last one are deleted by a background
  // thread that puts the closes of many inodes into one transaction (the FUSE release path,
  // which the kernel does not wait for). Until then the inode counts as open in this session,
  // and an Open of it meanwhile keeps the records instead of writing them again. A failed
  // release is logged and retried; CloseSession releases whatever is left.
  virtual Status CloseDeferred(Ino ino) = 0;
  // Waits until every deferred close made so far has been released; the error of the last
  // failed attempt if one is waiting for a retry.
  virtual Status FlushDeferredCloses() = 0;

  // ---- data ----
  // Sets the file length. Shrinking drops the slices past the end (their data is released);
  // growing reads as zeros.
  virtual Result<Attr> Truncate(const Context& ctx, Ino ino, uint64_t length) = 0;
  // mode: 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE.
  virtual Status Fallocate(const Context& ctx, Ino ino, int mode, uint64_t off, uint64_t len) = 0;
  // A new slice id (allocated in batches; ids are never reused).
  virtual Result<uint64_t> NewSliceId() = 0;
  // Appends `slice` to chunk `index` of `ino` and grows the length to cover it; sets mtime.
  // Fails with ENOSPC/EDQUOT when the volume's capacity would be exceeded.
  virtual Status WriteSlice(Ino ino, uint32_t index, const Slice& slice, int64_t mtime) = 0;
  // The slice records of chunk `index` in append order (later records win on overlap).
  virtual Result<std::vector<Slice>> ReadChunk(Ino ino, uint32_t index) = 0;
  // Replaces the records of chunk `index` by `replacement` if they still equal `expected`
  // (compaction); EAGAIN when the chunk changed meanwhile. Slices no longer referenced become
  // pending deletions.
  virtual Status ReplaceChunk(Ino ino, uint32_t index, const std::vector<Slice>& expected,
                              const std::vector<Slice>& replacement) = 0;
  // Copies bytes [off_in, off_in+len) of `in` to `off_out` of `out` by reference
  // (copy_file_range); returns the bytes copied.
  virtual Result<uint64_t> CopyRange(const Context& ctx, Ino in, uint64_t off_in, Ino out,
                                     uint64_t off_out, uint64_t len) = 0;

  // ---- background deletion ----
  // Releases the data of removed files (nlink 0, not open anywhere) and hands each slice whose
  // reference count reaches zero to `remove` (which deletes its blocks); a slice is forgotten
  // only after `remove` succeeded, so the work resumes after a crash. Handles at most `max`
  // slices; returns how many were removed.
  virtual Result<size_t> CleanupDeleted(const std::function<Status(const SliceRef&)>& remove,
                                        size_t max) = 0;

  // ---- xattrs ----  flags: 0, XATTR_CREATE, XATTR_REPLACE
  virtual Result<std::string> GetXattr(const Context& ctx, Ino ino, std::string_view name) = 0;
  virtual Status SetXattr(const Context& ctx, Ino ino, std::string_view name,
                          std::string_view value, int flags) = 0;
  virtual Result<std::vector<std::string>> ListXattr(const Context& ctx, Ino ino) = 0;
  virtual Status RemoveXattr(const Context& ctx, Ino ino, std::string_view name) = 0;

  // ---- locks ----
  // `owner` identifies the lock holder within this session (the FUSE lock owner). Locks are
  // stored in the engine so every client sees them. Non-blocking: a conflict gives EAGAIN;
  // callers that wait retry when WaitLockChange() wakes them.
  virtual Status Flock(Ino ino, uint64_t owner, LockType type) = 0;
  virtual Result<PosixLock> GetLk(Ino ino, uint64_t owner, const PosixLock& probe) = 0;
  virtual Status SetLk(Ino ino, uint64_t owner, const PosixLock& lock) = 0;
  // Blocks until a lock on `ino` may have changed or `timeout_ns` passed.
  virtual void WaitLockChange(Ino ino, int64_t timeout_ns) = 0;
};

}  // namespace nexus::meta
