// FuseServer: mounts a Vfs through the libfuse3 low-level API and serves kernel requests.
//
// Every request is translated into one Vfs call and answered exactly once (fuse_reply_err on
// every error path). Inode lifetime needs no table: Vfs resolves inode numbers through Meta,
// so forget only acknowledges.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

struct fuse_session;

namespace nexus::vfs {
class Vfs;
}

namespace nexus::fuse {

class LockWaiter;

struct FuseOptions {
  std::string mountpoint;
  std::string fsname = "nexusfs";  // shown as the mount's source: "nexusfs:<volume>"
  // Mount options for the kernel and libfuse (allow_other, default_permissions, ro, ...).
  std::vector<std::string> mount_options;
  bool writeback_cache = false;
  // The kernel drops a file's pages when the attributes it fetches show a new mtime
  // (FUSE_CAP_AUTO_INVAL_DATA): how it notices another client's writes. Off for a mount that is
  // its volume's sole client, where a new mtime only comes from writes through this kernel, which
  // its pages already hold.
  bool auto_inval_data = true;
  double attr_timeout = 1.0;  // seconds
  double entry_timeout = 1.0;
  double dir_entry_timeout = 1.0;
  unsigned max_idle_threads = 16;
  // The request loop (request_loop.h): serve requests that rarely wait in the thread that read
  // them (set for embedded metadata engines), and how long that thread polls for the next one.
  bool inline_requests = true;
  bool inline_reads = true;  // reads too (objects on a local disk or in memory)
  int64_t request_spin_ns = 50'000;
  // The kernel's readahead window for this mount's files, in KiB (the read_ahead_kb of the
  // mount's bdi), set at the first request after INIT; 0 leaves the kernel's 128 KiB. A wider
  // window keeps more read requests in flight: a cold sequential read here went from 1.4-1.8 to
  // 2.0-2.5 GB/s with 1 MiB (docs/benchmarks.md).
  uint32_t kernel_readahead_kb = 1024;
};

// Splits "-o a,b=c" text into its options (commas inside values are not supported by FUSE).
std::vector<std::string> SplitMountOptions(const std::string& text);

class FuseServer {
 public:
  // Creates the session and mounts it at options.mountpoint. `vfs` outlives the server.
  static Result<std::unique_ptr<FuseServer>> Mount(vfs::Vfs* vfs, const FuseOptions& options);
  ~FuseServer();  // unmounts (if still mounted) and destroys the session
  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;

  // Serves requests (RunRequestLoop) until the file system is unmounted or a
  // SIGTERM/SIGINT/SIGHUP arrives (handlers are installed for the duration), then unmounts.
  Status Serve();

  vfs::Vfs* vfs() const { return vfs_; }
  const FuseOptions& options() const { return options_; }
  struct fuse_session* session() const {
    return se_;
  }
  // Serves blocking lock requests off the worker threads.
  LockWaiter* lock_waiter() const { return lock_waiter_.get(); }
  // Called at the start of every request but INIT: the first one sets the kernel's readahead
  // window (FuseOptions::kernel_readahead_kb), the others return at once.
  void OnRequest();

 private:
  FuseServer(vfs::Vfs* vfs, FuseOptions options);

  vfs::Vfs* vfs_;
  FuseOptions options_;
  std::unique_ptr<LockWaiter> lock_waiter_;
  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  std::once_flag readahead_once_;
};

}  // namespace nexus::fuse
