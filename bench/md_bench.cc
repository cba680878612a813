// A metadata benchmark over any mounted file system, in the manner of mdtest: each of T threads
// creates N empty files in its own directory, stats them, renames them, and unlinks them.
// Prints operations per second for each phase. With --more it also chmods every file
// (setattr), lists each thread's directory of N files once (readdir, listings per second),
// writes 4 KiB to every file and fsyncs it (open, write, fsync, close: a slice commit each),
// and creates and removes N directories per thread (mkdir, rmdir).
//
// Usage: md_bench DIR [--files N] [--threads T] [--more]
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double Phase(const char* what, int threads, int files, Fn fn) {
  auto start = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < files; ++i) {
        if (!fn(t, i)) {
          std::fprintf(stderr, "md_bench: %s, thread %d, file %d: %s\n", what, t, i,
                       std::strerror(errno));
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
  bool more = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--more") {
      more = true;
    } else if (i + 1 < argc && a == "--files") {
      files = std::atoi(argv[++i]);
    } else if (i + 1 < argc && a == "--threads") {
      threads = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "md_bench: unknown argument %s\n", a.c_str());
      return 2;
    }
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
  double create = Phase("create", threads, files, [&](int t, int i) {
    int fd = open(name(t, i, "f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    return fd >= 0 && close(fd) == 0;
  });
  double stat_rate = Phase("stat", threads, files, [&](int t, int i) {
    struct stat st;
    return stat(name(t, i, "f").c_str(), &st) == 0;
  });
  double setattr_rate = 0, readdir_rate = 0, write_rate = 0;
  if (more) {
    setattr_rate = Phase("setattr", threads, files, [&](int t, int i) {
      return chmod(name(t, i, "f").c_str(), i % 2 ? 0600 : 0640) == 0;
    });
    readdir_rate = Phase("readdir", threads, 1, [&](int t, int) {
      DIR* d = opendir((dir + "/md" + std::to_string(t)).c_str());
      if (d == nullptr) return false;
      int n = 0;
      while (readdir(d) != nullptr) ++n;
      closedir(d);
      if (n != files + 2) {
        std::fprintf(stderr, "md_bench: listed %d entries, expected %d\n", n, files + 2);
        return false;
      }
      return true;
    });
    const std::string block(4096, 'x');
    write_rate = Phase("write4k_fsync", threads, files, [&](int t, int i) {
      int fd = open(name(t, i, "f").c_str(), O_WRONLY);
      if (fd < 0) return false;
      bool ok = pwrite(fd, block.data(), block.size(), 0) == static_cast<ssize_t>(block.size()) &&
                fsync(fd) == 0;
      return close(fd) == 0 && ok;
    });
  }
  double rename_rate = Phase("rename", threads, files, [&](int t, int i) {
    return rename(name(t, i, "f").c_str(), name(t, i, "r").c_str()) == 0;
  });
  double unlink_rate = Phase("unlink", threads, files,
                             [&](int t, int i) { return unlink(name(t, i, "r").c_str()) == 0; });
  double mkdir_rate = 0, rmdir_rate = 0;
  if (more) {
    mkdir_rate = Phase("mkdir", threads, files,
                       [&](int t, int i) { return mkdir(name(t, i, "d").c_str(), 0755) == 0; });
    rmdir_rate = Phase("rmdir", threads, files,
                       [&](int t, int i) { return rmdir(name(t, i, "d").c_str()) == 0; });
  }
  for (int t = 0; t < threads; ++t) rmdir((dir + "/md" + std::to_string(t)).c_str());
  std::printf("threads=%d files=%d create=%.0f/s stat=%.0f/s rename=%.0f/s unlink=%.0f/s", threads,
              threads * files, create, stat_rate, rename_rate, unlink_rate);
  if (more) {
    std::printf(" setattr=%.0f/s readdir=%.0f/s write4k_fsync=%.0f/s mkdir=%.0f/s rmdir=%.0f/s",
                setattr_rate, readdir_rate, write_rate, mkdir_rate, rmdir_rate);
  }
  std::printf("\n");
  return 0;
}
