// ParallelWalk: visits every directory under a root with several threads (readdir in parallel),
// for summary, warmup and rmr. Symlinks are not followed; other file systems are entered too.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace nexus::cli {

struct WalkEntry {
  std::string name;
  bool is_dir = false;
  uint64_t size = 0;  // st_size of regular files and symlinks; 0 for directories
  mode_t mode = 0;
};

// Calls `visit(dir, depth, entries)` once per directory (root depth 0) from `threads` threads;
// subdirectories are queued after `visit` returns. The first error (an unreadable directory)
// stops the walk and is returned; `visit` may return an error to stop it too.
Status ParallelWalk(const std::string& root, int threads,
                    const std::function<Status(const std::string& dir, int depth,
                                               const std::vector<WalkEntry>& entries)>& visit);

}  // namespace nexus::cli
