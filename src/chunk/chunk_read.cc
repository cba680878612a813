// The read path: committed records overlaid with this client's unflushed slices, whole-block
// fetches through the memory cache with one download per block, and sequential readahead.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "chunk/chunk_impl.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "meta/slice_view.h"

namespace nexus::chunk {

void ReadSink::Filled(size_t pos, size_t n) {
  if (!pieces_ || n == 0) return;
  if (!pieces_->empty()) {
    ReadPiece& last = pieces_->back();
    if (!last.keep && last.data + last.len == buf_ + pos) {
      last.len += n;
      return;
    }
  }
  pieces_->push_back(ReadPiece{buf_ + pos, n, nullptr});
}

void ReadSink::Block(size_t pos, const std::shared_ptr<const std::string>& block, size_t in,
                     size_t n) {
  if (!pieces_) {
    std::memcpy(buf_ + pos, block->data() + in, n);
    return;
  }
  if (n == 0) return;
  pieces_->push_back(ReadPiece{block->data() + in, n, block});
}

void ReadSink::Mapped(size_t pos, std::string_view data, std::shared_ptr<const void> keep) {
  if (!pieces_) {
    std::memcpy(buf_ + pos, data.data(), data.size());
    return;
  }
  if (data.empty()) return;
  pieces_->push_back(ReadPiece{data.data(), data.size(), std::move(keep)});
}

void ReadSink::Zero(size_t pos, size_t n) {
  std::memset(buf_ + pos, 0, n);
  Filled(pos, n);
}

ReadSink::Mark ReadSink::mark() const {
  if (!pieces_ || pieces_->empty()) return Mark{};
  return Mark{pieces_->size(), pieces_->back().len};
}

void ReadSink::Rewind(const Mark& m) {
  if (!pieces_) return;
  pieces_->resize(m.count);
  if (m.count) pieces_->back().len = m.last_len;
}

Result<size_t> ChunkStoreImpl::Read(meta::Ino ino, uint64_t off, char* buf, size_t len,
                                    uint64_t file_len) {
  ReadSink sink(buf, nullptr);
  return ReadInto(ino, off, len, file_len, sink);
}

Result<size_t> ChunkStoreImpl::ReadPieces(meta::Ino ino, uint64_t off, char* buf, size_t len,
                                          uint64_t file_len, std::vector<ReadPiece>* pieces) {
  pieces->clear();
  ReadSink sink(buf, pieces);
  return ReadInto(ino, off, len, file_len, sink);
}

Result<size_t> ChunkStoreImpl::ReadInto(meta::Ino ino, uint64_t off, size_t len, uint64_t file_len,
                                        ReadSink& sink) {
  auto f = State(ino, true);
  uint64_t end = std::max(file_len, PendingLength(ino));
  if (off >= end || len == 0) return size_t{0};
  len = static_cast<size_t>(std::min<uint64_t>(len, end - off));
  uint64_t ahead = 0, from = 0;
  {
    std::lock_guard lock(f->mu);
    if (off == f->seq_end && off != 0) {
      f->readahead = std::min<uint64_t>(std::max<uint64_t>(f->readahead * 2, opts_.block_size),
                                        opts_.max_readahead);
    } else {
      f->readahead = 0;
      // The kernel's concurrent readahead requests arrive slightly out of order: only a read
      // away from the window forgets what was prefetched, or every such request would ask for
      // the same blocks again.
      if (off > f->prefetched_to || off + len + opts_.max_readahead < f->prefetched_to) {
        f->prefetched_to = 0;
      }
    }
    f->seq_end = off + len;
    if (f->readahead) {
      from = std::max(off + len, f->prefetched_to);
      uint64_t to = std::min(off + len + f->readahead, end);
      if (to > from) {
        ahead = to - from;
        f->prefetched_to = to;
      }
    }
  }
  if (ahead) Prefetch(ino, from, ahead, end);
  size_t done = 0;
  while (done < len) {
    uint64_t at = off + done;
    uint32_t chunk = static_cast<uint32_t>(at / meta::kChunkSize);
    uint32_t pos = static_cast<uint32_t>(at % meta::kChunkSize);
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(len - done, meta::kChunkSize - pos));
    Status st = ReadChunkRange(ino, *f, chunk, pos, n, sink, done);
    if (!st.ok()) {
      st = st.With("read inode " + std::to_string(ino) + " at " + std::to_string(at));
      NX_LOG_ERROR("{}", st.ToString());  // names the object that failed, if one did
      return Err(std::move(st));
    }
    done += n;
  }
  return done;
}

Result<std::vector<meta::Slice>> ChunkStoreImpl::CommittedRecords(meta::Ino ino, FileState& f,
                                                                  uint32_t chunk,
                                                                  uint64_t* generation) {
  uint64_t gen;
  {
    std::lock_guard lock(f.mu);
    gen = f.generation;
    if (generation) *generation = gen;
    if (auto it = f.records.find(chunk); it != f.records.end()) return it->second;
  }
  NX_ASSIGN_OR_RETURN(auto recs, meta_->ReadChunk(ino, chunk));
  std::lock_guard lock(f.mu);
  // A commit that finished meanwhile may be missing from what Meta returned: then the records
  // are good for this one read (the caller sees the generation moved) but not for the cache.
  if (f.generation == gen) f.records[chunk] = recs;
  return recs;
}

// A read that fails may have raced with a compaction, here or by another client: the slices it
// resolved were replaced and their objects deleted under it. Then either the chunk's records in
// Meta differ from the ones it used, and it reads again with the new ones; or it read one of this
// client's pending slices that was committed, compacted and deleted before its commit returned
// here (the commit has not left `pending` yet): then it waits for that commit to move the
// generation and reads again. A failure over records that are still current is real.
Status ChunkStoreImpl::ReadChunkRange(meta::Ino ino, FileState& f, uint32_t chunk, uint32_t pos,
                                      uint32_t len, ReadSink& sink, size_t at) {
  const ReadSink::Mark mark = sink.mark();
  for (int attempt = 0;; ++attempt) {
    std::vector<meta::Slice> used;
    uint64_t gen = 0;
    Status st = ReadChunkRangeOnce(ino, f, chunk, pos, len, sink, at, &used, &gen);
    if (st.ok() || attempt == 4) return st;
    sink.Rewind(mark);
    auto now = meta_->ReadChunk(ino, chunk);
    if (!now) return st;
    std::unique_lock lock(f.mu);
    if (*now != used) {
      f.records.erase(chunk);
      f.generation++;
      continue;
    }
    const bool read_pending = std::any_of(f.pending.begin(), f.pending.end(),
                                          [&](const auto& s) { return s->chunk == chunk; });
    if (!read_pending ||
        !f.changed.wait_for(lock, std::chrono::seconds(5), [&] { return f.generation != gen; })) {
      return st;
    }
  }
}

Status ChunkStoreImpl::ReadChunkRangeOnce(meta::Ino ino, FileState& f, uint32_t chunk, uint32_t pos,
                                          uint32_t len, ReadSink& sink, size_t at,
                                          std::vector<meta::Slice>* used, uint64_t* generation) {
  // The committed records and this client's pending slices must be one consistent picture: a
  // slice committed (and dropped from `pending`) after the records were read would be in
  // neither. So take the pending slices at the generation the records are valid at, and read
  // again when a commit slipped in between. A slice committed after the records were read but
  // still pending shows up twice, in its place in the write order both times: harmless.
  std::vector<meta::Slice> recs;
  size_t committed = 0;
  std::unordered_map<uint64_t, std::shared_ptr<PendingSlice>> pending;
  bool sequential = false;
  for (;;) {
    uint64_t gen = 0;
    NX_ASSIGN_OR_RETURN(recs, CommittedRecords(ino, f, chunk, &gen));
    committed = recs.size();
    *used = recs;
    std::lock_guard lock(f.mu);
    if (f.generation != gen) continue;
    *generation = gen;
    sequential = f.readahead > 0;
    for (const auto& s : f.pending) {
      if (s->chunk != chunk || s->len == 0) continue;
      recs.push_back(meta::Slice{s->pos, s->id, s->len, 0, s->len});
      pending.emplace(s->id, s);
    }
    break;
  }
  if (committed >= static_cast<size_t>(opts_.compact_read_slices)) RequestCompaction(ino, chunk);
  // Bytes no slice covers (holes, past the end of the records) are zeros.
  const uint64_t want_end = uint64_t(pos) + len;
  uint64_t filled = pos;  // everything before this offset of the chunk is placed
  for (const meta::Slice& p : meta::BuildSliceView(recs)) {
    uint64_t a = std::max<uint64_t>(pos, p.pos),
             b = std::min<uint64_t>(want_end, uint64_t(p.pos) + p.len);
    if (p.id == 0 || a >= b) continue;
    if (a > filled) sink.Zero(at + (filled - pos), a - filled);
    filled = b;
    uint32_t slice_off = p.off + static_cast<uint32_t>(a - p.pos);
    uint32_t n = static_cast<uint32_t>(b - a);
    const size_t dst_at = at + (a - pos);
    auto it = pending.find(p.id);
    if (it == pending.end()) {
      NX_TRY(ReadSlice(p.id, p.size, slice_off, n, sink, dst_at, sequential));
      continue;
    }
    char* dst = sink.at(dst_at);
    // This client's unflushed slice: buffered blocks from memory, uploaded ones from the store.
    const PendingSlice& s = *it->second;
    const uint32_t bs = opts_.block_size;
    while (n > 0) {
      uint32_t blk = slice_off / bs, in = slice_off % bs;
      uint32_t take = std::min(n, bs - in);
      uint32_t blk_size = 0;
      bool copied = false;
      {
        std::unique_lock lock(f.mu);
        // A block written in place is read from its file, but not while its upload task may
        // be committing it (the file moves): that takes a rename, or a read back.
        f.changed.wait(lock, [&] {
          const auto& b = s.blocks[blk];
          return !(b.writer && b.uploading);
        });
        const auto& block = s.blocks[blk];
        blk_size = block.size;
        if (!block.uploaded) {
          if (block.writer) {
            NX_TRY(block.writer->ReadAt(in, take, dst));
          } else {
            std::memcpy(dst, block.data.data() + in, take);
          }
          copied = true;
        }
      }
      if (copied) {
        sink.Filled(static_cast<size_t>(dst - sink.at(0)), take);
      } else {
        NX_ASSIGN_OR_RETURN(auto data, FetchBlock(s.id, blk, blk_size));
        sink.Block(static_cast<size_t>(dst - sink.at(0)), data, in, take);
      }
      dst += take;
      slice_off += take;
      n -= take;
    }
  }
  if (want_end > filled) sink.Zero(at + (filled - pos), want_end - filled);
  return Status::OK();
}

// A read of less than a quarter block that misses the cache fetches only its own range, so a
// 4 KiB random read costs a 4 KiB GET rather than a whole block; the whole block follows in the
// background when the download pool has room and the store is remote (a prefetch for the reads
// around it; see ChunkOptions::prefetch_small_reads).
bool ChunkStoreImpl::Fetching(const std::string& key) {
  std::lock_guard lock(fetch_mu_);
  return fetching_.count(key) != 0;
}

// On a local store, reads below this size count as small (see ReadSlice): the frame size.
constexpr uint32_t kLocalSmallRead = 64 << 10;

Status ChunkStoreImpl::ReadSlice(uint64_t id, uint32_t size, uint32_t off, uint32_t len,
                                 ReadSink& sink, size_t at, bool sequential) {
  const uint32_t bs = opts_.block_size;
  // Each pass serves `take` bytes (up to the end of a block) and continues with the rest.
  for (uint32_t take = 0; len > 0; at += take, off += take, len -= take) {
    char* out = sink.at(at);
    uint32_t blk = off / bs, in = off % bs;
    uint32_t blk_size = std::min(bs, size - blk * bs);
    take = std::min(len, blk_size - in);
    const std::string key = BlockKey(opts_.prefix, id, blk, blk_size);
    std::shared_ptr<const std::string> data = cache_.Get(key);
    if (!data && local_ && (take >= kLocalSmallRead || sequential)) {
      // A local store: the page cache holds the object's bytes, read the range where it is. Only
      // a read smaller than a frame (which it would read and checksum whole) is worth a block
      // in memory; the kernel's readahead arrives as concurrent reads of 128 KiB and more, out
      // of order, which the sequential detection above misses. With map_local_reads, a read
      // handed on in pieces (a FUSE reply) takes the bytes from the object's mapping; whatever
      // fails there is read (retried, reported) the ordinary way.
      if (opts_.map_local_reads && sink.takes_pieces() && !staging_) {
        if (auto m = store_->MapRange(key, in, take); m && m->data.size() == take) {
          sink.Mapped(at, m->data, std::move(m->keep));
          continue;
        }
      }
      NX_TRY(ReadRange(id, blk, blk_size, in, take, out));
      sink.Filled(at, take);
      continue;
    }
    // A streaming reader, or a block already on its way: wait for the whole block rather than
    // fetch the same bytes twice.
    const bool whole = !data && take < bs / 4 && (sequential || Fetching(key));
    // The disk cache serves a small read by its range, reading and verifying only the 16 KiB
    // segments that hold it (microseconds; the whole 4 MiB block would cost a millisecond, see
    // docs/cache.md), and like a small read from the store it does not load the block into
    // memory. A larger read takes the whole block, which then goes to the memory cache too.
    if (!data && disk_ && take < bs / 4 && !whole) {
      if (disk_->ReadRange(key, in, take, out)) {
        sink.Filled(at, take);
        continue;
      }
    } else if (!data) {
      data = DiskGet(key, blk_size);
    }
    if (!data && take < bs / 4 && !whole) {
      NX_TRY(ReadRange(id, blk, blk_size, in, take, out));
      // On a local store the block is loaded only while the memory cache has room: a small
      // read from the page cache costs a frame's read and checksum, a cached block a copy.
      if (ThreadPool* pool = downloads_.get();
          (opts_.prefetch_small_reads || (local_ && CacheHasRoom(blk_size))) && pool &&
          pool->queued() < static_cast<size_t>(std::max(1, opts_.max_downloads))) {
        pool->TrySubmit([this, id, blk, blk_size] { (void)FetchBlock(id, blk, blk_size); });
      }
      sink.Filled(at, take);
      continue;
    }
    if (!data) {
      auto got = FetchBlock(id, blk, blk_size);
      if (!got && whole) {  // a damaged block: only the frames under this small read matter
        NX_TRY(ReadRange(id, blk, blk_size, in, take, out));
        sink.Filled(at, take);
        continue;
      }
      if (!got) return got.error();
      data = std::move(*got);
    }
    sink.Block(at, data, in, take);
  }
  return Status::OK();
}

Status ChunkStoreImpl::ReadRange(uint64_t id, uint32_t blk, uint32_t blk_size, uint32_t off,
                                 uint32_t len, char* out) {
  const std::string key = BlockKey(opts_.prefix, id, blk, blk_size);
  if (auto staged = StagedGet(key, blk_size)) {
    if (uint64_t(off) + len > staged->size()) return Status::IOError("range past staged " + key);
    std::memcpy(out, staged->data() + off, len);
    return Status::OK();
  }
  Status last;
  for (int attempt = 0; attempt < kStoreAttempts; ++attempt) {
    if (attempt) BackoffSleep(attempt);
    Status got = store_->ReadTo(key, off, len, out);
    if (got.ok()) return got;
    last = Status::IOError("get " + key + ": " + got.ToString());
    if (got.code() == ENOENT) break;
  }
  return last;  // the caller logs what finally fails (a retry after a compaction may not)
}

Result<std::shared_ptr<const std::string>> ChunkStoreImpl::FetchBlock(uint64_t id, uint32_t index,
                                                                      uint32_t size) {
  const std::string key = BlockKey(opts_.prefix, id, index, size);
  if (auto hit = cache_.Get(key)) return hit;
  using Fut = std::shared_future<Result<std::shared_ptr<const std::string>>>;
  std::shared_ptr<Fut> fut;
  std::promise<Result<std::shared_ptr<const std::string>>> promise;
  bool leader = false;
  {
    std::lock_guard lock(fetch_mu_);
    auto it = fetching_.find(key);
    if (it != fetching_.end()) {
      fut = it->second;
    } else {
      fut = std::make_shared<Fut>(promise.get_future().share());
      fetching_.emplace(key, fut);
      leader = true;
    }
  }
  if (!leader) return fut->get();
  auto local = DiskGet(key, size);
  if (!local) local = StagedGet(key, size);
  if (local) {
    promise.set_value(local);
    std::lock_guard lock(fetch_mu_);
    fetching_.erase(key);
    return local;
  }
  Result<std::shared_ptr<const std::string>> result = Err(EIO, "not fetched");
  for (int attempt = 0; attempt < kStoreAttempts; ++attempt) {
    if (attempt) BackoffSleep(attempt);
    // A whole block goes into a recycled buffer when one is idle (no page faults, no zeroing).
    std::string buf = size == opts_.block_size ? buffers_->Take() : std::string();
    Status got = store_->GetInto(key, 0, UINT64_MAX, &buf);
    if (got.ok() && buf.size() == size) {
      result = buffers_->Share(std::move(buf));
      if (disk_) disk_->Put(key, *result);  // first: a memory hit implies the disk Put was asked
      cache_.Put(key, *result);
      break;
    }
    if (got.ok()) {
      result = Err(EIO, "object " + key + " has " + std::to_string(buf.size()) +
                            " bytes, expected " + std::to_string(size));
      break;
    }
    result = Err(EIO, "get " + key + ": " + got.ToString());
    if (got.code() == ENOENT) {
      result = Err(EIO, "block object " + key + " is missing");
      break;
    }
  }
  promise.set_value(result);
  {
    std::lock_guard lock(fetch_mu_);
    fetching_.erase(key);
  }
  return result;
}

// Fetches the committed blocks under [off, off+len) into the cache in the background; a full
// download queue drops the work (readahead is a hint). On a local store the work is a kernel
// hint per block, done here: cheaper than waking a pool thread on every read of a sequential
// reader (a context switch each, which cost a cold sequential read about a tenth of its speed).
void ChunkStoreImpl::Prefetch(meta::Ino ino, uint64_t off, uint64_t len, uint64_t file_len) {
  auto f = State(ino, false);
  if (!f || !downloads_) return;
  if (local_) return PrefetchBlocks(ino, *f, off, len, file_len, nullptr);
  ThreadPool* pool = downloads_.get();  // stays valid until its queued tasks have run
  pool->TrySubmit([this, pool, ino, f, off, len, file_len] {
    PrefetchBlocks(ino, *f, off, len, file_len, pool);
  });
}

void ChunkStoreImpl::PrefetchBlocks(meta::Ino ino, FileState& f, uint64_t off, uint64_t len,
                                    uint64_t file_len, ThreadPool* pool) {
  uint64_t end = std::min(off + len, file_len);
  for (uint64_t at = off; at < end;) {
    uint32_t chunk = static_cast<uint32_t>(at / meta::kChunkSize);
    uint32_t pos = static_cast<uint32_t>(at % meta::kChunkSize);
    uint64_t stop = std::min<uint64_t>(end, (uint64_t(chunk) + 1) * meta::kChunkSize);
    auto recs = CommittedRecords(ino, f, chunk);
    if (!recs) return;
    const uint32_t bs = opts_.block_size;
    for (const meta::Slice& p : meta::BuildSliceView(*recs)) {
      uint64_t a = std::max<uint64_t>(pos, p.pos);
      uint64_t b =
          std::min<uint64_t>(stop - uint64_t(chunk) * meta::kChunkSize, uint64_t(p.pos) + p.len);
      if (p.id == 0 || a >= b) continue;
      uint32_t first = (p.off + static_cast<uint32_t>(a - p.pos)) / bs;
      uint32_t last = (p.off + static_cast<uint32_t>(b - p.pos) - 1) / bs;
      for (uint32_t blk = first; blk <= last; ++blk) {
        uint64_t id = p.id;
        uint32_t size = std::min(bs, p.size - blk * bs);
        if (!pool) {  // the reads go to the page cache: have the OS read the objects ahead
          store_->WillRead(BlockKey(opts_.prefix, id, blk, size), 0, UINT64_MAX);
          continue;
        }
        pool->TrySubmit([this, id, blk, size] { (void)FetchBlock(id, blk, size); });
      }
    }
    at = stop;
  }
}

}  // namespace nexus::chunk
