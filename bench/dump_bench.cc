// Dump and load of a large volume: builds N files (one 4 KiB slice each) in D directories on
// RocksDB through the Meta API (kept in --dir for later runs), then times `dump` to JSON and to
// binary and `load` of each into a fresh RocksDB, checking that the reloaded volume dumps the
// same bytes.
//
// Usage: dump_bench [--files N] [--dirs D] [--dir PATH] [--threads T]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "meta/dump.h"
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

std::string Slurp(const std::string& path) {
  std::string s;
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t files = 1000000, dirs = 1000;
  int threads = 2;
  std::string dir = "/tmp/nexus-dump-bench";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--files") files = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--dirs") dirs = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  const std::string src = dir + "/src-" + std::to_string(files);
  const bool exists = fs::exists(src + "/CURRENT");
  auto engine = kv::Engine::Open("rocksdb://" + src);
  if (!engine) return Die("open", engine.error());
  auto m = meta::Meta::Create(std::move(*engine));
  if (!exists) {
    auto t0 = std::chrono::steady_clock::now();
    meta::Format f;
    f.name = "dump-bench";
    f.uuid = "00000000-0000-0000-0000-00000000d0d0";
    if (Status s = m->Format(f, false); !s.ok()) return Die("format", s);
    meta::Context ctx;
    std::vector<meta::Ino> parents;
    for (uint64_t d = 0; d < dirs; ++d) {
      auto e = m->Mkdir(ctx, meta::kRootIno, "d" + std::to_string(d), 0755);
      if (!e) return Die("mkdir", e.error());
      parents.push_back(e->ino);
    }
    std::vector<std::thread> ts;
    std::vector<Status> errs(threads);
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        for (uint64_t i = t; i < files; i += threads) {
          auto e = m->Mknod(ctx, parents[i % dirs], "file-" + std::to_string(i),
                            meta::FileType::kFile, 0644, 0);
          if (!e) return void(errs[t] = e.error());
          auto id = m->NewSliceId();
          if (!id) return void(errs[t] = id.error());
          Status s = m->WriteSlice(e->ino, 0, meta::Slice{0, *id, 4096, 0, 4096}, 1);
          if (!s.ok()) return void(errs[t] = s);
        }
      });
    }
    for (auto& t : ts) t.join();
    for (const Status& s : errs) {
      if (!s.ok()) return Die("create", s);
    }
    if (Status s = m->engine()->Compact(); !s.ok()) return Die("compact", s);
    std::printf("built %llu files in %llu directories in %.1f s\n", (unsigned long long)files,
                (unsigned long long)dirs, Secs(t0));
  }
  for (auto enc : {meta::dump::Encoding::kJson, meta::dump::Encoding::kBinary}) {
    const char* name = enc == meta::dump::Encoding::kJson ? "json" : "binary";
    const std::string out = dir + "/dump." + name;
    std::FILE* f = std::fopen(out.c_str(), "w+");
    if (!f) return Die("open dump", Status(errno, out));
    meta::dump::DumpOptions o;
    o.encoding = enc;
    auto t0 = std::chrono::steady_clock::now();
    auto st = meta::dump::Dump(*m->engine(), f, o);
    std::fclose(f);
    if (!st) return Die("dump", st.error());
    double dump_s = Secs(t0);

    const std::string target = dir + "/load-" + name;
    fs::remove_all(target);
    auto te = kv::Engine::Open("rocksdb://" + target);
    if (!te) return Die("open target", te.error());
    std::FILE* in = std::fopen(out.c_str(), "r");
    t0 = std::chrono::steady_clock::now();
    auto lt = meta::dump::Load(**te, in, {});
    std::fclose(in);
    if (!lt) return Die("load", lt.error());
    double load_s = Secs(t0);

    const std::string again = dir + "/again." + name;
    std::FILE* g = std::fopen(again.c_str(), "w+");
    auto st2 = meta::dump::Dump(**te, g, o);
    std::fclose(g);
    if (!st2) return Die("dump of the loaded volume", st2.error());
    bool same = Slurp(out) == Slurp(again);
    std::printf(
        "%-6s: %llu inodes, %.1f MB; dump %.1f s, load %.1f s (%llu keys); reloaded "
        "volume dumps %s\n",
        name, (unsigned long long)st->inodes, st->bytes / 1e6, dump_s, load_s,
        (unsigned long long)lt->keys, same ? "identically" : "DIFFERENTLY");
    fs::remove(again);
    if (!same) return 1;
  }
  return 0;
}
