// The key schema of the metadata engine (docs/formats.md). Every key and record encoding lives
// here so that the layout is defined in one place. Integers in keys are big-endian so that
// ordered scans follow numeric order.
//
//   setting                   volume settings (JSON)
//   C<name>                   counters: nextInode, nextSlice, nextSession, usedSpace, totalInodes
//   A<ino>I                   inode attributes (EncodeAttr)
//   A<ino>D<name>             directory entry: type(1) ino(8)
//   A<ino>P<parent>           hard-link parents of a multi-linked file: count(4)
//   A<ino>C<index>            chunk: concatenated slice records (EncodeSlice, 24 bytes each)
//   A<ino>S                   symlink target
//   A<ino>X<name>             extended attribute value
//   D<ino><length>            removed file whose data awaits release
//   L<slice><size>            slice with no references left, whose objects await deletion
//   K<slice><size>            reference count of a slice referenced more than once: refs(4,
//                             BE). A slice's references = the chunk records naming it (each
//                             record counts, even several in one chunk); no K = 1 reference;
//                             K is deleted when the count drops back to 1 and the last drop
//                             writes L (meta_data.cc)
//   F<ino>                    flock holders: version(1) then sid(8) owner(8) type(1) each
//   P<ino>                    POSIX lock holders: version(1) then sid(8) owner(8) pid(4)
//                             count(4) + count x [type(1) start(8) end(8)] (meta_lock.cc)
//   O<ino><sid>               inode open in session sid
//   SE<sid>                   session info (JSON);  SH<sid> heartbeat (ns, 8 bytes)
//   SS<sid><ino>              inode open in session sid (index for session cleanup)
//   U<ino>                    directory usage;  QD<ino> directory quota
//   R                         floor(8, BE): slice ids from floor on were taken in recorded
//                             batches (set with the first one; gc --full lowers it to 1)
//   R<first>                  slice ids [first, end) one client took from nextSlice, written in
//                             the same transaction: EncodeSliceRange; gc removes it once every
//                             id in it is committed or cleaned (ops/gc.cc)
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/encoding.h"
#include "common/status.h"
#include "meta/types.h"

namespace nexus::meta::keys {

constexpr std::string_view kSetting = "setting";

inline std::string Counter(std::string_view name) { return "C" + std::string(name); }

inline std::string InodePrefix(Ino ino) {
  std::string k = "A";
  PutBE64(&k, ino);
  return k;
}
inline std::string Attr(Ino ino) { return InodePrefix(ino) + "I"; }
inline std::string DentryPrefix(Ino parent) { return InodePrefix(parent) + "D"; }
inline std::string Dentry(Ino parent, std::string_view name) {
  return DentryPrefix(parent) + std::string(name);
}
inline std::string ParentPrefix(Ino ino) { return InodePrefix(ino) + "P"; }
inline std::string Parent(Ino ino, Ino parent) {
  std::string k = ParentPrefix(ino);
  PutBE64(&k, parent);
  return k;
}
inline std::string ChunkPrefix(Ino ino) { return InodePrefix(ino) + "C"; }
inline std::string Chunk(Ino ino, uint32_t index) {
  std::string k = ChunkPrefix(ino);
  PutBE32(&k, index);
  return k;
}
inline std::string Symlink(Ino ino) { return InodePrefix(ino) + "S"; }
inline std::string XattrPrefix(Ino ino) { return InodePrefix(ino) + "X"; }
inline std::string Xattr(Ino ino, std::string_view name) {
  return XattrPrefix(ino) + std::string(name);
}
inline std::string DelFile(Ino ino, uint64_t length) {
  std::string k = "D";
  PutBE64(&k, ino);
  PutBE64(&k, length);
  return k;
}
inline std::string DelSlice(uint64_t id, uint32_t size) {
  std::string k = "L";
  PutBE64(&k, id);
  PutBE32(&k, size);
  return k;
}
inline std::string SliceRef(uint64_t id, uint32_t size) {
  std::string k = "K";
  PutBE64(&k, id);
  PutBE32(&k, size);
  return k;
}
inline std::string Flock(Ino ino) {
  std::string k = "F";
  PutBE64(&k, ino);
  return k;
}
inline std::string Plock(Ino ino) {
  std::string k = "P";
  PutBE64(&k, ino);
  return k;
}
inline std::string OpenPrefix(Ino ino) {
  std::string k = "O";
  PutBE64(&k, ino);
  return k;
}
inline std::string Open(Ino ino, uint64_t sid) {
  std::string k = OpenPrefix(ino);
  PutBE64(&k, sid);
  return k;
}
inline std::string Session(uint64_t sid) {
  std::string k = "SE";
  PutBE64(&k, sid);
  return k;
}
inline std::string Heartbeat(uint64_t sid) {
  std::string k = "SH";
  PutBE64(&k, sid);
  return k;
}
inline std::string SustainedPrefix(uint64_t sid) {
  std::string k = "SS";
  PutBE64(&k, sid);
  return k;
}
inline std::string Sustained(uint64_t sid, Ino ino) {
  std::string k = SustainedPrefix(sid);
  PutBE64(&k, ino);
  return k;
}
inline std::string DirUsage(Ino ino) {
  std::string k = "U";
  PutBE64(&k, ino);
  return k;
}
inline std::string DirQuota(Ino ino) {
  std::string k = "QD";
  PutBE64(&k, ino);
  return k;
}

inline std::string SliceRangeFloor() { return "R"; }
inline std::string SliceRange(uint64_t first) {
  std::string k = "R";
  PutBE64(&k, first);
  return k;
}

// ---- records ----
constexpr uint8_t kAttrVersion = 1;
constexpr size_t kSliceRecordSize = 24;  // pos(4) id(8) size(4) off(4) len(4)

std::string EncodeAttr(const meta::Attr& a);
// Fails with EBADMSG (naming `what`) on a short or unknown-version record.
Status DecodeAttr(std::string_view in, meta::Attr* a);

std::string EncodeDentry(FileType type, Ino ino);
Status DecodeDentry(std::string_view in, FileType* type, Ino* ino);

void AppendSlice(std::string* dst, const Slice& s);
Status DecodeSlices(std::string_view in, std::vector<Slice>* out);

// A batch of slice ids taken from the counter: [first, end), by session `sid` (0: a client
// without a session), at `time` (ns). Encoded as end(8) sid(8) time(8), big-endian.
struct SliceRangeRecord {
  uint64_t first = 0, end = 0, sid = 0;
  int64_t time = 0;
};
constexpr size_t kSliceRangeSize = 24;
inline std::string EncodeSliceRange(const SliceRangeRecord& r) {
  std::string v;
  PutBE64(&v, r.end);
  PutBE64(&v, r.sid);
  PutBE64(&v, static_cast<uint64_t>(r.time));
  return v;
}
// False unless `key` is R<first> and `value` a well-formed record with first < end.
inline bool DecodeSliceRange(std::string_view key, std::string_view value, SliceRangeRecord* r) {
  if (key.size() != 9 || key[0] != 'R' || value.size() != kSliceRangeSize) return false;
  r->first = GetBE64(key.data() + 1);
  r->end = GetBE64(value.data());
  r->sid = GetBE64(value.data() + 8);
  r->time = static_cast<int64_t>(GetBE64(value.data() + 16));
  return r->first < r->end;
}

std::string EncodeU64(uint64_t v);        // 8 bytes little-endian (counters)
uint64_t DecodeU64(std::string_view in);  // 0 when shorter than 8 bytes

}  // namespace nexus::meta::keys
