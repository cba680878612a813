#include "cli/tree_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace nexus::cli {
namespace {

Result<std::vector<WalkEntry>> ListDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Err(errno, "open " + dir + ": " + std::strerror(errno));
  DIR* d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    return Err(e, "opendir " + dir + ": " + std::strerror(e));
  }
  std::vector<WalkEntry> out;
  while (dirent* de = readdir(d)) {
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      int e = errno;
      closedir(d);
      return Err(e, "stat " + dir + "/" + de->d_name + ": " + std::strerror(e));
    }
    WalkEntry w;
    w.name = de->d_name;
    w.mode = st.st_mode;
    w.is_dir = S_ISDIR(st.st_mode);
    w.size = w.is_dir ? 0 : static_cast<uint64_t>(st.st_size);
    out.push_back(std::move(w));
  }
  closedir(d);
  return out;
}

}  // namespace

Status ParallelWalk(const std::string& root, int threads,
                    const std::function<Status(const std::string& dir, int depth,
                                               const std::vector<WalkEntry>& entries)>& visit) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<std::string, int>> queue{{root, 0}};
  int busy = 0;
  Status first;
  auto worker = [&] {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait(lock, [&] { return !queue.empty() || busy == 0 || !first.ok(); });
      if (!first.ok() || (queue.empty() && busy == 0)) break;
      auto [dir, depth] = std::move(queue.front());
      queue.pop_front();
      ++busy;
      lock.unlock();
      auto entries = ListDir(dir);
      Status s = entries ? visit(dir, depth, *entries) : entries.error();
      lock.lock();
      --busy;
      if (!s.ok() && first.ok()) first = s;
      if (s.ok()) {
        for (const auto& e : *entries) {
          if (e.is_dir) queue.emplace_back(dir + "/" + e.name, depth + 1);
        }
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < std::max(1, threads); ++i) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return first;
}

}  // namespace nexus::cli
