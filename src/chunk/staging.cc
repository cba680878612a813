#include "chunk/staging.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>

#include "cache/disk_cache.h"
#include "common/clock.h"
#include "common/encoding.h"
#include "common/logging.h"
#include "common/xxh.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

constexpr char kMagic[4] = {'N', 'X', 'S', 'G'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderSize = 24;  // magic, version, payload length, XXH3-64 of the payload
constexpr std::string_view kTmpPrefix = ".tmp.";

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;  // shorter than its header says
      return false;
    }
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Delay before upload attempt `attempts + 1` of a block whose last attempt failed: 100 ms
// doubling to 30 s, jittered to [d/2, d] so that many failed blocks do not retry in step.
int64_t RetryDelayNs(int attempts) {
  thread_local std::minstd_rand rng(std::random_device{}());
  const int64_t d =
      std::min<int64_t>(30'000'000'000, int64_t(100'000'000) << std::min(attempts, 9));
  return std::uniform_int_distribution<int64_t>(d / 2, d)(rng);
}

Status ErrnoStatus(int err, const std::string& what) {
  return Status::Errno(err, what + ": " + std::strerror(err));
}

}  // namespace

Staging::Staging(std::string dir, object::ObjectStore* store, int64_t upload_delay_ns,
                 UploadedFn on_uploaded)
    : dir_(std::move(dir)),
      store_(store),
      on_uploaded_(std::move(on_uploaded)),
      upload_delay_ns_(std::max<int64_t>(0, upload_delay_ns)) {}

Result<std::unique_ptr<Staging>> Staging::Open(const std::string& dir, object::ObjectStore* store,
                                               int uploaders, int64_t upload_delay_ns,
                                               UploadedFn on_uploaded) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Err(ec.value(), "writeback staging: cannot create '" + dir + "': " + ec.message());
  std::unique_ptr<Staging> s(new Staging(dir, store, upload_delay_ns, std::move(on_uploaded)));
  NX_TRY(s->Scan());
  for (int i = 0; i < std::max(1, uploaders); ++i)
    s->threads_.emplace_back([p = s.get()] { p->Work(); });
  return s;
}

Staging::~Staging() { Stop(); }

void Staging::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
  std::lock_guard lock(mu_);
  if (!items_.empty()) {
    NX_LOG_WARN(
        "writeback: {} blocks ({} bytes) are still staged in {}; they upload at the next "
        "mount with this cache directory",
        items_.size(), bytes_, dir_);
  }
}

std::string Staging::PathFor(std::string_view key) const {
  return dir_ + "/" + cache::EscapeKey(key);
}

Status Staging::Scan() {
  DIR* d = ::opendir(dir_.c_str());
  if (!d) {
    const int err = errno;
    return ErrnoStatus(err, "writeback staging: cannot open '" + dir_ + "'");
  }
  const int64_t now = MonoNanos();
  size_t temps = 0;
  std::lock_guard lock(mu_);
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    const std::string path = dir_ + "/" + std::string(name);
    if (name.substr(0, kTmpPrefix.size()) == kTmpPrefix) {
      ::unlink(path.c_str());  // a write cut short: its block was never committed as staged
      ++temps;
      continue;
    }
    std::string key;
    struct stat st;
    if (!cache::UnescapeKey(name, &key) || cache::EscapeKey(key) != name ||
        ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) < kHeaderSize) {
      NX_LOG_WARN("writeback staging: ignoring unexpected file {}", path);
      continue;
    }
    Item& item = items_[key];
    item.size = static_cast<uint64_t>(st.st_size) - kHeaderSize;
    item.synced = true;  // whatever survived to be found needs no fsync from this process
    bytes_ += item.size;
    QueueLocked(key, item, now);
    ++recovered_;
  }
  ::closedir(d);
  if (recovered_ || temps) {
    NX_LOG_INFO(
        "writeback staging {}: {} blocks ({} bytes) left by an earlier run queued for "
        "upload, {} temp files removed",
        dir_, recovered_, bytes_, temps);
  }
  return Status::OK();
}

void Staging::QueueLocked(const std::string& key, Item& item, int64_t at) {
  item.state = State::kQueued;
  item.queued = ready_.emplace(at, key);
}

Status Staging::Stage(const std::string& key, std::string_view data) {
  std::string header(kMagic, 4);
  PutBE32(&header, kVersion);
  PutBE64(&header, data.size());
  PutBE64(&header, XXH3_64bits(data.data(), data.size()));
  uint64_t seq;
  {
    std::lock_guard lock(mu_);
    if (items_.count(key)) return Status::OK();  // blocks are immutable: staged already
    seq = tmp_seq_++;
  }
  const std::string tmp =
      dir_ + "/" + std::string(kTmpPrefix) + std::to_string(::getpid()) + "." + std::to_string(seq);
  const std::string path = PathFor(key);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && WriteAll(fd, header.data(), header.size()) &&
            WriteAll(fd, data.data(), data.size());
  int err = ok ? 0 : errno;
  if (fd >= 0 && ::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "writeback: cannot stage block " + key + " in " + dir_);
  }
  {
    std::lock_guard lock(mu_);
    Item& item = items_[key];
    item.size = data.size();
    bytes_ += item.size;
    ++staged_;
    QueueLocked(key, item, MonoNanos() + upload_delay_ns_);
  }
  work_cv_.notify_one();
  return Status::OK();
}

bool Staging::ReadStaged(const std::string& path, std::string* payload, std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  char header[kHeaderSize];
  bool ok = ReadAll(fd, header, kHeaderSize);
  if (!ok) {
    *why = std::string("cannot read its header: ") + std::strerror(errno);
  } else if (std::memcmp(header, kMagic, 4) != 0 || GetBE32(header + 4) != kVersion) {
    *why = "bad header";
    ok = false;
  }
  struct stat st;
  uint64_t len = ok ? GetBE64(header + 8) : 0;
  if (ok && (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != kHeaderSize + len)) {
    *why = "its size does not match its header";
    ok = false;
  }
  if (ok) {
    payload->resize(len);
    ok = ReadAll(fd, payload->data(), len);
    if (!ok) *why = std::string("cannot read: ") + std::strerror(errno);
  }
  if (ok && XXH3_64bits(payload->data(), payload->size()) != GetBE64(header + 16)) {
    *why = "checksum mismatch";
    ok = false;
  }
  ::close(fd);
  return ok;
}

std::shared_ptr<const std::string> Staging::Get(const std::string& key) {
  {
    std::lock_guard lock(mu_);
    if (!items_.count(key)) return nullptr;
  }
  std::string payload, why;
  if (ReadStaged(PathFor(key), &payload, &why)) {
    return std::make_shared<const std::string>(std::move(payload));
  }
  std::lock_guard lock(mu_);
  // Gone meanwhile (uploaded, or discarded): not an error; the store has it, or nobody needs it.
  if (!items_.count(key)) return nullptr;
  NX_LOG_ERROR("writeback: staged block {} in {} is unreadable ({})", key, dir_, why);
  return nullptr;
}

void Staging::Discard(const std::string& key) {
  {
    std::lock_guard lock(mu_);
    auto it = items_.find(key);
    if (it == items_.end()) return;
    if (it->second.state == State::kUploading) {
      it->second.discarded = true;  // Work deletes the file and the object once it is stored
      return;
    }
    ready_.erase(it->second.queued);
    bytes_ -= it->second.size;
    items_.erase(it);
  }
  ::unlink(PathFor(key).c_str());
  done_cv_.notify_all();
}

Status Staging::Sync() {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, item] : items_) {
      if (!item.synced) keys.push_back(key);
    }
  }
  if (keys.empty()) return Status::OK();
  for (const std::string& key : keys) {
    int fd = ::open(PathFor(key).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == ENOENT) continue;  // uploaded meanwhile
      return ErrnoStatus(err, "writeback: cannot open staged block " + key);
    }
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus(err, "writeback: fsync of staged block " + key);
  }
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int err = errno;
    return ErrnoStatus(err, "writeback: cannot open " + dir_);
  }
  int rc = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0) return ErrnoStatus(err, "writeback: fsync of " + dir_);
  std::lock_guard lock(mu_);
  for (const std::string& key : keys) {
    auto it = items_.find(key);
    if (it != items_.end()) it->second.synced = true;
  }
  return Status::OK();
}

void Staging::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_) return;
    if (ready_.empty()) {
      work_cv_.wait(lock);
      continue;
    }
    const int64_t now = MonoNanos();
    auto first = ready_.begin();
    if (first->first > now) {
      work_cv_.wait_for(lock, std::chrono::nanoseconds(first->first - now));
      continue;
    }
    const std::string key = first->second;
    ready_.erase(first);
    Item& item = items_.at(key);
    item.state = State::kUploading;
    lock.unlock();

    const std::string path = PathFor(key);
    std::string payload, why;
    bool readable = ReadStaged(path, &payload, &why);
    Status put = readable ? store_->Put(key, payload) : Status::OK();
    // Outside the lock, before the file goes. A block whose slice is deleted meanwhile may be
    // handed over too: a cache entry nobody reads (slice ids are never reused), evicted in time.
    if (readable && put.ok() && on_uploaded_) {
      on_uploaded_(key, std::make_shared<const std::string>(std::move(payload)));
    }

    lock.lock();
    Item& it = items_.at(key);
    if (it.discarded) {
      // Its slice was deleted while it uploaded: drop the file and whatever reached the store,
      // and forget it only then, so that Drain returns with no such object left.
      lock.unlock();
      ::unlink(path.c_str());
      if (readable) {  // even after a failed Put: a timed-out request may have stored it
        Status d = store_->Delete(key);
        if (!d.ok()) NX_LOG_WARN("writeback: delete of discarded block {}: {}", key, d.ToString());
      }
      lock.lock();
      bytes_ -= items_.at(key).size;
      items_.erase(key);
      done_cv_.notify_all();
      continue;
    }
    if (!readable || put.ok()) {
      if (readable) {
        ++uploaded_;
      } else {
        ++lost_;
        NX_LOG_ERROR("writeback: staged block {} is lost ({}); reads of it will fail", key, why);
      }
      // Forgotten before its file goes: a reader that misses it here finds the object.
      bytes_ -= it.size;
      items_.erase(key);
      lock.unlock();
      ::unlink(path.c_str());
      done_cv_.notify_all();
      lock.lock();
      continue;
    }
    ++upload_errors_;
    if (it.attempts == 0 || it.attempts % 10 == 9) {
      NX_LOG_WARN("writeback: upload of staged block {} failed (attempt {}), will retry: {}", key,
                  it.attempts + 1, put.ToString());
    }
    QueueLocked(key, it, MonoNanos() + RetryDelayNs(it.attempts));
    ++it.attempts;
    done_cv_.notify_all();
  }
}

Status Staging::Drain(int64_t stall_ns) {
  std::unique_lock lock(mu_);
  // Everything queued is due now: a delay or a retry backoff is not worth waiting out here.
  const int64_t now = MonoNanos();
  std::multimap<int64_t, std::string> due;
  for (auto& [at, key] : ready_) {
    Item& item = items_.at(key);
    item.queued = due.emplace(std::min(at, now), key);
  }
  ready_.swap(due);
  work_cv_.notify_all();
  int64_t since = MonoNanos();
  uint64_t uploaded = uploaded_;
  while (!items_.empty()) {
    if (uploaded_ != uploaded) {
      uploaded = uploaded_;
      since = MonoNanos();
    }
    const int64_t left = since + stall_ns - MonoNanos();
    if (left <= 0) {
      return Status::IOError("writeback: " + std::to_string(items_.size()) + " blocks (" +
                             std::to_string(bytes_) + " bytes) could not be uploaded from " + dir_ +
                             "; they stay staged and upload at the next mount with it");
    }
    done_cv_.wait_for(lock, std::chrono::nanoseconds(std::min<int64_t>(left, 100'000'000)));
  }
  return Status::OK();
}

StagingStats Staging::Stats() const {
  std::lock_guard lock(mu_);
  StagingStats s;
  s.blocks = items_.size();
  s.bytes = bytes_;
  s.staged = staged_;
  s.uploaded = uploaded_;
  s.upload_errors = upload_errors_;
  s.recovered = recovered_;
  s.lost = lost_;
  return s;
}

}  // namespace nexus::chunk
