// Empty files created ahead of need (file://): creating a file costs the file system an inode
// allocation (on ext4, a search of the inode bitmap that skips recently deleted inodes), and on
// the write path that was a third of the writing thread's time for 4 MiB blocks. A background
// thread keeps a few open, empty files in <store>/.nxtmp-spare; a Put or writer takes one and
// renames it over its key at the end (a rename between directories of one file system).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace nexus::object {

class SpareFiles {
 public:
  static constexpr const char* kDirName = ".nxtmp-spare";  // under the store's root

  // Keeps up to `count` spares in `root`/.nxtmp-spare, starting with the first Take. Spares left
  // by processes that no longer exist (a crash) are removed here.
  SpareFiles(std::string root, size_t count);
  // Stops the thread and removes this process's unused spares.
  ~SpareFiles();
  SpareFiles(const SpareFiles&) = delete;
  SpareFiles& operator=(const SpareFiles&) = delete;

  // An empty file open for reading and writing, and its path; false when none is ready (the
  // caller creates its file itself).
  bool Take(int* fd, std::string* path);

 private:
  struct Spare {
    int fd;
    std::string path;
  };
  void Loop();
  void RemoveOrphans();

  const std::string dir_;
  const size_t count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Spare> ready_;
  bool started_ = false, stopping_ = false, failed_ = false;
  uint64_t seq_ = 0;
  std::thread thread_;
};

}  // namespace nexus::object
