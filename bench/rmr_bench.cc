// Meta::RemoveTree on a large tree (the engine side of `nexusfs rmr`): builds N empty files
// (half in the top directory, half over 8 subdirectories) plus one file of 4 KiB data per 100
// through the Meta API, then times RemoveTree and reports its transactions and rate.
//
// Usage: rmr_bench [--files N] [--url ENGINE_URL]   (default: 100000 files, RocksDB in a
// fresh temporary directory, removed afterwards)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace fs = std::filesystem;
using namespace nexus;

namespace {

double Secs(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int Die(const char* what, const Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  long files = 100000;
  std::string url, tmp;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--files") && i + 1 < argc) {
      files = std::atol(argv[++i]);
    } else if (!std::strcmp(argv[i], "--url") && i + 1 < argc) {
      url = argv[++i];
    } else {
      std::fprintf(stderr, "usage: rmr_bench [--files N] [--url ENGINE_URL]\n");
      return 2;
    }
  }
  if (files <= 0) {
    std::fprintf(stderr, "--files must be positive\n");
    return 2;
  }
  if (url.empty()) {
    char tmpl[] = "/tmp/rmr-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return Die("mkdtemp", Status::Errno(errno, "/tmp"));
    tmp = tmpl;
    url = "rocksdb://" + tmp + "/meta";
  }
  auto engine = kv::Engine::Open(url);
  if (!engine) return Die("open", engine.error());
  auto meta = meta::Meta::Create(std::move(*engine));
  meta::Format f;
  f.name = "rmr-bench";
  f.uuid = "00000000-0000-0000-0000-000000000000";
  f.storage = "mem";
  if (Status s = meta->Format(f, false); !s.ok()) return Die("format", s);
  const meta::Context root = meta::Context::Root();

  auto t0 = std::chrono::steady_clock::now();
  auto top = meta->Mkdir(root, meta::kRootIno, "t", 0755);
  if (!top) return Die("mkdir", top.error());
  std::vector<meta::Ino> dirs;
  for (int i = 0; i < 4; ++i) {
    auto d = meta->Mkdir(root, top->ino, "d" + std::to_string(i), 0755);
    if (!d) return Die("mkdir", d.error());
    auto s = meta->Mkdir(root, d->ino, "sub", 0755);
    if (!s) return Die("mkdir", s.error());
    dirs.push_back(d->ino);
    dirs.push_back(s->ino);
  }
  for (long i = 0; i < files; ++i) {
    const meta::Ino dir = i % 2 ? top->ino : dirs[(i / 2) % dirs.size()];
    auto e = meta->Mknod(root, dir, "file-" + std::to_string(i), meta::FileType::kFile, 0644, 0);
    if (!e) return Die("mknod", e.error());
    if (i % 100 == 0) {
      auto id = meta->NewSliceId();
      if (!id) return Die("slice id", id.error());
      if (Status s = meta->WriteSlice(e->ino, 0, meta::Slice{0, *id, 4096, 0, 4096}, 0); !s.ok()) {
        return Die("write", s);
      }
    }
  }
  const double create_s = Secs(t0);
  const uint64_t txns_before = meta->engine()->Stats().txns;

  t0 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();
  uint64_t calls = 0;
  auto n = meta->RemoveTree(root, meta::kRootIno, "t", [&](uint64_t) { ++calls; });
  const double rmr_s = Secs(t0);
  const double cpu_s = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  if (!n) return Die("RemoveTree", n.error());
  auto st = meta->GetStatFs(meta::kRootIno);
  if (!st) return Die("statfs", st.error());
  std::printf("%s: %ld files + 9 dirs created one by one in %.2f s\n",
              meta->engine()->Name().c_str(), files, create_s);
  std::printf(
      "RemoveTree: %llu entries in %.2f s (%.2f s CPU, %.0f entries/s), %llu transactions, %llu "
      "progress calls; left: %llu inodes, %llu bytes\n",
      static_cast<unsigned long long>(*n), rmr_s, cpu_s, *n / rmr_s,
      static_cast<unsigned long long>(meta->engine()->Stats().txns - txns_before),
      static_cast<unsigned long long>(calls), static_cast<unsigned long long>(st->used_inodes),
      static_cast<unsigned long long>(st->used_space));
  meta.reset();
  if (!tmp.empty()) fs::remove_all(tmp);
  return *n == static_cast<uint64_t>(files) + 9 ? 0 : 1;
}
