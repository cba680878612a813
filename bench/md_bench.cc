// A metadata benchmark over any mounted file system, in the manner of mdtest: each of T threads
// creates N empty files in its own directory, stats them, renames them, and unlinks them.
// Prints operations per second for each phase.
//
// Usage: md_bench DIR [--files N] [--threads T]
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double Phase(int threads, int files, Fn fn) {
  auto start = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < files; ++i) {
        if (!fn(t, i)) {
          std::perror("md_bench");
          std::exit(1);
        }
      }
    });
  }
  for (auto& th : ts) th.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return threads * files / secs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: md_bench DIR [--files N] [--threads T]\n");
    return 2;
  }
  std::string dir = argv[1];
  int files = 10000, threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--files") files = std::atoi(argv[i + 1]);
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  auto name = [&](int t, int i, const char* kind) {
    return dir + "/md" + std::to_string(t) + "/" + kind + std::to_string(i);
  };
  for (int t = 0; t < threads; ++t) {
    std::string d = dir + "/md" + std::to_string(t);
    if (mkdir(d.c_str(), 0755) != 0) {
      std::perror(d.c_str());
      return 1;
    }
  }
  double create = Phase(threads, files, [&](int t, int i) {
    int fd = open(name(t, i, "f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    return fd >= 0 && close(fd) == 0;
  });
  double stat_rate = Phase(threads, files, [&](int t, int i) {
    struct stat st;
    return stat(name(t, i, "f").c_str(), &st) == 0;
  });
  double rename_rate = Phase(threads, files, [&](int t, int i) {
    return rename(name(t, i, "f").c_str(), name(t, i, "r").c_str()) == 0;
  });
  double unlink_rate =
      Phase(threads, files, [&](int t, int i) { return unlink(name(t, i, "r").c_str()) == 0; });
  for (int t = 0; t < threads; ++t) rmdir((dir + "/md" + std::to_string(t)).c_str());
  std::printf("threads=%d files=%d create=%.0f/s stat=%.0f/s rename=%.0f/s unlink=%.0f/s\n",
              threads, threads * files, create, stat_rate, rename_rate, unlink_rate);
  return 0;
}
