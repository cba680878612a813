#include "object/mapped_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace nexus::object {

Mapping::~Mapping() {
  if (data) munmap(const_cast<char*>(data), size);
}

Result<std::shared_ptr<const Mapping>> MappedFiles::Get(std::string_view key,
                                                        const std::string& path) {
  {
    std::lock_guard lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  auto fail = [&](int err) {
    return Err(err, "get " + std::string(key) + " (map): " + std::strerror(err));
  };
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return fail(err);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* p = nullptr;
  if (size > 0) {
    p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      close(fd);
      return fail(err);
    }
  }
  close(fd);
  auto m = std::make_shared<const Mapping>(static_cast<const char*>(p), size);
  std::shared_ptr<const Mapping> evicted;  // unmapped outside the lock
  std::lock_guard lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) return it->second->second;  // raced
  lru_.emplace_front(std::string(key), m);
  index_.emplace(lru_.front().first, lru_.begin());
  if (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    evicted = std::move(lru_.back().second);
    lru_.pop_back();
  }
  return m;
}

void MappedFiles::Forget(std::string_view key) {
  std::shared_ptr<const Mapping> dropped;  // unmapped outside the lock
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  dropped = std::move(it->second->second);
  lru_.erase(it->second);
  index_.erase(it);
}

}  // namespace nexus::object
