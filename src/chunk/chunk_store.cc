#include <algorithm>

#include "chunk/chunk_impl.h"
#include "common/buffer.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace nexus::chunk {

std::string BlockKey(const std::string& prefix, uint64_t id, uint32_t index, uint32_t size) {
  return prefix + "chunks/" + std::to_string(id / 1000000) + "/" + std::to_string(id / 1000) + "/" +
         std::to_string(id) + "_" + std::to_string(index) + "_" + std::to_string(size);
}

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(meta::Meta* meta, object::ObjectStore* store,
                                                     const ChunkOptions& options) {
  if (!meta || !store) return Err(EINVAL, "chunk store needs a metadata layer and an object store");
  if (options.block_size < 4096 || options.block_size > (64u << 20)) {
    return Err(EINVAL, "block size " + std::to_string(options.block_size) + " is out of range");
  }
  if (options.buffer_size < 2ULL * options.block_size) {
    return Err(EINVAL, "buffer size " + std::to_string(options.buffer_size >> 20) +
                           " MiB is smaller than two blocks");
  }
  if (options.writeback && options.cache_dir.empty()) {
    return Err(EINVAL, "writeback needs a cache directory (--cache-dir) to stage blocks in");
  }
  std::unique_ptr<cache::DiskCache> disk;
  if (!options.cache_dir.empty()) {
    NX_ASSIGN_OR_RETURN(disk, cache::DiskCache::Open(options.cache_dir, options.cache_size,
                                                     options.free_space_ratio));
  }
  // After the disk cache, whose lock on the directory keeps a second process out of it.
  std::unique_ptr<Staging> staging;
  if (options.writeback) {
    // An uploaded staged block moves to the disk cache (ChunkOptions::cache_writes), which
    // outlives the staging (declared before it in ChunkStoreImpl).
    Staging::UploadedFn to_cache;
    if (disk && CachesWrites(options, store)) {
      to_cache = [d = disk.get()](const std::string& key, std::shared_ptr<const std::string> data) {
        d->Put(key, std::move(data));
      };
    }
    NX_ASSIGN_OR_RETURN(
        staging, Staging::Open(options.cache_dir + "/staging", store, options.writeback_uploaders,
                               options.writeback_upload_delay_ns, std::move(to_cache)));
  }
  return std::unique_ptr<ChunkStore>(
      std::make_unique<ChunkStoreImpl>(meta, store, options, std::move(disk), std::move(staging)));
}

ChunkStoreImpl::ChunkStoreImpl(meta::Meta* meta, object::ObjectStore* store,
                               const ChunkOptions& options, std::unique_ptr<cache::DiskCache> disk,
                               std::unique_ptr<Staging> staging)
    : meta_(meta),
      store_(store),
      opts_(options),
      // A few idle buffers cover the hand-over from the cache's evictions to new blocks.
      buffers_(std::make_shared<BlockBufferPool>(
          options.block_size,
          static_cast<size_t>(std::clamp<uint64_t>(
              options.buffer_size / std::max<uint32_t>(options.block_size, 1) / 8, 1, 8)))),
      cache_(options.mem_cache_size),
      disk_(std::move(disk)),
      staging_(std::move(staging)),
      uploads_(std::make_unique<ThreadPool>(std::max(1, options.max_uploads), 0, "nx-upload")),
      downloads_(std::make_unique<ThreadPool>(
          std::max(1, options.max_downloads),
          static_cast<size_t>(4 * std::max(1, options.max_downloads)), "nx-download")) {
  local_ = opts_.local_reads && store_->ReadsLocally();
  if (opts_.background) background_ = std::thread([this] { BackgroundLoop(); });
  metrics_id_ = RegisterChunkMetrics(this);
}

std::string BlockBufferPool::Take() {
  std::string s;
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      s = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  // Room for a stored block's frame header and table too, so that a download of a whole framed
  // object fits the buffer instead of reallocating it.
  constexpr size_t kHeaderRoom = 64 << 10;
  if (s.capacity() < block_size_ + kHeaderRoom) ReserveLarge(&s, block_size_ + kHeaderRoom);
  return s;
}

std::shared_ptr<const std::string> BlockBufferPool::Share(std::string data) {
  return std::shared_ptr<const std::string>(new std::string(std::move(data)),
                                            [self = shared_from_this()](const std::string* s) {
                                              self->Recycle(const_cast<std::string*>(s));
                                            });
}

void BlockBufferPool::Recycle(std::string* s) {
  if (s->capacity() >= block_size_) {
    std::lock_guard lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(*s));
  }
  delete s;
}

size_t BlockBufferPool::idle() const {
  std::lock_guard lock(mu_);
  return idle_.size();
}

ChunkStoreImpl::~ChunkStoreImpl() {
  metrics::Registry::Default().RemoveCollector(metrics_id_);
  Status s = Shutdown();
  if (!s.ok()) NX_LOG_ERROR("chunk store shutdown: {}", s.ToString());
}

std::shared_ptr<FileState> ChunkStoreImpl::State(meta::Ino ino, bool create) {
  std::lock_guard lock(files_mu_);
  auto it = files_.find(ino);
  if (it != files_.end()) return it->second;
  if (!create) return nullptr;
  auto f = std::make_shared<FileState>();
  files_.emplace(ino, f);
  return f;
}

std::shared_ptr<const std::string> ChunkStoreImpl::DiskGet(const std::string& key, uint32_t size) {
  if (!disk_) return nullptr;
  auto data = disk_->Get(key);
  if (!data) return nullptr;
  if (data->size() != size) {  // a valid file under the wrong name: never served
    NX_LOG_WARN("disk cache: block {} has {} bytes, expected {}", key, data->size(), size);
    disk_->Remove(key);
    return nullptr;
  }
  cache_.Put(key, data);
  return data;
}

std::shared_ptr<const std::string> ChunkStoreImpl::StagedGet(const std::string& key,
                                                             uint32_t size) {
  if (!staging_) return nullptr;
  auto data = staging_->Get(key);
  if (!data) return nullptr;
  if (data->size() != size) {  // a valid file under the wrong name: never served
    NX_LOG_ERROR("writeback: staged block {} has {} bytes, expected {}", key, data->size(), size);
    return nullptr;
  }
  cache_.Put(key, data);
  return data;
}

uint64_t ChunkStoreImpl::PendingLength(meta::Ino ino) {
  auto f = State(ino, false);
  if (!f) return 0;
  std::lock_guard lock(f->mu);
  uint64_t end = 0;
  for (const auto& s : f->pending) {
    end = std::max(end, uint64_t(s->chunk) * meta::kChunkSize + s->pos + s->len);
  }
  return end;
}

void ChunkStoreImpl::Invalidate(meta::Ino ino) {
  auto f = State(ino, false);
  if (!f) return;
  std::lock_guard lock(f->mu);
  f->records.clear();
  f->generation++;
  f->seq_end = 0;
  f->readahead = 0;
  f->prefetched_to = 0;
}

Status ChunkStoreImpl::Shutdown() {
  {
    std::lock_guard lock(bg_mu_);
    if (shut_down_) return Status::OK();
    shut_down_ = true;
  }
  Status first;
  std::vector<std::pair<meta::Ino, std::shared_ptr<FileState>>> files;
  {
    std::lock_guard lock(files_mu_);
    files.assign(files_.begin(), files_.end());
  }
  for (auto& [ino, f] : files) {
    Status s = FlushState(ino, f);
    if (!s.ok() && first.ok()) first = s;
  }
  {
    std::lock_guard lock(bg_mu_);
    stopping_ = true;
  }
  bg_cv_.notify_all();
  if (background_.joinable()) background_.join();
  uploads_.reset();
  if (staging_) {
    Status s = staging_->Drain(opts_.writeback_drain_stall_ns);
    if (!s.ok()) {
      NX_LOG_ERROR("{}", s.ToString());
      if (first.ok()) first = s;
    }
    staging_->Stop();  // kept until destruction: the metrics collector may still read it
  }
  downloads_.reset();
  // The blocks queued for the disk cache are written (at most max_pending of them): a remount
  // then finds everything this client wrote.
  if (disk_) disk_->WaitIdle();
  return first;
}

// Commits data idle for flush_idle_ns, runs queued compactions, and releases deleted data.
void ChunkStoreImpl::BackgroundLoop() {
  int64_t last_cleanup = 0;
  for (;;) {
    {
      std::unique_lock lock(bg_mu_);
      bg_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
      if (stopping_) return;
    }
    const int64_t now = MonoNanos();
    std::vector<std::pair<meta::Ino, std::shared_ptr<FileState>>> idle;
    {
      std::lock_guard lock(files_mu_);
      for (auto& [ino, f] : files_) {
        std::lock_guard flock(f->mu);
        bool pressure = buffered_.load() > opts_.buffer_size / 2 && f->inflight == 0;
        if (!f->pending.empty() && (now - f->last_write > opts_.flush_idle_ns || pressure)) {
          idle.emplace_back(ino, f);
        }
      }
    }
    for (auto& [ino, f] : idle) {
      Status s = FlushState(ino, f);
      if (!s.ok()) NX_LOG_WARN("background flush of inode {}: {}", ino, s.ToString());
    }
    for (;;) {
      std::pair<meta::Ino, uint32_t> job;
      {
        std::lock_guard lock(compact_mu_);
        if (compact_queue_.empty()) break;
        job = *compact_queue_.begin();
        compact_queue_.erase(compact_queue_.begin());
      }
      Status s = Compact(job.first, job.second);
      if (!s.ok())
        NX_LOG_WARN("compaction of inode {} chunk {}: {}", job.first, job.second, s.ToString());
    }
    if (now - last_cleanup > 1'000'000'000) {
      last_cleanup = now;
      auto r = CleanupDeleted();
      if (!r) NX_LOG_WARN("background deletion: {}", r.error().ToString());
    }
  }
}

}  // namespace nexus::chunk
