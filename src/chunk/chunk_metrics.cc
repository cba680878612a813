// Cache and write-buffer metrics of a ChunkStoreImpl, read from the caches' own statistics at
// exposition time (nothing is added to the data path).
#include "chunk/chunk_impl.h"
#include "common/metrics.h"

namespace nexus::chunk {

uint64_t RegisterChunkMetrics(const ChunkStoreImpl* chunks) {
  return metrics::Registry::Default().AddCollector([chunks](metrics::Writer& w) {
    using metrics::Type;
    cache::CacheStats mem = chunks->memory_cache().Stats();
    std::optional<cache::DiskCacheStats> disk;
    if (chunks->disk_cache()) disk = chunks->disk_cache()->Stats();
    auto both = [&](const char* name, const char* help, Type type, uint64_t m, uint64_t d) {
      w.Header(name, help, type);
      w.Sample(name, {{"cache", "memory"}}, static_cast<double>(m));
      if (disk) w.Sample(name, {{"cache", "disk"}}, static_cast<double>(d));
    };
    both("nexusfs_cache_hits_total", "Block lookups served by the cache.", Type::kCounter, mem.hits,
         disk ? disk->hits : 0);
    both("nexusfs_cache_misses_total", "Block lookups the cache could not serve.", Type::kCounter,
         mem.misses, disk ? disk->misses : 0);
    both("nexusfs_cache_bytes", "Bytes held by the cache now.", Type::kGauge, mem.bytes,
         disk ? disk->bytes : 0);
    both("nexusfs_cache_evictions_total", "Blocks evicted to stay within the cache's size.",
         Type::kCounter, mem.evictions, disk ? disk->evictions : 0);
    if (disk) {
      w.Header("nexusfs_cache_disk_files", "Block files in the disk cache.", Type::kGauge);
      w.Sample("nexusfs_cache_disk_files", static_cast<double>(disk->files));
      w.Header("nexusfs_cache_disk_corrupt_total",
               "Disk cache files dropped because they failed verification.", Type::kCounter);
      w.Sample("nexusfs_cache_disk_corrupt_total", static_cast<double>(disk->corrupt));
      w.Header("nexusfs_cache_disk_dropped_writes_total",
               "Blocks not written to the disk cache (queue full or no space).", Type::kCounter);
      w.Sample("nexusfs_cache_disk_dropped_writes_total",
               static_cast<double>(disk->dropped_writes));
    }
    if (const Staging* staging = chunks->staging()) {
      StagingStats st = staging->Stats();
      auto one = [&](const char* name, const char* help, Type type, uint64_t v) {
        w.Header(name, help, type);
        w.Sample(name, static_cast<double>(v));
      };
      one("nexusfs_writeback_staged_blocks", "Blocks staged for upload (writeback), not uploaded.",
          Type::kGauge, st.blocks);
      one("nexusfs_writeback_staged_bytes", "Bytes of blocks staged for upload (writeback).",
          Type::kGauge, st.bytes);
      one("nexusfs_writeback_uploads_total", "Staged blocks uploaded.", Type::kCounter,
          st.uploaded);
      one("nexusfs_writeback_upload_errors_total",
          "Failed uploads of staged blocks (each is tried again).", Type::kCounter,
          st.upload_errors);
      one("nexusfs_writeback_lost_total",
          "Staged blocks found damaged or missing before their upload.", Type::kCounter, st.lost);
    }
    w.Header("nexusfs_write_buffer_bytes", "Bytes of written data not yet uploaded.", Type::kGauge);
    w.Sample("nexusfs_write_buffer_bytes", static_cast<double>(chunks->buffered_bytes()));
  });
}

}  // namespace nexus::chunk
