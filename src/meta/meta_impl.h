// MetaImpl: the one implementation of Meta, over kv::Engine. Its methods are spread over
// files by concern: meta_volume.cc (format, load, statfs, sessions), meta_namespace.cc (lookup,
// create, link, unlink, rename, readdir, attributes, open/close), meta_data.cc (truncate,
// fallocate, slices, deletion), meta_xattr.cc, meta_lock.cc. Shared helpers live in
// meta_common.cc.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace nexus::meta {

class MetaImpl final : public Meta {
 public:
  MetaImpl(std::unique_ptr<kv::Engine> engine, MetaOptions options);
  ~MetaImpl() override;

  kv::Engine* engine() override { return engine_.get(); }

  // volume (meta_volume.cc)
  Status Format(const meta::Format& format, bool force) override;
  Result<meta::Format> Load() override;
  const meta::Format& format() const override { return format_; }
  // True when `attr` may own xattr keys (always, on volumes older than meta version 2).
  bool MayHaveXattrs(const Attr& attr) const {
    return format_.meta_version < 2 || (attr.flags & Attr::kAttrFlagXattrs);
  }
  bool MayHaveLocks(const Attr& attr) const {
    return format_.meta_version < 3 || (attr.flags & Attr::kAttrFlagLocks);
  }
  // Sets Attr::kAttrFlagLocks of `ino` inside `txn` (a lock is being taken), once.
  Status MarkLockedTxn(kv::Txn& txn, Ino ino);
  Status UpdateFormat(const meta::Format& format) override;
  Result<StatFs> GetStatFs(Ino ino) override;
  Status Sync() override;
  Result<uint64_t> NewSession(const SessionInfo& info) override;
  Status Heartbeat() override;
  Status CloseSession() override;
  Result<std::vector<SessionInfo>> ListSessions() override;
  Result<int> CleanStaleSessions(int64_t timeout_ns) override;

  // namespace (meta_namespace.cc, meta_rename.cc)
  Result<Entry> Lookup(const Context& ctx, Ino parent, std::string_view name) override;
  Result<Attr> GetAttr(Ino ino) override;
  Result<Attr> SetAttr(const Context& ctx, Ino ino, const SetAttrRequest& req) override;
  Status Access(const Context& ctx, Ino ino, int mask) override;
  Result<Entry> Mknod(const Context& ctx, Ino parent, std::string_view name, FileType type,
                      uint32_t mode, uint32_t rdev) override;
  Result<Entry> Mkdir(const Context& ctx, Ino parent, std::string_view name,
                      uint32_t mode) override;
  Result<Entry> Create(const Context& ctx, Ino parent, std::string_view name, uint32_t mode,
                       int flags) override;
  Result<Entry> Symlink(const Context& ctx, Ino parent, std::string_view name,
                        std::string_view target) override;
  Result<std::string> ReadLink(Ino ino) override;
  Result<Entry> Link(const Context& ctx, Ino ino, Ino new_parent,
                     std::string_view new_name) override;
  Status Unlink(const Context& ctx, Ino parent, std::string_view name) override;
  Status Rmdir(const Context& ctx, Ino parent, std::string_view name) override;
  // meta_rmr.cc
  Result<uint64_t> RemoveTree(const Context& ctx, Ino parent, std::string_view name,
                              const std::function<void(uint64_t)>& progress) override;
  Status Rename(const Context& ctx, Ino parent, std::string_view name, Ino new_parent,
                std::string_view new_name, uint32_t flags) override;
  Status ReadDir(const Context& ctx, Ino dir, std::string_view after, size_t limit, bool plus,
                 std::vector<DirEntry>* out) override;
  Result<Attr> Open(const Context& ctx, Ino ino, int flags) override;
  Status Close(Ino ino) override;
  Status CloseDeferred(Ino ino) override;
  Status FlushDeferredCloses() override;

  // data (meta_data.cc)
  Result<Attr> Truncate(const Context& ctx, Ino ino, uint64_t length) override;
  Status Fallocate(const Context& ctx, Ino ino, int mode, uint64_t off, uint64_t len) override;
  Result<uint64_t> NewSliceId() override;
  Status WriteSlice(Ino ino, uint32_t index, const Slice& slice, int64_t mtime) override;
  Result<std::vector<Slice>> ReadChunk(Ino ino, uint32_t index) override;
  Status ReplaceChunk(Ino ino, uint32_t index, const std::vector<Slice>& expected,
                      const std::vector<Slice>& replacement) override;
  Result<uint64_t> CopyRange(const Context& ctx, Ino in, uint64_t off_in, Ino out, uint64_t off_out,
                             uint64_t len) override;
  Result<size_t> CleanupDeleted(const std::function<Status(const SliceRef&)>& remove,
                                size_t max) override;

  // xattrs (meta_xattr.cc)
  Result<std::string> GetXattr(const Context& ctx, Ino ino, std::string_view name) override;
  Status SetXattr(const Context& ctx, Ino ino, std::string_view name, std::string_view value,
                  int flags) override;
  Result<std::vector<std::string>> ListXattr(const Context& ctx, Ino ino) override;
  Status RemoveXattr(const Context& ctx, Ino ino, std::string_view name) override;

  // locks (meta_lock.cc)
  Status Flock(Ino ino, uint64_t owner, LockType type) override;
  Result<PosixLock> GetLk(Ino ino, uint64_t owner, const PosixLock& probe) override;
  Status SetLk(Ino ino, uint64_t owner, const PosixLock& lock) override;
  void WaitLockChange(Ino ino, int64_t timeout_ns) override;

 private:
  // ---- shared helpers (meta_common.cc) ----
  // Reads and decodes A<ino>I; ENOENT naming the inode when absent.
  static Result<Attr> GetAttrTxn(kv::Txn& txn, Ino ino);
  static Status PutAttrTxn(kv::Txn& txn, Ino ino, const Attr& attr);
  // The attributes of several inodes read at once (one MultiGet: one round trip on a networked
  // engine); ENOENT naming the first absent one.
  static Result<std::vector<Attr>> GetAttrsTxn(kv::Txn& txn, const std::vector<Ino>& inos);
  // The attributes of directory `parent` and the value of its entry `dkey` (absent: nullopt),
  // read together for the same reason.
  struct DirAndEntry {
    Attr dir;
    std::optional<std::string> entry;
    std::string dir_value;  // the directory's attribute record as read
  };
  // Decodes a value read from A<ino>I (ENOENT naming the inode when absent).
  static Status DecodeAttrTxnValue(const std::optional<std::string>& v, Ino ino, Attr* attr);
  // With `expected_dir` (the directory's record as a recent lookup that missed `dkey` read it),
  // an engine that checks values at commit takes both as read (kv::Txn::MultiGetExpecting).
  static Result<DirAndEntry> GetDirAndEntryTxn(kv::Txn& txn, Ino parent, const std::string& dkey,
                                               const std::string* expected_dir = nullptr);
  // Lookup misses remembered for a create of the same name that usually follows at once (the
  // kernel looks a name up before it creates it), on engines where that saves a round trip
  // (kv::Engine::DefersExpectedReads): dentry key -> the directory's record then. A hint is
  // used once, by the first attempt of a create, and only within kMissHintTtl.
  void RememberMiss(const std::string& dkey, const std::string& dir_value);
  std::optional<std::string> TakeMissHint(const std::string& dkey);
  static constexpr std::chrono::milliseconds kMissHintTtl{500};
  static constexpr size_t kMissHints = 1024;
  struct MissHint {
    std::string dir_value;
    std::chrono::steady_clock::time_point at;
  };
  std::mutex miss_mu_;
  std::unordered_map<std::string, MissHint> miss_hints_;
  bool hint_misses_ = false;  // the engine DefersExpectedReads
  // POSIX permission check of `mask` (R_OK/W_OK/X_OK bits) for ctx on attr.
  static Status CheckPermission(const Context& ctx, const Attr& attr, int mask);
  // ENAMETOOLONG / EINVAL for names that are not a single component.
  static Status ValidateName(std::string_view name);
  // A fresh inode number from this client's batch (refilled from the nextInode counter).
  Result<Ino> AllocIno();
  // Changes to the totalInodes and usedSpace counters that a caller removing many inodes in one
  // transaction adds up and writes once (FlushTxn): repeated Adds of one key in a transaction
  // cost RocksDB time quadratic in their number.
  struct CounterDeltas {
    int64_t inodes = 0;
    int64_t used_space = 0;
    Status FlushTxn(kv::Txn& txn);
  };
  // Writes a removed file's data release record or keeps it while it is open somewhere; call
  // when nlink reaches 0 inside `txn`. With `deltas`, the counter changes go there instead of
  // to the engine.
  Status RemoveInodeTxn(kv::Txn& txn, Ino ino, const Attr& attr, CounterDeltas* deltas = nullptr);
  // Drops a chunk's slice references inside `txn`: unreferenced slices get L records.
  Status ReleaseSlicesTxn(kv::Txn& txn, const std::vector<Slice>& slices);
  // Ino as the engine stores it: the mount's subdir root maps to its real inode.
  Ino Real(Ino ino) const {
    return ino == kRootIno && options_.subdir_root ? options_.subdir_root : ino;
  }

  // ---- namespace helpers (meta_namespace.cc, meta_rename.cc) ----
  // What Mknod, Mkdir, Create and Symlink make: `mode` before umask, `target` for symlinks.
  struct NewNode {
    FileType type = FileType::kFile;
    uint32_t mode = 0;
    uint32_t rdev = 0;
    std::string_view target;
  };
  struct RenameOp;  // meta_rename.cc
  // Adds `name` -> inode `ino` (fresh, allocated by AllocIno) to `parent` inside `txn` and
  // fills `out`. EEXIST when the name is taken; then `*existing` is the inode found.
  // `dir_hint`, if set, is a lookup's miss hint for the name (TakeMissHint), used and cleared.
  Status CreateNodeTxn(kv::Txn& txn, const Context& ctx, Ino parent, std::string_view name, Ino ino,
                       const NewNode& node, Entry* out, Ino* existing,
                       std::optional<std::string>* dir_hint = nullptr);
  // Allocates an inode and creates the node in one transaction; with `open_flags` >= 0 it
  // also registers an open handle of the new file in that transaction (Create).
  Result<Entry> CreateNode(const Context& ctx, Ino parent, std::string_view name,
                           const NewNode& node, int open_flags, Ino* existing);
  // A directory ctx may add entries to or remove entries from: ENOTDIR, EACCES.
  static Status CheckDirWrite(const Context& ctx, const Attr& dir, Ino ino, std::string_view op);
  // Restricted deletion in a sticky directory: EPERM unless ctx owns `child` or `dir` or is
  // root.
  static Status CheckSticky(const Context& ctx, const Attr& dir, const Attr& child,
                            std::string_view what);
  // Counts one more inode (totalInodes); exact against format().inodes: ENOSPC.
  Status AddInodeTxn(kv::Txn& txn);
  // Removes one link of `ino` whose entry in `parent` was deleted: nlink, parent records,
  // ctime; at nlink 0 hands the inode to RemoveInodeTxn. Directories lose all their links.
  Status DropLinkTxn(kv::Txn& txn, Ino ino, Attr& attr, Ino parent, int64_t now,
                     CounterDeltas* deltas = nullptr);
  // Removes the entry `name` -> `ino` (attributes `attr`) of directory `parent` (attributes
  // `dir`, already checked with CheckDirWrite) as unlink/rmdir do: sticky bit, the entry, one
  // link of `ino` (RemoveInodeTxn at nlink 0). Updates `dir` (nlink for a subdirectory,
  // mtime/ctime = now) without writing it; the caller puts it once.
  Status RemoveEntryTxn(kv::Txn& txn, const Context& ctx, Ino parent, Attr& dir,
                        std::string_view name, Ino ino, Attr& attr, int64_t now,
                        std::string_view what, CounterDeltas* deltas = nullptr);
  // Adds `delta` links from `parent` to the A<ino>P<parent> count (deleted at 0); returns the
  // new count.
  static Result<int64_t> AddParentCountTxn(kv::Txn& txn, Ino ino, Ino parent, int64_t delta);
  // Records that one link of `ino` moved from directory `from` to `to`.
  static Status MoveLinkTxn(kv::Txn& txn, Ino ino, Attr& attr, Ino from, Ino to);
  // Deletes every record of `ino` now (no handle open anywhere) and updates the counters.
  Status PurgeInodeTxn(kv::Txn& txn, Ino ino, const Attr& attr, CounterDeltas* deltas = nullptr);
  // EINVAL when directory `dir` is `new_parent` or one of its ancestors. Reads the chain of
  // parents inside `txn`, so a concurrent rename of any of them makes one of the two conflict.
  static Status CheckNotAncestorTxn(kv::Txn& txn, Ino dir, Ino new_parent);
  // Writes O<ino><sid> and SS<sid><ino> (the first local handle of `ino`).
  Status RegisterOpenTxn(kv::Txn& txn, Ino ino);
  // Deletes O<ino><sid> and SS<sid><ino> of each of `inos` (the last handle of each in session
  // `sid` went away), reading their attributes in one MultiGet; an unlinked inode open nowhere
  // else is purged.
  Status ReleaseOpenTxn(kv::Txn& txn, const std::vector<Ino>& inos, uint64_t sid);
  // With open_mu_ held: EBADF unless this client holds `ino`; drops one handle and returns
  // false when others remain, true for the last one (its count, 1, is left to the caller).
  Result<bool> DropHandleLocked(Ino ino);
  // With open_mu_ held, for the last handle of `ino`: with local opens and no records to
  // release, forgets the inode and returns true (nothing left to do); false otherwise.
  bool DropLocalLastHandleLocked(Ino ino);
  // Releases the open records of `ino` in this session (ReleaseOpenTxn: an unlinked inode open
  // nowhere else goes) and drops it from sustained_.
  Status ReleaseOpenRecords(Ino ino);
  // Deferred closes (meta_attr.cc): the closer thread releases pending_close_ in batches.
  void CloserLoop();
  // Moves up to a batch of pending_close_ to closing_, releases it with `lock` (on open_mu_)
  // unlocked, and puts back what failed. False when something failed.
  bool ReleasePending(std::unique_lock<std::mutex>& lock);
  // Stops the closer thread after one last release of what is pending; later CloseDeferred
  // calls close at once.
  void StopCloser();
  // Permission of `flags` (access mode, O_TRUNC) on `attr`: EACCES, EISDIR.
  static Status CheckOpen(const Context& ctx, const Attr& attr, Ino ino, int flags);
  Status RenameTxn(kv::Txn& txn, const Context& ctx, RenameOp& op);
  Status ExchangeTxn(kv::Txn& txn, const Context& ctx, RenameOp& op);
  Status ReplaceTxn(kv::Txn& txn, const Context& ctx, RenameOp& op);
  // Releases session `sid`: locks, open inodes (removing the unlinked ones), SE/SH records.
  Status CleanSession(uint64_t sid);
  Status ReleaseSessionInodes(uint64_t sid);
  // Attributes as callers see them: the mount's subdir root appears as kRootIno.
  Attr Expose(Attr attr) const {
    if (options_.subdir_root && attr.parent == options_.subdir_root) attr.parent = kRootIno;
    return attr;
  }
  Ino ExposeIno(Ino ino) const {
    return options_.subdir_root && ino == options_.subdir_root ? kRootIno : ino;
  }
  // Open and Close of one inode are serialized by its stripe, so that the local count and the
  // engine's O record change together.
  static constexpr size_t kOpenStripes = 64;
  std::mutex& OpenStripe(Ino ino) { return open_stripes_[ino % kOpenStripes]; }
  std::mutex open_stripes_[kOpenStripes];

  // ---- data helpers (meta_data.cc, meta_xattr.cc, meta_lock.cc) ----
  // Deletes chunk `index` of `ino`, whose encoded records are `value`, and releases them.
  Status DeleteChunkTxn(kv::Txn& txn, Ino ino, uint64_t index, std::string_view value);
  // Adds `delta` to the usedSpace counter. Growth is checked against the volume's capacity
  // inside `txn` (exact): ENOSPC when it would be exceeded.
  Status AddUsedSpaceTxn(kv::Txn& txn, int64_t delta);
  // A regular file the caller may write: EISDIR for directories, EINVAL for other types.
  static Status CheckWritableFile(const Context& ctx, const Attr& attr, Ino ino,
                                  std::string_view op);
  static Status CheckCopyArgs(const Context& ctx, Ino in, const Attr& ain, Ino out,
                              const Attr& aout);
  // Shrinking step of Truncate; false when more transactions are needed.
  Result<bool> DropTailTxn(kv::Txn& txn, Ino ino, uint64_t old_length, uint64_t new_length);
  Status ZeroRangeTxn(kv::Txn& txn, Ino ino, uint64_t off, uint64_t end, bool to_eof,
                      uint64_t* cursor);
  Status ReleaseDeletedFiles(size_t max);
  // Releases the chunks of one removed file (D record `dkey`), then deletes the D record.
  Status ReleaseDeletedFile(Ino ino, const std::string& dkey);
  // Xattr namespace rules (user., trusted., security., system.) for reading or writing `name`.
  static Status CheckXattrAccess(const Context& ctx, const Attr& attr, Ino ino,
                                 std::string_view name, bool write);
  // Removes every flock and POSIX lock held by session `sid` (session cleanup; see
  // meta_lock.cc) in bounded transactions, and wakes local waiters.
  Status ReleaseSessionLocks(uint64_t sid);
  // Removes session `sid`'s holders from the lock record `key` (F<ino> or P<ino>).
  Status DropSessionHoldersOf(const std::string& key, uint64_t sid, bool flock);
  // One transaction of Flock / SetLk; *released tells whether a held lock was given up.
  Status FlockOnce(Ino ino, uint64_t owner, LockType type, bool* released);
  Status SetLkOnce(Ino ino, uint64_t owner, const PosixLock& lock, bool* released);
  // Wakes the local WaitLockChange callers (after a lock release committed).
  void NotifyLockChange();

  std::unique_ptr<kv::Engine> engine_;
  MetaOptions options_;
  meta::Format format_;
  uint64_t sid_ = 0;  // this client's session, 0 before NewSession

  std::mutex alloc_mu_;  // guards the id batches
  Ino next_ino_ = 0, end_ino_ = 0;
  uint64_t next_slice_ = 0, end_slice_ = 0;

  std::mutex open_mu_;                             // guards open_counts_ and the close state
  std::unordered_map<Ino, uint32_t> open_counts_;  // handles this client holds per inode
  // Inodes without a local handle whose O/SS records are still in the engine: waiting for the
  // closer thread (pending_close_) or in its current transaction (closing_). An Open of an
  // inode in closing_ waits on close_cv_ for that transaction to end.
  std::unordered_set<Ino> pending_close_, closing_;
  // Local opens (MetaOptions::sole_client on a single-process engine): open_counts_ alone says
  // which files are open; an inode unlinked while open gets its O/SS records then and is listed
  // in sustained_ until the release of its last handle removes it.
  bool local_opens_ = false;
  bool one_writer_ = false;  // kv::Engine::OneWriterAtATime
  std::unordered_set<Ino> sustained_;
  std::condition_variable close_cv_;
  std::thread closer_;
  bool closer_stop_ = false;
  bool close_flush_ = false;  // FlushDeferredCloses is waiting: release without lingering
  // At most this many inodes per release transaction: small enough that one conflicting inode
  // does not make a large transaction run again.
  static constexpr size_t kCloseBatch = 64;
  // How long the closer waits for more closes before releasing a partial batch.
  static constexpr std::chrono::milliseconds kCloseLinger{2};
  Status close_error_;  // of the last failed release, until one succeeds

  std::mutex lock_mu_;  // wakes local lock waiters
  std::condition_variable lock_cv_;
  std::atomic<uint64_t> lock_epoch_{0};
};

}  // namespace nexus::meta
