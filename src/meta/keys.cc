#include "meta/keys.h"

namespace nexus::meta::keys {

std::string EncodeAttr(const meta::Attr& a) {
  std::string s;
  s.reserve(64);
  PutU8(&s, kAttrVersion);
  PutU8(&s, static_cast<uint8_t>(a.type));
  PutBE16(&s, static_cast<uint16_t>(a.mode & 07777));
  PutBE32(&s, a.uid);
  PutBE32(&s, a.gid);
  PutBE32(&s, a.nlink);
  PutBE64(&s, a.length);
  PutBE32(&s, a.rdev);
  PutBE64(&s, static_cast<uint64_t>(a.atime));
  PutBE64(&s, static_cast<uint64_t>(a.mtime));
  PutBE64(&s, static_cast<uint64_t>(a.ctime));
  PutBE64(&s, a.parent);
  PutBE32(&s, a.flags);
  return s;
}

Status DecodeAttr(std::string_view in, meta::Attr* a) {
  Decoder d(in);
  uint8_t version = 0, type = 0;
  uint16_t mode = 0;
  uint64_t atime = 0, mtime = 0, ctime = 0;
  if (!d.GetU8(&version) || version != kAttrVersion) {
    return Status::Corruption("attribute record has unknown version " + std::to_string(version));
  }
  if (!d.GetU8(&type) || !d.GetBE16(&mode) || !d.GetBE32(&a->uid) || !d.GetBE32(&a->gid) ||
      !d.GetBE32(&a->nlink) || !d.GetBE64(&a->length) || !d.GetBE32(&a->rdev) ||
      !d.GetBE64(&atime) || !d.GetBE64(&mtime) || !d.GetBE64(&ctime) || !d.GetBE64(&a->parent) ||
      !d.GetBE32(&a->flags) || type < 1 || type > 7) {
    return Status::Corruption("attribute record is damaged (" + std::to_string(in.size()) +
                              " bytes)");
  }
  a->type = static_cast<FileType>(type);
  a->mode = mode;
  a->atime = static_cast<int64_t>(atime);
  a->mtime = static_cast<int64_t>(mtime);
  a->ctime = static_cast<int64_t>(ctime);
  return Status::OK();
}

std::string EncodeDentry(FileType type, Ino ino) {
  std::string s;
  PutU8(&s, static_cast<uint8_t>(type));
  PutBE64(&s, ino);
  return s;
}

Status DecodeDentry(std::string_view in, FileType* type, Ino* ino) {
  Decoder d(in);
  uint8_t t = 0;
  if (!d.GetU8(&t) || !d.GetBE64(ino) || t < 1 || t > 7) {
    return Status::Corruption("directory entry record is damaged");
  }
  *type = static_cast<FileType>(t);
  return Status::OK();
}

void AppendSlice(std::string* dst, const Slice& s) {
  PutBE32(dst, s.pos);
  PutBE64(dst, s.id);
  PutBE32(dst, s.size);
  PutBE32(dst, s.off);
  PutBE32(dst, s.len);
}

Status DecodeSlices(std::string_view in, std::vector<Slice>* out) {
  if (in.size() % kSliceRecordSize != 0) {
    return Status::Corruption("chunk record of " + std::to_string(in.size()) +
                              " bytes is not a whole number of slices");
  }
  out->clear();
  out->reserve(in.size() / kSliceRecordSize);
  for (size_t i = 0; i < in.size(); i += kSliceRecordSize) {
    const char* p = in.data() + i;
    out->push_back(
        Slice{GetBE32(p), GetBE64(p + 4), GetBE32(p + 12), GetBE32(p + 16), GetBE32(p + 20)});
  }
  return Status::OK();
}

std::string EncodeU64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  return s;
}

uint64_t DecodeU64(std::string_view in) {
  if (in.size() < 8) return 0;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace nexus::meta::keys
