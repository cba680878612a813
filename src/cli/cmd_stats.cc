// nexusfs stats MOUNTPOINT: reads MOUNTPOINT/.stats every --interval seconds and prints one row
// of rates per interval (operations, FUSE latency percentiles, data read/written, object store
// requests and bytes, metadata transactions, cache hit ratio, write buffer, blocks staged for
// upload with --writeback). On a terminal the
// header repeats every 20 rows; otherwise rows are plain lines after one header.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace nexus::cli {
namespace {

struct StatsArgs {
  std::string mountpoint;
  double interval = 1;
  int count = 0;  // 0 = until interrupted
};

struct Snapshot {
  std::vector<metrics::ParsedSample> samples;
  int64_t at_ns = 0;
};

Result<Snapshot> Scrape(const std::string& mountpoint) {
  std::string path = mountpoint + "/.stats";
  std::ifstream in(path);
  if (!in) {
    return Err(ENOENT, "cannot read " + path + ": is " + mountpoint + " a NexusFS mount?");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  Snapshot s;
  s.at_ns = MonoNanos();
  NX_ASSIGN_OR_RETURN(s.samples, metrics::ParseText(ss.str()));
  return s;
}

double Delta(const Snapshot& a, const Snapshot& b, std::string_view name,
             const std::map<std::string, std::string>& match = {}) {
  return metrics::SumOf(b.samples, name, match) - metrics::SumOf(a.samples, name, match);
}

const char* kHeader =
    "    time |  ops/s   p50ms   p99ms | read MB/s write MB/s | obj req/s get MB/s put MB/s "
    "inflight | meta tx/s retry/s | cache hit% | buf MiB staged MiB\n";

void PrintRow(const Snapshot& a, const Snapshot& b) {
  double dt = static_cast<double>(b.at_ns - a.at_ns) / 1e9;
  if (dt <= 0) dt = 1;
  constexpr double kMB = 1 << 20;
  double ops = Delta(a, b, "nexusfs_fuse_op_duration_seconds_count") / dt;
  auto buckets =
      metrics::Subtract(metrics::BucketsOf(b.samples, "nexusfs_fuse_op_duration_seconds"),
                        metrics::BucketsOf(a.samples, "nexusfs_fuse_op_duration_seconds"));
  double p50 = metrics::Quantile(buckets, 0.5) * 1e3;
  double p99 = metrics::Quantile(buckets, 0.99) * 1e3;
  double rd = Delta(a, b, "nexusfs_vfs_read_bytes_total") / dt / kMB;
  double wr = Delta(a, b, "nexusfs_vfs_write_bytes_total") / dt / kMB;
  double obj = Delta(a, b, "nexusfs_object_requests_total") / dt;
  double get = Delta(a, b, "nexusfs_object_bytes_total", {{"op", "get"}}) / dt / kMB;
  double put = Delta(a, b, "nexusfs_object_bytes_total", {{"op", "put"}}) / dt / kMB;
  double inflight = metrics::SumOf(b.samples, "nexusfs_object_requests_inflight");
  double tx = Delta(a, b, "nexusfs_meta_transactions_total") / dt;
  double retry = Delta(a, b, "nexusfs_meta_transaction_retries_total") / dt;
  double hits = Delta(a, b, "nexusfs_cache_hits_total", {{"cache", "memory"}});
  double misses = Delta(a, b, "nexusfs_cache_misses_total", {{"cache", "memory"}});
  double buf = metrics::SumOf(b.samples, "nexusfs_write_buffer_bytes") / kMB;
  // Only a --writeback mount has the family: "-" elsewhere.
  bool writeback = false;
  for (const auto& s : b.samples) writeback |= s.name == "nexusfs_writeback_staged_bytes";
  char staged[16];
  if (writeback) {
    std::snprintf(staged, sizeof(staged), "%10.1f",
                  metrics::SumOf(b.samples, "nexusfs_writeback_staged_bytes") / kMB);
  } else {
    std::snprintf(staged, sizeof(staged), "%10s", "-");
  }
  char hit[16];
  if (hits + misses > 0) {
    std::snprintf(hit, sizeof(hit), "%9.1f", 100 * hits / (hits + misses));
  } else {
    std::snprintf(hit, sizeof(hit), "%9s", "-");
  }
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  char when[16];
  std::strftime(when, sizeof(when), "%H:%M:%S", &tm);
  std::printf(
      "%8s | %6.0f %7.3f %7.3f | %9.1f %10.1f | %9.0f %7.1f %7.1f %8.0f | %9.0f %7.0f | %s | "
      "%7.1f %s\n",
      when, ops, p50, p99, rd, wr, obj, get, put, inflight, tx, retry, hit, buf, staged);
  std::fflush(stdout);
}

void RunStats(const StatsArgs& a) {
  if (a.interval <= 0) return Fail("stats", Status::Errno(EINVAL, "--interval must be > 0"));
  bool tty = isatty(STDOUT_FILENO) == 1;
  auto prev = Scrape(a.mountpoint);
  if (!prev) return Fail("stats", prev.error());
  for (int row = 0; a.count == 0 || row < a.count; ++row) {
    if (row == 0 || (tty && row % 20 == 0)) {
      std::printf(tty ? "\x1b[1m%s\x1b[0m" : "%s", kHeader);
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(a.interval));
    auto cur = Scrape(a.mountpoint);
    if (!cur) return Fail("stats", cur.error());
    PrintRow(*prev, *cur);
    prev = std::move(cur);
  }
}

}  // namespace

void RegisterStats(CLI::App& app) {
  auto a = std::make_shared<StatsArgs>();
  auto* cmd = app.add_subcommand("stats", "Show live operation, data and cache rates of a mount");
  cmd->add_option("MOUNTPOINT", a->mountpoint, "Where a NexusFS volume is mounted")->required();
  cmd->add_option("--interval", a->interval, "Seconds between rows")->capture_default_str();
  cmd->add_option("--count", a->count, "Rows to print (0 = until interrupted)")
      ->capture_default_str();
  cmd->callback([a] { RunStats(*a); });
}

}  // namespace nexus::cli
