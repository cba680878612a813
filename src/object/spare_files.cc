#include "object/spare_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/logging.h"

namespace nexus::object {

namespace {
constexpr const char* kSparePrefix = ".nxtmp-";
}  // namespace

SpareFiles::SpareFiles(std::string root, size_t count)
    : dir_(std::move(root) + "/" + kDirName), count_(count) {}

SpareFiles::~SpareFiles() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (const Spare& s : ready_) {
    close(s.fd);
    unlink(s.path.c_str());
  }
  rmdir(dir_.c_str());  // only when empty: another process may keep spares here
}

bool SpareFiles::Take(int* fd, std::string* path) {
  std::unique_lock lock(mu_);
  if (!started_) {
    started_ = true;
    thread_ = std::thread([this] { Loop(); });
  }
  if (ready_.empty()) return false;
  *fd = ready_.front().fd;
  *path = std::move(ready_.front().path);
  ready_.pop_front();
  lock.unlock();
  cv_.notify_all();
  return true;
}

// Names are .nxtmp-<pid>-<seq>: a spare whose process is gone is an orphan.
void SpareFiles::RemoveOrphans() {
  DIR* d = opendir(dir_.c_str());
  if (!d) return;
  const std::string prefix = kSparePrefix;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == getpid()) continue;
    if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      unlink((dir_ + "/" + name).c_str());
    }
  }
  closedir(d);
}

void SpareFiles::Loop() {
  if (mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) {
    NX_LOG_WARN("file store: no spare files in {}: {}", dir_, std::strerror(errno));
    return;
  }
  RemoveOrphans();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (ready_.size() >= count_) {
      cv_.wait(lock, [&] { return stopping_ || ready_.size() < count_; });
      continue;
    }
    const std::string path =
        dir_ + "/" + kSparePrefix + std::to_string(getpid()) + "-" + std::to_string(seq_++);
    lock.unlock();
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const int err = errno;
    lock.lock();
    if (fd < 0) {
      // A full disk or a removed directory: the writers create their files themselves, and
      // this thread tries again a little later.
      if (!failed_)
        NX_LOG_WARN("file store: cannot create a spare file in {}: {}", dir_, std::strerror(err));
      failed_ = true;
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
      if (err == ENOENT) (void)mkdir(dir_.c_str(), 0755);
      continue;
    }
    failed_ = false;
    ready_.push_back(Spare{fd, path});
  }
}

}  // namespace nexus::object
