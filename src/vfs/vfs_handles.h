// Private to vfs/: the open-file and open-directory handles behind a FUSE fh.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vfs/vfs.h"

namespace nexus::vfs {

// One request of .control: the request bytes written so far, then the response stream (zero or
// more progress lines, then one final line) filled by the thread that runs it.
struct Vfs::ControlState {
  std::mutex mu;
  std::condition_variable cv;
  std::string request;
  bool started = false;   // a complete request was received (or refused): no more writes
  std::string response;   // NDJSON lines
  bool done = false;      // the final line is in `response`
  uint64_t read_pos = 0;  // bytes of `response` already read
  std::atomic<uint64_t> progress{0};  // entries handled so far (rmr)
  uint64_t progress_shown = 0;        // the count of the last progress line (under mu)
};

// How long a handle trusts the attributes it read for reads inside its length (the kernel's
// default attribute cache time: it does not see another client's changes sooner either).
constexpr int64_t kHandleAttrTtlNs = 1'000'000'000;

struct Vfs::FileHandle {
  Ino ino = 0;
  int flags = 0;
  bool internal = false;
  std::string content;                    // internal files: the snapshot taken at open
  uint64_t log_reader = 0;                // .accesslog: the AccessLog reader of this handle
  std::shared_ptr<ControlState> control;  // .control: this handle's request
  std::atomic<bool> wrote{false};
  // The attributes reads go by (regular files): from Open, then from the last read that went to
  // Meta. Good while `attr_epoch` is Vfs::change_epoch_ and for kHandleAttrTtlNs after `attr_ns`.
  std::mutex attr_mu;
  Attr attr;
  uint64_t attr_epoch = 0;
  int64_t attr_ns = 0;
  bool attr_valid = false;

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
