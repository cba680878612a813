// FuseServer: session creation, mounting, and serving requests until unmounted.
#include "fuse/fuse_server.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>

#include "common/logging.h"
#include "common/mountinfo.h"
#include "fuse/fuse_ops.h"
#include "fuse/lock_waiter.h"
#include "fuse/request_loop.h"
#include "vfs/vfs.h"

namespace nexus::fuse {
namespace {

std::mutex g_log_mu;
std::string g_last_fuse_error;

// libfuse's messages go to our log; the last error is kept for a one-line mount error.
void FuseLog(enum fuse_log_level level, const char* fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  std::string text(line);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (level <= FUSE_LOG_ERR) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_last_fuse_error = text;
  }
  if (level <= FUSE_LOG_WARNING) {
    NX_LOG_WARN("libfuse: {}", text);
  } else {
    NX_LOG_DEBUG("libfuse: {}", text);
  }
}

std::string TakeLastFuseError() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  std::string e = std::move(g_last_fuse_error);
  g_last_fuse_error.clear();
  return e.empty() ? "see the log" : e;
}

}  // namespace

void FuseServer::OnRequest() {
  if (options_.kernel_readahead_kb == 0) return;
  std::call_once(readahead_once_, [this] {
    // The kernel caps a FUSE connection's readahead at 128 KiB (the smaller of the bdi's
    // default and what the daemon asks for) when it processes the INIT reply, and sends no
    // other request before that: this is the first request after it. A file takes its window
    // when it is opened, and no file is open yet (an open needs a lookup first, which waits
    // here until the write is done).
    // The device from mountinfo, not from a stat of the mount point: that is a request to this
    // very mount, and a process in the middle of one keeps the mount busy.
    auto mount = MountAt(options_.mountpoint);
    if (!mount || mount->fstype != "fuse.nexusfs") {
      NX_LOG_INFO("kernel readahead: no nexusfs mount at {} in /proc/self/mountinfo",
                  options_.mountpoint);
      return;
    }
    const std::string path = "/sys/class/bdi/" + mount->device + "/read_ahead_kb";
    std::ofstream out(path);
    out << options_.kernel_readahead_kb << std::flush;
    if (!out) {
      NX_LOG_INFO("kernel readahead: cannot write {} (not root?); it stays at the kernel's", path);
      return;
    }
    NX_LOG_INFO("kernel readahead of {}: {} KiB", options_.mountpoint,
                options_.kernel_readahead_kb);
  });
}

std::vector<std::string> SplitMountOptions(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

Result<std::unique_ptr<FuseServer>> FuseServer::Mount(vfs::Vfs* vfs, const FuseOptions& options) {
  fuse_set_log_func(FuseLog);
  std::unique_ptr<FuseServer> server(new FuseServer(vfs, options));
  std::string opts = "fsname=" + options.fsname + ",subtype=nexusfs";
  for (const std::string& o : options.mount_options) opts += "," + o;
  std::vector<std::string> argv_text = {"nexusfs", "-o", opts};
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_lowlevel_ops& ops = LowLevelOps();
  server->se_ = fuse_session_new(&args, &ops, sizeof(ops), server.get());
  fuse_opt_free_args(&args);
  if (server->se_ == nullptr) {
    return Err(EINVAL, "FUSE session with options '" + opts + "': " + TakeLastFuseError());
  }
  if (fuse_session_mount(server->se_, options.mountpoint.c_str()) != 0) {
    return Err(EIO, "mount at " + options.mountpoint + " failed: " + TakeLastFuseError());
  }
  server->mounted_ = true;
  // Requests that remove entries behind the kernel's back (.control rmr) drop its dentry.
  struct fuse_session* se = server->se_;
  vfs->SetEntryInvalidator([se](vfs::Ino parent, std::string_view name) {
    int rc = fuse_lowlevel_notify_inval_entry(se, parent, name.data(), name.size());
    if (rc != 0 && rc != -ENOENT) {
      NX_LOG_DEBUG("invalidating entry '{}' of {}: {}", name, parent, std::strerror(-rc));
    }
  });
  NX_LOG_INFO("mounted {} at {} (options {})", options.fsname, options.mountpoint, opts);
  return server;
}

FuseServer::FuseServer(vfs::Vfs* vfs, FuseOptions options)
    : vfs_(vfs), options_(std::move(options)), lock_waiter_(std::make_unique<LockWaiter>(vfs)) {}

FuseServer::~FuseServer() {
  lock_waiter_.reset();  // answers requests still waiting for a lock
  if (se_ == nullptr) return;
  vfs_->SetEntryInvalidator({});  // waits for an invalidation under way
  if (mounted_) fuse_session_unmount(se_);
  fuse_session_destroy(se_);
}

Status FuseServer::Serve() {
  if (fuse_set_signal_handlers(se_) != 0) {
    return Status::IOError("cannot install signal handlers for the FUSE loop");
  }
  RequestLoopOptions loop;
  loop.inline_requests = options_.inline_requests;
  loop.inline_reads = options_.inline_reads;
  loop.spin_ns = options_.request_spin_ns;
  loop.max_idle_threads = options_.max_idle_threads;
  int rc = RunRequestLoop(se_, loop);
  fuse_remove_signal_handlers(se_);
  fuse_session_unmount(se_);
  mounted_ = false;
  NX_LOG_INFO("unmounted {} (loop ended with {})", options_.mountpoint, rc);
  if (rc < 0) return Status::Errno(-rc, "FUSE loop at " + options_.mountpoint + " failed");
  return Status::OK();
}

}  // namespace nexus::fuse
