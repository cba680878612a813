// The write path: buffered slices, block uploads, ordered commits, back-pressure.
#include <chrono>
#include <thread>

#include "chunk/chunk_impl.h"
#include "common/backoff.h"
#include "common/buffer.h"
#include "common/clock.h"
#include "common/logging.h"

namespace nexus::chunk {

void ChunkStoreImpl::Reserve(meta::Ino ino, size_t n) {
  std::unique_lock lock(buf_mu_);
  int waits = 0;
  while (buffered_.load() + n > opts_.buffer_size) {
    if (++waits % 4 == 0) {
      // Room comes back as uploads finish. When none of this file's blocks is uploading, none
      // may come: send its partial blocks off (the background loop does the same for idle files
      // under pressure). Not while its uploads run: freezing cuts the slice being written, and a
      // sequential write to a slow store then left a chunk in a dozen slices (and compactions).
      lock.unlock();
      if (auto f = State(ino, false)) {
        std::lock_guard flock(f->mu);
        if (f->inflight == 0) FreezeAndUploadLocked(f);
      }
      bg_cv_.notify_all();
      lock.lock();
    }
    buf_cv_.wait_for(lock, std::chrono::milliseconds(5));
  }
  buffered_ += n;
}

void ChunkStoreImpl::Release(size_t n) {
  {
    std::lock_guard lock(buf_mu_);
    buffered_ -= n;
  }
  buf_cv_.notify_all();
}

Status ChunkStoreImpl::Write(meta::Ino ino, uint64_t off, const char* data, size_t len) {
  if (off + len < off || off + len > (uint64_t(1) << 50)) {
    return Status::Errno(EFBIG, "write at " + std::to_string(off) + " of inode " +
                                    std::to_string(ino) + " is past the largest file size");
  }
  auto f = State(ino, true);
  while (len > 0) {
    const uint32_t chunk = static_cast<uint32_t>(off / meta::kChunkSize);
    const uint32_t pos = static_cast<uint32_t>(off % meta::kChunkSize);
    size_t n = std::min<uint64_t>({len, meta::kChunkSize - pos, opts_.block_size});
    Reserve(ino, n);
    {
      std::lock_guard lock(f->mu);
      Status s = AppendLocked(f, chunk, pos, data, n);
      if (!s.ok()) {
        Release(n);
        return s.With("write inode " + std::to_string(ino));
      }
      f->last_write = MonoNanos();
    }
    off += n;
    data += n;
    len -= n;
  }
  return Status::OK();
}

Status ChunkStoreImpl::AppendLocked(const std::shared_ptr<FileState>& f, uint32_t chunk,
                                    uint32_t pos, const char* data, size_t len) {
  std::shared_ptr<PendingSlice> s = f->pending.empty() ? nullptr : f->pending.back();
  if (!s || s->frozen || s->chunk != chunk || s->pos + s->len != pos) {
    if (s && !s->frozen) {  // its data is final: send its last partial block off
      s->frozen = true;
      if (!s->blocks.empty()) StartUploadLocked(f, s, static_cast<uint32_t>(s->blocks.size() - 1));
    }
    auto id = meta_->NewSliceId();
    if (!id) return id.error();
    s = std::make_shared<PendingSlice>();
    s->chunk = chunk;
    s->pos = pos;
    s->id = *id;
    f->pending.push_back(s);
  }
  s->mtime = NowNanos();
  const uint32_t bs = opts_.block_size;
  while (len > 0) {
    uint32_t b = s->len / bs, in = s->len % bs;
    if (b >= s->blocks.size()) {
      s->blocks.emplace_back();
      auto& nb = s->blocks.back();
      // Large writes will likely fill the block. Where the store writes objects in place
      // (file://), they go straight into the block object's file: one copy of every byte, from
      // the caller's buffer while it is still in the CPU cache, instead of one into a buffer and
      // a second, later, out of it. Elsewhere the buffer is sized once rather than regrown (each
      // regrowth copies what is buffered); untouched pages of a reservation cost no memory.
      if (len >= bs / 16) {
        nb.writer = store_->NewWriter(BlockKey(opts_.prefix, s->id, b, bs), bs);
        if (!nb.writer) {
          nb.data = buffers_->Take();
          nb.data.clear();
        }
      } else {
        ReserveLarge(&nb.data, std::max<size_t>(len, 64 << 10));
      }
    }
    auto& blk = s->blocks[b];
    size_t n = std::min<size_t>(len, bs - in);
    if (blk.writer) {
      Status st = blk.writer->Append(std::string_view(data, n));
      if (!st.ok()) {
        NX_LOG_WARN("in-place write of block {} of slice {}: {}; buffering it instead", b, s->id,
                    st.ToString());
        Status back = ReadBackLocked(blk);
        if (!back.ok()) {
          s->frozen = true;  // the block's file may hold part of `data`: never append after it
          return back;
        }
      }
    }
    if (!blk.writer) {
      if (blk.data.capacity() < blk.data.size() + n) {  // regrow (small writes), never past bs
        ReserveLarge(&blk.data,
                     std::min<size_t>(bs, std::max(blk.data.size() + n, 2 * blk.data.capacity())));
      }
      blk.data.append(data, n);
    }
    blk.size += static_cast<uint32_t>(n);
    s->len += static_cast<uint32_t>(n);
    data += n;
    len -= n;
    if (blk.size == bs) StartUploadLocked(f, s, b);
  }
  if (s->pos + s->len == meta::kChunkSize) {
    s->frozen = true;
    StartUploadLocked(f, s, static_cast<uint32_t>(s->blocks.size() - 1));
  }
  return Status::OK();
}

void ChunkStoreImpl::StartUploadLocked(const std::shared_ptr<FileState>& f,
                                       const std::shared_ptr<PendingSlice>& s, uint32_t block,
                                       bool stage) {
  auto& blk = s->blocks[block];
  if (blk.uploading || blk.uploaded || blk.size == 0) return;
  blk.uploading = true;
  f->inflight++;
  stage = stage && staging_ != nullptr;
  uploads_->Submit([this, f, s, block, stage] {
    // The block is final, so its bytes do not change while the upload reads them.
    const std::string* data;
    object::ObjectWriter* writer;
    uint32_t size;
    {
      std::lock_guard lock(f->mu);
      data = &s->blocks[block].data;
      writer = s->blocks[block].writer.get();
      size = s->blocks[block].size;
    }
    Status st;
    bool have_data = true;  // `*data` holds the block's bytes
    if (writer) {
      // Written in place: a full block is committed where it is (readers wait meanwhile, see
      // ReadChunkRangeOnce); a partial one (its key names its size) is read back and put.
      if (size == opts_.block_size && writer->size() == size) {
        // A committed block is read back into the memory cache while the cache has room for
        // it, as an uploaded one goes there: a reader soon after then finds it without touching
        // the file. Not at the cost of evicting: that copy would double the write's memory
        // traffic to displace blocks that were read, for data that may never be. Nor on a
        // store that reads locally, whose reads find the bytes in the page cache.
        std::shared_ptr<const std::string> cached;
        if (!local_ && CacheHasRoom(size)) {
          std::string buf = buffers_->Take();
          buf.resize(size);
          if (writer->ReadAt(0, size, buf.data()).ok()) cached = buffers_->Share(std::move(buf));
        }
        st = writer->Commit();
        if (st.ok()) {
          if (cached) cache_.Put(BlockKey(opts_.prefix, s->id, block, size), std::move(cached));
          {
            std::lock_guard lock(f->mu);
            auto& b = s->blocks[block];
            b.writer.reset();
            b.uploading = false;
            b.uploaded = true;
            f->inflight--;
          }
          f->changed.notify_all();
          Release(size);
          return;
        }
        NX_LOG_WARN("in-place commit of block {} of slice {}: {}; putting it instead", block, s->id,
                    st.ToString());
      }
      std::lock_guard lock(f->mu);
      st = ReadBackLocked(s->blocks[block]);
      have_data = st.ok();
      if (!have_data) {
        NX_LOG_ERROR("block {} of slice {} cannot be read back: {}", block, s->id, st.ToString());
      }
    }
    bool staged = false;
    if (have_data && stage) {
      const std::string key =
          BlockKey(opts_.prefix, s->id, block, static_cast<uint32_t>(data->size()));
      st = staging_->Stage(key, *data);
      staged = st.ok();
      if (!staged) NX_LOG_WARN("{}; uploading it now instead", st.ToString());
    }
    if (have_data && !staged) st = UploadBlock(*s, block, *data);
    size_t freed = 0;
    {
      std::lock_guard lock(f->mu);
      auto& b = s->blocks[block];
      b.uploading = false;
      if (st.ok()) {
        b.uploaded = true;
        // A block reserved whole but uploaded short (a file's last block): keep only its bytes
        // in the cache (huge pages make the untouched rest of a reservation resident).
        if (b.data.capacity() - b.data.size() >= (1u << 20)) b.data.shrink_to_fit();
        auto copy = buffers_->Share(std::move(b.data));
        freed = copy->size();
        b.data = std::string();
        const std::string key = BlockKey(opts_.prefix, s->id, block, b.size);
        // Shares the buffer: the disk cache's writer holds it until the file is written (at
        // most DiskCacheOptions::max_pending blocks; a Put beyond that is dropped, never waited
        // for). A staged block is on the local disk already, in staging.
        if (disk_ && !staged && CachesWrites(opts_, store_)) disk_->Put(key, copy);
        cache_.Put(key, std::move(copy));
      } else {
        s->error = st;
      }
      f->inflight--;
    }
    f->changed.notify_all();
    if (freed) Release(freed);
  });
}

Status ChunkStoreImpl::ReadBackLocked(PendingSlice::Block& blk) {
  std::string buf = blk.size == opts_.block_size ? buffers_->Take() : std::string();
  buf.resize(blk.size);
  NX_TRY(blk.writer->ReadAt(0, blk.size, buf.data()));
  blk.data = std::move(buf);
  blk.writer.reset();
  return Status::OK();
}

Status ChunkStoreImpl::UploadBlock(const PendingSlice& s, uint32_t block, const std::string& data) {
  const std::string key = BlockKey(opts_.prefix, s.id, block, static_cast<uint32_t>(data.size()));
  Status st;
  for (int attempt = 0; attempt < kStoreAttempts; ++attempt) {
    if (attempt) BackoffSleep(attempt);
    st = store_->Put(key, data);
    if (st.ok()) return st;
    if (!IsTransientStoreError(st)) break;
  }
  NX_LOG_ERROR("upload of {} failed: {}", key, st.ToString());
  return Status::IOError("upload of " + key + " failed: " + st.message());
}

void ChunkStoreImpl::FreezeAndUploadLocked(const std::shared_ptr<FileState>& f, bool stage) {
  for (auto& s : f->pending) {
    s->frozen = true;
    for (uint32_t b = 0; b < s->blocks.size(); ++b) StartUploadLocked(f, s, b, stage);
  }
}

Status ChunkStoreImpl::Sync() { return staging_ ? staging_->Sync() : Status::OK(); }

Status ChunkStoreImpl::Flush(meta::Ino ino) {
  auto f = State(ino, false);
  if (!f) return Status::OK();
  return FlushState(ino, f);
}

// Uploads every buffered block of the file, then commits its slices to Meta in write order.
// Only the slices that exist when the flush starts are its business: writes that arrive while
// it runs start new slices behind them. A slice whose upload failed stays pending (the next
// Flush retries it) and the error is returned; nothing after it is committed, so the order of
// overlapping writes is kept.
Status ChunkStoreImpl::FlushState(meta::Ino ino, const std::shared_ptr<FileState>& f) {
  std::lock_guard flush_lock(f->flush_mu);
  std::vector<std::shared_ptr<PendingSlice>> batch;
  {
    std::unique_lock lock(f->mu);
    if (f->pending.empty()) return Status::OK();
    FreezeAndUploadLocked(f, opts_.writeback);
    batch.assign(f->pending.begin(), f->pending.end());
    f->changed.wait(lock, [&] {
      for (const auto& s : batch) {
        for (const auto& b : s->blocks) {
          if (b.uploading) return false;
        }
      }
      return true;
    });
  }
  for (const auto& s : batch) {
    {
      std::lock_guard lock(f->mu);
      for (const auto& b : s->blocks) {
        if (!b.uploaded && b.size > 0) {
          return s->error.ok() ? Status::IOError("inode " + std::to_string(ino) +
                                                 ": a block was not uploaded")
                               : s->error.With("flush inode " + std::to_string(ino));
        }
      }
    }
    meta::Slice rec{s->pos, s->id, s->len, 0, s->len};
    Status st = meta_->WriteSlice(ino, s->chunk, rec, s->mtime);
    if (!st.ok()) {
      NX_LOG_ERROR("commit of slice {} to inode {} chunk {} failed: {}", s->id, ino, s->chunk,
                   st.ToString());
      return st.With("flush inode " + std::to_string(ino));
    }
    bool compact = false;
    {
      std::lock_guard lock(f->mu);
      // The batch is the front of the queue: later writes only ever append behind it.
      f->pending.pop_front();
      f->records.erase(s->chunk);
      f->generation++;
      commits_++;
      int& n = f->commits_since_check[s->chunk];
      if (++n >= opts_.compact_write_slices) {
        n = 0;
        compact = true;
      }
    }
    f->changed.notify_all();  // a read waiting for this commit (see ReadChunkRange)
    if (compact) RequestCompaction(ino, s->chunk);
  }
  return Status::OK();
}

}  // namespace nexus::chunk
