// ChunkStore: the data path. Files are cut into 64 MiB chunks, each written as slices (one per
// continuous write), each slice stored as blocks of the volume's block size, one object each:
//   <volume>/chunks/<id/1e6>/<id/1e3>/<id>_<block index>_<block size>
// Writes are buffered (bounded by buffer_size, with back-pressure), uploaded in parallel and
// committed to Meta after upload. Reads resolve overlapping slices, read ahead and cache.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "meta/types.h"

namespace nexus::meta {
class Meta;
}
namespace nexus::object {
class ObjectStore;
}

namespace nexus::chunk {

struct ChunkOptions {
  uint32_t block_size = 4 << 20;
  uint64_t buffer_size = 300ULL << 20;  // bytes of unflushed write data, all files together
  int max_uploads = 20;
  int max_downloads = 20;
  uint64_t max_readahead = 64ULL << 20;  // bytes ahead of a sequential reader
  uint64_t mem_cache_size = 256ULL << 20;
  std::string cache_dir;  // "" = no disk cache
  // Blocks a writer uploads go to the disk cache too (as JuiceFS caches full blocks it writes),
  // so that reading back what this client wrote costs no GET, also after a remount. Not on a
  // store that reads locally, where the cache would copy a local disk to a local disk.
  bool cache_writes = true;
  uint64_t cache_size = 10ULL << 30;      // bytes of disk cache
  double free_space_ratio = 0.1;          // keep this fraction of the cache disk free
  int64_t flush_idle_ns = 5'000'000'000;  // commit buffered data idle this long
  int compact_write_slices = 100;         // compact a chunk with this many slices (seen on write)
  int compact_read_slices = 5;            // ... or this many (seen on read)
  // After a small read that missed the caches and fetched only its range, fetch its whole block
  // in the background (a bet on locality). Worth it when a GET costs milliseconds (s3); a waste
  // of memory bandwidth when ranged reads cost microseconds (file://, mem://).
  bool prefetch_small_reads = true;
  // On a store that reads locally (ObjectStore::ReadsLocally: file://, frames stored as they
  // are), large and sequential reads read their range from the object where it is, and written
  // blocks are not copied into the memory cache: the OS page cache already holds the bytes, and
  // a second copy costs the memory bandwidth of the write and of the read. The memory cache then
  // keeps blocks that small random reads touch, loaded in the background while it has room.
  bool local_reads = true;
  // With local_reads, a FUSE read takes its bytes from a mapping of the object (the reply's
  // copy out of the page cache is then the only one) instead of a pread into the reply buffer.
  // Off by default: a first touch of a mapped page costs a page fault, and on the firecracker
  // VMs this project is measured on, faults cost more than the copy they save (a cold 2 GiB
  // sequential read: 0.5-0.65 GB/s mapped, 0.85-1.7 GB/s with pread; docs/benchmarks.md).
  bool map_local_reads = false;
  // Writeback: a block that a flush waits for is written to <cache_dir>/staging and the slice is
  // committed at once; the block uploads in the background (chunk/staging.h). Needs cache_dir.
  // Blocks that fill while a file is written still upload directly, so a large sequential write
  // is not written to the local disk twice; a flush mostly stages a file's last, partial block.
  bool writeback = false;
  int writeback_uploaders = 4;
  // Staged blocks wait this long before their upload: data deleted sooner (temporary files) is
  // never uploaded. Shutdown uploads at once.
  int64_t writeback_upload_delay_ns = 0;
  // Shutdown waits for staged blocks to upload, giving up (they stay staged for the next start)
  // when no upload succeeded for this long.
  int64_t writeback_drain_stall_ns = 30'000'000'000;
  bool background = true;  // run idle flush, compaction and deletion threads
  std::string prefix;      // object key prefix, the volume name + '/'
};

// Part of what a read returns: `len` bytes at `data`. A piece points either into a cached block
// or a mapped object, which `keep` holds alive, or into the caller's buffer (`keep` null).
struct ReadPiece {
  const char* data = nullptr;
  size_t len = 0;
  std::shared_ptr<const void> keep;
};

// Contract: thread-safe; per-inode state sits under its own lock. A Read sees this client's own
// unflushed writes. Flush returns after every write made before it is uploaded and committed.
class ChunkStore {
 public:
  static Result<std::unique_ptr<ChunkStore>> Open(meta::Meta* meta, object::ObjectStore* store,
                                                  const ChunkOptions& options);
  virtual ~ChunkStore() = default;

  // Buffers `len` bytes at `off` of `ino`; may block while buffers are full.
  virtual Status Write(meta::Ino ino, uint64_t off, const char* data, size_t len) = 0;
  // Reads up to `len` bytes at `off` into `buf`, treating `file_len` (the committed length as
  // the caller knows it) extended by this client's unflushed writes as EOF. Returns the bytes
  // read (short only at EOF).
  virtual Result<size_t> Read(meta::Ino ino, uint64_t off, char* buf, size_t len,
                              uint64_t file_len) = 0;
  // Read without copying cached blocks: `pieces` gets, in file order, the spans that make up the
  // bytes read, pointing into cached blocks or into `buf` (of `len` bytes), where everything else
  // (holes, unflushed writes, ranged reads from the store) was placed.
  virtual Result<size_t> ReadPieces(meta::Ino ino, uint64_t off, char* buf, size_t len,
                                    uint64_t file_len, std::vector<ReadPiece>* pieces) = 0;
  // Uploads and commits everything buffered for `ino` (in writeback mode, stages what would
  // wait for an upload; see ChunkOptions::writeback).
  virtual Status Flush(meta::Ino ino) = 0;
  // Makes flushed data durable on local storage where it is not in the object store yet (fsyncs
  // writeback staging files); a no-op without writeback.
  virtual Status Sync() = 0;
  // The end of this client's unflushed writes to `ino` (0 when none), for st_size.
  virtual uint64_t PendingLength(meta::Ino ino) = 0;
  // How many slices this client has committed so far (all files). A commit moves a slice from
  // this client's pending writes into Meta, so a length read from Meta before it and a
  // PendingLength taken after it can both miss the slice's end: a caller that reads Commits()
  // before Meta, and again after PendingLength, knows its picture is whole when the two agree.
  virtual uint64_t Commits() const = 0;
  // Forgets cached slice lists of `ino` (after truncate, fallocate, or an open by another
  // client: close-to-open).
  virtual void Invalidate(meta::Ino ino) = 0;
  // Merges the slices of one chunk into one new slice (no-op for a chunk with one slice).
  virtual Status Compact(meta::Ino ino, uint32_t chunk_index) = 0;
  // Runs one round of background deletion now; returns slices removed.
  virtual Result<size_t> CleanupDeleted() = 0;
  // Flushes everything and stops background threads.
  virtual Status Shutdown() = 0;
};

}  // namespace nexus::chunk
