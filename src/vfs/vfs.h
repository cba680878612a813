// Vfs: POSIX file semantics over Meta (metadata) and ChunkStore (data), independent of FUSE.
//
// Contract:
//  - Thread-safe: any number of callers at once; per-handle state sits under its own mutex.
//  - Every method returns an errno-valued Status/Result whose message names the object.
//  - Close-to-open: Open re-reads attributes (Meta::Open) and drops cached slice lists
//    (ChunkStore::Invalidate); Release returns only after the handle's data is committed.
//  - Internal files live at the root (".stats", ".config", ".accesslog" read-only, ".control"
//    read-write) with inode numbers above meta::kMaxMetaIno. Lookup finds them by name; ReadDir
//    does not list them. ".control" runs one JSON request per open handle (vfs_control.cc).
//  - Directory listings stream in bounded memory: a directory handle keeps one batch of
//    entries and the name to continue after, whatever the directory's size.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "meta/types.h"
#include "vfs/access_log.h"

namespace nexus::meta {
class Meta;
}
namespace nexus::chunk {
class ChunkStore;
struct ReadPiece;
}  // namespace nexus::chunk

namespace nexus::vfs {

using meta::Attr;
using meta::Context;
using meta::Entry;
using meta::Ino;

enum class AtimeMode { kNoAtime, kRelAtime, kStrictAtime };

// "noatime", "relatime", "strictatime" -> AtimeMode; EINVAL otherwise.
Result<AtimeMode> ParseAtimeMode(std::string_view text);
std::string_view AtimeModeName(AtimeMode mode);

struct VfsOptions {
  AtimeMode atime_mode = AtimeMode::kRelAtime;
  bool read_only = false;
  // The kernel caches pages and decides write offsets itself (-o writeback_cache).
  bool writeback_cache = false;
  size_t readdir_batch = 1000;  // entries a directory handle holds at most
  // Every change to the volume's files reaches it through this mount's kernel (the engine admits
  // one process, and the mount is its only client): whatever the kernel has cached of a file is
  // still right at the next open, so its page cache is kept across close and open.
  bool sole_client = false;
  // The mount's options as a JSON object, shown in .config next to the volume format.
  std::string mount_options_json = "{}";
};

// Inodes of the internal files.
constexpr Ino kStatsIno = meta::kMaxMetaIno + 1;
constexpr Ino kConfigIno = meta::kMaxMetaIno + 2;
// Streams operations while open (AccessLog); not a snapshot.
constexpr Ino kAccessLogIno = meta::kMaxMetaIno + 3;
// Read-write: a process writes one JSON request and reads the JSON response (vfs_control.cc).
constexpr Ino kControlIno = meta::kMaxMetaIno + 4;
// The largest request .control accepts (bytes); a longer one fails the write with EFBIG.
constexpr size_t kMaxControlRequest = 64 << 10;

// Drops the kernel's cached dentry `name` of directory `parent` (set by the FUSE adapter).
using EntryInvalidator = std::function<void(Ino parent, std::string_view name)>;

struct OpenResult {
  uint64_t fh = 0;
  Attr attr;
  // The kernel may keep its page cache: the mount is the sole client, or the file is unchanged
  // since this client last saw it.
  bool keep_cache = false;
  bool direct_io = false;  // bypass the page cache (internal files with changing content)
};

struct CreateResult {
  Entry entry;
  OpenResult open;
};

// Called by ReadDir for each entry with the offset of the next one; returns false when the
// caller's buffer is full (the entry was not taken and will be offered again at that offset).
using DirFiller = std::function<bool(const meta::DirEntry& entry, uint64_t next_offset)>;

// True when the request that waits was interrupted (FUSE INTERRUPT): blocking locks give up.
using Interrupted = std::function<bool()>;

// Operation counters for .stats.
enum class Op : int {
  kLookup,
  kGetAttr,
  kSetAttr,
  kMknod,
  kMkdir,
  kUnlink,
  kRmdir,
  kSymlink,
  kReadLink,
  kLink,
  kRename,
  kOpen,
  kCreate,
  kRead,
  kWrite,
  kFlush,
  kRelease,
  kFsync,
  kOpenDir,
  kReadDir,
  kReleaseDir,
  kStatFs,
  kXattr,
  kAccess,
  kLock,
  kFallocate,
  kCopyRange,
  kLseek,
  kCount,
};

class Vfs {
 public:
  // `meta` is loaded; both pointers outlive the Vfs.
  Vfs(meta::Meta* meta, chunk::ChunkStore* chunks, VfsOptions options);
  ~Vfs();
  Vfs(const Vfs&) = delete;
  Vfs& operator=(const Vfs&) = delete;

  const VfsOptions& options() const { return options_; }

  // ---- namespace (vfs.cc) ----
  Result<Entry> Lookup(const Context& ctx, Ino parent, std::string_view name);
  // The length is the larger of the committed one and this client's unflushed writes.
  Result<Attr> GetAttr(Ino ino);
  // Size changes flush first, then truncate, then drop cached slices. `fh` (0 = none) is the
  // handle of an ftruncate: a handle opened for writing may truncate whatever the mode says now,
  // as POSIX checks permission at open.
  Result<Attr> SetAttr(const Context& ctx, Ino ino, const meta::SetAttrRequest& req,
                       uint64_t fh = 0);
  Result<Entry> Mknod(const Context& ctx, Ino parent, std::string_view name, mode_t mode,
                      dev_t rdev);
  Result<Entry> Mkdir(const Context& ctx, Ino parent, std::string_view name, mode_t mode);
  Status Unlink(const Context& ctx, Ino parent, std::string_view name);
  Status Rmdir(const Context& ctx, Ino parent, std::string_view name);
  Result<Entry> Symlink(const Context& ctx, Ino parent, std::string_view name,
                        std::string_view target);
  Result<std::string> ReadLink(const Context& ctx, Ino ino);
  Result<Entry> Link(const Context& ctx, Ino ino, Ino new_parent, std::string_view new_name);
  Status Rename(const Context& ctx, Ino parent, std::string_view name, Ino new_parent,
                std::string_view new_name, uint32_t flags);
  Result<meta::StatFs> StatFs(Ino ino);
  Status Access(const Context& ctx, Ino ino, int mask);

  // ---- xattrs (vfs.cc) ----
  Result<std::string> GetXattr(const Context& ctx, Ino ino, std::string_view name);
  Status SetXattr(const Context& ctx, Ino ino, std::string_view name, std::string_view value,
                  int flags);
  Result<std::vector<std::string>> ListXattr(const Context& ctx, Ino ino);
  Status RemoveXattr(const Context& ctx, Ino ino, std::string_view name);

  // ---- files (vfs_file.cc) ----
  Result<OpenResult> Open(const Context& ctx, Ino ino, int flags);
  Result<CreateResult> Create(const Context& ctx, Ino parent, std::string_view name, mode_t mode,
                              int flags);
  // Reads up to `len` bytes at `off`; short only at EOF. With `pieces`, bytes that sit in cached
  // blocks are not copied into `buf`: `pieces` gets the spans that make up the bytes read, in
  // order (see ChunkStore::ReadPieces); left empty, the bytes are all in `buf`.
  // A read inside the length this handle last saw does not go to Meta (close-to-open: Open reads
  // it, this client's own changes make the next read ask again, and so does its age).
  Result<size_t> Read(const Context& ctx, Ino ino, uint64_t fh, uint64_t off, char* buf, size_t len,
                      std::vector<chunk::ReadPiece>* pieces = nullptr);
  // Writes `len` bytes at `off` (at the current length for O_APPEND handles).
  Result<size_t> Write(const Context& ctx, Ino ino, uint64_t fh, uint64_t off, const char* data,
                       size_t len);
  // close(2) of one descriptor: commits the data and drops the POSIX locks of `lock_owner`.
  Status Flush(const Context& ctx, Ino ino, uint64_t fh, uint64_t lock_owner);
  // The last close of the handle: commits the data, releases flock locks of `flock_owner`
  // (when set) and the open registration.
  Status Release(Ino ino, uint64_t fh, std::optional<uint64_t> flock_owner);
  Status Fsync(Ino ino, uint64_t fh, bool datasync);
  Status Fallocate(const Context& ctx, Ino ino, int mode, uint64_t off, uint64_t len);
  Result<uint64_t> CopyFileRange(const Context& ctx, Ino in, uint64_t off_in, Ino out,
                                 uint64_t off_out, uint64_t len);
  // SEEK_DATA / SEEK_HOLE (others: EINVAL). ENXIO past the data.
  Result<uint64_t> Lseek(Ino ino, uint64_t fh, uint64_t off, int whence);

  // ---- locks (vfs_file.cc) ----
  Result<meta::PosixLock> GetLk(Ino ino, uint64_t owner, const meta::PosixLock& probe);
  // With `wait`, retries until granted or `interrupted()` (then EINTR).
  Status SetLk(Ino ino, uint64_t owner, const meta::PosixLock& lock, bool wait,
               const Interrupted& interrupted);
  Status Flock(Ino ino, uint64_t owner, meta::LockType type, bool wait,
               const Interrupted& interrupted);
  // Blocks until a lock on `ino` may have changed or `timeout_ns` passed (for callers that
  // retry non-blocking attempts themselves).
  void WaitLockChange(Ino ino, int64_t timeout_ns);

  // ---- directories (vfs_dir.cc) ----
  Result<uint64_t> OpenDir(const Context& ctx, Ino ino, int flags);
  // Offers entries from index `offset` ("." is 0, ".." is 1) until `fill` returns false or the
  // directory ends. `plus` fills each entry's attributes.
  Status ReadDir(const Context& ctx, Ino ino, uint64_t fh, uint64_t offset, bool plus,
                 const DirFiller& fill);
  Status ReleaseDir(Ino ino, uint64_t fh);
  Status FsyncDir(Ino ino, bool datasync);

  // ---- internal files (vfs_internal.cc) ----
  static bool IsInternalIno(Ino ino) { return ino > meta::kMaxMetaIno; }
  // Prometheus text: operation counters and byte counters, then every metric of the process
  // registry (metrics::Registry::Default(): FUSE latencies, object store, caches, engine).
  std::string StatsText() const;
  // The operation stream behind `.accesslog` (the FUSE adapter appends to it while active).
  AccessLog& access_log() { return access_log_; }
  // The mount options and the volume format (secrets removed) as JSON.
  std::string ConfigText() const;

  // The FUSE adapter's hook to drop kernel dentries (empty: none). Requests of .control that
  // remove entries call it after the removal; set it to {} before the session goes away.
  void SetEntryInvalidator(EntryInvalidator fn);

  void Count(Op op) { op_counts_[static_cast<int>(op)].fetch_add(1, std::memory_order_relaxed); }

 private:
  struct FileHandle;
  struct DirHandle;
  struct ControlState;

  // ---- .control (vfs_control.cc) ----
  Result<size_t> ControlWrite(const Context& ctx, FileHandle& h, const char* data, size_t len);
  Result<size_t> ControlRead(FileHandle& h, uint64_t off, char* buf, size_t len);
  // Runs one parsed request as `ctx`; returns the final response object (without "ok").
  Result<std::string> RunControl(const Context& ctx, const std::string& request,
                                 ControlState& state);
  Result<std::string> ControlInfo(const Context& ctx, Ino ino);
  Result<std::string> ControlRmr(const Context& ctx, Ino parent, const std::string& name,
                                 ControlState& state);
  void InvalidateEntry(Ino parent, std::string_view name);

  std::optional<Ino> InternalIno(Ino parent, std::string_view name) const;
  Result<Attr> InternalAttr(Ino ino) const;
  Result<OpenResult> OpenInternal(Ino ino, int flags);
  Status CheckWritable() const;
  Status CheckNotInternal(Ino parent, std::string_view name) const;

  std::shared_ptr<FileHandle> FindFile(uint64_t fh);
  std::shared_ptr<DirHandle> FindDir(uint64_t fh);
  uint64_t AddFile(std::shared_ptr<FileHandle> h);
  // Registers an opened file: decides keep_cache from what this client saw last.
  // `epoch` is change_epoch_ from before `attr` was read.
  OpenResult FinishOpen(Ino ino, int flags, const Attr& attr, uint64_t epoch);
  void RememberSeen(Ino ino, const Attr& attr);
  // Updates the atime as the mode asks; returns the new attributes when it did.
  std::optional<Attr> UpdateAtime(Ino ino, const Attr& attr);
  // This client changed a file (write, truncate, fallocate, copy_file_range): the attributes
  // open handles keep for reads may be stale (length, and mtime for relatime).
  void FileChanged() { change_epoch_.fetch_add(1, std::memory_order_acq_rel); }
  Status FlushData(Ino ino);
  // Extends a file's committed attributes by this client's unflushed writes: the length to
  // their end, mtime/ctime to the last of them.
  // Extends `attr` (read from Meta after chunks_->Commits() returned `commits`) by this
  // client's unflushed writes: their end and mtime.
  void MergePending(Ino ino, Attr* attr, uint64_t commits);
  Result<uint64_t> CurrentLength(Ino ino);
  Status FillDirBatch(const Context& ctx, DirHandle& d, bool plus);
  Status WaitLock(Ino ino, const std::function<Status()>& attempt, bool wait,
                  const Interrupted& interrupted);

  meta::Meta* meta_;
  chunk::ChunkStore* chunks_;
  VfsOptions options_;

  std::mutex handles_mu_;
  uint64_t next_fh_ = 1;
  std::unordered_map<uint64_t, std::shared_ptr<FileHandle>> files_;
  std::unordered_map<uint64_t, std::shared_ptr<DirHandle>> dirs_;

  // (mtime, length) of files as this client last saw them, for keep_cache. Bounded: cleared
  // when it grows past kMaxSeen (a cleared entry only costs a page-cache refill).
  struct Seen {
    int64_t mtime;
    uint64_t length;
  };
  static constexpr size_t kMaxSeen = 100000;
  std::mutex seen_mu_;
  std::unordered_map<Ino, Seen> seen_;

  // POSIX lock owners per inode that may hold locks, so close drops only what exists.
  std::mutex lock_owners_mu_;
  std::unordered_map<Ino, std::unordered_set<uint64_t>> lock_owners_;

  // Time of the last unflushed write per inode (entries leave when the inode is flushed).
  std::mutex pending_mu_;
  std::unordered_map<Ino, int64_t> pending_mtime_;

  // Bumped by FileChanged(); a handle's attributes are good only at the epoch they were read.
  std::atomic<uint64_t> change_epoch_{0};

  // Serializes O_APPEND writes of this client per inode (offset = length, then write).
  std::mutex append_mu_;

  std::atomic<uint64_t> op_counts_[static_cast<int>(Op::kCount)] = {};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> open_files_{0};
  AccessLog access_log_;

  std::mutex inval_mu_;
  EntryInvalidator inval_entry_;

  // Requests of .control run on their own threads; the destructor waits for them.
  std::mutex control_mu_;
  std::condition_variable control_cv_;
  int control_running_ = 0;
};

}  // namespace nexus::vfs
