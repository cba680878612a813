// DiskCache: whole blocks kept as files on a local disk, bounded by bytes and by the free space
// of the disk that holds them, least recently used evicted first.
//
// Layout (docs/cache.md): <dir>/blocks/<xx>/<escaped key>, where xx is the low byte of the key's
// XXH3-64 in hex (256 subdirectories) and the escaped key is the key with '%' and '/' written as
// %25 and %2F, so that the index can be rebuilt from file names alone. A file is a 32-byte header
// (magic "NXDC", format version, payload length, XXH3-64 of the payload, segment size, zero;
// big-endian), then one XXH3-64 per 16 KiB segment of the payload, then the payload. Files are
// written to a ".tmp." name and renamed into place, so a crash leaves either no file, a leftover
// temp file (removed at the next Open) or a whole file; a file whose bytes did not reach the disk
// fails its checksum and is dropped, never served.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace nexus {
class ThreadPool;
}

namespace nexus::cache {

// An object key as a file name: '%' -> %25, '/' -> %2F, a leading '.' -> %2E (names starting with
// '.' are temp files), NUL -> %00. UnescapeKey inverts it; false for a malformed name.
std::string EscapeKey(std::string_view key);
bool UnescapeKey(std::string_view name, std::string* key);

struct DiskCacheStats {
  uint64_t hits = 0, misses = 0;
  uint64_t bytes = 0, files = 0;  // on disk now, headers included
  uint64_t evictions = 0;
  uint64_t corrupt = 0;         // files dropped because they failed verification
  uint64_t dropped_writes = 0;  // Puts not cached: writer queue full or no space
  uint64_t writes = 0;          // files written
};

struct DiskCacheOptions {
  int writers = 2;                         // writer threads
  size_t max_pending = 16;                 // blocks waiting for a writer; more are dropped
  int64_t space_check_ns = 1'000'000'000;  // how often statvfs is asked for free space
  uint64_t max_key_file_name = 240;        // longer escaped keys are not cached
};

// Contract: thread-safe. Get and Remove never wait for writes; Put never blocks (it drops the
// block when the writer queue is full). Destruction drops the writes still queued.
class DiskCache {
 public:
  // Creates `dir` (and its subdirectories) if needed and indexes the files already there
  // (removing leftover temp files). Fails with a message naming `dir` when it cannot be created
  // or written. `capacity_bytes` bounds the files' total size; `free_space_ratio` (0..1) is the
  // fraction of the file system that the cache leaves free.
  static Result<std::unique_ptr<DiskCache>> Open(const std::string& dir, uint64_t capacity_bytes,
                                                 double free_space_ratio,
                                                 DiskCacheOptions options = {});
  ~DiskCache();
  DiskCache(const DiskCache&) = delete;
  DiskCache& operator=(const DiskCache&) = delete;

  // The cached block, verified (length and checksum), or null. A file that fails verification
  // is deleted, counted as corrupt, logged and reported as a miss.
  std::shared_ptr<const std::string> Get(std::string_view key);
  // Copies [off, off+len) of the cached block into `out`, reading and verifying only the 16 KiB
  // segments that hold the range (a 4 KiB read costs microseconds, not a whole-block read).
  // False on a miss or a range outside the block; a file that fails verification is dropped as
  // by Get.
  bool ReadRange(std::string_view key, uint64_t off, size_t len, char* out);
  // Queues `data` to be written under `key`; returns false when it was not queued (queue full,
  // larger than the cache, shutting down). A key already cached or queued is left as it is:
  // blocks are immutable.
  bool Put(std::string_view key, std::shared_ptr<const std::string> data);
  // Forgets `key` and deletes its file; a queued or running write of it is discarded.
  void Remove(std::string_view key);
  // Waits until no write is queued or running (tests, benchmarks).
  void WaitIdle();
  DiskCacheStats Stats() const;
  const std::string& dir() const { return dir_; }
  // Bytes on disk of a cached block of `payload` bytes (header and checksums included).
  static uint64_t FileSize(uint64_t payload);

 private:
  struct Entry {
    uint64_t size = 0;  // file size, header included
    uint64_t gen = 0;   // distinguishes a re-added key from the one a reader looked up
    std::list<std::string>::iterator lru;
  };

  DiskCache(std::string dir, uint64_t capacity, double free_space_ratio, DiskCacheOptions options);
  Status Scan();
  // Opens the file of an indexed `key` (moving it to the front of the LRU) and sets its
  // generation; -1 on a miss (counted) or when it cannot be opened (dropped).
  int OpenIndexed(const std::string& key, uint64_t* gen, int* open_err);
  // Counts a miss and forgets `key` if it is still generation `gen`; unless the file had simply
  // vanished (open_err ENOENT), counts and logs it as corrupt.
  void Drop(const std::string& key, uint64_t gen, const std::string& why, int open_err);
  std::string PathFor(std::string_view key) const;
  void Write(const std::string& key, const std::shared_ptr<const std::string>& data);
  // Adds `key` to the index as most recently used. Requires mu_.
  void InsertLocked(const std::string& key, uint64_t size);
  // Removes `key` from the index and unlinks its file. Requires mu_.
  void EraseLocked(std::unordered_map<std::string, Entry>::iterator it);
  // Evicts least recently used files until `incoming` more bytes fit. Requires mu_.
  void EvictLocked(uint64_t incoming);
  // Re-reads the file system's free space when the last check is older than space_check_ns.
  void CheckSpace();

  const std::string dir_;
  const uint64_t capacity_;
  const double free_space_ratio_;
  const DiskCacheOptions opts_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> index_;
  std::list<std::string> lru_;  // front = most recently used
  uint64_t bytes_ = 0;
  uint64_t reserved_ = 0;  // bytes of writes under way
  uint64_t next_gen_ = 0;
  uint64_t limit_;  // capacity_, lowered while the disk has less free space than wanted
  std::unordered_map<std::string, bool> pending_;  // queued or running writes -> discarded
  std::condition_variable idle_cv_;                // pending_ became empty
  std::atomic<int64_t> last_space_check_{0};  // claimed by compare-exchange: one statvfs at a time

  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> hits_{0}, misses_{0}, evictions_{0}, corrupt_{0}, dropped_{0}, writes_{0},
      tmp_seq_{0};
  int lock_fd_ = -1;  // flock'ed: one process per directory
  std::unique_ptr<ThreadPool> writers_;
};

}  // namespace nexus::cache
