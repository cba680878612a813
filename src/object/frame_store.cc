// FrameStore: every object in the framed block format (block_codec.h), with a bounded cache of
// parsed headers so that a small ranged read costs one GET of the frames it needs.
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>

#include "common/buffer.h"
#include "object/block_codec.h"
#include "object/stores.h"

namespace nexus::object {
namespace {

// The first read of an object's header asks for this many bytes: the 48-byte header and a
// table of up to 253 frames (16 MiB of 64 KiB frames) in one GET.
constexpr uint64_t kHeaderProbe = 4096;
// A read of more than this much of an object not in the header cache reads the whole object
// in one GET instead of the header and then the frames.
constexpr uint64_t kWholeObjectRead = 1 << 20;

class HeaderCache {
 public:
  explicit HeaderCache(size_t capacity) : capacity_(capacity) {}
  std::shared_ptr<const FrameHeader> Get(std::string_view key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  void Put(std::string_view key, std::shared_ptr<const FrameHeader> h) {
    if (capacity_ == 0) return;
    std::lock_guard lock(mu_);
    std::string k(key);
    auto it = map_.find(k);
    if (it != map_.end()) {
      it->second.first = std::move(h);
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return;
    }
    lru_.push_front(k);
    map_.emplace(std::move(k), std::make_pair(std::move(h), lru_.begin()));
    while (map_.size() > capacity_) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
  }
  void Remove(std::string_view key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(std::string(key));
    if (it == map_.end()) return;
    lru_.erase(it->second.second);
    map_.erase(it);
  }

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::list<std::string> lru_;
  std::unordered_map<
      std::string, std::pair<std::shared_ptr<const FrameHeader>, std::list<std::string>::iterator>>
      map_;
};

class FrameStore final : public ObjectStore {
 public:
  FrameStore(std::unique_ptr<ObjectStore> inner, FrameOptions options)
      : inner_(std::move(inner)),
        codec_(std::move(options)),
        headers_(codec_.options().header_cache_entries) {}

  Status Put(std::string_view key, std::string_view data) override {
    NX_TRY(ValidateKey(key));
    // Frames stored as they are: the header and table go out ahead of `data` itself (one copy
    // less of every block on a store that writes the parts as they are, like file://).
    const bool verbatim = codec_.stores_frames_verbatim();
    NX_ASSIGN_OR_RETURN(std::string object,
                        verbatim ? codec_.EncodeHeader(key, data) : codec_.Encode(key, data));
    headers_.Remove(key);
    if (verbatim) {
      const std::string_view parts[] = {object, data};
      NX_TRY(inner_->PutParts(key, parts));
    } else {
      NX_TRY(inner_->Put(key, object));
    }
    if (auto h = codec_.ParseHeader(key, object)) {
      headers_.Put(key, std::make_shared<const FrameHeader>(std::move(*h)));
    }
    return Status::OK();
  }

  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    std::string out;
    NX_TRY(GetInto(key, off, len, &out));
    return out;
  }

  // Verbatim frames only: the inner writer gets room for the header and table first, the data
  // as it comes (its frame checksums computed on the way), and the header at Commit.
  std::unique_ptr<ObjectWriter> NewWriter(std::string_view key, uint64_t size) override {
    if (!codec_.stores_frames_verbatim() || !ValidateKey(key).ok() || size >= (uint64_t(1) << 40)) {
      return nullptr;
    }
    const uint64_t head = codec_.HeaderSize(size);
    auto inner = inner_->NewWriter(key, head + size);
    if (!inner || !inner->Append(std::string(head, '\0')).ok()) return nullptr;
    return std::make_unique<Writer>(this, std::string(key), size, head, std::move(inner));
  }

  Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) override {
    NX_TRY(ValidateKey(key));
    // A header from the cache may be stale when another client overwrote the object (the data
    // path never does): a frame that does not verify against it is read again with a fresh one.
    for (int attempt = 0;; ++attempt) {
      std::shared_ptr<const FrameHeader> h = attempt == 0 ? headers_.Get(key) : nullptr;
      if (!h && (len > kWholeObjectRead || (off == 0 && len == UINT64_MAX))) {
        return GetWhole(key, off, len, out);
      }
      const bool cached = h != nullptr;
      if (!h) {
        NX_ASSIGN_OR_RETURN(h, FetchHeader(key));
      }
      if (off >= h->original_size || len == 0) {
        out->clear();
        return Status::OK();
      }
      const auto [n, first, last, from, to, skip] = Span(*h, off, len);
      Status s;
      if (h->verbatim()) {
        // The stored frames are the original bytes: read them into `out` and verify them there.
        s = inner_->GetInto(key, from, to - from, out);
        if (!s.ok()) {
          if (s.code() == ENOENT) headers_.Remove(key);
          return s;
        }
        s = codec_.VerifyFrames(key, *h, first, last, *out);
        if (s.ok()) {
          Trim(out, skip, n);
          return Status::OK();
        }
      } else {
        auto stored = inner_->Get(key, from, to - from);
        if (!stored) {
          if (stored.error().code() == ENOENT) headers_.Remove(key);
          return stored.error();
        }
        std::string decoded;
        ReserveLarge(&decoded, (last - first + 1) * uint64_t(h->frame_size));
        s = codec_.DecodeFrames(key, *h, first, last, *stored, &decoded);
        if (s.ok()) {
          *out = std::move(decoded);
          Trim(out, skip, n);
          return Status::OK();
        }
      }
      headers_.Remove(key);
      if (cached) continue;
      return s;
    }
  }

  // Verbatim frames: the frames the range covers whole are read straight into `out` and
  // verified there; a frame it covers in part is read whole into a buffer, verified, and its
  // part copied. Other objects go through GetInto.
  Status ReadTo(std::string_view key, uint64_t off, size_t len, char* out) override {
    NX_TRY(ValidateKey(key));
    if (len == 0) return Status::OK();
    bool other = false;  // not verbatim, or a range past the end: the default reports it
    Status s = WithHeader(key, [&](const FrameHeader& h) -> Status {
      other = !h.verbatim() || off >= h.original_size || len > h.original_size - off;
      return other ? Status::OK() : ReadVerbatim(key, h, off, len, out);
    });
    return other ? ObjectStore::ReadTo(key, off, len, out) : s;
  }

  // Verbatim frames: the frames covering the range are mapped and verified where they are.
  Result<MappedRange> MapRange(std::string_view key, uint64_t off, size_t len) override {
    NX_TRY(ValidateKey(key));
    MappedRange out;
    bool other = false;  // not verbatim: the default says no
    NX_TRY(WithHeader(key, [&](const FrameHeader& h) -> Status {
      other = !h.verbatim();
      if (other) return Status::OK();
      if (off > h.original_size || len > h.original_size - off) {
        return Status::Errno(EIO, "get " + std::string(key) + ": the object ends before byte " +
                                      std::to_string(off + len));
      }
      if (len == 0) return Status::OK();
      const auto [n, first, last, from, to, skip] = Span(h, off, len);
      NX_ASSIGN_OR_RETURN(out, inner_->MapRange(key, from, to - from));
      NX_TRY(codec_.VerifyFrames(key, h, first, last, out.data));
      out.data = out.data.substr(skip, n);
      return Status::OK();
    }));
    if (other) return ObjectStore::MapRange(key, off, len);
    return out;
  }

  bool ReadsLocally() const override {
    return codec_.stores_frames_verbatim() && inner_->ReadsLocally();
  }
  void WillRead(std::string_view key, uint64_t, uint64_t) override {
    inner_->WillRead(key, 0, UINT64_MAX);  // the header and the frames
  }

  Result<ObjectInfo> Head(std::string_view key) override {
    NX_ASSIGN_OR_RETURN(ObjectInfo info, inner_->Head(key));
    auto h = headers_.Get(key);
    if (!h) {
      NX_ASSIGN_OR_RETURN(h, FetchHeader(key));
    }
    info.size = h->original_size;
    return info;
  }

  Status Delete(std::string_view key) override {
    headers_.Remove(key);
    return inner_->Delete(key);
  }

  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    return inner_->List(prefix, marker, limit);
  }

  Status SweepLeftovers(std::string_view prefix, int64_t older_than_ns, bool remove,
                        Leftovers* found) override {
    return inner_->SweepLeftovers(prefix, older_than_ns, remove, found);
  }

  std::string Name() const override { return inner_->Name(); }

 private:
  class Writer final : public ObjectWriter {
   public:
    Writer(FrameStore* store, std::string key, uint64_t size, uint64_t head,
           std::unique_ptr<ObjectWriter> inner)
        : store_(store),
          key_(std::move(key)),
          size_(size),
          head_(head),
          inner_(std::move(inner)),
          sums_(key_, store->codec_.options().frame_size) {}
    Status Append(std::string_view data) override {
      if (!inner_ || sealed_) return Done();
      NX_TRY(inner_->Append(data));
      sums_.Update(data);
      return Status::OK();
    }
    Status WriteAt(uint64_t, std::string_view) override {
      return Status::NotSupported("put " + key_ + ": framed bytes cannot be overwritten");
    }
    Status ReadAt(uint64_t off, size_t len, char* out) override {
      if (!inner_) return Done();
      return inner_->ReadAt(head_ + off, len, out);
    }
    uint64_t size() const override { return inner_ ? inner_->size() - head_ : 0; }
    // On failure what was appended stays readable (ReadAt) until the writer is dropped.
    Status Commit() override {
      if (!inner_ || sealed_) return Done();
      sealed_ = true;
      return CommitInner();
    }

   private:
    FrameStore* store_;
    const std::string key_;
    const uint64_t size_, head_;
    std::unique_ptr<ObjectWriter> inner_;
    FrameSummer sums_;
    bool sealed_ = false;  // Commit was called

    Status Done() const { return Status::InvalidArgument("put " + key_ + ": writer is done"); }
    Status CommitInner() {
      if (size() != size_) {
        return Status::InvalidArgument("put " + key_ + ": " + std::to_string(size()) +
                                       " bytes written of " + std::to_string(size_));
      }
      NX_ASSIGN_OR_RETURN(std::string header,
                          store_->codec_.EncodeHeaderFromSums(key_, size_, sums_.Finish()));
      NX_TRY(inner_->WriteAt(0, header));
      store_->headers_.Remove(key_);
      NX_TRY(inner_->Commit());
      if (auto h = store_->codec_.ParseHeader(key_, header)) {
        store_->headers_.Put(key_, std::make_shared<const FrameHeader>(std::move(*h)));
      }
      return Status::OK();
    }
  };
  // Runs `read` with the object's header: the cached one, and when the read fails with it (an
  // object that is not missing), once more with the header fetched afresh, which a stale cache
  // entry (another client rewrote the object) would explain. A failure forgets the header.
  template <typename Read>
  Status WithHeader(std::string_view key, Read read) {
    for (int attempt = 0;; ++attempt) {
      std::shared_ptr<const FrameHeader> h = attempt == 0 ? headers_.Get(key) : nullptr;
      const bool cached = h != nullptr;
      if (!h) {
        NX_ASSIGN_OR_RETURN(h, FetchHeader(key));
      }
      Status s = read(*h);
      if (s.ok()) return s;
      headers_.Remove(key);
      if (!cached || s.code() == ENOENT) return s;
    }
  }

  // Reads and verifies the header and table: one GET, two for a table past kHeaderProbe.
  Result<std::shared_ptr<const FrameHeader>> FetchHeader(std::string_view key) {
    NX_ASSIGN_OR_RETURN(std::string prefix, inner_->Get(key, 0, kHeaderProbe));
    NX_ASSIGN_OR_RETURN(uint64_t need, codec_.HeaderLength(key, prefix));
    if (need > prefix.size() && prefix.size() == kHeaderProbe) {
      NX_ASSIGN_OR_RETURN(std::string rest, inner_->Get(key, prefix.size(), need - prefix.size()));
      prefix += rest;
    }
    NX_ASSIGN_OR_RETURN(FrameHeader h, codec_.ParseHeader(key, prefix));
    auto shared = std::make_shared<const FrameHeader>(std::move(h));
    headers_.Put(key, shared);
    return shared;
  }

  Status GetWhole(std::string_view key, uint64_t off, uint64_t len, std::string* out) {
    NX_TRY(inner_->GetInto(key, 0, UINT64_MAX, out));
    auto h = codec_.ParseHeader(key, *out);
    if (h) headers_.Put(key, std::make_shared<const FrameHeader>(*h));
    if (!h || !h->verbatim() || h->frames.empty() || out->size() != h->stored_size()) {
      NX_ASSIGN_OR_RETURN(std::string decoded, codec_.Decode(key, *out, off, len));
      *out = std::move(decoded);
      return Status::OK();
    }
    // Frames stored as they are: verify them in place and cut the header off the front (one
    // move within the buffer instead of a copy into a new one).
    if (off >= h->original_size || len == 0) {
      out->clear();
      return Status::OK();
    }
    const auto [n, first, last, from, to, skip] = Span(*h, off, len);
    NX_TRY(
        codec_.VerifyFrames(key, *h, first, last, std::string_view(*out).substr(from, to - from)));
    Trim(out, from + skip, n);
    return Status::OK();
  }

  // ReadTo of [off, off+len) inside the original bytes of verbatim object `h`.
  Status ReadVerbatim(std::string_view key, const FrameHeader& h, uint64_t off, size_t len,
                      char* out) {
    const uint64_t fs = h.frame_size, end = off + len;
    size_t first = off / fs, last = (end - 1) / fs;
    auto frame_begin = [&](size_t i) { return uint64_t(i) * fs; };
    auto frame_end = [&](size_t i) { return frame_begin(i) + h.frame_length(i); };
    // A frame the range covers in part: read whole, verified, its part copied.
    auto partial = [&](size_t i) -> Status {
      std::string buf;
      const auto& e = h.frames[i];
      NX_TRY(inner_->GetInto(key, e.offset, e.stored_size, &buf));
      if (buf.size() != e.stored_size) {
        return Status::IOError("get " + std::string(key) + ": the object ends inside frame " +
                               std::to_string(i));
      }
      NX_TRY(codec_.VerifyFrames(key, h, i, i, buf));
      const uint64_t a = std::max(off, frame_begin(i)), b = std::min(end, frame_end(i));
      std::memcpy(out + (a - off), buf.data() + (a - frame_begin(i)), b - a);
      return Status::OK();
    };
    if (off > frame_begin(first) || (first == last && end < frame_end(first))) {
      NX_TRY(partial(first));
      if (first == last) return Status::OK();
      ++first;
    }
    if (end < frame_end(last)) {
      NX_TRY(partial(last));
      if (last == first) return Status::OK();
      --last;
    }
    // Frames [first, last] are covered whole: straight into `out`, verified there.
    const uint64_t from = frame_begin(first), n = frame_end(last) - from;
    char* dst = out + (from - off);
    NX_TRY(inner_->ReadTo(key, h.frames[first].offset, n, dst));
    return codec_.VerifyFrames(key, h, first, last, std::string_view(dst, n));
  }

  // The frames covering [off, off+len) of the original bytes (off < original_size, len > 0):
  // n bytes to return, frames first..last stored at [from, to) of the object, and the offset
  // of `off` in the first frame.
  struct FrameSpan {
    uint64_t n;
    size_t first, last;
    uint64_t from, to, skip;
  };
  static FrameSpan Span(const FrameHeader& h, uint64_t off, uint64_t len) {
    FrameSpan sp;
    sp.n = std::min(len, h.original_size - off);
    sp.first = off / h.frame_size;
    sp.last = (off + sp.n - 1) / h.frame_size;
    sp.from = h.frames[sp.first].offset;
    sp.to = h.frames[sp.last].offset + h.frames[sp.last].stored_size;
    sp.skip = off - uint64_t(sp.first) * h.frame_size;
    return sp;
  }

  // Leaves [skip, skip+n) of `*s` in `*s`, in its own buffer unless the piece is small.
  static void Trim(std::string* s, uint64_t skip, uint64_t n) {
    if (skip == 0 && s->size() == n) return;
    if (n < s->size() / 4) {
      *s = s->substr(skip, n);
      return;
    }
    s->erase(0, skip);
    s->resize(n);
  }

  std::unique_ptr<ObjectStore> inner_;
  BlockCodec codec_;
  HeaderCache headers_;
};

}  // namespace

std::unique_ptr<ObjectStore> NewFrameStore(std::unique_ptr<ObjectStore> inner,
                                           FrameOptions options) {
  return std::make_unique<FrameStore>(std::move(inner), std::move(options));
}

}  // namespace nexus::object
