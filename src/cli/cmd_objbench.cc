// nexusfs objbench STORAGE-URL: checks that an object store behaves as NexusFS needs (put, get,
// ranged get, head, delete, list, missing keys, empty objects, multipart-sized objects), then
// measures the throughput of big and small objects with -p threads. Everything it writes lives
// under one fresh prefix that it removes at the end.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "object/object_store.h"

namespace nexus::cli {
namespace {

struct BenchArgs {
  std::string url;
  int threads = 4;
  std::string big_size = "256M";    // total of the big-object test
  std::string block_size = "4M";    // size of each big object
  std::string small_size = "128K";  // size of each small object
  uint64_t small_count = 100;
  std::string access_key, secret_key, session_token;
  bool skip_functional = false;
};

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  for (size_t i = n & ~size_t{7}; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

std::string HumanSize(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), v == static_cast<uint64_t>(v) ? "%.0f %s" : "%.1f %s", v,
                units[u]);
  return buf;
}

struct Check {
  const char* name;
  std::function<Status()> run;
};

Status Expect(bool ok, const std::string& what) {
  return ok ? Status::OK() : Status::IOError(what);
}

// The functional checks; returns how many failed.
int RunChecks(object::ObjectStore& s, const std::string& p, uint64_t multipart_size) {
  const std::string data = RandomBytes(1 << 20, 1);
  const std::string big = RandomBytes(multipart_size, 2);
  std::vector<Check> checks = {
      {"put", [&] { return s.Put(p + "check/obj", data); }},
      {"get",
       [&]() -> Status {
         NX_ASSIGN_OR_RETURN(std::string got, s.Get(p + "check/obj"));
         return Expect(got == data, "read back " + std::to_string(got.size()) + " bytes that " +
                                        "differ from the 1 MiB written");
       }},
      {"ranged get",
       [&]() -> Status {
         NX_ASSIGN_OR_RETURN(std::string mid, s.Get(p + "check/obj", 1000, 5000));
         NX_TRY(Expect(mid == data.substr(1000, 5000), "[1000, 6000) differs"));
         NX_ASSIGN_OR_RETURN(std::string tail, s.Get(p + "check/obj", data.size() - 10, 100));
         NX_TRY(Expect(tail == data.substr(data.size() - 10), "a range past the end not clipped"));
         NX_ASSIGN_OR_RETURN(std::string past, s.Get(p + "check/obj", data.size(), 10));
         return Expect(past.empty(), "a range starting at the end is not empty");
       }},
      {"head",
       [&]() -> Status {
         NX_ASSIGN_OR_RETURN(object::ObjectInfo info, s.Head(p + "check/obj"));
         return Expect(info.size == data.size() && info.mtime > 0,
                       "size " + std::to_string(info.size) + " or mtime wrong");
       }},
      {"list",
       [&]() -> Status {
         for (const char* k : {"c", "a", "b"}) NX_TRY(s.Put(p + "check/list/" + k, k));
         NX_ASSIGN_OR_RETURN(object::ListResult first, s.List(p + "check/list/", "", 2));
         NX_TRY(Expect(first.objects.size() == 2 && first.objects[0].key == p + "check/list/a" &&
                           first.objects[1].key == p + "check/list/b" && !first.next_marker.empty(),
                       "the first page is not [a, b] with a marker"));
         NX_ASSIGN_OR_RETURN(object::ListResult rest,
                             s.List(p + "check/list/", first.next_marker, 2));
         return Expect(rest.objects.size() == 1 && rest.objects[0].key == p + "check/list/c" &&
                           rest.next_marker.empty() && rest.objects[0].size == 1,
                       "the second page is not [c]");
       }},
      {"missing key",
       [&]() -> Status {
         auto g = s.Get(p + "check/missing");
         NX_TRY(Expect(!g && g.error().code() == ENOENT, "get of a missing key is not ENOENT"));
         auto h = s.Head(p + "check/missing");
         return Expect(!h && h.error().code() == ENOENT, "head of a missing key is not ENOENT");
       }},
      {"empty object",
       [&]() -> Status {
         NX_TRY(s.Put(p + "check/empty", ""));
         NX_ASSIGN_OR_RETURN(std::string got, s.Get(p + "check/empty"));
         NX_ASSIGN_OR_RETURN(object::ObjectInfo info, s.Head(p + "check/empty"));
         return Expect(got.empty() && info.size == 0, "an empty object is not empty");
       }},
      {"multipart",
       [&]() -> Status {
         NX_TRY(s.Put(p + "check/multipart", big));
         NX_ASSIGN_OR_RETURN(std::string got, s.Get(p + "check/multipart"));
         NX_TRY(Expect(got == big, "a " + HumanSize(big.size()) + " object reads back wrong"));
         NX_ASSIGN_OR_RETURN(std::string part, s.Get(p + "check/multipart", (5 << 20) - 2, 4));
         return Expect(part == big.substr((5 << 20) - 2, 4), "a range across parts differs");
       }},
      {"delete",
       [&]() -> Status {
         NX_TRY(s.Delete(p + "check/obj"));
         auto g = s.Get(p + "check/obj");
         NX_TRY(Expect(!g && g.error().code() == ENOENT, "a deleted object can still be read"));
         return s.Delete(p + "check/obj");  // deleting a missing key succeeds
       }},
  };
  std::printf("%-14s %-6s %9s  %s\n", "CHECK", "RESULT", "TIME", "DETAIL");
  int failed = 0;
  for (const Check& c : checks) {
    auto t0 = Clock::now();
    Status st = c.run();
    double ms = Seconds(Clock::now() - t0) * 1000;
    if (!st.ok()) ++failed;
    std::printf("%-14s %-6s %7.1fms  %s\n", c.name, st.ok() ? "pass" : "FAIL", ms,
                st.ok() ? "" : st.ToString().c_str());
  }
  std::fflush(stdout);
  return failed;
}

// Runs `op(i)` for i in [0, n) on `threads` threads; returns the wall time, or the first error.
Result<double> Parallel(uint64_t n, int threads, const std::function<Status(uint64_t)>& op) {
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  Status first;
  std::mutex mu;
  auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (uint64_t i; !failed && (i = next.fetch_add(1)) < n;) {
        Status s = op(i);
        if (!s.ok()) {
          std::lock_guard lock(mu);
          if (!failed.exchange(true)) first = s;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  if (failed) return Err(first);
  return Seconds(Clock::now() - t0);
}

Status RunBench(object::ObjectStore& s, const std::string& p, const BenchArgs& a) {
  NX_ASSIGN_OR_RETURN(uint64_t big_total, ParseSize(a.big_size));
  NX_ASSIGN_OR_RETURN(uint64_t block, ParseSize(a.block_size));
  NX_ASSIGN_OR_RETURN(uint64_t small, ParseSize(a.small_size));
  if (block == 0 || block > (256ULL << 20))
    return Status::InvalidArgument("--block-size must be 1 to 256M");
  if (small > (256ULL << 20)) return Status::InvalidArgument("--small-size must be at most 256M");
  const uint64_t big_count = (big_total + block - 1) / block;
  const std::string big_data = RandomBytes(block, 3);
  const std::string small_data = RandomBytes(small, 4);
  auto key = [&](const char* kind, uint64_t i) {
    return p + kind + "/" + std::to_string(i % 100) + "/" + std::to_string(i);
  };
  std::printf("\n%-16s %7s %10s %10s %16s %15s %11s\n", "OPERATION", "COUNT", "SIZE", "TIME",
              "THROUGHPUT", "RATE", "LATENCY");
  auto run = [&](const char* name, uint64_t n, uint64_t size,
                 const std::function<Status(uint64_t)>& op) -> Status {
    NX_ASSIGN_OR_RETURN(double secs, Parallel(n, a.threads, op));
    // Latency: the mean time of one operation as one thread saw it.
    double lat_ms = n ? secs * static_cast<double>(std::min<uint64_t>(n, a.threads)) * 1000 /
                            static_cast<double>(n)
                      : 0;
    double mib_s = secs > 0 ? static_cast<double>(n * size) / (1 << 20) / secs : 0;
    double ops = secs > 0 ? static_cast<double>(n) / secs : 0;
    std::printf("%-16s %7llu %10s %9.2fs %10.1f MiB/s %9.1f op/s %9.2fms\n", name,
                static_cast<unsigned long long>(n), HumanSize(size).c_str(), secs, mib_s, ops,
                lat_ms);
    std::fflush(stdout);
    return Status::OK();
  };
  NX_TRY(
      run("put big", big_count, block, [&](uint64_t i) { return s.Put(key("big", i), big_data); }));
  NX_TRY(run("get big", big_count, block, [&](uint64_t i) -> Status {
    NX_ASSIGN_OR_RETURN(std::string got, s.Get(key("big", i)));
    return Expect(got.size() == block, "get " + key("big", i) + ": short read");
  }));
  NX_TRY(run("put small", a.small_count, small,
             [&](uint64_t i) { return s.Put(key("small", i), small_data); }));
  NX_TRY(run("get small", a.small_count, small, [&](uint64_t i) -> Status {
    NX_ASSIGN_OR_RETURN(std::string got, s.Get(key("small", i)));
    return Expect(got.size() == small, "get " + key("small", i) + ": short read");
  }));
  NX_TRY(run("head small", a.small_count, 0, [&](uint64_t i) {
    return s.Head(key("small", i)).has_value() ? Status::OK() : Status::IOError("head");
  }));
  NX_TRY(run("list", 1, 0, [&](uint64_t) -> Status {
    NX_ASSIGN_OR_RETURN(object::ListResult l, s.List(p + "small/", "", 0));
    return Expect(l.objects.size() == a.small_count,
                  "list found " + std::to_string(l.objects.size()) + " small objects");
  }));
  NX_TRY(
      run("delete small", a.small_count, 0, [&](uint64_t i) { return s.Delete(key("small", i)); }));
  NX_TRY(run("delete big", big_count, 0, [&](uint64_t i) { return s.Delete(key("big", i)); }));
  return Status::OK();
}

// Removes whatever is left under the prefix (after a failure).
void Cleanup(object::ObjectStore& s, const std::string& p) {
  std::string marker;
  do {
    auto page = s.List(p, marker, 1000);
    if (!page) return;
    for (const auto& o : page->objects) (void)s.Delete(o.key);
    marker = page->next_marker;
  } while (!marker.empty());
}

void RunObjbench(const BenchArgs& a) {
  if (a.threads < 1 || a.threads > 256) {
    return Fail("objbench", Status::InvalidArgument("-p must be 1 to 256"));
  }
  object::StoreOptions o;
  o.access_key = a.access_key;
  o.secret_key = a.secret_key;
  o.session_token = a.session_token;
  // Small enough that the multipart check goes in parts on s3 without writing 32 MiB.
  o.multipart_threshold = 8 << 20;
  o.multipart_part_size = 5 << 20;
  auto store = object::ObjectStore::Open(a.url, o);
  if (!store) return Fail("objbench", store.error());
  object::ObjectStore& s = **store;
  const std::string p =
      "nexusfs-objbench-" + std::to_string(getpid()) + "-" +
      std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000000) +
      "/";
  std::printf("objbench %s (%d threads), objects under %s\n\n", s.Name().c_str(), a.threads,
              p.c_str());
  int failed = a.skip_functional ? 0 : RunChecks(s, p, (12 << 20) + 3);
  if (failed) {
    Cleanup(s, p);
    return Fail("objbench",
                Status::IOError(std::to_string(failed) + " functional check(s) failed"));
  }
  Status st = RunBench(s, p, a);
  Cleanup(s, p);
  if (!st.ok()) return Fail("objbench", st);
}

}  // namespace

void RegisterObjbench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("objbench",
                                 "Check an object store's behaviour and measure its throughput");
  cmd->add_option("STORAGE-URL", a->url,
                  "file:///DIR, mem://, s3://BUCKET[/PREFIX], http(s)://HOST[:PORT]/BUCKET")
      ->required();
  cmd->add_option("-p,--threads", a->threads, "Parallel requests")->capture_default_str();
  cmd->add_option("--big-size", a->big_size, "Total size of the big-object test")
      ->capture_default_str();
  cmd->add_option("--block-size", a->block_size, "Size of each big object")->capture_default_str();
  cmd->add_option("--small-size", a->small_size, "Size of each small object")
      ->capture_default_str();
  cmd->add_option("--small-count", a->small_count, "Number of small objects")
      ->capture_default_str();
  cmd->add_option("--access-key", a->access_key, "S3 access key (default: AWS_ACCESS_KEY_ID)");
  cmd->add_option("--secret-key", a->secret_key,
                  "S3 secret key (default: AWS_SECRET_ACCESS_KEY); never printed");
  cmd->add_option("--session-token", a->session_token,
                  "S3 session token (default: AWS_SESSION_TOKEN)");
  cmd->add_flag("--skip-functional-tests", a->skip_functional, "Only measure throughput");
  cmd->callback([a] { RunObjbench(*a); });
}

}  // namespace nexus::cli
