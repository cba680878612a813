// ChunkStoreImpl: the data path behind ChunkStore. Files: chunk_store.cc (factory, per-inode
// state, background work), chunk_write.cc (buffered slices, uploads, commits), chunk_read.cc
// (slice resolution, block fetches, readahead), chunk_maint.cc (compaction, deletion).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache/disk_cache.h"
#include "cache/memory_cache.h"
#include "chunk/chunk_store.h"
#include "chunk/staging.h"
#include "common/thread_pool.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {

// Key of block `index` (of `size` bytes) of slice `id`.
std::string BlockKey(const std::string& prefix, uint64_t id, uint32_t index, uint32_t size);

// Whether blocks uploaded by writers go to the disk cache too (ChunkOptions::cache_writes): not
// on a store that reads locally, where the cache would copy a local disk to a local disk.
inline bool CachesWrites(const ChunkOptions& o, object::ObjectStore* store) {
  return o.cache_writes && !store->ReadsLocally();
}

// A slice being written: contiguous bytes at `pos` of chunk `chunk`, buffered block by block.
// Full blocks upload at once; a block's buffer is dropped after its upload succeeded (reads then
// go to the store, or the memory cache which keeps a copy).
struct PendingSlice {
  uint32_t chunk = 0;
  uint32_t pos = 0;
  uint64_t id = 0;
  uint32_t len = 0;
  bool frozen = false;  // no more appends: flushed, or reached the chunk end
  int64_t mtime = 0;
  struct Block {
    std::string data;  // buffered bytes; emptied once uploaded
    // Or, for a block started by a large write on a store that writes in place (file://), the
    // bytes go straight into the object's temporary file as they are written (no copy into
    // memory, no later copy out of it) and `data` stays empty; a full block is then committed
    // in place, a partial one read back and put as usual.
    std::unique_ptr<object::ObjectWriter> writer;
    bool uploading = false;  // an upload task owns it now
    bool uploaded = false;
    uint32_t size = 0;  // bytes written into this block
  };
  std::deque<Block> blocks;  // a deque: appending never moves a block an upload is reading
  Status error;              // the last failed upload, if any
};

// Block buffers for reuse: a block written into memory that was used before costs a copy; a
// fresh one also costs a page fault and the kernel zeroing every page first (on the FUSE write
// path that was most of the writing thread's time). Blocks shared through Share() come back
// here when their last reference goes (evicted from the memory cache, or dropped by the last
// reader), up to `max_idle` buffers of at least `block_size` bytes; the rest are freed.
class BlockBufferPool : public std::enable_shared_from_this<BlockBufferPool> {
 public:
  BlockBufferPool(size_t block_size, size_t max_idle)
      : block_size_(block_size), max_idle_(max_idle) {}
  // A string whose capacity is at least the block size, reused when one is idle. Its contents
  // are left over from its last use (a download overwrites them in place; a writer clears it).
  std::string Take();
  // `data` as a shared block that returns its buffer to the pool when released.
  std::shared_ptr<const std::string> Share(std::string data);
  size_t idle() const;

 private:
  void Recycle(std::string* s);
  const size_t block_size_, max_idle_;
  mutable std::mutex mu_;
  std::vector<std::string> idle_;
};

// What this client knows of one inode: its unflushed slices (in write order) and a cache of
// committed chunk records. Guarded by `mu`.
struct FileState {
  std::mutex mu;
  std::condition_variable changed;  // an upload of this file finished, or a commit left `pending`
  std::deque<std::shared_ptr<PendingSlice>> pending;
  int inflight = 0;  // uploads running for this file
  int64_t last_write = 0;
  std::map<uint32_t, std::vector<meta::Slice>> records;  // committed records by chunk
  // Bumped whenever `records` may have gone stale: this client committed a slice (and dropped it
  // from `pending`), compacted a chunk, or was told to forget (Invalidate). A reader pairs the
  // records it got with the generation they were read at, so that a commit racing with it can
  // neither hide a slice (gone from `pending`, missing from its records) nor leave stale records
  // in the cache.
  uint64_t generation = 0;
  uint64_t seq_end = 0;  // end of the last read, for sequential detection
  uint64_t readahead = 0;
  uint64_t prefetched_to = 0;
  std::map<uint32_t, int> commits_since_check;  // slices committed per chunk (compaction)
  std::mutex flush_mu;                          // one Flush of this file at a time
};

// Where the bytes of a read go, by offset from the start of the read: copied into `buf`, or, when
// `pieces` is set, left in their cached block and referenced by a piece.
class ReadSink {
 public:
  ReadSink(char* buf, std::vector<ReadPiece>* pieces) : buf_(buf), pieces_(pieces) {}
  char* at(size_t pos) const { return buf_ + pos; }
  // The caller wrote `n` bytes at at(pos).
  void Filled(size_t pos, size_t n);
  // `n` bytes from `in` of cached block `block` belong at `pos`.
  void Block(size_t pos, const std::shared_ptr<const std::string>& block, size_t in, size_t n);
  // The bytes at `pos` are `data`, which `keep` holds valid (a mapped object).
  void Mapped(size_t pos, std::string_view data, std::shared_ptr<const void> keep);
  // True when bytes may be left where they are (pieces), rather than copied into the buffer.
  bool takes_pieces() const { return pieces_ != nullptr; }
  // Zeros `n` bytes at `pos`.
  void Zero(size_t pos, size_t n);
  // Forgets what was added since Mark() (a read attempt that is tried again).
  struct Mark {
    size_t count = 0;
    size_t last_len = 0;
  };
  Mark mark() const;
  void Rewind(const Mark& m);

 private:
  char* buf_;
  std::vector<ReadPiece>* pieces_;
};

class ChunkStoreImpl final : public ChunkStore {
 public:
  // `disk` is the local disk cache, or null for none; `staging` the writeback staging area, or
  // null (no writeback).
  ChunkStoreImpl(meta::Meta* meta, object::ObjectStore* store, const ChunkOptions& options,
                 std::unique_ptr<cache::DiskCache> disk = nullptr,
                 std::unique_ptr<Staging> staging = nullptr);
  ~ChunkStoreImpl() override;

  Status Write(meta::Ino ino, uint64_t off, const char* data, size_t len) override;
  Result<size_t> Read(meta::Ino ino, uint64_t off, char* buf, size_t len,
                      uint64_t file_len) override;
  Result<size_t> ReadPieces(meta::Ino ino, uint64_t off, char* buf, size_t len, uint64_t file_len,
                            std::vector<ReadPiece>* pieces) override;
  Status Flush(meta::Ino ino) override;
  Status Sync() override;
  uint64_t PendingLength(meta::Ino ino) override;
  uint64_t Commits() const override { return commits_.load(); }
  void Invalidate(meta::Ino ino) override;
  Status Compact(meta::Ino ino, uint32_t chunk_index) override;
  Result<size_t> CleanupDeleted() override;
  Status Shutdown() override;

  uint64_t buffered_bytes() const { return buffered_.load(); }
  cache::DiskCache* disk_cache() const { return disk_.get(); }  // null without --cache-dir
  Staging* staging() const { return staging_.get(); }           // null without writeback
  const cache::MemoryBlockCache& memory_cache() const { return cache_; }

 private:
  std::shared_ptr<FileState> State(meta::Ino ino, bool create);

  // ---- write path (chunk_write.cc) ----
  // Waits until `n` more bytes fit in the write buffer; asks for flushes when none is coming.
  void Reserve(meta::Ino ino, size_t n);
  void Release(size_t n);
  // Appends to the file's open slice or starts a new one; starts the upload of every block that
  // became final. Requires f->mu held.
  Status AppendLocked(const std::shared_ptr<FileState>& f, uint32_t chunk, uint32_t pos,
                      const char* data, size_t len);
  // Starts uploading block `block` of `s` unless it is uploading or uploaded; `stage`: write it
  // to the writeback staging area instead, when there is one. Requires f->mu.
  void StartUploadLocked(const std::shared_ptr<FileState>& f,
                         const std::shared_ptr<PendingSlice>& s, uint32_t block,
                         bool stage = false);
  Status UploadBlock(const PendingSlice& s, uint32_t block, const std::string& data);
  // Moves a block written in place into memory (`data`), dropping its writer. Requires f->mu.
  Status ReadBackLocked(PendingSlice::Block& blk);
  // Freezes every pending slice and starts uploading (or staging) every buffered block.
  void FreezeAndUploadLocked(const std::shared_ptr<FileState>& f, bool stage = false);
  Status FlushState(meta::Ino ino, const std::shared_ptr<FileState>& f);

  // ---- read path (chunk_read.cc) ----
  // The committed records of `chunk`, from the cache or Meta, and the generation of `f` they are
  // valid at (see FileState::generation); cached only if no commit ran while Meta was read.
  Result<std::vector<meta::Slice>> CommittedRecords(meta::Ino ino, FileState& f, uint32_t chunk,
                                                    uint64_t* generation = nullptr);
  Result<size_t> ReadInto(meta::Ino ino, uint64_t off, size_t len, uint64_t file_len,
                          ReadSink& sink);
  // Reads [pos, pos+len) of `chunk` to `sink` at `at`.
  Status ReadChunkRange(meta::Ino ino, FileState& f, uint32_t chunk, uint32_t pos, uint32_t len,
                        ReadSink& sink, size_t at);
  // One attempt of ReadChunkRange; `used` gets the committed records it resolved and
  // `generation` the generation of `f` they were valid at.
  Status ReadChunkRangeOnce(meta::Ino ino, FileState& f, uint32_t chunk, uint32_t pos, uint32_t len,
                            ReadSink& sink, size_t at, std::vector<meta::Slice>* used,
                            uint64_t* generation);
  // Reads [off, off+len) of committed slice `id` of `size` bytes to `sink` at `at`.
  // `sequential`: the reader is streaming (readahead is fetching whole blocks), so a small miss
  // waits for its block instead of sending a ranged GET of its own.
  Status ReadSlice(uint64_t id, uint32_t size, uint32_t off, uint32_t len, ReadSink& sink,
                   size_t at, bool sequential = false);
  // True when the memory cache would keep `size` more bytes without evicting.
  bool CacheHasRoom(uint64_t size) const {
    return cache_.Admits(size) && cache_.Stats().bytes + size <= cache_.capacity();
  }
  // True while a whole-block download of `key` is in flight.
  bool Fetching(const std::string& key);
  // Reads [off, off+len) of one block object straight from the store (no caching).
  Status ReadRange(uint64_t id, uint32_t blk, uint32_t blk_size, uint32_t off, uint32_t len,
                   char* out);
  Result<std::shared_ptr<const std::string>> FetchBlock(uint64_t id, uint32_t index, uint32_t size);
  // The block `key` of `size` bytes from the disk cache (verified), copied into the memory cache;
  // null when there is no disk cache or it misses.
  std::shared_ptr<const std::string> DiskGet(const std::string& key, uint32_t size);
  // The block `key` of `size` bytes from the writeback staging area (verified; not uploaded
  // yet), copied into the memory cache; null without writeback or when it is not staged.
  std::shared_ptr<const std::string> StagedGet(const std::string& key, uint32_t size);
  void Prefetch(meta::Ino ino, uint64_t off, uint64_t len, uint64_t file_len);
  // Prefetch's work: each committed block under the range is fetched on `pool` or, on a local
  // store, hinted to the kernel (ObjectStore::WillRead).
  void PrefetchBlocks(meta::Ino ino, FileState& f, uint64_t off, uint64_t len, uint64_t file_len,
                      ThreadPool* pool);

  // ---- maintenance (chunk_maint.cc) ----
  void RequestCompaction(meta::Ino ino, uint32_t chunk);
  Status DeleteSliceObjects(const meta::SliceRef& ref);
  void BackgroundLoop();

  meta::Meta* meta_;
  object::ObjectStore* store_;
  ChunkOptions opts_;
  bool local_ = false;  // ChunkOptions::local_reads on a store that reads locally
  std::shared_ptr<BlockBufferPool> buffers_;  // before cache_: cached blocks return to it
  cache::MemoryBlockCache cache_;
  std::unique_ptr<cache::DiskCache> disk_;  // destroyed after the pools that feed it
  std::unique_ptr<Staging> staging_;        // writeback only; stopped by Shutdown

  std::mutex files_mu_;
  std::unordered_map<meta::Ino, std::shared_ptr<FileState>> files_;

  std::mutex buf_mu_;
  std::condition_variable buf_cv_;
  std::atomic<uint64_t> buffered_{0};
  std::atomic<uint64_t> commits_{0};  // slices committed and dropped from `pending`

  std::mutex fetch_mu_;  // single-flight downloads
  std::unordered_map<
      std::string, std::shared_ptr<std::shared_future<Result<std::shared_ptr<const std::string>>>>>
      fetching_;

  std::mutex compact_mu_;
  std::set<std::pair<meta::Ino, uint32_t>> compact_queue_;

  std::unique_ptr<ThreadPool> uploads_;
  std::unique_ptr<ThreadPool> downloads_;
  std::thread background_;
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool stopping_ = false;
  bool shut_down_ = false;
  uint64_t metrics_id_ = 0;  // the collector of cache and buffer metrics (chunk_metrics.cc)
};

// Adds a collector of `chunks`' cache and write-buffer metrics to the process registry; remove it
// with metrics::Registry::Default().RemoveCollector(id) before `chunks` is destroyed.
uint64_t RegisterChunkMetrics(const ChunkStoreImpl* chunks);

}  // namespace nexus::chunk
