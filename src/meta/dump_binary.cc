// The binary encoding of a dump (docs/formats.md, "Metadata dump"): a 16-byte header, then
// sections of at most ~1 MiB of tagged records, each with its own XXH3-64 checksum, then an end
// section that counts them. Read one section at a time.
#include <cstring>

#include "common/xxh.h"
#include "meta/dump_internal.h"
#include "meta/keys.h"

namespace nexus::meta::dump {
namespace {

constexpr uint8_t kSectionData = 1;
constexpr uint8_t kSectionEnd = 2;
constexpr size_t kSectionTarget = 1 << 20;         // a section is flushed past this
constexpr uint32_t kMaxSectionPayload = 64 << 20;  // a reader refuses larger ones
constexpr uint32_t kFlagSecrets = 1;

enum Tag : uint8_t {
  kSetting = 1,
  kCounter = 2,
  kInode = 3,
  kChunk = 4,
  kEntry = 5,
  kParent = 6,
  kSymlink = 7,
  kXattr = 8,
  kInodeEnd = 9,
  kDeletedFile = 10,
  kDeletedSlice = 11,
  kSliceRef = 12,
};

void PutVar(std::string* d, uint64_t v) {
  while (v >= 0x80) {
    d->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  d->push_back(static_cast<char>(v));
}
void PutLen(std::string* d, std::string_view s) {
  PutVar(d, s.size());
  d->append(s);
}
void PutLE32(std::string* d, uint32_t v) {
  for (int i = 0; i < 4; ++i, v >>= 8) d->push_back(static_cast<char>(v & 0xff));
}
void PutLE64(std::string* d, uint64_t v) {
  for (int i = 0; i < 8; ++i, v >>= 8) d->push_back(static_cast<char>(v & 0xff));
}
uint64_t GetLE(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

class BinaryWriter : public Writer {
 public:
  BinaryWriter(std::FILE* out, bool secrets) : out_(out) {
    std::string h(kBinaryMagic, sizeof(kBinaryMagic));
    PutLE32(&h, kDumpVersion);
    PutLE32(&h, secrets ? kFlagSecrets : 0);
    pending_ = std::move(h);
  }
  uint64_t bytes() const override { return written_ + pending_.size(); }

  Status Setting(const std::string& json) override {
    Rec(kSetting);
    PutLen(&p_, json);
    return Done();
  }
  Status Counters(const std::vector<std::pair<std::string, uint64_t>>& counters) override {
    for (const auto& [name, v] : counters) {
      Rec(kCounter);
      PutLen(&p_, name);
      PutVar(&p_, v);
    }
    return Done();
  }
  Status InodeBegin(Ino ino, const std::optional<Attr>& attr) override {
    Rec(kInode);
    PutVar(&p_, ino);
    p_.push_back(attr ? 1 : 0);
    if (attr) p_ += keys::EncodeAttr(*attr);
    return Done();
  }
  Status Chunk(Ino ino, uint32_t index, const std::vector<Slice>& slices) override {
    Rec(kChunk);
    PutVar(&p_, ino);
    PutVar(&p_, index);
    PutVar(&p_, slices.size());
    for (const Slice& s : slices) {
      PutVar(&p_, s.pos);
      PutVar(&p_, s.id);
      PutVar(&p_, s.size);
      PutVar(&p_, s.off);
      PutVar(&p_, s.len);
    }
    return Done();
  }
  Status Entry(Ino dir, std::string_view name, FileType type, Ino child) override {
    Rec(kEntry);
    PutVar(&p_, dir);
    PutLen(&p_, name);
    p_.push_back(static_cast<char>(type));
    PutVar(&p_, child);
    return Done();
  }
  Status Parent(Ino ino, Ino parent, uint32_t count) override {
    Rec(kParent);
    PutVar(&p_, ino);
    PutVar(&p_, parent);
    PutVar(&p_, count);
    return Done();
  }
  Status Symlink(Ino ino, std::string_view target) override {
    Rec(kSymlink);
    PutVar(&p_, ino);
    PutLen(&p_, target);
    return Done();
  }
  Status Xattr(Ino ino, std::string_view name, std::string_view value) override {
    Rec(kXattr);
    PutVar(&p_, ino);
    PutLen(&p_, name);
    PutLen(&p_, value);
    return Done();
  }
  Status InodeEnd(Ino ino) override {
    Rec(kInodeEnd);
    PutVar(&p_, ino);
    return Done();
  }
  Status DeletedFile(Ino ino, uint64_t length) override {
    Rec(kDeletedFile);
    PutVar(&p_, ino);
    PutVar(&p_, length);
    return Done();
  }
  Status DeletedSlice(uint64_t id, uint32_t size) override {
    Rec(kDeletedSlice);
    PutVar(&p_, id);
    PutVar(&p_, size);
    return Done();
  }
  Status SliceRef(uint64_t id, uint32_t size, uint32_t refs) override {
    Rec(kSliceRef);
    PutVar(&p_, id);
    PutVar(&p_, size);
    PutVar(&p_, refs);
    return Done();
  }
  Status End() override {
    NX_TRY(Seal());
    std::string payload;
    PutVar(&payload, total_records_);
    PutVar(&payload, sections_);
    AppendSection(kSectionEnd, 0, payload);
    return Write();
  }

 private:
  void Rec(Tag t) {
    p_.push_back(static_cast<char>(t));
    ++records_;
  }
  Status Done() { return p_.size() >= kSectionTarget ? Seal() : Status::OK(); }
  void AppendSection(uint8_t kind, uint32_t count, std::string_view payload) {
    size_t start = pending_.size();
    pending_.push_back(static_cast<char>(kind));
    PutLE32(&pending_, count);
    PutLE32(&pending_, static_cast<uint32_t>(payload.size()));
    pending_.append(payload);
    uint64_t sum = XXH3_64bits(pending_.data() + start, pending_.size() - start);
    PutLE64(&pending_, sum);
  }
  Status Seal() {
    if (records_ == 0) return Status::OK();
    AppendSection(kSectionData, records_, p_);
    total_records_ += records_;
    ++sections_;
    records_ = 0;
    p_.clear();
    return Write();
  }
  Status Write() {
    if (std::fwrite(pending_.data(), 1, pending_.size(), out_) != pending_.size()) {
      return Status(errno ? errno : EIO, std::string("write failed: ") + std::strerror(errno));
    }
    written_ += pending_.size();
    pending_.clear();
    return Status::OK();
  }

  std::FILE* out_;
  std::string pending_, p_;
  uint32_t records_ = 0;
  uint64_t total_records_ = 0, sections_ = 0, written_ = 0;
};

// Reads the records of one section.
class Reader {
 public:
  Reader(std::string_view p, uint64_t section) : p_(p), section_(section) {}
  bool empty() const { return pos_ >= p_.size(); }
  Status Var(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= p_.size()) return Short();
      uint8_t b = static_cast<uint8_t>(p_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return Status::OK();
    }
    return Bad("a number is too long");
  }
  Status Var32(uint32_t* v) {
    uint64_t u;
    NX_TRY(Var(&u));
    if (u > UINT32_MAX) return Bad("a 32-bit field is out of range");
    *v = static_cast<uint32_t>(u);
    return Status::OK();
  }
  Status Bytes(size_t n, std::string_view* out) {
    if (p_.size() - pos_ < n) return Short();
    *out = p_.substr(pos_, n);
    pos_ += n;
    return Status::OK();
  }
  Status Len(std::string_view* out) {
    uint64_t n;
    NX_TRY(Var(&n));
    if (n > p_.size() - pos_) return Short();
    return Bytes(static_cast<size_t>(n), out);
  }
  Status U8(uint8_t* v) {
    std::string_view b;
    NX_TRY(Bytes(1, &b));
    *v = static_cast<uint8_t>(b[0]);
    return Status::OK();
  }
  Status Bad(const std::string& what) const {
    return Status::Corruption("invalid dump: section " + std::to_string(section_) + ": " + what);
  }

 private:
  Status Short() const { return Bad("a record is cut short"); }
  std::string_view p_;
  size_t pos_ = 0;
  uint64_t section_;
};

Status ParseRecords(Reader& r, uint32_t count, Visitor& v,
                    std::vector<std::pair<std::string, uint64_t>>* counters, bool* counters_sent) {
  for (uint32_t i = 0; i < count; ++i) {
    uint8_t tag;
    NX_TRY(r.U8(&tag));
    if (tag != kCounter && !*counters_sent && !counters->empty()) {
      NX_TRY(v.Counters(*counters));
      *counters_sent = true;
    }
    switch (tag) {
      case kSetting: {
        std::string_view json;
        NX_TRY(r.Len(&json));
        NX_TRY(v.Setting(std::string(json)));
        break;
      }
      case kCounter: {
        std::string_view name;
        uint64_t value;
        NX_TRY(r.Len(&name));
        NX_TRY(r.Var(&value));
        if (*counters_sent) return r.Bad("a counter after the tree");
        counters->emplace_back(name, value);
        break;
      }
      case kInode: {
        uint64_t ino;
        uint8_t has;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.U8(&has));
        if (!*counters_sent) {  // a volume always has counters; still, keep the order
          NX_TRY(v.Counters(*counters));
          *counters_sent = true;
        }
        std::optional<Attr> attr;
        if (has > 1) return r.Bad("invalid inode record");
        if (has) {
          std::string_view rec;
          NX_TRY(r.Bytes(64, &rec));
          Attr a;
          NX_TRY(keys::DecodeAttr(rec, &a).With("invalid dump: inode " + std::to_string(ino)));
          attr = a;
        }
        NX_TRY(v.InodeBegin(ino, attr));
        break;
      }
      case kChunk: {
        uint64_t ino, n;
        uint32_t index;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.Var32(&index));
        NX_TRY(r.Var(&n));
        if (n > kChunkSize) return r.Bad("invalid chunk record");
        std::vector<Slice> slices(static_cast<size_t>(n));
        for (Slice& s : slices) {
          NX_TRY(r.Var32(&s.pos));
          NX_TRY(r.Var(&s.id));
          NX_TRY(r.Var32(&s.size));
          NX_TRY(r.Var32(&s.off));
          NX_TRY(r.Var32(&s.len));
        }
        NX_TRY(v.Chunk(ino, index, slices));
        break;
      }
      case kEntry: {
        uint64_t dir, child;
        std::string_view name;
        uint8_t type;
        NX_TRY(r.Var(&dir));
        NX_TRY(r.Len(&name));
        NX_TRY(r.U8(&type));
        NX_TRY(r.Var(&child));
        if (!ValidFileType(type)) return r.Bad("an entry has an invalid type");
        NX_TRY(v.Entry(dir, name, static_cast<FileType>(type), child));
        break;
      }
      case kParent: {
        uint64_t ino, parent;
        uint32_t n;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.Var(&parent));
        NX_TRY(r.Var32(&n));
        NX_TRY(v.Parent(ino, parent, n));
        break;
      }
      case kSymlink: {
        uint64_t ino;
        std::string_view target;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.Len(&target));
        NX_TRY(v.Symlink(ino, target));
        break;
      }
      case kXattr: {
        uint64_t ino;
        std::string_view name, value;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.Len(&name));
        NX_TRY(r.Len(&value));
        NX_TRY(v.Xattr(ino, name, value));
        break;
      }
      case kInodeEnd: {
        uint64_t ino;
        NX_TRY(r.Var(&ino));
        NX_TRY(v.InodeEnd(ino));
        break;
      }
      case kDeletedFile: {
        uint64_t ino, len;
        NX_TRY(r.Var(&ino));
        NX_TRY(r.Var(&len));
        NX_TRY(v.DeletedFile(ino, len));
        break;
      }
      case kDeletedSlice: {
        uint64_t id;
        uint32_t size;
        NX_TRY(r.Var(&id));
        NX_TRY(r.Var32(&size));
        NX_TRY(v.DeletedSlice(id, size));
        break;
      }
      case kSliceRef: {
        uint64_t id;
        uint32_t size, refs;
        NX_TRY(r.Var(&id));
        NX_TRY(r.Var32(&size));
        NX_TRY(r.Var32(&refs));
        NX_TRY(v.SliceRef(id, size, refs));
        break;
      }
      default:
        return r.Bad("unknown record tag " + std::to_string(tag));
    }
  }
  if (!r.empty()) return r.Bad("bytes after the last record");
  return Status::OK();
}

Status ReadExact(std::FILE* in, char* p, size_t n, uint64_t section, bool* eof_at_start) {
  size_t got = std::fread(p, 1, n, in);
  if (got == n) return Status::OK();
  if (std::ferror(in)) return Status::IOError("read error in the dump");
  if (eof_at_start && got == 0) *eof_at_start = true;
  return Status::Corruption("invalid dump: the file ends inside section " +
                            std::to_string(section) + " (truncated)");
}

}  // namespace

std::unique_ptr<Writer> NewBinaryWriter(std::FILE* out, bool secrets_kept) {
  return std::make_unique<BinaryWriter>(out, secrets_kept);
}

Status ParseBinary(std::FILE* in, std::string_view head, Visitor& v) {
  // Header: magic (already read) + version + flags.
  char rest[8];
  NX_TRY(ReadExact(in, rest, sizeof(rest), 0, nullptr));
  (void)head;
  uint32_t version = static_cast<uint32_t>(GetLE(rest, 4));
  if (version != kDumpVersion) {
    return Status::NotSupported("dump version " + std::to_string(version) +
                                " is not supported (this nexusfs reads version " +
                                std::to_string(kDumpVersion) + ")");
  }
  std::vector<std::pair<std::string, uint64_t>> counters;
  bool counters_sent = false;
  uint64_t sections = 0, records = 0;
  std::string payload;
  for (uint64_t index = 1;; ++index) {
    char hdr[9];
    bool eof = false;
    Status s = ReadExact(in, hdr, sizeof(hdr), index, &eof);
    if (!s.ok()) {
      if (eof)
        return Status::Corruption(
            "invalid dump: the file ends without its end section "
            "(truncated)");
      return s;
    }
    uint8_t kind = static_cast<uint8_t>(hdr[0]);
    uint32_t count = static_cast<uint32_t>(GetLE(hdr + 1, 4));
    uint32_t len = static_cast<uint32_t>(GetLE(hdr + 5, 4));
    if ((kind != kSectionData && kind != kSectionEnd) || len > kMaxSectionPayload) {
      return Status::Corruption("invalid dump: section " + std::to_string(index) +
                                " has an invalid header");
    }
    payload.resize(len + 8);
    NX_TRY(ReadExact(in, payload.data(), payload.size(), index, nullptr));
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, hdr, sizeof(hdr));
    XXH3_64bits_update(st, payload.data(), len);
    uint64_t sum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (sum != GetLE(payload.data() + len, 8)) {
      return Status::Corruption("invalid dump: section " + std::to_string(index) +
                                " fails its checksum (corrupted)");
    }
    Reader r(std::string_view(payload.data(), len), index);
    if (kind == kSectionEnd) {
      uint64_t want_records, want_sections;
      NX_TRY(r.Var(&want_records));
      NX_TRY(r.Var(&want_sections));
      if (want_records != records || want_sections != sections) {
        return Status::Corruption("invalid dump: the end section counts " +
                                  std::to_string(want_sections) + " sections, the file has " +
                                  std::to_string(sections));
      }
      if (std::fgetc(in) != EOF) return Status::Corruption("invalid dump: data after the end");
      return v.End();
    }
    NX_TRY(ParseRecords(r, count, v, &counters, &counters_sent));
    ++sections;
    records += count;
  }
}

}  // namespace nexus::meta::dump
