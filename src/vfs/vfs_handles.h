// Private to vfs/: the open-file and open-directory handles behind a FUSE fh.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "vfs/vfs.h"

namespace nexus::vfs {

struct Vfs::FileHandle {
  Ino ino = 0;
  int flags = 0;
  bool internal = false;
  std::string content;      // internal files: the snapshot taken at open
  uint64_t log_reader = 0;  // .accesslog: the AccessLog reader of this handle
  std::atomic<bool> wrote{false};

  bool Writable() const { return (flags & O_ACCMODE) != O_RDONLY; }
};

// One batch of a directory listing. `batch[i]` is entry number `batch_start + i` of the listing
// without "." and ".."; the next batch continues after `batch.back().name`.
struct Vfs::DirHandle {
  Ino ino = 0;
  std::mutex mu;
  std::vector<meta::DirEntry> batch;
  uint64_t batch_start = 0;
  bool batch_plus = false;
  uint64_t batch_commits = 0;  // ChunkStore::Commits() before the batch was read
  bool eof = false;
  bool started = false;
  Ino parent = 0;  // for ".."
};

}  // namespace nexus::vfs
