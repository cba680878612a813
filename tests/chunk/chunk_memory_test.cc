// The write buffer bounds memory: writing 4 GiB as fast as possible with a 64 MiB buffer keeps
// the process's peak RSS under 64 MiB plus a fixed overhead of 150 MiB (the binary, RocksDB-free
// metadata in memory, the 16 MiB block cache, thread stacks and allocator slack).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

TEST(ChunkMemoryTest, FourGiBThroughA64MiBBufferStaysBounded) {
  char tmpl[] = "/tmp/nexus-chunk-mem-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    auto m = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "membound";
    ASSERT_TRUE(m->Format(f, false).ok());
    auto store = object::ObjectStore::Open("file://" + dir + "/data");
    ASSERT_TRUE(store);
    ChunkOptions o;
    o.buffer_size = 64 << 20;
    o.mem_cache_size = 16 << 20;
    o.prefix = "membound/";
    auto chunks = ChunkStore::Open(m.get(), store->get(), o);
    ASSERT_TRUE(chunks) << chunks.error().ToString();
    meta::Context ctx;
    const std::string block(1 << 20, 'x');
    // Four files of 1 GiB, each deleted once written so the disk never holds more than ~1 GiB.
    for (int file = 0; file < 4; ++file) {
      std::string name = "f" + std::to_string(file);
      auto ent = m->Create(ctx, meta::kRootIno, name, 0644, O_WRONLY);
      ASSERT_TRUE(ent);
      for (uint64_t off = 0; off < (1ULL << 30); off += block.size()) {
        ASSERT_TRUE((*chunks)->Write(ent->ino, off, block.data(), block.size()).ok());
      }
      ASSERT_TRUE((*chunks)->Flush(ent->ino).ok());
      EXPECT_EQ(m->GetAttr(ent->ino)->length, 1ULL << 30);
      ASSERT_TRUE(m->Close(ent->ino).ok());
      ASSERT_TRUE(m->Unlink(ctx, meta::kRootIno, name).ok());
      ASSERT_TRUE((*chunks)->CleanupDeleted());
    }
    ASSERT_TRUE((*chunks)->Shutdown().ok());
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const long peak_mib = ru.ru_maxrss / 1024;
  std::printf("peak RSS after writing 4 GiB with a 64 MiB buffer: %ld MiB\n", peak_mib);
  EXPECT_LT(peak_mib, 64 + 150);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nexus::chunk
