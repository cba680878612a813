// MetaImpl's data operations: slices, truncate, fallocate, copy by reference, compaction swaps,
// and the release of removed data (reference counts, L records).
//
// Slice reference counting (docs/formats.md, "Slice references"): the number of references of
// a slice (id, size) is the number of chunk records, in every chunk of every inode (removed
// files awaiting cleanup included), whose id is `id`. A slice referenced once has no K record;
// K<id><size> holds the count (BE32) when it is 2 or more. A record dropped from a chunk drops
// one reference (ReleaseSlicesTxn); the last one turns into L<id><size>.
#include <linux/falloc.h>

#include <algorithm>
#include <map>

#include "common/clock.h"
#include "common/logging.h"
#include "meta/meta_impl.h"
#include "meta/slice_view.h"

namespace nexus::meta {
namespace {

// Chunk indexes are 32-bit: files end at 2^32 chunks (256 PiB).
constexpr uint64_t kMaxFileSize = kChunkSize << 32;
// Bound on the chunks one transaction of truncate, fallocate or cleanup deletes or rewrites.
constexpr size_t kChunksPerTxn = 256;
// CopyRange copies at most this much per call (a short copy, as copy_file_range allows).
constexpr uint64_t kMaxCopyPerCall = 16 * kChunkSize;

std::string InoName(Ino ino) { return "inode " + std::to_string(ino); }

std::string ChunkName(Ino ino, uint64_t index) {
  return "chunk " + std::to_string(index) + " of inode " + std::to_string(ino);
}

// Structural checks of one record: inside the chunk, inside its slice.
Status CheckRecord(const Slice& s, std::string_view what) {
  if (s.len == 0 || static_cast<uint64_t>(s.pos) + s.len > kChunkSize) {
    return Status::InvalidArgument(std::string(what) + ": slice record [" + std::to_string(s.pos) +
                                   ", +" + std::to_string(s.len) + ") does not fit in a chunk");
  }
  if (s.id != 0 && static_cast<uint64_t>(s.off) + s.len > s.size) {
    return Status::InvalidArgument(std::string(what) + ": slice " + std::to_string(s.id) +
                                   " record reads past the slice's size " + std::to_string(s.size));
  }
  return Status::OK();
}

// Only regular files carry data.
Status CheckRegular(const Attr& attr, Ino ino, std::string_view op) {
  if (attr.type == FileType::kDir) {
    return Status::Errno(EISDIR, std::string(op) + " " + InoName(ino) + ": is a directory");
  }
  if (attr.type != FileType::kFile) {
    return Status::InvalidArgument(std::string(op) + " " + InoName(ino) + ": not a regular file");
  }
  return Status::OK();
}

// Chunk indexes past the last one a file of `length` bytes uses.
uint64_t FirstChunkPast(uint64_t length) { return (length + kChunkSize - 1) / kChunkSize; }

// The count a K record holds; `v` absent = the single implicit reference.
Result<uint32_t> DecodeRefs(const std::optional<std::string>& v, uint64_t id) {
  if (!v) return 1u;
  if (v->size() != 4) {
    return Err(Status::Corruption("reference record of slice " + std::to_string(id) + " has " +
                                  std::to_string(v->size()) + " bytes"));
  }
  return GetBE32(v->data());
}

std::string EncodeRefs(uint32_t refs) {
  std::string s;
  PutBE32(&s, refs);
  return s;
}

// Adds `n` references to a slice that already has at least one.
Status AddSliceRefsTxn(kv::Txn& txn, uint64_t id, uint32_t size, uint32_t n) {
  if (n == 0 || id == 0) return Status::OK();
  const std::string key = keys::SliceRef(id, size);
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
  NX_ASSIGN_OR_RETURN(uint32_t refs, DecodeRefs(v, id));
  return txn.Put(key, EncodeRefs(refs + n));
}

// Drops `n` references; at zero the slice gets its L record.
Status DropSliceRefsTxn(kv::Txn& txn, uint64_t id, uint32_t size, uint32_t n) {
  const std::string key = keys::SliceRef(id, size);
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
  NX_ASSIGN_OR_RETURN(uint32_t refs, DecodeRefs(v, id));
  if (refs > n + 1) return txn.Put(key, EncodeRefs(refs - n));
  if (v) NX_TRY(txn.Delete(key));
  if (refs == n + 1) return Status::OK();  // one reference left: no K record
  if (refs < n) {
    NX_LOG_WARN("slice {}_{} had {} references but {} were dropped", id, size, refs, n);
  }
  return txn.Put(keys::DelSlice(id, size), "");
}

struct ChunkKV {
  uint64_t index;
  std::string value;
};

// Up to `limit` chunk records of `ino` with index >= `from` (and <= `last`), in index order.
Result<std::vector<ChunkKV>> ScanChunks(kv::Txn& txn, Ino ino, uint64_t from, uint64_t last,
                                        size_t limit) {
  std::vector<ChunkKV> out;
  const std::string prefix = keys::ChunkPrefix(ino);
  const std::string end =
      last >= UINT32_MAX ? PrefixEnd(prefix) : keys::Chunk(ino, static_cast<uint32_t>(last + 1));
  if (from > UINT32_MAX) return out;
  NX_TRY(txn.Scan(keys::Chunk(ino, static_cast<uint32_t>(from)), end, limit,
                  [&](std::string_view k, std::string_view v) {
                    out.push_back({GetBE32(k.data() + prefix.size()), std::string(v)});
                    return true;
                  }));
  return out;
}

// One piece of a source range as readers see it: `len` bytes at absolute offset `at`, from
// slice `id` at `off` (id 0 = zeros).
struct Piece {
  uint64_t at, len, id;
  uint32_t size, off;
};

void AddHole(std::vector<Piece>* out, uint64_t at, uint64_t len) {
  if (len == 0) return;
  if (!out->empty() && out->back().id == 0 && out->back().at + out->back().len == at) {
    out->back().len += len;
    return;
  }
  out->push_back({at, len, 0, 0, 0});
}

Result<std::vector<Slice>> LoadChunkTxn(kv::Txn& txn, Ino ino, uint32_t index) {
  NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Chunk(ino, index)));
  std::vector<Slice> out;
  if (v) {
    Status s = keys::DecodeSlices(*v, &out);
    if (!s.ok()) return Err(s.With(ChunkName(ino, index)));
  }
  return out;
}

Status AppendRecordTxn(kv::Txn& txn, Ino ino, uint32_t index, const Slice& s) {
  const std::string key = keys::Chunk(ino, index);
  NX_ASSIGN_OR_RETURN(auto raw, txn.Get(key));
  std::string value = raw.value_or("");
  keys::AppendSlice(&value, s);
  return txn.Put(key, value);
}

Status CheckFallocateArgs(Ino ino, int mode, uint64_t off, uint64_t len) {
  const std::string what = "fallocate " + InoName(ino);
  constexpr int kKnown = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if (mode & ~kKnown) {
    return Status::Errno(EOPNOTSUPP, what + ": mode " + std::to_string(mode) + " not supported");
  }
  if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)) {
    return Status::InvalidArgument(what + ": punch-hole and zero-range exclude each other");
  }
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) {
    return Status::Errno(EOPNOTSUPP, what + ": punch-hole requires keep-size");
  }
  if (len == 0) return Status::InvalidArgument(what + ": zero length");
  if (static_cast<int64_t>(off) < 0 || static_cast<int64_t>(len) < 0) {
    return Status::InvalidArgument(what + ": negative offset or length");  // as loff_t
  }
  if (off > kMaxFileSize || len > kMaxFileSize - off) {
    return Status::Errno(EFBIG, what + ": range ends past the maximum file size");
  }
  return Status::OK();
}

// The pieces of [off, off+len) of `ino` as readers see them, holes included, in order.
Result<std::vector<Piece>> ResolveRangeTxn(kv::Txn& txn, Ino ino, uint64_t off, uint64_t len) {
  std::vector<Piece> out;
  const uint64_t end = off + len;
  for (uint64_t index = off / kChunkSize; index * kChunkSize < end; ++index) {
    const uint64_t base = index * kChunkSize;
    const uint64_t a = std::max(off, base), b = std::min(end, base + kChunkSize);
    NX_ASSIGN_OR_RETURN(auto recs, LoadChunkTxn(txn, ino, static_cast<uint32_t>(index)));
    uint64_t at = a;
    for (const Slice& p : BuildSliceView(recs)) {
      const uint64_t ps = base + p.pos, pe = ps + p.len;
      if (pe <= a || ps >= b) continue;
      const uint64_t s = std::max(ps, a), e = std::min(pe, b);
      AddHole(&out, at, s - at);
      if (p.id == 0) {
        AddHole(&out, s, e - s);
      } else {
        out.push_back({s, e - s, p.id, p.size, p.off + static_cast<uint32_t>(s - ps)});
      }
      at = e;
    }
    AddHole(&out, at, b - at);
  }
  return out;
}

// Appends `pieces` (source offset `src_off` lands at `dst_off`) to the chunks of
// `ino`, splitting at chunk boundaries; each data record gains its slice one reference.
Status AppendPiecesTxn(kv::Txn& txn, Ino ino, const std::vector<Piece>& pieces, uint64_t src_off,
                       uint64_t dst_off) {
  std::map<uint32_t, std::string> chunks;
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> refs;
  for (const Piece& p : pieces) {
    uint64_t dst = dst_off + (p.at - src_off), left = p.len;
    uint32_t off = p.off;
    while (left > 0) {
      const auto index = static_cast<uint32_t>(dst / kChunkSize);
      const auto pos = static_cast<uint32_t>(dst % kChunkSize);
      const auto n = static_cast<uint32_t>(std::min<uint64_t>(left, kChunkSize - pos));
      auto it = chunks.find(index);
      if (it == chunks.end()) {
        NX_ASSIGN_OR_RETURN(auto raw, txn.Get(keys::Chunk(ino, index)));
        it = chunks.emplace(index, raw.value_or("")).first;
      }
      keys::AppendSlice(&it->second,
                        p.id ? Slice{pos, p.id, p.size, off, n} : Slice{pos, 0, 0, 0, n});
      if (p.id != 0) ++refs[{p.id, p.size}];
      dst += n;
      left -= n;
      off += n;
    }
  }
  for (const auto& [index, value] : chunks) NX_TRY(txn.Put(keys::Chunk(ino, index), value));
  for (const auto& [slice, n] : refs) NX_TRY(AddSliceRefsTxn(txn, slice.first, slice.second, n));
  return Status::OK();
}

}  // namespace

Status MetaImpl::ReleaseSlicesTxn(kv::Txn& txn, const std::vector<Slice>& slices) {
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> dropped;  // one reference per record
  for (const Slice& s : slices) {
    if (s.id != 0) ++dropped[{s.id, s.size}];
  }
  for (const auto& [slice, n] : dropped) {
    NX_TRY(DropSliceRefsTxn(txn, slice.first, slice.second, n));
  }
  return Status::OK();
}

Status MetaImpl::DeleteChunkTxn(kv::Txn& txn, Ino ino, uint64_t index, std::string_view value) {
  std::vector<Slice> recs;
  Status s = keys::DecodeSlices(value, &recs);
  if (!s.ok()) return s.With(ChunkName(ino, index));
  NX_TRY(txn.Delete(keys::Chunk(ino, static_cast<uint32_t>(index))));
  return ReleaseSlicesTxn(txn, recs);
}

Status MetaImpl::AddUsedSpaceTxn(kv::Txn& txn, int64_t delta) {
  if (delta == 0) return Status::OK();
  const std::string key = keys::Counter("usedSpace");
  const uint64_t capacity = format_.capacity;
  if (delta > 0 && capacity > 0) {
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(key));
    const int64_t used = v ? static_cast<int64_t>(keys::DecodeU64(*v)) : 0;
    if (used + delta > static_cast<int64_t>(capacity)) {
      return Status::NoSpace("volume capacity of " + std::to_string(capacity) +
                             " bytes exceeded: " + std::to_string(used) + " used, " +
                             std::to_string(delta) + " more needed");
    }
  }
  return txn.Add(key, delta);
}

Result<uint64_t> MetaImpl::NewSliceId() {
  std::lock_guard<std::mutex> lock(alloc_mu_);
  if (next_slice_ >= end_slice_) {
    const uint32_t batch = std::max<uint32_t>(options_.slice_batch, 1);
    uint64_t end = 0;
    const uint64_t sid = sid_;
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(int64_t v, txn.Increment(keys::Counter("nextSlice"), batch));
      end = static_cast<uint64_t>(v);
      // The batch is recorded with the counter (one key per batch): gc finds the ids in it
      // that never committed without listing the bucket (ops/gc.cc).
      keys::SliceRangeRecord r;
      r.first = end >= batch ? end - batch : 0;
      r.end = end;
      r.sid = sid;
      r.time = NowNanos();
      NX_ASSIGN_OR_RETURN(auto floor, txn.Get(keys::SliceRangeFloor()));
      if (!floor) {
        std::string f;
        PutBE64(&f, r.first);
        NX_TRY(txn.Put(keys::SliceRangeFloor(), f));
      }
      return txn.Put(keys::SliceRange(r.first), keys::EncodeSliceRange(r));
    }));
    next_slice_ = end - batch;
    end_slice_ = end;
    if (next_slice_ == 0) next_slice_ = 1;  // id 0 means a hole
    if (next_slice_ >= end_slice_) return Err(Status::IOError("slice id counter is damaged"));
  }
  return next_slice_++;
}

Status MetaImpl::WriteSlice(Ino ino, uint32_t index, const Slice& slice, int64_t mtime) {
  ino = Real(ino);
  NX_TRY(CheckRecord(slice, "write " + ChunkName(ino, index)));
  if (slice.id == 0) {
    return Status::InvalidArgument("write " + ChunkName(ino, index) + ": slice id 0 is a hole");
  }
  const uint64_t end = static_cast<uint64_t>(index) * kChunkSize + slice.pos + slice.len;
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
    NX_TRY(CheckRegular(attr, ino, "write"));
    const std::string key = keys::Chunk(ino, index);
    NX_ASSIGN_OR_RETURN(auto raw, txn.Get(key));
    std::string value = raw.value_or("");
    std::vector<Slice> recs;
    NX_TRY(keys::DecodeSlices(value, &recs).With(ChunkName(ino, index)));
    for (const Slice& r : recs) {
      if (r.id != slice.id) continue;
      if (r == slice) return Status::OK();  // a retried commit of the same slice
      return Status::InvalidArgument("write " + ChunkName(ino, index) + ": slice " +
                                     std::to_string(slice.id) + " is already in the chunk");
    }
    keys::AppendSlice(&value, slice);
    NX_TRY(txn.Put(key, value));
    if (end > attr.length) {
      NX_TRY(AddUsedSpaceTxn(txn, static_cast<int64_t>(end - attr.length)));
      attr.length = end;
    }
    const int64_t now = NowNanos();
    attr.mtime = mtime ? mtime : now;
    attr.ctime = now;
    return PutAttrTxn(txn, ino, attr);
  });
}

Result<std::vector<Slice>> MetaImpl::ReadChunk(Ino ino, uint32_t index) {
  ino = Real(ino);
  std::vector<Slice> out;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(out, LoadChunkTxn(txn, ino, index));
    return Status::OK();
  }));
  return out;
}

Status MetaImpl::ReplaceChunk(Ino ino, uint32_t index, const std::vector<Slice>& expected,
                              const std::vector<Slice>& replacement) {
  ino = Real(ino);
  for (const Slice& s : replacement) NX_TRY(CheckRecord(s, "replace " + ChunkName(ino, index)));
  // Reference deltas per slice: -1 per expected record, +1 per replacement record. A slice
  // that `expected` does not mention is new (compaction output): its first record is the
  // implicit first reference.
  std::map<std::pair<uint64_t, uint32_t>, int64_t> delta;
  for (const Slice& s : expected) {
    if (s.id != 0) --delta[{s.id, s.size}];
  }
  for (const Slice& s : replacement) {
    if (s.id == 0) continue;
    auto [it, fresh] = delta.try_emplace({s.id, s.size}, 0);
    if (!fresh) ++it->second;  // a fresh slice's first record counts nothing
  }
  return engine_->Update([&](kv::Txn& txn) -> Status {
    NX_ASSIGN_OR_RETURN(auto current, LoadChunkTxn(txn, ino, index));
    if (current != expected) {
      return Status::Errno(
          EAGAIN, "replace " + ChunkName(ino, index) + ": the chunk changed since it was read");
    }
    if (expected == replacement) return Status::OK();
    const std::string key = keys::Chunk(ino, index);
    if (replacement.empty()) {
      NX_TRY(txn.Delete(key));
    } else {
      std::string value;
      for (const Slice& s : replacement) keys::AppendSlice(&value, s);
      NX_TRY(txn.Put(key, value));
    }
    for (const auto& [slice, d] : delta) {
      if (d > 0) NX_TRY(AddSliceRefsTxn(txn, slice.first, slice.second, static_cast<uint32_t>(d)));
      if (d < 0) {
        NX_TRY(DropSliceRefsTxn(txn, slice.first, slice.second, static_cast<uint32_t>(-d)));
      }
    }
    return Status::OK();
  });
}

Status MetaImpl::CheckWritableFile(const Context& ctx, const Attr& attr, Ino ino,
                                   std::string_view op) {
  NX_TRY(CheckRegular(attr, ino, op));
  if (ctx.check_permission) NX_TRY(CheckPermission(ctx, attr, W_OK));
  return Status::OK();
}

// Truncate runs as a series of transactions when the file loses more than kChunksPerTxn chunks:
// each non-final one deletes kChunksPerTxn whole chunks past the new end (their data was about
// to be discarded; the length is unchanged meanwhile), the final one deletes the rest, writes a
// hole over the tail of the chunk holding the new end and sets the length. So no transaction
// grows with the file size; a crash in between leaves a file of the old length whose far tail
// reads as zeros.
Result<Attr> MetaImpl::Truncate(const Context& ctx, Ino ino, uint64_t length) {
  ino = Real(ino);
  if (length > kMaxFileSize) {
    return Err(EFBIG, "truncate " + InoName(ino) + " to " + std::to_string(length) +
                          " bytes: larger than the maximum file size");
  }
  Attr out;
  bool done = false;
  while (!done) {
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
      NX_TRY(CheckWritableFile(ctx, attr, ino, "truncate"));
      if (length < attr.length) {
        NX_ASSIGN_OR_RETURN(done, DropTailTxn(txn, ino, attr.length, length));
        if (!done) return Status::OK();
      }
      done = true;
      NX_TRY(
          AddUsedSpaceTxn(txn, static_cast<int64_t>(length) - static_cast<int64_t>(attr.length)));
      attr.length = length;
      attr.mtime = attr.ctime = NowNanos();
      out = attr;
      return PutAttrTxn(txn, ino, attr);
    }));
  }
  return Expose(out);  // the mount's subdir root appears as the root
}

Result<bool> MetaImpl::DropTailTxn(kv::Txn& txn, Ino ino, uint64_t old_length,
                                   uint64_t new_length) {
  NX_ASSIGN_OR_RETURN(
      auto dead, ScanChunks(txn, ino, FirstChunkPast(new_length), UINT32_MAX, kChunksPerTxn + 1));
  const bool more = dead.size() > kChunksPerTxn;
  if (more) dead.pop_back();
  for (const ChunkKV& c : dead) NX_TRY(DeleteChunkTxn(txn, ino, c.index, c.value));
  if (more) return false;
  if (new_length % kChunkSize == 0) return true;
  // Hide what the chunk holding the new end has past it, so that a later extension reads zeros.
  const auto index = static_cast<uint32_t>(new_length / kChunkSize);
  const uint64_t base = static_cast<uint64_t>(index) * kChunkSize;
  const auto pos = static_cast<uint32_t>(new_length - base);
  NX_ASSIGN_OR_RETURN(auto recs, LoadChunkTxn(txn, ino, index));
  uint64_t data_end = 0;  // the hole need not reach past the furthest data record
  for (const Slice& r : recs) {
    if (r.id != 0) data_end = std::max<uint64_t>(data_end, static_cast<uint64_t>(r.pos) + r.len);
  }
  const auto hole_end = static_cast<uint32_t>(
      std::min({kChunkSize, old_length - base, std::max<uint64_t>(data_end, pos)}));
  if (hole_end <= pos) return true;
  NX_TRY(AppendRecordTxn(txn, ino, index, Slice{pos, 0, 0, 0, hole_end - pos}));
  return true;
}

// Zeroes [off, end) of the existing chunks from chunk `*cursor` on, at most kChunksPerTxn of
// them: chunks wholly inside the range are deleted (their slices released), others get a hole
// record. With `to_eof` (the range reaches the file's end, past which nothing is stored) each
// chunk is zeroed to its end. Sets *cursor past the last chunk handled, or to UINT64_MAX when
// the range is done.
Status MetaImpl::ZeroRangeTxn(kv::Txn& txn, Ino ino, uint64_t off, uint64_t end, bool to_eof,
                              uint64_t* cursor) {
  const uint64_t last = (end - 1) / kChunkSize;
  NX_ASSIGN_OR_RETURN(auto chunks, ScanChunks(txn, ino, *cursor, last, kChunksPerTxn + 1));
  const bool more = chunks.size() > kChunksPerTxn;
  if (more) chunks.pop_back();
  for (const ChunkKV& c : chunks) {
    const uint64_t base = c.index * kChunkSize;
    const uint64_t a = std::max(off, base) - base;
    const uint64_t b = to_eof ? kChunkSize : std::min(end, base + kChunkSize) - base;
    if (a == 0 && b == kChunkSize) {
      NX_TRY(DeleteChunkTxn(txn, ino, c.index, c.value));
      continue;
    }
    std::string value = c.value;
    keys::AppendSlice(&value,
                      Slice{static_cast<uint32_t>(a), 0, 0, 0, static_cast<uint32_t>(b - a)});
    NX_TRY(txn.Put(keys::Chunk(ino, static_cast<uint32_t>(c.index)), value));
  }
  *cursor = more ? chunks.back().index + 1 : UINT64_MAX;
  return Status::OK();
}

Status MetaImpl::Fallocate(const Context& ctx, Ino ino, int mode, uint64_t off, uint64_t len) {
  ino = Real(ino);
  NX_TRY(CheckFallocateArgs(ino, mode, off, len));
  const uint64_t end = off + len;
  const bool zero = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE);
  uint64_t cursor = off / kChunkSize;  // next chunk to zero
  while (true) {
    uint64_t next = cursor;
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
      next = cursor;
      NX_ASSIGN_OR_RETURN(Attr attr, GetAttrTxn(txn, ino));
      if (attr.type != FileType::kDir && attr.type != FileType::kFile) {
        return Status::Errno(ENODEV, "fallocate " + InoName(ino) + ": not a regular file");
      }
      NX_TRY(CheckWritableFile(ctx, attr, ino, "fallocate"));
      // Past the length every byte already reads as zeros (no record reaches past it).
      const uint64_t zero_end = std::min(end, attr.length);
      if (zero && off < zero_end) {
        NX_TRY(ZeroRangeTxn(txn, ino, off, zero_end, end >= attr.length, &next));
        if (next != UINT64_MAX) return Status::OK();
      }
      next = UINT64_MAX;
      const uint64_t length =
          (mode & FALLOC_FL_KEEP_SIZE) ? attr.length : std::max(attr.length, end);
      if (!zero && length == attr.length) return Status::OK();
      NX_TRY(AddUsedSpaceTxn(txn, static_cast<int64_t>(length - attr.length)));
      attr.length = length;
      attr.mtime = attr.ctime = NowNanos();
      return PutAttrTxn(txn, ino, attr);
    }));
    if (next == UINT64_MAX) return Status::OK();
    cursor = next;
  }
}

Status MetaImpl::CheckCopyArgs(const Context& ctx, Ino in, const Attr& ain, Ino out,
                               const Attr& aout) {
  NX_TRY(CheckRegular(ain, in, "copy from"));
  NX_TRY(CheckRegular(aout, out, "copy to"));
  if (ctx.check_permission) NX_TRY(CheckPermission(ctx, ain, R_OK));
  if (ctx.check_permission) NX_TRY(CheckPermission(ctx, aout, W_OK));
  return Status::OK();
}

Result<uint64_t> MetaImpl::CopyRange(const Context& ctx, Ino in, uint64_t off_in, Ino out,
                                     uint64_t off_out, uint64_t len) {
  in = Real(in);
  out = Real(out);
  const std::string what = "copy " + InoName(in) + " to " + InoName(out);
  if (off_in > kMaxFileSize || off_out > kMaxFileSize) {
    return Err(EFBIG, what + ": offset past the maximum file size");
  }
  len = std::min(len, kMaxCopyPerCall);  // a short copy; callers loop as for copy_file_range
  if (len > kMaxFileSize - off_out) return Err(EFBIG, what + ": ends past the maximum file size");
  uint64_t copied = 0;
  NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
    copied = 0;
    NX_ASSIGN_OR_RETURN(Attr ain, GetAttrTxn(txn, in));
    Attr aout = ain;
    if (out != in) {
      NX_ASSIGN_OR_RETURN(aout, GetAttrTxn(txn, out));
    }
    NX_TRY(CheckCopyArgs(ctx, in, ain, out, aout));
    if (off_in >= ain.length || len == 0) return Status::OK();
    const uint64_t n = std::min(len, ain.length - off_in);
    if (in == out && off_out < off_in + n && off_in < off_out + n) {
      return Status::InvalidArgument(what + ": source and destination ranges overlap");
    }
    NX_ASSIGN_OR_RETURN(auto pieces, ResolveRangeTxn(txn, in, off_in, n));
    NX_TRY(AppendPiecesTxn(txn, out, pieces, off_in, off_out));
    if (off_out + n > aout.length) {
      NX_TRY(AddUsedSpaceTxn(txn, static_cast<int64_t>(off_out + n - aout.length)));
      aout.length = off_out + n;
    }
    aout.mtime = aout.ctime = NowNanos();
    copied = n;
    return PutAttrTxn(txn, out, aout);
  }));
  return copied;
}

Result<size_t> MetaImpl::CleanupDeleted(const std::function<Status(const SliceRef&)>& remove,
                                        size_t max) {
  if (max == 0) return 0;
  // A file whose chunks cannot be released (a damaged record) must not stop the slices of
  // the others: its error is returned after them.
  Status files_status = ReleaseDeletedFiles(max);
  std::vector<SliceRef> pending;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    pending.clear();
    return txn.ScanPrefix("L", max, [&](std::string_view k, std::string_view) {
      if (k.size() == 13) pending.push_back({GetBE64(k.data() + 1), GetBE32(k.data() + 9)});
      return true;
    });
  }));
  size_t removed = 0, failed = 0;
  Status first;
  for (const SliceRef& ref : pending) {
    Status s = remove(ref);  // outside any transaction: it talks to the object store
    if (!s.ok()) {
      if (failed++ == 0) first = s;
      NX_LOG_WARN("release slice {}_{}: {}", ref.id, ref.size, s.ToString());
      continue;
    }
    NX_TRY(engine_->Update(
        [&](kv::Txn& txn) -> Status { return txn.Delete(keys::DelSlice(ref.id, ref.size)); }));
    ++removed;
  }
  if (failed > 0) {
    return Err(first.code(), std::to_string(removed) + " slices removed, " +
                                 std::to_string(failed) +
                                 " failed (kept for a retry); first: " + first.message());
  }
  if (!files_status.ok()) return Err(files_status);
  return removed;
}

// Phase 1 of CleanupDeleted: for up to `max` D records, deletes the file's chunks in bounded
// transactions (their slices lose one reference per record) and then the D record.
Status MetaImpl::ReleaseDeletedFiles(size_t max) {
  std::vector<std::pair<Ino, std::string>> files;
  NX_TRY(engine_->View([&](kv::Txn& txn) -> Status {
    files.clear();
    return txn.ScanPrefix("D", max, [&](std::string_view k, std::string_view) {
      if (k.size() == 17) files.emplace_back(GetBE64(k.data() + 1), std::string(k));
      return true;
    });
  }));
  Status first;
  for (const auto& [ino, dkey] : files) {
    Status s = ReleaseDeletedFile(ino, dkey);
    if (!s.ok()) {
      NX_LOG_WARN("release the data of removed inode {}: {}", ino, s.ToString());
      if (first.ok()) first = s.With("release the data of removed inode " + std::to_string(ino));
    }
  }
  return first;
}

Status MetaImpl::ReleaseDeletedFile(Ino ino, const std::string& dkey) {
  bool done = false;
  while (!done) {
    NX_TRY(engine_->Update([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(auto d, txn.Get(dkey));
      if (!d) {  // another client finished it
        done = true;
        return Status::OK();
      }
      NX_ASSIGN_OR_RETURN(auto chunks, ScanChunks(txn, ino, 0, UINT32_MAX, kChunksPerTxn));
      for (const ChunkKV& c : chunks) NX_TRY(DeleteChunkTxn(txn, ino, c.index, c.value));
      done = chunks.size() < kChunksPerTxn;
      return done ? txn.Delete(dkey) : Status::OK();
    }));
  }
  return Status::OK();
}

}  // namespace nexus::meta
