#include "cache/disk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "common/encoding.h"
#include "common/logging.h"
#include "common/thread_pool.h"
#include "common/xxh.h"

namespace nexus::cache {
namespace {

constexpr char kMagic[4] = {'N', 'X', 'D', 'C'};
constexpr uint32_t kVersion = 1;
// magic, version, payload length, XXH3-64 of the payload, segment size, zero
constexpr size_t kHeaderSize = 32;
constexpr uint32_t kSegment = 16 << 10;  // one XXH3-64 per segment, for ranged reads
constexpr std::string_view kTmpPrefix = ".tmp.";

}  // namespace

std::string EscapeKey(std::string_view key) {
  std::string out;
  out.reserve(key.size() + 8);
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c == '%') {
      out += "%25";
    } else if (c == '/') {
      out += "%2F";
    } else if (c == '.' && i == 0) {
      out += "%2E";  // no name starts with '.': those are temp files
    } else if (c == '\0') {
      out += "%00";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool UnescapeKey(std::string_view name, std::string* key) {
  key->clear();
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      key->push_back(name[i]);
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (i + 2 >= name.size()) return false;
    int hi = hex(name[i + 1]), lo = hex(name[i + 2]);
    if (hi < 0 || lo < 0) return false;
    key->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

namespace {

unsigned Bucket(std::string_view key) {
  return static_cast<unsigned>(XXH3_64bits(key.data(), key.size()) & 0xff);
}

std::string BucketName(unsigned b) {
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string{kHex[b >> 4], kHex[b & 15]};
}

bool PwriteAll(int fd, const char* p, size_t n, off_t off) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
    off += w;
  }
  return true;
}

// Reads exactly `n` bytes at `off`; false on an error or a short file.
bool PreadAll(int fd, char* p, size_t n, off_t off) {
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    off += r;
  }
  return true;
}

// Where the parts of a cache file are: header, segment checksums, payload.
struct Layout {
  uint64_t len = 0, sum = 0, segments = 0, payload_off = 0;
  uint32_t segment = 0;
};

uint64_t SegmentCount(uint64_t len, uint32_t segment) { return (len + segment - 1) / segment; }

// Reads and checks the header against the file's size.
bool ReadLayout(int fd, Layout* l, std::string* why) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *why = std::string("fstat: ") + std::strerror(errno);
    return false;
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  char header[kHeaderSize];
  if (file_size < kHeaderSize || !PreadAll(fd, header, kHeaderSize, 0)) {
    *why = "file of " + std::to_string(file_size) + " bytes has no whole header";
    return false;
  }
  l->len = GetBE64(header + 8);
  l->sum = GetBE64(header + 16);
  l->segment = GetBE32(header + 24);
  if (std::memcmp(header, kMagic, 4) != 0 || GetBE32(header + 4) != kVersion || l->segment == 0 ||
      GetBE32(header + 28) != 0 || l->len > file_size) {
    *why = "bad header";
    return false;
  }
  l->segments = SegmentCount(l->len, l->segment);
  l->payload_off = kHeaderSize + 8 * l->segments;
  if (file_size != l->payload_off + l->len) {
    *why = "header says " + std::to_string(l->len) + " payload bytes, file has " +
           std::to_string(file_size) + " bytes in all";
    return false;
  }
  return true;
}

// Reads and verifies a whole cache file; on failure returns null and says why in `why`.
std::shared_ptr<const std::string> ReadVerified(int fd, std::string* why) {
  Layout l;
  if (!ReadLayout(fd, &l, why)) return nullptr;
  std::string payload(l.len, '\0');
  if (!PreadAll(fd, payload.data(), l.len, static_cast<off_t>(l.payload_off))) {
    *why = "short read of " + std::to_string(l.len) + " payload bytes";
    return nullptr;
  }
  if (XXH3_64bits(payload.data(), payload.size()) != l.sum) {
    *why = "checksum mismatch";
    return nullptr;
  }
  return std::make_shared<const std::string>(std::move(payload));
}

enum class RangeRead { kOk, kOutOfRange, kBad };

// Copies [off, off+len) of the payload into `out`, reading and verifying only the segments
// that hold it.
RangeRead ReadRangeVerified(int fd, uint64_t off, size_t len, char* out, std::string* why) {
  Layout l;
  if (!ReadLayout(fd, &l, why)) return RangeRead::kBad;
  if (off > l.len || len > l.len - off) return RangeRead::kOutOfRange;
  if (len == 0) return RangeRead::kOk;
  const uint64_t first = off / l.segment, last = (off + len - 1) / l.segment;
  const uint64_t n = last - first + 1;
  std::string sums(8 * n, '\0');
  const uint64_t from = first * l.segment, to = std::min(l.len, (last + 1) * l.segment);
  std::string bytes(to - from, '\0');
  if (!PreadAll(fd, sums.data(), sums.size(), static_cast<off_t>(kHeaderSize + 8 * first)) ||
      !PreadAll(fd, bytes.data(), bytes.size(), static_cast<off_t>(l.payload_off + from))) {
    *why = "short read";
    return RangeRead::kBad;
  }
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t a = i * l.segment, b = std::min<uint64_t>(bytes.size(), a + l.segment);
    if (XXH3_64bits(bytes.data() + a, b - a) != GetBE64(sums.data() + 8 * i)) {
      *why = "checksum mismatch in segment " + std::to_string(first + i);
      return RangeRead::kBad;
    }
  }
  std::memcpy(out, bytes.data() + (off - from), len);
  return RangeRead::kOk;
}

}  // namespace

DiskCache::DiskCache(std::string dir, uint64_t capacity, double free_space_ratio,
                     DiskCacheOptions options)
    : dir_(std::move(dir)),
      capacity_(capacity),
      free_space_ratio_(free_space_ratio),
      opts_(options),
      limit_(capacity) {}

Result<std::unique_ptr<DiskCache>> DiskCache::Open(const std::string& dir, uint64_t capacity_bytes,
                                                   double free_space_ratio,
                                                   DiskCacheOptions options) {
  if (dir.empty()) return Err(EINVAL, "disk cache directory is empty");
  if (!(free_space_ratio >= 0 && free_space_ratio < 1)) {
    return Err(EINVAL, "disk cache free space ratio " + std::to_string(free_space_ratio) +
                           " is not in [0, 1)");
  }
  const std::string what = "disk cache directory " + dir;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "blocks", ec);
  if (ec) return Err(ec.value() ? ec.value() : EIO, what + ": cannot create: " + ec.message());
  // Proves that the directory is writable before any block is handed to it.
  const std::string probe = dir + "/blocks/" + std::string(kTmpPrefix) + "probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || !PwriteAll(fd, "probe", 5, 0)) {
    int e = errno ? errno : EIO;
    if (fd >= 0) ::close(fd);
    ::unlink(probe.c_str());
    return Err(e, what + ": not writable: " + std::strerror(e));
  }
  ::close(fd);
  ::unlink(probe.c_str());

  auto cache =
      std::unique_ptr<DiskCache>(new DiskCache(dir, capacity_bytes, free_space_ratio, options));
  // One process per directory: the scan below deletes temp files that would be another
  // process's writes in flight.
  cache->lock_fd_ = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (cache->lock_fd_ < 0) {
    int e = errno;
    return Err(e, what + ": cannot create lock file: " + std::strerror(e));
  }
  if (::flock(cache->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Err(EBUSY, what + " is in use by another process");
  }
  NX_TRY(cache->Scan());
  cache->CheckSpace();
  cache->writers_ = std::make_unique<ThreadPool>(
      std::max(1, options.writers), std::max<size_t>(1, options.max_pending), "nx-cache-write");
  return cache;
}

DiskCache::~DiskCache() {
  stopping_ = true;
  writers_.reset();  // queued writes return at once; a running one removes its temp file
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string DiskCache::PathFor(std::string_view key) const {
  return dir_ + "/blocks/" + BucketName(Bucket(key)) + "/" + EscapeKey(key);
}

// Indexes the files left by earlier runs, oldest modification first, so that the blocks
// written last are evicted last; removes temp files of writes that never finished.
Status DiskCache::Scan() {
  struct Found {
    int64_t mtime;
    uint64_t size;
    std::string key;
  };
  std::vector<Found> found;
  size_t tmp_removed = 0;
  // Subdirectories are made on first use: an empty cache costs no directory to open.
  std::vector<unsigned> buckets;
  {
    const std::string top = dir_ + "/blocks";
    DIR* d = ::opendir(top.c_str());
    if (!d) {
      int e = errno;
      return Status(e, "disk cache: cannot list " + top + ": " + std::strerror(e));
    }
    while (dirent* ent = ::readdir(d)) {
      std::string_view name = ent->d_name;
      for (unsigned b = 0; name.size() == 2 && b < 256; ++b) {
        if (name == BucketName(b)) buckets.push_back(b);
      }
    }
    ::closedir(d);
  }
  for (unsigned b : buckets) {
    const std::string sub = dir_ + "/blocks/" + BucketName(b);
    DIR* d = ::opendir(sub.c_str());
    if (!d) continue;  // not a directory: not ours
    while (dirent* ent = ::readdir(d)) {
      std::string_view name = ent->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = sub + "/" + std::string(name);
      if (name.starts_with(kTmpPrefix)) {
        if (::unlink(path.c_str()) == 0) tmp_removed++;
        continue;
      }
      std::string key;
      struct stat st {};
      if (!UnescapeKey(name, &key) || EscapeKey(key) != name || Bucket(key) != b ||
          ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        continue;  // not one of ours: left alone, not counted
      }
      found.push_back(
          Found{static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                static_cast<uint64_t>(st.st_size), std::move(key)});
    }
    ::closedir(d);
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    return std::tie(a.mtime, a.key) < std::tie(b.mtime, b.key);
  });
  std::lock_guard lock(mu_);
  for (Found& f : found) InsertLocked(f.key, f.size);
  EvictLocked(0);
  if (tmp_removed || !found.empty()) {
    NX_LOG_INFO("disk cache {}: {} blocks ({} MiB) indexed, {} leftover temp files removed", dir_,
                index_.size(), bytes_ >> 20, tmp_removed);
  }
  return Status::OK();
}

void DiskCache::InsertLocked(const std::string& key, uint64_t size) {
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second.size;
    lru_.erase(it->second.lru);
    index_.erase(it);
  }
  lru_.push_front(key);
  index_.emplace(key, Entry{size, ++next_gen_, lru_.begin()});
  bytes_ += size;
}

void DiskCache::EraseLocked(std::unordered_map<std::string, Entry>::iterator it) {
  ::unlink(PathFor(it->first).c_str());
  bytes_ -= it->second.size;
  lru_.erase(it->second.lru);
  index_.erase(it);
}

void DiskCache::EvictLocked(uint64_t incoming) {
  while (!lru_.empty() && bytes_ + reserved_ + incoming > limit_) {
    EraseLocked(index_.find(lru_.back()));
    evictions_++;
  }
}

// The cache may grow only by the free space above free_space_ratio of the file system: limit_
// is what it holds now plus that margin (or minus the shortfall), never above the capacity.
// Between checks the limit holds, so a statvfs costs once per space_check_ns, not per call.
void DiskCache::CheckSpace() {
  const int64_t now = MonoNanos();
  int64_t last = last_space_check_.load(std::memory_order_relaxed);
  if (last != 0 && now - last < opts_.space_check_ns) return;         // the common case: no lock
  if (!last_space_check_.compare_exchange_strong(last, now)) return;  // another thread checks
  struct statvfs sv {};
  if (::statvfs(dir_.c_str(), &sv) != 0 || sv.f_blocks == 0) return;
  const double total = static_cast<double>(sv.f_blocks) * static_cast<double>(sv.f_frsize);
  const double avail = static_cast<double>(sv.f_bavail) * static_cast<double>(sv.f_frsize);
  const double want_free = total * free_space_ratio_;
  std::lock_guard lock(mu_);
  const double limit = static_cast<double>(bytes_) + (avail - want_free);
  limit_ = limit <= 0 ? 0 : std::min<uint64_t>(capacity_, static_cast<uint64_t>(limit));
  EvictLocked(0);
}

uint64_t DiskCache::FileSize(uint64_t payload) {
  return kHeaderSize + 8 * SegmentCount(payload, kSegment) + payload;
}

int DiskCache::OpenIndexed(const std::string& key, uint64_t* gen, int* open_err) {
  CheckSpace();
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it == index_.end()) {
      misses_++;
      return -1;
    }
    *gen = it->second.gen;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  int fd = ::open(PathFor(key).c_str(), O_RDONLY | O_CLOEXEC);
  *open_err = fd < 0 ? errno : 0;
  if (fd < 0) Drop(key, *gen, std::string("open: ") + std::strerror(*open_err), *open_err);
  return fd;
}

void DiskCache::Drop(const std::string& key, uint64_t gen, const std::string& why, int open_err) {
  misses_++;
  {
    std::lock_guard lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end() && it->second.gen == gen) EraseLocked(it);
  }
  if (open_err == ENOENT) return;  // removed behind our back: a miss, not corruption
  corrupt_++;
  NX_LOG_WARN("disk cache: dropped block {} ({}): {}", key, PathFor(key), why);
}

std::shared_ptr<const std::string> DiskCache::Get(std::string_view key) {
  const std::string k(key);
  uint64_t gen = 0;
  int open_err = 0;
  int fd = OpenIndexed(k, &gen, &open_err);
  if (fd < 0) return nullptr;
  std::string why;
  auto data = ReadVerified(fd, &why);
  ::close(fd);
  if (!data) {
    Drop(k, gen, why, 0);
    return nullptr;
  }
  hits_++;
  return data;
}

bool DiskCache::ReadRange(std::string_view key, uint64_t off, size_t len, char* out) {
  const std::string k(key);
  uint64_t gen = 0;
  int open_err = 0;
  int fd = OpenIndexed(k, &gen, &open_err);
  if (fd < 0) return false;
  std::string why;
  RangeRead r = ReadRangeVerified(fd, off, len, out, &why);
  ::close(fd);
  if (r == RangeRead::kOk) {
    hits_++;
    return true;
  }
  if (r == RangeRead::kOutOfRange) {
    misses_++;
    return false;
  }
  Drop(k, gen, why, 0);
  return false;
}

bool DiskCache::Put(std::string_view key, std::shared_ptr<const std::string> data) {
  if (!data || stopping_) return false;
  if (FileSize(data->size()) > capacity_) return false;
  std::string k(key);
  if (EscapeKey(k).size() > opts_.max_key_file_name) return false;
  {
    std::lock_guard lock(mu_);
    if (index_.count(k) || pending_.count(k)) return true;
    pending_.emplace(k, false);
  }
  if (writers_->TrySubmit([this, k, data] { Write(k, data); })) return true;
  dropped_++;
  std::lock_guard lock(mu_);
  pending_.erase(k);
  if (pending_.empty()) idle_cv_.notify_all();
  return false;
}

void DiskCache::Write(const std::string& key, const std::shared_ptr<const std::string>& data) {
  const uint64_t size = FileSize(data->size());
  bool reserved = false;
  auto finish = [&](bool keep, const std::string& path) {
    std::lock_guard lock(mu_);
    auto p = pending_.find(key);
    const bool discarded = p == pending_.end() || p->second || stopping_;
    if (reserved) reserved_ -= size;
    if (keep && !discarded) {
      InsertLocked(key, size);
      EvictLocked(0);
      writes_++;
    } else if (keep) {
      ::unlink(path.c_str());
    }
    if (p != pending_.end()) pending_.erase(p);
    if (pending_.empty()) idle_cv_.notify_all();
  };
  if (stopping_) return finish(false, {});
  CheckSpace();
  {
    std::lock_guard lock(mu_);
    EvictLocked(size);
    if (bytes_ + reserved_ + size > limit_) {
      dropped_++;
      reserved = false;
    } else {
      reserved_ += size;
      reserved = true;
    }
  }
  if (!reserved) return finish(false, {});

  const std::string path = PathFor(key);
  const std::string tmp = dir_ + "/blocks/" + BucketName(Bucket(key)) + "/" +
                          std::string(kTmpPrefix) + std::to_string(::getpid()) + "." +
                          std::to_string(tmp_seq_++);
  std::string header(kMagic, 4);
  PutBE32(&header, kVersion);
  PutBE64(&header, data->size());
  PutBE64(&header, XXH3_64bits(data->data(), data->size()));
  PutBE32(&header, kSegment);
  PutBE32(&header, 0);
  for (uint64_t at = 0; at < data->size(); at += kSegment) {
    PutBE64(&header,
            XXH3_64bits(data->data() + at, std::min<uint64_t>(kSegment, data->size() - at)));
  }
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {
    const std::string sub = dir_ + "/blocks/" + BucketName(Bucket(key));
    if (::mkdir(sub.c_str(), 0755) == 0 || errno == EEXIST) {
      fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
  }
  bool ok = fd >= 0 && PwriteAll(fd, header.data(), header.size(), 0) &&
            PwriteAll(fd, data->data(), data->size(), static_cast<off_t>(header.size()));
  int err = ok ? 0 : errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  // No fsync: a file whose bytes did not reach the disk before a crash fails its checksum.
  if (ok && !stopping_ && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok || stopping_) {
    ::unlink(tmp.c_str());
    if (!ok) {
      dropped_++;
      NX_LOG_WARN("disk cache: cannot write block {} to {}: {}", key, tmp, std::strerror(err));
    }
    return finish(false, {});
  }
  finish(true, path);
}

void DiskCache::Remove(std::string_view key) {
  const std::string k(key);
  std::lock_guard lock(mu_);
  if (auto p = pending_.find(k); p != pending_.end()) p->second = true;
  if (auto it = index_.find(k); it != index_.end()) EraseLocked(it);
}

void DiskCache::WaitIdle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return pending_.empty(); });
}

DiskCacheStats DiskCache::Stats() const {
  DiskCacheStats s;
  {
    std::lock_guard lock(mu_);
    s.bytes = bytes_;
    s.files = index_.size();
  }
  s.hits = hits_.load();
  s.misses = misses_.load();
  s.evictions = evictions_.load();
  s.corrupt = corrupt_.load();
  s.dropped_writes = dropped_.load();
  s.writes = writes_.load();
  return s;
}

}  // namespace nexus::cache
