// Maintenance of stored data: compaction of fragmented chunks and deletion of unreferenced
// slices.
#include <cstring>

#include "chunk/chunk_impl.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "meta/slice_view.h"

namespace nexus::chunk {

void ChunkStoreImpl::RequestCompaction(meta::Ino ino, uint32_t chunk) {
  if (!opts_.background) return;
  std::lock_guard lock(compact_mu_);
  if (compact_queue_.size() < 1024) compact_queue_.emplace(ino, chunk);
}

// Rewrites the chunk's visible bytes as one new slice and swaps it in only if the chunk's
// records did not change meanwhile (Meta::ReplaceChunk); otherwise the new slice's objects are
// deleted and the chunk is left as it was.
Status ChunkStoreImpl::Compact(meta::Ino ino, uint32_t chunk) {
  NX_ASSIGN_OR_RETURN(std::vector<meta::Slice> recs, meta_->ReadChunk(ino, chunk));
  if (recs.size() <= 1) return Status::OK();
  const std::vector<meta::Slice> view = meta::BuildSliceView(recs);
  uint64_t start = UINT64_MAX, data_end = 0, view_end = 0;
  for (const auto& p : view) {
    view_end = std::max<uint64_t>(view_end, uint64_t(p.pos) + p.len);
    if (p.id == 0) continue;
    start = std::min<uint64_t>(start, p.pos);
    data_end = std::max<uint64_t>(data_end, uint64_t(p.pos) + p.len);
  }
  std::vector<meta::Slice> replacement;
  uint64_t new_id = 0;
  uint32_t size = 0;
  if (start != UINT64_MAX) {
    size = static_cast<uint32_t>(data_end - start);
    std::string buf(size, '\0');
    for (const auto& p : view) {
      uint64_t a = std::max<uint64_t>(start, p.pos),
               b = std::min<uint64_t>(data_end, uint64_t(p.pos) + p.len);
      if (p.id == 0 || a >= b) continue;
      ReadSink sink(buf.data(), nullptr);
      NX_TRY(ReadSlice(p.id, p.size, p.off + static_cast<uint32_t>(a - p.pos),
                       static_cast<uint32_t>(b - a), sink, a - start));
    }
    NX_ASSIGN_OR_RETURN(new_id, meta_->NewSliceId());
    PendingSlice s;
    s.id = new_id;
    const uint32_t bs = opts_.block_size;
    for (uint32_t off = 0, blk = 0; off < size; off += bs, ++blk) {
      std::string_view part(buf.data() + off, std::min(bs, size - off));
      Status st = UploadBlock(s, blk, std::string(part));
      if (!st.ok()) {
        (void)DeleteSliceObjects(meta::SliceRef{new_id, size});
        return st;
      }
    }
    replacement.push_back(meta::Slice{static_cast<uint32_t>(start), new_id, size, 0, size});
  }
  if (view_end > data_end) {
    replacement.push_back(meta::Slice{static_cast<uint32_t>(data_end), 0, 0, 0,
                                      static_cast<uint32_t>(view_end - data_end)});
  }
  Status st = meta_->ReplaceChunk(ino, chunk, recs, replacement);
  if (!st.ok()) {
    if (new_id) (void)DeleteSliceObjects(meta::SliceRef{new_id, size});
    if (st.code() == EAGAIN) return Status::OK();  // the chunk changed: try another time
    return st;
  }
  if (auto f = State(ino, false)) {
    std::lock_guard lock(f->mu);
    f->records.erase(chunk);
    f->generation++;
  }
  return Status::OK();
}

Status ChunkStoreImpl::DeleteSliceObjects(const meta::SliceRef& ref) {
  const uint32_t bs = opts_.block_size;
  Status first;
  for (uint32_t off = 0, blk = 0; off < ref.size; off += bs, ++blk) {
    const std::string key = BlockKey(opts_.prefix, ref.id, blk, std::min(bs, ref.size - off));
    cache_.Remove(key);
    if (disk_) disk_->Remove(key);
    if (staging_) staging_->Discard(key);
    Status s = store_->Delete(key);
    for (int attempt = 1; !s.ok() && IsTransientStoreError(s) && attempt < kStoreAttempts;
         ++attempt) {
      BackoffSleep(attempt);
      s = store_->Delete(key);
    }
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Result<size_t> ChunkStoreImpl::CleanupDeleted() {
  constexpr size_t kBatch = 1000;
  size_t total = 0;
  for (;;) {
    NX_ASSIGN_OR_RETURN(
        size_t n,
        meta_->CleanupDeleted([this](const meta::SliceRef& ref) { return DeleteSliceObjects(ref); },
                              kBatch));
    total += n;
    if (n < kBatch) return total;
  }
}

}  // namespace nexus::chunk
