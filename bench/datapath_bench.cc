// The data path in process (no FUSE), on the embedded default (RocksDB metadata, file:// objects)
// in DIR, measured in the same run as the same I/O done directly on that disk:
//
//   build/bench/datapath_bench DIR [--size-mib 2048] [--rand-mib 1024] [--seconds 10]
//                              [--threads 1,4] [--no-drop-caches] [--raw-blocks]
//                              [--joined-puts] [--buffered-blocks] [--no-local-reads]
//                              [--max-uploads N]
//
// Blocks are stored framed (XXH3 checksum per 64 KiB frame, no compression or encryption), as
// on a volume formatted by `nexusfs format`; --raw-blocks stores them as written (old volumes).
// --buffered-blocks: every block is gathered in memory and then put, as before blocks were
// written in place (ObjectStore::NewWriter), for a before/after comparison in one run.
// --no-local-reads: reads fetch whole blocks into the memory cache and committed blocks are read
// back into it, as before reads of file:// objects were made in place (ChunkOptions::local_reads).
// --joined-puts: each framed block is assembled in one buffer before its write (what FrameStore
// did before ObjectStore::PutParts), for a before/after comparison in the same conditions.
//
// 1. Sequential: 1 MiB writes of a SIZE file then 1 MiB reads of it, through ChunkStore (write,
//    flush = upload + commit; read from a fresh ChunkStore, so nothing comes from its memory
//    cache) and with pwrite/pread on a plain file in DIR. As root the page cache is dropped
//    (after a sync) before each pass, so reads come from the disk for both and writes start with
//    free memory and no dirty pages left by earlier work. Each write pass is timed twice: when its
//    last write (NexusFS: flush) returns, mostly a copy into the page cache, and once the data is
//    on the disk (fdatasync of the plain file as `dd conv=fdatasync` does; syncfs of the volume's
//    directory for NexusFS).
// 2. Random: 4 KiB reads at random aligned offsets of a RAND file that is cached (read once
//    through a memory block cache larger than the file), for SECONDS with 1 and 4 threads: IOPS.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"

namespace {

using Clock = std::chrono::steady_clock;
using nexus::chunk::ChunkOptions;
using nexus::chunk::ChunkStore;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CPU time of the whole process (every thread, user and system) so far.
double CpuSeconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         double(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

void DropCaches(bool enabled) {
  sync();
  if (!enabled) return;
  if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    std::fputs("3\n", f);
    std::fclose(f);
  }
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "datapath_bench: %s\n", what.c_str());
  std::exit(1);
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

struct Volume {
  std::unique_ptr<nexus::meta::Meta> meta;
  std::unique_ptr<nexus::object::ObjectStore> store;
};

// Passes every call through but hides some of the inner store's abilities, for before/after
// comparisons in one run: PutParts (--joined-puts: parts are joined into one buffer by the
// default ObjectStore::PutParts, then written with one Put) and NewWriter (--buffered-blocks:
// every block is gathered in memory, then put).
class Hiding final : public nexus::object::ObjectStore {
 public:
  Hiding(std::unique_ptr<ObjectStore> inner, bool hide_parts)
      : inner_(std::move(inner)), hide_parts_(hide_parts) {}
  nexus::Status Put(std::string_view k, std::string_view d) override { return inner_->Put(k, d); }
  nexus::Status PutParts(std::string_view k, std::span<const std::string_view> p) override {
    return hide_parts_ ? ObjectStore::PutParts(k, p) : inner_->PutParts(k, p);
  }
  nexus::Result<std::string> Get(std::string_view k, uint64_t off, uint64_t len) override {
    return inner_->Get(k, off, len);
  }
  nexus::Status GetInto(std::string_view k, uint64_t off, uint64_t len, std::string* out) override {
    return inner_->GetInto(k, off, len, out);
  }
  nexus::Result<nexus::object::ObjectInfo> Head(std::string_view k) override {
    return inner_->Head(k);
  }
  nexus::Status Delete(std::string_view k) override { return inner_->Delete(k); }
  nexus::Result<nexus::object::ListResult> List(std::string_view p, std::string_view m,
                                                size_t l) override {
    return inner_->List(p, m, l);
  }
  std::string Name() const override { return inner_->Name(); }

 private:
  std::unique_ptr<ObjectStore> inner_;
  const bool hide_parts_;
};

Volume OpenVolume(const std::string& dir, bool framed, bool joined_puts, bool buffered) {
  auto e = nexus::kv::Engine::Open("rocksdb://" + dir + "/meta");
  if (!e) Die(e.error().ToString());
  Volume v;
  v.meta = nexus::meta::Meta::Create(std::move(*e));
  nexus::meta::Format f;
  f.name = "bench";
  f.bucket = dir + "/data";
  if (framed) f.block_format = "frames-v1";  // cli::kFramedBlockFormat
  if (auto s = v.meta->Format(f, false); !s.ok()) Die(s.ToString());
  auto store = nexus::object::ObjectStore::Open("file://" + dir + "/data");
  if (!store) Die(store.error().ToString());
  v.store = std::move(*store);
  if (joined_puts) v.store = std::make_unique<Hiding>(std::move(v.store), true);
  if (framed) v.store = nexus::object::NewFrameStore(std::move(v.store), {});
  if (buffered) v.store = std::make_unique<Hiding>(std::move(v.store), false);
  return v;
}

int max_uploads = ChunkOptions{}.max_uploads;  // --max-uploads, as `nexusfs mount` has
bool local_reads = true;                       // --no-local-reads clears it

std::unique_ptr<ChunkStore> OpenChunks(Volume& v, uint64_t mem_cache) {
  ChunkOptions o;
  o.max_uploads = max_uploads;
  o.prefix = "bench/";
  o.mem_cache_size = mem_cache;
  o.prefetch_small_reads = false;  // a local store: ranged reads are cheap
  o.local_reads = local_reads;
  auto c = ChunkStore::Open(v.meta.get(), v.store.get(), o);
  if (!c) Die(c.error().ToString());
  return std::move(*c);
}

uint64_t WriteFile(Volume& v, ChunkStore& chunks, const std::string& name, uint64_t size,
                   const std::string& buf) {
  nexus::meta::Context ctx;
  auto ent = v.meta->Create(ctx, nexus::meta::kRootIno, name, 0644, O_WRONLY);
  if (!ent) Die(ent.error().ToString());
  for (uint64_t off = 0; off < size; off += buf.size()) {
    if (auto s = chunks.Write(ent->ino, off, buf.data(), buf.size()); !s.ok()) Die(s.ToString());
  }
  if (auto s = chunks.Flush(ent->ino); !s.ok()) Die(s.ToString());
  if (auto s = v.meta->Close(ent->ino); !s.ok()) Die(s.ToString());
  return ent->ino;
}

void ReadAll(ChunkStore& chunks, uint64_t ino, uint64_t size, size_t bs) {
  std::vector<char> buf(bs);
  for (uint64_t off = 0; off < size; off += bs) {
    auto n = chunks.Read(ino, off, buf.data(), bs, size);
    if (!n || *n != std::min<uint64_t>(bs, size - off)) Die("short read at " + std::to_string(off));
  }
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t comma = s.find(',', at);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(std::stoi(s.substr(at, comma - at)));
    at = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(
        stderr,
        "usage: datapath_bench DIR [--size-mib N] [--rand-mib N] [--seconds S] "
        "[--threads 1,4] [--no-drop-caches] [--raw-blocks] [--joined-puts] [--buffered-blocks] "
        "[--no-local-reads] [--max-uploads N]\n");
    return 2;
  }
  const std::string root = argv[1];
  uint64_t size = 2048ULL << 20, rand_size = 1024ULL << 20;
  double seconds = 10;
  std::vector<int> thread_counts = {1, 4};
  bool drop = geteuid() == 0;
  bool framed = true, joined_puts = false, buffered = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--size-mib") {
      size = std::stoull(next()) << 20;
    } else if (a == "--rand-mib") {
      rand_size = std::stoull(next()) << 20;
    } else if (a == "--seconds") {
      seconds = std::stod(next());
    } else if (a == "--threads") {
      thread_counts = ParseList(next());
    } else if (a == "--no-drop-caches") {
      drop = false;
    } else if (a == "--raw-blocks") {
      framed = false;
    } else if (a == "--max-uploads") {
      max_uploads = std::max(1, std::stoi(next()));
    } else if (a == "--joined-puts") {
      joined_puts = true;
    } else if (a == "--buffered-blocks") {
      buffered = true;
    } else if (a == "--no-local-reads") {
      local_reads = false;
    } else {
      Die("unknown argument " + a);
    }
  }
  char tmpl[PATH_MAX];
  std::snprintf(tmpl, sizeof tmpl, "%s/datapath-bench-XXXXXX", root.c_str());
  if (!mkdtemp(tmpl)) Die("cannot create a directory in " + root + ": " + std::strerror(errno));
  const std::string dir = tmpl;
  const std::string buf = RandomBytes(1 << 20);
  std::printf(
      "data path vs the disk, %s, %llu MiB sequential, 1 MiB requests, %s blocks%s, page cache "
      "%s\n",
      dir.c_str(), static_cast<unsigned long long>(size >> 20), framed ? "framed" : "raw",
      joined_puts ? " (joined puts)" : (buffered ? " (buffered, not written in place)" : ""),
      drop ? "dropped before reads" : "kept");

  // ---- the disk directly ----
  const std::string raw = dir + "/raw.dat";
  int fd = open(raw.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) Die("open " + raw);
  DropCaches(drop);  // both write passes start with free memory and no dirty pages
  auto t0 = Clock::now();
  double cpu0 = CpuSeconds();
  for (uint64_t off = 0; off < size; off += buf.size()) {
    if (pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(buf.size())) {
      Die("pwrite " + raw);
    }
  }
  const double raw_write = double(size) / (1 << 20) / Seconds(t0);
  const double raw_write_cpu = CpuSeconds() - cpu0;
  if (fdatasync(fd) != 0) Die("fdatasync " + raw);  // as dd conv=fdatasync, fio end_fsync=1
  const double raw_write_durable = double(size) / (1 << 20) / Seconds(t0);
  close(fd);
  DropCaches(drop);
  fd = open(raw.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<char> rbuf(1 << 20);
  t0 = Clock::now();
  for (uint64_t off = 0; off < size; off += rbuf.size()) {
    if (pread(fd, rbuf.data(), rbuf.size(), static_cast<off_t>(off)) <= 0) Die("pread " + raw);
  }
  const double raw_read = double(size) / (1 << 20) / Seconds(t0);
  close(fd);
  unlink(raw.c_str());

  // ---- NexusFS ----
  Volume v = OpenVolume(dir, framed, joined_puts, buffered);
  double nx_write = 0, nx_read = 0, nx_write_cpu = 0, nx_write_durable = 0;
  {
    auto chunks = OpenChunks(v, 256ULL << 20);
    DropCaches(drop);
    t0 = Clock::now();
    cpu0 = CpuSeconds();
    uint64_t ino = WriteFile(v, *chunks, "seq", size, buf);
    nx_write = double(size) / (1 << 20) / Seconds(t0);
    nx_write_cpu = CpuSeconds() - cpu0;
    // On the disk: every object file and the metadata (RocksDB's files) of the volume's file
    // system, what `fsync` of the file gives on a durable volume (file:// with sync_puts).
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || syncfs(dfd) != 0) Die("syncfs " + dir);
    close(dfd);
    nx_write_durable = double(size) / (1 << 20) / Seconds(t0);
    (void)chunks->Shutdown();
    chunks = OpenChunks(v, 256ULL << 20);
    DropCaches(drop);
    t0 = Clock::now();
    ReadAll(*chunks, ino, size, 1 << 20);
    nx_read = double(size) / (1 << 20) / Seconds(t0);
    (void)chunks->Shutdown();
  }
  std::printf("%-28s %12s %12s %7s\n", "sequential, 1 MiB", "NexusFS", "disk", "ratio");
  std::printf("%-28s %8.0f MiB/s %6.0f MiB/s %7.2f\n", "write", nx_write, raw_write,
              nx_write / raw_write);
  // The same writes until they are on the disk: fdatasync of the plain file, syncfs for NexusFS.
  std::printf("%-28s %8.0f MiB/s %6.0f MiB/s %7.2f\n", "write, then synced", nx_write_durable,
              raw_write_durable, nx_write_durable / raw_write_durable);
  // What the write costs in CPU (all threads): steadier than MiB/s on a busy machine.
  std::printf("%-28s %8.2f s     %6.2f s     %7.2f\n", "write, CPU seconds", nx_write_cpu,
              raw_write_cpu, nx_write_cpu / raw_write_cpu);
  std::printf("%-28s %8.0f MiB/s %6.0f MiB/s %7.2f\n", "read", nx_read, raw_read,
              nx_read / raw_read);

  // ---- random 4 KiB reads of a cached file ----
  {
    auto chunks = OpenChunks(v, rand_size + (rand_size >> 1));
    uint64_t ino = WriteFile(v, *chunks, "rand", rand_size, buf);
    ReadAll(*chunks, ino, rand_size, 1 << 20);  // the cache now holds every block
    std::printf("random 4 KiB reads of a cached %llu MiB file, %.0f s each:\n",
                static_cast<unsigned long long>(rand_size >> 20), seconds);
    for (int threads : thread_counts) {
      std::atomic<uint64_t> ops{0};
      std::atomic<bool> stop{false}, failed{false};
      std::vector<std::thread> pool;
      t0 = Clock::now();
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          std::mt19937_64 rng(1000 + t);
          char b[4096];
          uint64_t n = 0;
          while (!stop.load(std::memory_order_relaxed)) {
            uint64_t off = (rng() % (rand_size / 4096)) * 4096;
            auto r = chunks->Read(ino, off, b, sizeof b, rand_size);
            if (!r || *r != sizeof b) failed = true;
            ++n;
          }
          ops += n;
        });
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      stop = true;
      for (auto& th : pool) th.join();
      if (failed) Die("a random read failed");
      std::printf("  %d thread%s: %10.0f IOPS\n", threads, threads == 1 ? " " : "s",
                  double(ops) / Seconds(t0));
    }
    (void)chunks->Shutdown();
  }
  v.meta.reset();
  v.store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
