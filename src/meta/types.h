// Value types of the metadata layer, shared by meta/, chunk/, vfs/ and the tools.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nexus::meta {

using Ino = uint64_t;
constexpr Ino kRootIno = 1;
// Inodes the VFS serves itself (.stats, .config, ...) live above this value; Meta never
// allocates them.
constexpr Ino kMaxMetaIno = (1ULL << 62);

constexpr uint64_t kChunkSize = 64ULL << 20;  // 64 MiB
constexpr size_t kMaxNameLen = 255;
constexpr size_t kMaxSymlinkLen = 4096;
constexpr size_t kMaxXattrNameLen = 255;
constexpr size_t kMaxXattrValueLen = 65536;

enum class FileType : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kFifo = 4,
  kBlockDev = 5,
  kCharDev = 6,
  kSocket = 7,
};

// FileType <-> the S_IFMT bits of st_mode.
FileType FileTypeFromMode(mode_t mode);
mode_t ModeFromFileType(FileType t);

// An inode's attributes. Times are nanoseconds since the epoch.
struct Attr {
  FileType type = FileType::kFile;
  uint32_t mode = 0;  // permission bits with suid/sgid/sticky (07777), no S_IFMT
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 1;
  uint64_t length = 0;  // file size; for directories a nominal 4096; for symlinks the target len
  uint32_t rdev = 0;
  int64_t atime = 0;
  int64_t mtime = 0;
  int64_t ctime = 0;
  Ino parent = 0;      // the parent directory; 0 when a non-directory has several (hard links)
  uint32_t flags = 0;  // kAttrFlag* bits

  // Set once the inode gets an extended attribute (volumes of meta version 2 and later), so that
  // reads and deletion of an inode that never had one skip the xattr range.
  static constexpr uint32_t kAttrFlagXattrs = 1u << 0;
  // Set once a flock or POSIX lock is taken on the inode (meta version 3 and later), so that
  // deleting an inode that was never locked writes no deletion of lock records.
  static constexpr uint32_t kAttrFlagLocks = 1u << 1;

  // st_mode: S_IFMT bits from `type` plus `mode`.
  mode_t StMode() const { return ModeFromFileType(type) | mode; }
};

// Who is asking. Permission checks use uid, gid and the supplementary groups; uid 0 passes
// them like root does in the kernel (except where POSIX says otherwise).
struct Context {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> gids;  // supplementary groups
  uint32_t pid = 0;
  uint32_t umask = 0;  // applied by mknod/mkdir/create/symlink when non-zero
  bool check_permission = true;

  bool InGroup(uint32_t g) const;
  static Context Root() { return Context{}; }
};

struct Entry {
  Ino ino = 0;
  Attr attr;
};

struct DirEntry {
  std::string name;
  Ino ino = 0;
  FileType type = FileType::kFile;
  Attr attr;  // filled only by ReadDir(..., plus = true)
};

// One slice record inside a chunk: the bytes [off, off+len) of slice `id` (whose total size is
// `size`) appear at position `pos` of the chunk. id 0 is a hole that reads as zeros.
struct Slice {
  uint32_t pos = 0;
  uint64_t id = 0;
  uint32_t size = 0;
  uint32_t off = 0;
  uint32_t len = 0;

  bool operator==(const Slice&) const = default;
};

// A slice whose data may be deleted from the object store (its reference count reached zero).
struct SliceRef {
  uint64_t id = 0;
  uint32_t size = 0;
};

// Bits of SetAttr's `mask`.
enum SetAttrMask : uint32_t {
  kSetMode = 1 << 0,
  kSetUid = 1 << 1,
  kSetGid = 1 << 2,
  kSetSize = 1 << 3,
  kSetAtime = 1 << 4,
  kSetMtime = 1 << 5,
  kSetAtimeNow = 1 << 6,
  kSetMtimeNow = 1 << 7,
  kSetCtime = 1 << 8,
};

struct SetAttrRequest {
  uint32_t mask = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t atime = 0;
  int64_t mtime = 0;
  int64_t ctime = 0;
};

// The volume's settings, written by format, checked and read at load.
struct Format {
  std::string name;
  std::string uuid;
  std::string storage = "file";  // object store kind: file, s3, mem
  std::string bucket;            // object store location
  std::string access_key;        // secrets: kept in the engine, never printed
  std::string secret_key;
  std::string session_token;
  uint32_t block_size = 4 << 20;  // bytes
  uint64_t capacity = 0;          // bytes; 0 = unlimited
  uint64_t inodes = 0;            // 0 = unlimited
  std::string compression;        // "", "lz4", "zstd"
  std::string encrypt_key;        // PEM of the RSA key wrapping the data key, if encrypted
  std::string encrypt_algo;       // "aes256gcm-rsa" when encrypted
  std::string encrypt_data_key;   // base64 of the data key wrapped by the RSA key (RSA-OAEP)
  // How blocks are stored: "" = raw (volumes formatted before framing), "frames-v1" = the
  // framed format with checksums (docs/formats.md), compressed and encrypted as set above.
  std::string block_format;
  uint32_t trash_days = 0;
  int64_t meta_version = 1;
  int64_t created = 0;  // ns

  // JSON text for the `setting` key; with `redact`, secrets become "removed".
  std::string ToJson(bool redact = false) const;
  static bool FromJson(const std::string& json, Format* out, std::string* error);
};

struct StatFs {
  uint64_t total_space = 0;  // bytes
  uint64_t avail_space = 0;
  uint64_t used_space = 0;
  uint64_t used_inodes = 0;
  uint64_t avail_inodes = 0;
};

// A client session (one per mount).
struct SessionInfo {
  uint64_t sid = 0;
  std::string host;
  uint32_t pid = 0;
  std::string mount_point;
  std::string version;
  int64_t start_time = 0;  // ns
  int64_t heartbeat = 0;   // ns, the last one
  // ns: other clients may clean the session once its last heartbeat is this old (0: the
  // cleaner's own timeout applies). The client promises to heartbeat well within it.
  int64_t timeout = 0;
};

enum class LockType : uint8_t { kUnlock = 0, kRead = 1, kWrite = 2 };

// A POSIX byte-range lock as F_GETLK reports it. end is inclusive; UINT64_MAX = to EOF.
struct PosixLock {
  LockType type = LockType::kUnlock;
  uint64_t start = 0;
  uint64_t end = 0;
  uint32_t pid = 0;
};

}  // namespace nexus::meta
