// ObjectStore: where file data lives, as immutable objects named by key.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace nexus::object {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  int64_t mtime = 0;  // ns since the epoch
};

struct ListResult {
  std::vector<ObjectInfo> objects;  // ascending key order
  std::string next_marker;          // empty when the listing is complete
};

struct StoreOptions {
  // file://: fsync each object (and its directory) before Put returns.
  bool sync_puts = false;

  // s3 (docs/object-stores.md). Credentials given here win over the URL's user:password, which
  // win over AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN. Never logged.
  std::string access_key;
  std::string secret_key;
  std::string session_token;
  std::string region;    // empty: ?region=, the host's, AWS_REGION, AWS_DEFAULT_REGION, us-east-1
  std::string s3_style;  // "path", "virtual", or empty for what the URL's form says
  bool create_bucket = false;                  // create a missing bucket on open (format does)
  uint64_t multipart_threshold = 32ULL << 20;  // Puts of at least this size go in parts
  uint64_t multipart_part_size = 8ULL << 20;   // S3's minimum is 5 MiB
  int max_tries = 8;                           // per request: 5xx, 429, timeouts, resets
  long connect_timeout_ms = 10000;
  long request_timeout_ms = 120000;
};

// Bytes of an object readable where the store keeps them (ObjectStore::MapRange).
struct MappedRange {
  std::string_view data;
  std::shared_ptr<const void> keep;  // holds `data` valid
};

// An object written in place (ObjectStore::NewWriter): its bytes go where the store keeps
// objects (file://: the object's temporary file) as they are appended, instead of being gathered
// in memory for a Put; Commit then stores it as atomically as a Put would. Destroyed without a
// Commit, it leaves nothing behind (best effort: a crash leaves a temporary file that
// SweepLeftovers finds). Not thread-safe: one user at a time.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // Appends `data` to the object. After a failure the writer should only be read back or
  // dropped: how much of `data` went in is unspecified.
  virtual Status Append(std::string_view data) = 0;
  // Overwrites bytes already appended, at `off` (a header whose room was appended first and
  // whose contents are known only at the end).
  virtual Status WriteAt(uint64_t off, std::string_view data) = 0;
  // Copies [off, off+len) of the bytes appended so far into `out`.
  virtual Status ReadAt(uint64_t off, size_t len, char* out) = 0;
  // Bytes appended so far.
  virtual uint64_t size() const = 0;
  // Stores the object under the writer's key once every byte announced to NewWriter is
  // appended (EINVAL otherwise). Only ReadAt works after it: when it failed, the bytes stay
  // readable until the writer is dropped (the caller may then Put them another way).
  virtual Status Commit() = 0;
};

// Contract: thread-safe. A Put is atomic (readers see the old object, or the whole new one) and
// durable once it returns, to the degree the backend promises (file://: against a process
// crash; with sync_puts, against power loss). A missing key gives ENOENT.
class ObjectStore {
 public:
  // "file:///dir", "mem://", "s3://BUCKET[/PREFIX]", "http(s)://HOST[:PORT]/BUCKET[/PREFIX]",
  // "https://BUCKET.s3.REGION.amazonaws.com[/PREFIX]". A plain path means file://.
  static Result<std::unique_ptr<ObjectStore>> Open(std::string_view url,
                                                   const StoreOptions& options = {});
  virtual ~ObjectStore() = default;

  virtual Status Put(std::string_view key, std::string_view data) = 0;
  // Put of the concatenation of `parts`, for callers that hold an object in pieces (a framed
  // block's header and its data): a store that can send the pieces as they are overrides it
  // (file:// writes them with writev), the default joins them into one buffer and calls Put.
  virtual Status PutParts(std::string_view key, std::span<const std::string_view> parts);
  // Reads [off, off+len) of the object; len = UINT64_MAX means to the end. A range past the end
  // is clipped (a read starting at or past the end returns "").
  virtual Result<std::string> Get(std::string_view key, uint64_t off = 0,
                                  uint64_t len = UINT64_MAX) = 0;
  // Get into `*out`, whose buffer a store may reuse (a recycled block buffer costs neither page
  // faults nor zeroing); on success `*out` holds exactly the bytes Get would return, on failure
  // its contents are unspecified. The default calls Get.
  virtual Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out);
  // Reads exactly [off, off+len) of the object into `out` (room for `len` bytes): an object
  // that ends before off+len is an error (EIO), a missing one ENOENT. The default calls GetInto.
  virtual Status ReadTo(std::string_view key, uint64_t off, size_t len, char* out);
  // True when ranged reads are served from storage on this machine whose hot bytes the
  // operating system caches (file://, with frames stored as they are): a ranged read then costs
  // a few system calls, so the data path reads ranges in place instead of copying whole blocks
  // into a cache of its own.
  virtual bool ReadsLocally() const { return false; }
  // [off, off+len) of the object readable in place, with the checks a read makes (frames are
  // verified), on stores that ReadsLocally(): file:// maps the object (the mapping is cached).
  // A reader then hands the bytes on (a FUSE reply) without copying them out of the page cache
  // first. ENOTSUP from the other stores (the default).
  virtual Result<MappedRange> MapRange(std::string_view key, uint64_t off, size_t len);
  // A hint that [off, off+len) of the object will be read soon (file://: the kernel starts
  // reading it ahead). The default does nothing.
  virtual void WillRead(std::string_view /*key*/, uint64_t /*off*/, uint64_t /*len*/) {}
  virtual Result<ObjectInfo> Head(std::string_view key) = 0;
  // Deleting a missing key succeeds.
  virtual Status Delete(std::string_view key) = 0;
  // Up to `limit` objects whose key starts with `prefix` and sorts after `marker`.
  virtual Result<ListResult> List(std::string_view prefix, std::string_view marker,
                                  size_t limit) = 0;
  // What Puts that never finished left behind (file://: a temporary file whose process died
  // before renaming it), last modified before `older_than_ns` (ns since the epoch): counted
  // into `found` (count and bytes) and, with `remove`, deleted. No object is ever touched.
  // Stores without such leftovers find none (the default).
  struct Leftovers {
    uint64_t count = 0, bytes = 0, removed = 0;
  };
  virtual Status SweepLeftovers(std::string_view prefix, int64_t older_than_ns, bool remove,
                                Leftovers* found);
  // A writer for the object `key` of exactly `size` bytes, or null when this store cannot write
  // objects in place (the default; the caller then gathers the bytes and Puts them). Layers
  // that transform bytes return null unless they can do it as the bytes arrive.
  virtual std::unique_ptr<ObjectWriter> NewWriter(std::string_view key, uint64_t size);
  virtual std::string Name() const = 0;  // "file:///dir", secrets redacted
};

}  // namespace nexus::object
