#include "object/object_store.h"

#include <cstring>

#include "common/url.h"
#include "object/stores.h"

namespace nexus::object {

Status ValidateKey(std::string_view key) {
  if (key.empty()) return Status::InvalidArgument("empty object key");
  if (key.front() == '/')
    return Status::InvalidArgument("object key '" + std::string(key) + "' starts with '/'");
  size_t start = 0;
  while (start <= key.size()) {
    size_t slash = key.find('/', start);
    std::string_view part =
        key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == "..") {
      return Status::InvalidArgument("object key '" + std::string(key) +
                                     "' has an empty, '.' or '..' component");
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (key.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("object key contains a NUL byte");
  }
  return Status::OK();
}

Status ObjectStore::PutParts(std::string_view key, std::span<const std::string_view> parts) {
  if (parts.size() == 1) return Put(key, parts[0]);
  size_t total = 0;
  for (std::string_view p : parts) total += p.size();
  std::string joined;
  joined.reserve(total);
  for (std::string_view p : parts) joined.append(p);
  return Put(key, joined);
}

std::unique_ptr<ObjectWriter> ObjectStore::NewWriter(std::string_view, uint64_t) { return nullptr; }

Status ObjectStore::SweepLeftovers(std::string_view, int64_t, bool, Leftovers*) {
  return Status::OK();
}

Status ObjectStore::GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) {
  NX_ASSIGN_OR_RETURN(*out, Get(key, off, len));
  return Status::OK();
}

Status ObjectStore::ReadTo(std::string_view key, uint64_t off, size_t len, char* out) {
  std::string got;
  NX_TRY(GetInto(key, off, len, &got));
  if (got.size() != len) {
    return Status::IOError("object " + std::string(key) + " ends before byte " +
                           std::to_string(off + len));
  }
  std::memcpy(out, got.data(), len);
  return Status::OK();
}

Result<MappedRange> ObjectStore::MapRange(std::string_view key, uint64_t, size_t) {
  return Err(ENOTSUP, "map " + std::string(key) + ": " + Name() + " does not read locally");
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::Open(std::string_view url,
                                                       const StoreOptions& options) {
  auto u = Url::Parse(url);
  if (!u) return Err(u.error().With("object store URL '" + std::string(url) + "'"));
  if (u->scheme.empty() || u->scheme == "file") {
    std::string dir = u->scheme.empty() ? u->path : u->host + u->path;
    if (dir.empty()) return Err(EINVAL, "object store URL '" + std::string(url) + "' has no path");
    return NewFileStore(dir, options);
  }
  if (u->scheme == "mem") return NewMemStore();
  if (u->scheme == "s3" || u->scheme == "http" || u->scheme == "https") {
    return NewS3Store(url, options);
  }
  return Err(EINVAL, "unknown object store '" + u->scheme + "' in '" + u->Redacted() +
                         "' (supported: file, mem, s3, http, https)");
}

}  // namespace nexus::object
