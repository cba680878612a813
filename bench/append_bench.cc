// Latency of appending writes: N writes of SIZE bytes to FILE opened with O_APPEND, each timed
// around the write(2) call, then fsync (not timed). Prints p50/p90/p99/p99.9/max in µs.
//
//   build/bench/append_bench FILE [--count 20000] [--size 4096]
//
// Run it on a mount with and without -o writeback_cache, and on passthrough_hp, to compare.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: append_bench FILE [--count N] [--size BYTES]\n");
    return 2;
  }
  size_t count = 20000, size = 4096;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--count") {
      count = std::stoul(argv[i + 1]);
    } else if (a == "--size") {
      size = std::stoul(argv[i + 1]);
    } else {
      std::fprintf(stderr, "append_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "append_bench: open %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  std::vector<char> buf(size, 'a');
  std::vector<double> us;
  us.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    ssize_t n = write(fd, buf.data(), buf.size());
    auto t1 = std::chrono::steady_clock::now();
    if (n != static_cast<ssize_t>(buf.size())) {
      std::fprintf(stderr, "append_bench: write %zu: %s\n", i,
                   n < 0 ? std::strerror(errno) : "short");
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (fsync(fd) != 0) {
    std::fprintf(stderr, "append_bench: fsync: %s\n", std::strerror(errno));
    return 1;
  }
  close(fd);
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, size_t(p * us.size()))]; };
  std::printf("appends=%zu size=%zu p50=%.1fus p90=%.1fus p99=%.1fus p99.9=%.1fus max=%.1fus\n",
              count, size, pct(0.5), pct(0.9), pct(0.99), pct(0.999), us.back());
  return 0;
}
