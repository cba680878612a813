// Metadata footprint: bytes per file in the RocksDB directory after N empty files are created
// through Meta and the database is compacted.
//
// Usage: footprint_bench [--files N] [--dirs D] [--dir PATH]
// Prints one line: files, directory bytes after compaction, bytes per file, create rate.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace fs = std::filesystem;
using namespace nexus;

static uint64_t DirBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

int main(int argc, char** argv) {
  uint64_t files = 1000000, dirs = 100;
  std::string dir = "/tmp/nexus-footprint";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--files")
      files = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--dirs")
      dirs = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--dir")
      dir = argv[i + 1];
  }
  fs::remove_all(dir);
  auto t0 = std::chrono::steady_clock::now();
  {
    auto engine = kv::Engine::Open("rocksdb://" + dir);
    if (!engine) {
      std::fprintf(stderr, "open: %s\n", engine.error().ToString().c_str());
      return 1;
    }
    auto m = meta::Meta::Create(std::move(*engine));
    meta::Format f;
    f.name = "footprint";
    f.uuid = "00000000-0000-0000-0000-000000000000";
    if (Status s = m->Format(f, false); !s.ok()) {
      std::fprintf(stderr, "format: %s\n", s.ToString().c_str());
      return 1;
    }
    meta::Context ctx;
    std::vector<meta::Ino> parents;
    for (uint64_t d = 0; d < dirs; ++d) {
      auto e = m->Mkdir(ctx, meta::kRootIno, "d" + std::to_string(d), 0755);
      if (!e) return std::fprintf(stderr, "mkdir: %s\n", e.error().ToString().c_str()), 1;
      parents.push_back(e->ino);
    }
    for (uint64_t i = 0; i < files; ++i) {
      auto e = m->Mknod(ctx, parents[i % dirs], "file-" + std::to_string(i), meta::FileType::kFile,
                        0644, 0);
      if (!e) return std::fprintf(stderr, "mknod: %s\n", e.error().ToString().c_str()), 1;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t before = DirBytes(dir);
  {
    auto engine = kv::Engine::Open("rocksdb://" + dir);
    if (!engine) return std::fprintf(stderr, "reopen: %s\n", engine.error().ToString().c_str()), 1;
    if (Status s = (*engine)->Compact(); !s.ok()) {
      return std::fprintf(stderr, "compact: %s\n", s.ToString().c_str()), 1;
    }
  }
  // Count SST data only: logs and options files are not per-file state.
  uint64_t sst = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".sst") sst += e.file_size();
  }
  std::printf(
      "files=%llu dirs=%llu create_rate=%.0f/s dir_bytes_before_compaction=%llu "
      "sst_bytes=%llu bytes_per_file=%.1f\n",
      (unsigned long long)files, (unsigned long long)dirs, files / secs, (unsigned long long)before,
      (unsigned long long)sst, double(sst) / files);
  fs::remove_all(dir);
  return 0;
}
