// Internals of meta/dump.cc: the event stream that the engine reader and the two parsers
// produce and that the two writers and the loader consume.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "meta/dump.h"
#include "meta/types.h"

namespace nexus::meta::dump {

inline constexpr char kJsonFormatName[] = "nexusfs-dump";
inline constexpr int kDumpVersion = 1;
inline constexpr char kBinaryMagic[8] = {'N', 'X', 'F', 'S', 'D', 'U', 'M', 'P'};

// Events in the order they occur: Setting, Counters, then per inode InodeBegin, its Chunk,
// Entry, Parent, Symlink, Xattr events (in that order) and InodeEnd, then DeletedFile,
// DeletedSlice and SliceRef events, then End.
class Visitor {
 public:
  virtual ~Visitor() = default;
  virtual Status Setting(const std::string& json) = 0;
  virtual Status Counters(const std::vector<std::pair<std::string, uint64_t>>& counters) = 0;
  // `attr` is absent for a removed file whose chunks await release.
  virtual Status InodeBegin(Ino ino, const std::optional<Attr>& attr) = 0;
  virtual Status Chunk(Ino ino, uint32_t index, const std::vector<Slice>& slices) = 0;
  virtual Status Entry(Ino dir, std::string_view name, FileType type, Ino child) = 0;
  virtual Status Parent(Ino ino, Ino parent, uint32_t count) = 0;
  virtual Status Symlink(Ino ino, std::string_view target) = 0;
  virtual Status Xattr(Ino ino, std::string_view name, std::string_view value) = 0;
  virtual Status InodeEnd(Ino ino) = 0;
  virtual Status DeletedFile(Ino ino, uint64_t length) = 0;
  virtual Status DeletedSlice(uint64_t id, uint32_t size) = 0;
  virtual Status SliceRef(uint64_t id, uint32_t size, uint32_t refs) = 0;
  virtual Status End() = 0;
};

// Writers: encode the stream to `out`. bytes() = what was written so far.
class Writer : public Visitor {
 public:
  virtual uint64_t bytes() const = 0;
};
std::unique_ptr<Writer> NewJsonWriter(std::FILE* out, bool secrets_kept);
std::unique_ptr<Writer> NewBinaryWriter(std::FILE* out, bool secrets_kept);

// Parsers: decode `in` (after the first `head` bytes, which were read to tell the encodings
// apart) and feed `v`. Any malformed or truncated input is EBADMSG with a position.
Status ParseJson(std::FILE* in, std::string_view head, Visitor& v);
Status ParseBinary(std::FILE* in, std::string_view head, Visitor& v);

// Helpers shared by the encodings.
const char* FileTypeName(FileType t);
bool ParseFileType(std::string_view name, FileType* t);
bool ValidFileType(uint8_t t);
std::string Base64Encode(std::string_view in);
bool Base64Decode(std::string_view in, std::string* out);
bool ValidUtf8(std::string_view s);

}  // namespace nexus::meta::dump
