// Read-only mappings of whole object files (file://), kept in a bounded LRU so that reads of the
// same objects neither map and unmap them again (each unmap flushes TLBs on every CPU the
// process runs on) nor fault their pages in again.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace nexus::object {

// A file mapped whole, read-only and shared; unmapped when the last reference goes. A file that
// shrinks while mapped (objects are immutable: only a process outside NexusFS would do that)
// turns reads past its new end into SIGBUS, as with any mapped file.
struct Mapping {
  Mapping(const char* d, size_t n) : data(d), size(n) {}
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const char* data;  // null for an empty file
  size_t size;
};

class MappedFiles {
 public:
  explicit MappedFiles(size_t capacity) : capacity_(capacity) {}
  // The file at `path` (object `key`), mapped now or earlier; ENOENT when it does not exist.
  Result<std::shared_ptr<const Mapping>> Get(std::string_view key, const std::string& path);
  // Drops the mapping of `key` (the object was replaced or deleted): readers holding it keep
  // the bytes they mapped.
  void Forget(std::string_view key);

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const Mapping>>;
  const size_t capacity_;
  std::mutex mu_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
};

}  // namespace nexus::object
