// nexusfs bench PATH: big-file write and read, small-file write, read and stat with -p threads
// in a fresh directory under PATH (any file system), then a table of throughput and per-operation
// latency (like `juicefs bench`); --json for scripts. The directory is removed at the end.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "common/clock.h"

namespace nexus::cli {
namespace {

constexpr size_t kIoSize = 1 << 20;  // big-file I/O unit

struct BenchArgs {
  std::string path;
  int threads = 1;
  std::string big_size = "1G";
  std::string small_size = "128K";
  uint64_t small_count = 100;
  bool json = false;
};

struct Row {
  std::string item;
  double ops = 0;    // operations done (all threads)
  double bytes = 0;  // bytes moved (0 for stat)
  double secs = 0;   // wall time of the phase
  int threads = 1;
  std::string unit;  // what one operation is
};

// Runs `body(thread)` on `threads` threads; returns the wall time, or the first error.
Result<double> RunPhase(int threads, const std::function<Status(int)>& body) {
  std::vector<Status> errs(threads);
  int64_t start = MonoNanos();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { errs[t] = body(t); });
  for (auto& th : pool) th.join();
  for (const auto& e : errs) {
    if (!e.ok()) return Err(e);
  }
  return static_cast<double>(MonoNanos() - start) / 1e9;
}

Status WriteFile(const std::string& path, const std::string& buf, uint64_t size, Progress* p) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create " + path);
  for (uint64_t done = 0; done < size;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
    ssize_t w = write(fd, buf.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      Status s = Errno("write " + path);
      close(fd);
      return s;
    }
    done += static_cast<uint64_t>(w);
    if (p) p->Add(static_cast<uint64_t>(w));
  }
  if (close(fd) != 0) return Errno("close " + path);
  return Status::OK();
}

Status ReadFile(const std::string& path, std::string& buf, uint64_t expect, Progress* p) {
  uint64_t total = 0;
  NX_TRY(ReadThrough(path, buf, p, &total));
  if (total != expect) {
    return Status::Errno(EIO, "read " + path + ": " + std::to_string(total) + " bytes, expected " +
                                  std::to_string(expect));
  }
  return Status::OK();
}

Status Bench(const BenchArgs& a, uint64_t big, uint64_t small, std::vector<Row>* rows) {
  const int p = std::max(1, a.threads);
  std::string dir = a.path + "/__nexusfs_bench_" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) return Errno("mkdir " + dir);
  std::string data(kIoSize, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&data[i], &v, 8);
  }
  auto big_path = [&](int t) { return dir + "/big." + std::to_string(t); };
  auto small_path = [&](int t, uint64_t i) {
    return dir + "/small." + std::to_string(t) + "." + std::to_string(i);
  };
  auto phase = [&](const char* item, const char* unit, double ops, double bytes, uint64_t total,
                   bool as_bytes, const std::function<Status(int, Progress*)>& body) -> Status {
    Progress prog(item, total, as_bytes);
    auto secs = RunPhase(p, [&](int t) { return body(t, &prog); });
    prog.Done();
    if (!secs) return secs.error();
    rows->push_back(Row{item, ops, bytes, *secs, p, unit});
    return Status::OK();
  };
  Status s;
  if (big > 0) {
    double ops = static_cast<double>(p) * static_cast<double>((big + kIoSize - 1) / kIoSize);
    s = phase("Write big file", "1 MiB write", ops, static_cast<double>(big) * p, big * p, true,
              [&](int t, Progress* pr) { return WriteFile(big_path(t), data, big, pr); });
    if (s.ok()) {
      s = phase("Read big file", "1 MiB read", ops, static_cast<double>(big) * p, big * p, true,
                [&](int t, Progress* pr) {
                  std::string buf(kIoSize, '\0');
                  return ReadFile(big_path(t), buf, big, pr);
                });
    }
  }
  const std::string small_data = data.substr(0, std::min<uint64_t>(small, kIoSize));
  const uint64_t n = a.small_count;
  double small_ops = static_cast<double>(n) * p;
  if (s.ok() && n > 0) {
    s = phase("Write small file", "file", small_ops, small_ops * static_cast<double>(small), n * p,
              false, [&](int t, Progress* pr) -> Status {
                for (uint64_t i = 0; i < n; ++i) {
                  NX_TRY(WriteFile(small_path(t, i), small_data, small, nullptr));
                  pr->Add();
                }
                return Status::OK();
              });
  }
  if (s.ok() && n > 0) {
    s = phase("Read small file", "file", small_ops, small_ops * static_cast<double>(small), n * p,
              false, [&](int t, Progress* pr) -> Status {
                std::string buf(std::max<uint64_t>(small, 1), '\0');
                for (uint64_t i = 0; i < n; ++i) {
                  NX_TRY(ReadFile(small_path(t, i), buf, small, nullptr));
                  pr->Add();
                }
                return Status::OK();
              });
  }
  if (s.ok() && n > 0) {
    s = phase("Stat file", "stat", small_ops, 0, n * p, false, [&](int t, Progress* pr) -> Status {
      for (uint64_t i = 0; i < n; ++i) {
        struct stat st;
        if (stat(small_path(t, i).c_str(), &st) != 0) return Errno("stat " + small_path(t, i));
        pr->Add();
      }
      return Status::OK();
    });
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (s.ok() && ec) return Status::Errno(ec.value(), "remove " + dir + ": " + ec.message());
  return s;
}

void RunBench(const BenchArgs& a) {
  auto big = ParseSize(a.big_size);
  if (!big) return Fail("bench", big.error().With("--big-file-size"));
  auto small = ParseSize(a.small_size);
  if (!small) return Fail("bench", small.error().With("--small-file-size"));
  struct stat st;
  if (stat(a.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Fail("bench", Status::Errno(ENOTDIR, a.path + " is not a directory"));
  }
  std::vector<Row> rows;
  Status s = Bench(a, *big, *small, &rows);
  if (!s.ok()) return Fail("bench", s);
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : rows) {
      j.push_back({{"item", r.item},
                   {"operations", r.ops},
                   {"seconds", r.secs},
                   {"bytes_per_second", r.bytes > 0 ? r.bytes / r.secs : 0},
                   {"operations_per_second", r.ops / r.secs},
                   {"latency_ms", r.secs * r.threads / r.ops * 1e3},
                   {"unit", r.unit}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%-18s | %-16s | %s\n", "ITEM", "VALUE", "COST");
  for (const auto& r : rows) {
    char value[32];
    if (r.bytes > 0 && r.unit != "file") {
      std::snprintf(value, sizeof(value), "%.2f MiB/s", r.bytes / r.secs / (1 << 20));
    } else {
      std::snprintf(value, sizeof(value), "%.1f %s/s", r.ops / r.secs,
                    r.unit == "stat" ? "stats" : "files");
    }
    std::printf("%-18s | %-16s | %.3f ms/%s\n", r.item.c_str(), value,
                r.secs * r.threads / r.ops * 1e3, r.unit.c_str());
  }
}

}  // namespace

void RegisterBench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Measure file throughput and latency under a directory");
  cmd->add_option("PATH", a->path, "A directory (on a NexusFS mount or not)")->required();
  cmd->add_option("-p,--threads", a->threads, "Parallel threads")->capture_default_str();
  cmd->add_option("--big-file-size", a->big_size, "Size of each thread's big file (0 = skip)")
      ->capture_default_str();
  cmd->add_option("--small-file-size", a->small_size, "Size of each small file")
      ->capture_default_str();
  cmd->add_option("--small-file-count", a->small_count, "Small files per thread")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the results as JSON");
  cmd->callback([a] { RunBench(*a); });
}

}  // namespace nexus::cli
