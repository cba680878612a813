// Builds a volume for timing `nexusfs fsck` and `nexusfs gc` (docs/operations.md): N files of
// 1 KiB in directories of 1,000, written through Meta and ChunkStore on a volume made by
// `nexusfs format`, plus L leaked block objects (uploaded, never committed).
//
//   nexusfs format /tmp/v/meta bench --bucket /tmp/v/data
//   build/bench/fsck_volume_bench /tmp/v/meta /tmp/v/data 100000 1000
//   time nexusfs fsck /tmp/v/meta ; time nexusfs gc /tmp/v/meta --min-age 0
#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/stores.h"

using namespace nexus;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s META-PATH BUCKET-DIR FILES LEAKED\n", argv[0]);
    return 2;
  }
  const long files = std::atol(argv[3]), leaked = std::atol(argv[4]);
  auto engine = kv::Engine::Open(argv[1]);
  if (!engine) {
    std::fprintf(stderr, "%s\n", engine.error().ToString().c_str());
    return 1;
  }
  auto m = meta::Meta::Create(std::move(*engine));
  auto f = m->Load();
  if (!f) {
    std::fprintf(stderr, "%s\n", f.error().ToString().c_str());
    return 1;
  }
  auto fs = object::NewFileStore(argv[2], {});
  if (!fs) return 1;
  std::unique_ptr<object::ObjectStore> store = std::move(*fs);
  if (!f->block_format.empty()) store = object::NewFrameStore(std::move(store), {});
  chunk::ChunkOptions co;
  co.block_size = f->block_size;
  co.prefix = f->name + "/";
  co.background = false;
  auto cs = chunk::ChunkStore::Open(m.get(), store.get(), co);
  if (!cs) return 1;
  const auto ctx = meta::Context::Root();
  const std::string data(1024, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  meta::Ino dir = 0;
  for (long i = 0; i < files; ++i) {
    if (i % 1000 == 0) {
      auto d = m->Mkdir(ctx, meta::kRootIno, "d" + std::to_string(i / 1000), 0755);
      if (!d) return 1;
      dir = d->ino;
    }
    auto e = m->Create(ctx, dir, "f" + std::to_string(i), 0644, O_RDWR);
    if (!e || !(*cs)->Write(e->ino, 0, data.data(), data.size()).ok() ||
        !(*cs)->Flush(e->ino).ok() || !m->Close(e->ino).ok()) {
      std::fprintf(stderr, "file %ld failed\n", i);
      return 1;
    }
  }
  for (long i = 0; i < leaked; ++i) {
    auto id = m->NewSliceId();
    if (!id) return 1;
    const std::string key = f->name + "/chunks/" + std::to_string(*id / 1000000) + "/" +
                            std::to_string(*id / 1000) + "/" + std::to_string(*id) + "_0_1024";
    if (!store->Put(key, data).ok()) return 1;
  }
  (void)(*cs)->Shutdown();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%ld files, %ld leaked objects in %.1f s\n", files, leaked, secs);
  return 0;
}
