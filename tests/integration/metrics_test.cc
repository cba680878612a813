// Metrics and the everyday commands on a real mount: /metrics of `mount --metrics` parses and
// its counters move with the operations done, `stats` prints rows, `.accesslog` streams an
// operation done after it was opened, bench and warmup at a small scale, summary numbers equal
// a walk, and rmr of a large tree returns the volume's usage counters to where they were.
#include "common/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "integration/mount_fixture.h"

namespace nexus::it {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

// GET http://127.0.0.1:port/path; returns the whole response (status line, headers, body).
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  EXPECT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::vector<metrics::ParsedSample> Scrape(int port) {
  std::string resp = HttpGet(port, "/metrics");
  size_t body = resp.find("\r\n\r\n");
  EXPECT_NE(body, std::string::npos) << resp;
  EXPECT_EQ(resp.rfind("HTTP/1.0 200", 0), 0u) << resp.substr(0, 200);
  auto parsed = metrics::ParseText(resp.substr(body + 4));
  EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().ToString());
  return parsed ? *parsed : std::vector<metrics::ParsedSample>{};
}

class MetricsTest : public MountTest {};

TEST_F(MetricsTest, MetricsEndpointCountersMoveWithOperations) {
  int port = FreePort();
  Unmount();
  Mount({"--metrics", "127.0.0.1:" + std::to_string(port)});
  auto before = Scrape(port);
  ASSERT_FALSE(before.empty());
  std::string data = Pattern(5 << 20, 3);
  WriteFile(P("f"), data);
  {
    // The kernel keeps the written pages (the mount is the volume's sole client): drop them so
    // that the read reaches the mount's caches.
    int fd = open(P("f").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
  }
  ASSERT_EQ(ReadFile(P("f")), data);
  auto after = Scrape(port);
  using metrics::SumOf;
  auto moved = [&](const char* name, std::map<std::string, std::string> match = {}) {
    return SumOf(after, name, match) - SumOf(before, name, match);
  };
  EXPECT_GE(moved("nexusfs_fuse_op_duration_seconds_count", {{"op", "create"}}), 1);
  EXPECT_GE(moved("nexusfs_fuse_op_duration_seconds_count", {{"op", "write_buf"}}), 1);
  EXPECT_GE(moved("nexusfs_vfs_write_bytes_total"), data.size());
  EXPECT_GE(moved("nexusfs_object_requests_total", {{"op", "put"}}), 2);  // 4 MiB blocks
  EXPECT_GE(moved("nexusfs_object_bytes_total", {{"op", "put"}}), data.size());
  EXPECT_GE(moved("nexusfs_meta_transactions_total", {{"kind", "update"}, {"op", "create"}}), 1);
  EXPECT_GE(moved("nexusfs_cache_hits_total", {{"cache", "memory"}}) +
                moved("nexusfs_cache_misses_total", {{"cache", "memory"}}),
            1);
  // Histogram invariants: +Inf bucket == _count, buckets non-decreasing.
  auto b = metrics::BucketsOf(after, "nexusfs_fuse_op_duration_seconds", {{"op", "lookup"}});
  ASSERT_FALSE(b.empty());
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LE(b[i - 1].second, b[i].second);
  EXPECT_EQ(b.back().second,
            SumOf(after, "nexusfs_fuse_op_duration_seconds_count", {{"op", "lookup"}}));
  EXPECT_NE(HttpGet(port, "/nope").find("404"), std::string::npos);
  // .stats holds the same families.
  auto stats = metrics::ParseText(ReadFile(P(".stats")));
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_GT(SumOf(*stats, "nexusfs_object_requests_total"), 0);
  EXPECT_GT(SumOf(*stats, "nexusfs_fuse_op_duration_seconds_count"), 0);
}

TEST_F(MetricsTest, StatsPrintsRows) {
  std::string out;
  std::thread load([&] {
    for (int i = 0; i < 50; ++i) WriteFile(P("s" + std::to_string(i)), "x");
  });
  int rc = RunCommand({NEXUSFS_BIN, "stats", mnt_, "--interval", "0.3", "--count", "2"}, &out);
  load.join();
  EXPECT_EQ(rc, 0) << out;
  int lines = 0;
  for (char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 3) << out;  // one header, two rows
  EXPECT_NE(out.find("ops/s"), std::string::npos) << out;
  EXPECT_NE(RunCommand({NEXUSFS_BIN, "stats", work_, "--count", "1"}, &out), 0);
  EXPECT_NE(out.find("NexusFS mount"), std::string::npos) << out;
}

TEST_F(MetricsTest, AccessLogShowsOperationsAfterOpen) {
  int fd = open(P(".accesslog").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(mkdir(P("logged-dir").c_str(), 0755), 0) << std::strerror(errno);
  std::string seen;
  char buf[65536];
  // The lookup before the mkdir names the directory too: wait for the mkdir line itself.
  for (int i = 0; i < 10 && seen.find("mkdir (1,logged-dir") == std::string::npos; ++i) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;  // never EOF: a keep-alive "#" at worst (checked below)
    seen.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  size_t at = seen.find("mkdir (1,logged-dir");
  ASSERT_NE(at, std::string::npos) << seen;
  std::string line = seen.substr(at, seen.find('\n', at) - at);
  EXPECT_NE(line.find(": OK <"), std::string::npos) << line;
  // Nothing is buffered for a closed reader: a new reader starts empty of old lines.
  fd = open(P(".accesslog").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).find("logged-dir"), std::string::npos);
}

TEST_F(MetricsTest, BenchAndWarmupAtSmallScale) {
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "bench", mnt_, "-p", "2", "--big-file-size", "8M",
                        "--small-file-size", "16K", "--small-file-count", "20", "--json"},
                       &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_array()) << out;
  ASSERT_EQ(j.size(), 5u) << out;
  EXPECT_EQ(j[0]["item"], "Write big file");
  EXPECT_EQ(j[0]["operations"].get<double>(), 16);
  for (const auto& r : j) EXPECT_GT(r["operations_per_second"].get<double>(), 0) << r;
  EXPECT_TRUE(std::filesystem::is_empty(mnt_)) << "bench left files behind";

  ASSERT_EQ(mkdir(P("w").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("w/sub").c_str(), 0755), 0);
  WriteFile(P("w/a"), Pattern(1 << 20, 1));
  WriteFile(P("w/sub/b"), Pattern(100000, 2));
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "warmup", P("w"), "--json"}, &out), 0) << out;
  auto w = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(w.is_object()) << out;
  EXPECT_EQ(w["files"], 2);
  EXPECT_EQ(w["bytes"], (1 << 20) + 100000);
}

TEST_F(MetricsTest, SummaryMatchesAWalk) {
  for (int d = 0; d < 4; ++d) {
    std::string dir = P("t/d" + std::to_string(d));
    std::filesystem::create_directories(dir + "/inner");
    for (int f = 0; f <= d * 3; ++f) {
      WriteFile(dir + "/f" + std::to_string(f), std::string(100 * (f + 1), 'a'));
      WriteFile(dir + "/inner/g" + std::to_string(f), std::string(7, 'b'));
    }
  }
  uint64_t size = 0, files = 0, dirs = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(P("t"))) {
    if (e.is_directory()) {
      ++dirs;
    } else {
      ++files;
      size += e.file_size();
    }
  }
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "summary", P("t"), "--depth", "1", "--json"}, &out), 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["size"], size);
  EXPECT_EQ(j["files"], files);
  EXPECT_EQ(j["dirs"], dirs);
  ASSERT_EQ(j["children"].size(), 4u);
  EXPECT_EQ(j["children"][0]["name"], "d3");            // largest first
  EXPECT_FALSE(j["children"][0].contains("children"));  // --depth 1
}

TEST_F(MetricsTest, RmrOfALargeTreeRestoresUsage) {
  struct statvfs before;
  ASSERT_EQ(statvfs(mnt_.c_str(), &before), 0);
  // 100,000 files in 500 directories, created by 4 threads through the mount.
  constexpr int kDirs = 500, kFiles = 200;
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&, t] {
      for (int d = t; d < kDirs; d += 4) {
        std::string dir = P("big/d" + std::to_string(d));
        std::filesystem::create_directories(dir);
        for (int f = 0; f < kFiles; ++f) {
          int fd = open((dir + "/f" + std::to_string(f)).c_str(), O_CREAT | O_WRONLY, 0644);
          if (fd < 0) continue;
          if (f % 10 == 0) (void)!write(fd, "data", 4);
          close(fd);
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  struct statvfs full;
  ASSERT_EQ(statvfs(mnt_.c_str(), &full), 0);
  ASSERT_GE(before.f_ffree - full.f_ffree, static_cast<fsfilcnt_t>(kDirs * kFiles));
  std::string out;
  ASSERT_EQ(RunCommand({NEXUSFS_BIN, "rmr", P("big")}, &out), 0) << out;
  EXPECT_FALSE(std::filesystem::exists(P("big")));
  struct statvfs after;
  ASSERT_EQ(statvfs(mnt_.c_str(), &after), 0);
  EXPECT_EQ(after.f_ffree, before.f_ffree);
  EXPECT_EQ(after.f_bfree, before.f_bfree);
}

}  // namespace
}  // namespace nexus::it
