// nexusfs mount / nexusfs umount: serve a volume through FUSE, and take it down cleanly.
//
// mount: checks the mount point and /dev/fuse, opens the engine, the volume and its object
// store, starts a session (with a heartbeat thread, after cleaning sessions of crashed
// clients), mounts, and serves until unmounted or signalled; then flushes every buffered write,
// closes the session and exits 0. With -d it forks first; the parent exits 0 only once the
// mount is ready, or prints the child's error and exits 1.
//
// The serving process records "<pid>\n<mount point>\n" in a run file named after the mount
// point so that umount can wait for it to finish flushing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "chunk/chunk_store.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/metrics_server.h"
#include "cli/volume_store.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/mountinfo.h"
#include "fuse/fuse_server.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/metered_store.h"
#include "object/object_store.h"
#include "vfs/vfs.h"

namespace nexus::cli {
namespace {

// A session heartbeats every timeout/4, at most every 10 s, and cleans other clients' stale
// sessions as often, so a crashed client's locks and open-unlinked files are released at most
// about timeout * 5/4 after its last heartbeat.
constexpr int64_t kMaxHeartbeatIntervalNs = 10'000'000'000;
constexpr int kUmountWaitMs = 120'000;

struct MountArgs {
  bool non_default_permission = false;
  std::string meta_url;
  std::string mountpoint;
  bool background = false;
  std::vector<std::string> options;  // -o, possibly repeated, comma lists
  std::string cache_dir;
  uint64_t cache_size_mib = 10240;
  double free_space_ratio = 0.1;
  uint64_t buffer_size_mib = 300;
  int max_uploads = 20;
  int max_downloads = 20;
  uint64_t max_readahead_mib = 64;
  uint32_t kernel_readahead_kb = 1024;   // the mount's bdi read_ahead_kb (FuseOptions)
  std::string inline_requests = "auto";  // auto: on for embedded metadata engines
  uint32_t request_spin_us = 50;
  uint64_t mem_cache_mib = 256;
  std::string prefetch = "auto";   // whole-block fetch after a small read: auto, on, off
  std::string local_reads = "on";  // read file:// objects in place: on, map, off (ChunkOptions)
  bool writeback = false;          // stage blocks a flush waits for; upload in the background
  double upload_delay = 0;         // seconds a staged block waits before its upload
  double attr_cache = 1.0;
  double entry_cache = 1.0;
  double dir_entry_cache = 1.0;
  std::string atime_mode = "relatime";
  std::string log_file;
  std::string log_level = "info";
  std::string inject_faults;  // "rate=0.1,delay=5ms,seed=1": FaultyStore under the volume
  std::string metrics_addr;   // HOST:PORT of the Prometheus endpoint; "" = none
  // Seconds; see kMaxHeartbeatIntervalNs.
  double session_timeout = 60;
};

// What -o turns into: options for the kernel/libfuse and the ones nexusfs consumes.
struct ParsedOptions {
  std::vector<std::string> fuse;
  bool read_only = false;
  bool writeback_cache = false;
};

ParsedOptions ParseOptions(const std::vector<std::string>& raw) {
  // fstab words that mean nothing to FUSE.
  static const char* kIgnored[] = {"defaults", "auto",    "noauto", "nofail", "user",
                                   "users",    "_netdev", "nouser", "owner",  "comment"};
  ParsedOptions p;
  for (const std::string& group : raw) {
    for (const std::string& o : fuse::SplitMountOptions(group)) {
      bool ignored = o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0;
      for (const char* i : kIgnored) ignored = ignored || o == i;
      if (ignored) continue;
      if (o == "writeback_cache") {
        p.writeback_cache = true;
        continue;
      }
      if (o == "ro") p.read_only = true;
      if (o == "rw") p.read_only = false;
      p.fuse.push_back(o);
    }
  }
  return p;
}

std::string HomeDir() {
  const char* home = getenv("HOME");
  return home && *home ? home : "/tmp";
}

std::string DefaultLogFile() {
  return geteuid() == 0 ? "/var/log/nexusfs.log" : HomeDir() + "/.nexusfs/nexusfs.log";
}

constexpr std::string_view kNoCacheDir = "none";  // --cache-dir none: no disk cache

// The disk cache directory of a mount: --cache-dir as given, none for --cache-dir none, and
// without the flag DefaultCacheDir(uuid) for a volume whose objects are remote (s3), as JuiceFS
// keeps /var/jfsCache/<uuid>. A file:// or mem:// volume gets none by default: its objects are
// local already.
std::string CacheDirFor(const std::string& flag, const meta::Format& f, bool* by_default) {
  *by_default = false;
  if (flag == kNoCacheDir) return "";
  if (!flag.empty()) return flag;
  if (f.storage == "file" || f.storage == "mem" || f.uuid.empty()) return "";
  *by_default = true;
  return DefaultCacheDir(f.uuid);
}

std::string RunDir() { return geteuid() == 0 ? "/run/nexusfs" : HomeDir() + "/.nexusfs/run"; }

std::string RunFile(const std::string& mountpoint) {
  char name[32];
  std::snprintf(name, sizeof(name), "%016zx.pid", std::hash<std::string>{}(mountpoint));
  return RunDir() + "/" + name;
}

// The absolute path of `path` without resolving its last component (which may be a dead
// FUSE mount that cannot be stat'ed).
std::string AbsolutePath(const std::string& path) {
  std::filesystem::path p = std::filesystem::absolute(path).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  std::error_code ec;
  auto parent = std::filesystem::canonical(p.parent_path(), ec);
  if (ec || p.filename().empty()) return s;
  return (parent / p.filename()).string();
}

// The file system type of the mount at `mountpoint` ("fuse.nexusfs"), or "" when none.
std::string MountedType(const std::string& mountpoint) {
  auto m = MountAt(mountpoint);
  return m ? m->fstype : "";
}

Status CheckMountPoint(const std::string& mountpoint) {
  struct stat st;
  if (stat(mountpoint.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOTCONN || e == ECONNABORTED) {
      return Status::Errno(e, "mount point " + mountpoint +
                                  " is a dead FUSE mount (its process is gone): run 'nexusfs "
                                  "umount --force " +
                                  mountpoint + "' first");
    }
    if (e == ENOENT) return Status::NotFound("mount point " + mountpoint + " does not exist");
    return Status::Errno(e, "mount point " + mountpoint + ": " + std::strerror(e));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::Errno(ENOTDIR, "mount point " + mountpoint + " is not a directory");
  }
  std::string type = MountedType(mountpoint);
  if (!type.empty()) {
    return Status::Busy("mount point " + mountpoint + " is busy: a " + type +
                        " file system is already mounted there");
  }
  if (access("/dev/fuse", F_OK) != 0) {
    return Status::NotFound(
        "missing /dev/fuse: load the fuse kernel module (modprobe fuse), or give the container "
        "the device (--device /dev/fuse --cap-add SYS_ADMIN)");
  }
  if (geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) != 0) {
    return Status::Errno(EACCES, "cannot open /dev/fuse for reading and writing");
  }
  return Status::OK();
}

// A plain path in META-URL is made absolute so that a daemon can chdir("/").
std::string AbsoluteMetaUrl(const std::string& url) {
  if (url.find("://") != std::string::npos || url.empty()) return url;
  return std::filesystem::absolute(url).lexically_normal().string();
}

std::string OptionsJson(const MountArgs& a, const ParsedOptions& p) {
  nlohmann::json j;
  j["meta_url"] = a.meta_url;  // engine names redact passwords; the URL is shown as given
  j["mountpoint"] = a.mountpoint;
  j["fuse_options"] = p.fuse;
  j["cache_dir"] = a.cache_dir;
  j["cache_size_mib"] = a.cache_size_mib;
  j["free_space_ratio"] = a.free_space_ratio;
  j["buffer_size_mib"] = a.buffer_size_mib;
  j["max_uploads"] = a.max_uploads;
  j["max_downloads"] = a.max_downloads;
  j["max_readahead_mib"] = a.max_readahead_mib;
  j["kernel_readahead_kb"] = a.kernel_readahead_kb;
  j["inline_requests"] = a.inline_requests;
  j["request_spin_us"] = a.request_spin_us;
  j["mem_cache_mib"] = a.mem_cache_mib;
  j["prefetch"] = a.prefetch;
  j["local_reads"] = a.local_reads;
  j["writeback"] = a.writeback;
  j["upload_delay_s"] = a.upload_delay;
  j["attr_cache_s"] = a.attr_cache;
  j["entry_cache_s"] = a.entry_cache;
  j["dir_entry_cache_s"] = a.dir_entry_cache;
  j["background"] = a.background;
  j["session_timeout_s"] = a.session_timeout;
  return j.dump();
}

// Sends heartbeats for the session and cleans stale sessions of other clients every
// `interval_ns` until stopped.
class HeartbeatThread {
 public:
  HeartbeatThread(meta::Meta* m, int64_t timeout_ns)
      : meta_(m),
        timeout_ns_(timeout_ns),
        interval_ns_(std::min(kMaxHeartbeatIntervalNs, timeout_ns / 4)),
        thread_([this] { Run(); }) {}
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::nanoseconds(interval_ns_), [this] { return stop_; })) {
      lock.unlock();
      Status s = meta_->Heartbeat();
      if (!s.ok()) NX_LOG_WARN("session heartbeat: {}", s.ToString());
      auto cleaned = meta_->CleanStaleSessions(timeout_ns_);
      if (!cleaned) NX_LOG_WARN("cleaning stale sessions: {}", cleaned.error().ToString());
      lock.lock();
    }
  }

  meta::Meta* meta_;
  const int64_t timeout_ns_;
  const int64_t interval_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Tells the parent of a background mount how it went (no-op in the foreground).
struct ReadyPipe {
  int fd = -1;
  void Send(const std::string& msg) {
    if (fd < 0) return;
    (void)!write(fd, msg.data(), msg.size());
    close(fd);
    fd = -1;
  }
};

Result<std::unique_ptr<meta::Meta>> OpenVolume(const std::string& url, bool read_only) {
  meta::MetaOptions mo;
  mo.read_only = read_only;
  mo.sole_client = true;  // the mount's Meta is the only one on its engine
  return OpenMeta(url, mo);
}

Status StartSession(meta::Meta* m, const std::string& mountpoint, int64_t timeout_ns) {
  auto cleaned = m->CleanStaleSessions(timeout_ns);
  if (!cleaned) NX_LOG_WARN("cleaning stale sessions: {}", cleaned.error().ToString());
  meta::SessionInfo info;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  info.host = host;
  info.pid = static_cast<uint32_t>(getpid());
  info.mount_point = mountpoint;
  info.version = NEXUS_VERSION_STRING;
  info.start_time = NowNanos();
  info.timeout = timeout_ns;
  auto sid = m->NewSession(info);
  if (!sid) return sid.error().With("start session");
  return Status::OK();
}

void WriteRunFile(const std::string& mountpoint) {
  std::error_code ec;
  std::filesystem::create_directories(RunDir(), ec);
  std::ofstream out(RunFile(mountpoint), std::ios::trunc);
  out << getpid() << "\n" << mountpoint << "\n";
  if (!out) NX_LOG_WARN("cannot write run file {}", RunFile(mountpoint));
}

chunk::ChunkOptions ChunkOptionsFor(const MountArgs& a, const meta::Format& f) {
  chunk::ChunkOptions co;
  co.block_size = f.block_size;
  co.prefix = f.name + "/";
  co.buffer_size = a.buffer_size_mib << 20;
  co.max_uploads = std::max(1, a.max_uploads);
  co.max_downloads = std::max(1, a.max_downloads);
  co.max_readahead = a.max_readahead_mib << 20;
  co.mem_cache_size = a.mem_cache_mib << 20;
  // "auto": prefetch whole blocks only where a ranged GET is expensive (not file:// or mem://).
  co.prefetch_small_reads =
      a.prefetch == "on" || (a.prefetch == "auto" && f.storage != "file" && f.storage != "mem");
  co.local_reads = a.local_reads != "off";
  co.map_local_reads = a.local_reads == "map";
  co.cache_dir = a.cache_dir;
  co.writeback = a.writeback;
  co.writeback_upload_delay_ns = static_cast<int64_t>(a.upload_delay * 1e9);
  co.cache_size = a.cache_size_mib << 20;
  co.free_space_ratio = a.free_space_ratio;
  return co;
}

fuse::FuseOptions FuseOptionsFor(const MountArgs& a, const ParsedOptions& p,
                                 const meta::Format& f) {
  fuse::FuseOptions fo;
  fo.mountpoint = a.mountpoint;
  fo.fsname = "nexusfs:" + f.name;
  fo.mount_options = p.fuse;
  // The kernel checks permissions (default_permissions) unless asked not to, as JuiceFS does:
  // without it a cached dentry skips the search-permission check of its parent directories.
  if (!a.non_default_permission && std::find(fo.mount_options.begin(), fo.mount_options.end(),
                                             "default_permissions") == fo.mount_options.end()) {
    fo.mount_options.push_back("default_permissions");
  }
  fo.writeback_cache = p.writeback_cache;
  fo.attr_timeout = a.attr_cache;
  fo.entry_timeout = a.entry_cache;
  fo.dir_entry_timeout = a.dir_entry_cache;
  fo.kernel_readahead_kb = a.kernel_readahead_kb;
  fo.request_spin_ns = static_cast<int64_t>(a.request_spin_us) * 1000;
  return fo;
}

// Everything after the fork: open, mount, serve, shut down. Returns the exit code.
int Serve(const MountArgs& given, const ParsedOptions& p, ReadyPipe& ready) {
  MountArgs a = given;  // with the cache directory resolved once the volume is open
  auto fail = [&](const Status& s) {
    if (!a.log_file.empty()) NX_LOG_ERROR("mount {}: {}", a.mountpoint, s.ToString());
    ready.Send("E" + (s.message().empty() ? s.ToString() : s.message()));
    if (!a.background) Fail("mount", s);
    return 1;
  };
  auto m = OpenVolume(a.meta_url, p.read_only);
  if (!m) return fail(m.error());
  const meta::Format& f = (*m)->format();
  auto store = OpenVolumeStore(f, a.inject_faults);
  if (!store) return fail(store.error());
  *store = object::NewMeteredStore(std::move(*store));
  bool default_cache = false;
  a.cache_dir = CacheDirFor(given.cache_dir, f, &default_cache);
  if (a.writeback && a.cache_dir.empty()) {
    return fail(Status::InvalidArgument(
        "--writeback needs --cache-dir: blocks are staged there until they are uploaded (" +
        std::string(given.cache_dir == kNoCacheDir ? "--cache-dir is none"
                                                   : "the volume's objects are local") +
        ")"));
  }
  const auto session_timeout_ns = static_cast<int64_t>(a.session_timeout * 1e9);
  if (!p.read_only) {
    if (Status s = StartSession(m->get(), a.mountpoint, session_timeout_ns); !s.ok()) {
      return fail(s);
    }
  }
  auto chunks = chunk::ChunkStore::Open(m->get(), store->get(), ChunkOptionsFor(a, f));
  if (!chunks && default_cache && !a.writeback) {
    // The default directory is a convenience, not a requirement: another mount of the volume
    // on this machine holds it, or it cannot be written. Serve without a disk cache.
    NX_LOG_WARN("disk cache {}: {}; mounting without a disk cache (--cache-dir DIR sets one)",
                a.cache_dir, chunks.error().ToString());
    a.cache_dir.clear();
    chunks = chunk::ChunkStore::Open(m->get(), store->get(), ChunkOptionsFor(a, f));
  }
  if (chunks && !a.cache_dir.empty()) NX_LOG_INFO("disk cache in {}", a.cache_dir);
  if (!chunks) {
    if (!p.read_only) (void)(*m)->CloseSession();
    return fail(chunks.error().With("chunk store"));
  }
  vfs::VfsOptions vo;
  vo.atime_mode = *vfs::ParseAtimeMode(a.atime_mode);
  vo.read_only = p.read_only;
  vo.writeback_cache = p.writeback_cache;
  vo.mount_options_json = OptionsJson(a, p);
  // An engine only one process can open, opened by this mount: nobody else changes its files.
  const bool sole_client = (*m)->engine()->SingleProcess();
  vo.sole_client = sole_client;
  vfs::Vfs vfs(m->get(), chunks->get(), vo);
  std::unique_ptr<MetricsServer> metrics_server;
  if (!a.metrics_addr.empty()) {
    auto started = MetricsServer::Start(a.metrics_addr, [&vfs] { return vfs.StatsText(); });
    if (!started) {
      (void)(*chunks)->Shutdown();
      if (!p.read_only) (void)(*m)->CloseSession();
      return fail(started.error());
    }
    metrics_server = std::move(*started);
  }
  fuse::FuseOptions fo = FuseOptionsFor(a, p, f);
  fo.auto_inval_data = !sole_client;
  fo.inline_requests =
      a.inline_requests == "auto" ? (*m)->engine()->Embedded() : a.inline_requests == "on";
  fo.inline_reads = f.storage == "file" || f.storage == "mem";
  auto server = fuse::FuseServer::Mount(&vfs, fo);
  if (!server) {
    (void)(*chunks)->Shutdown();
    if (!p.read_only) (void)(*m)->CloseSession();
    return fail(server.error());
  }
  std::optional<HeartbeatThread> heartbeat;
  if (!p.read_only) heartbeat.emplace(m->get(), session_timeout_ns);
  WriteRunFile(a.mountpoint);
  if (a.background) (void)!chdir("/");
  ready.Send("OK");
  Status served = (*server)->Serve();
  server->reset();
  heartbeat.reset();
  Status flushed = (*chunks)->Shutdown();
  if (!flushed.ok()) NX_LOG_ERROR("flush at unmount: {}", flushed.ToString());
  Status closed = p.read_only ? Status::OK() : (*m)->CloseSession();
  if (!closed.ok()) NX_LOG_ERROR("close session: {}", closed.ToString());
  unlink(RunFile(a.mountpoint).c_str());
  NX_LOG_INFO("nexusfs at {} stopped", a.mountpoint);
  return served.ok() && flushed.ok() && closed.ok() ? 0 : 1;
}

// Parent of a background mount: waits for the child's report. Returns the exit code.
int WaitForChild(pid_t child, int fd, const std::string& log_file) {
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) msg.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (msg == "OK") return 0;
  int status = 0;
  waitpid(child, &status, 0);
  if (msg.size() > 1 && msg[0] == 'E') {
    std::fprintf(stderr, "nexusfs mount: %s\n", msg.c_str() + 1);
  } else {
    std::fprintf(stderr,
                 "nexusfs mount: the mount process exited before the mount was ready "
                 "(see %s)\n",
                 log_file.c_str());
  }
  return 1;
}

void RunMount(MountArgs a) {
  a.mountpoint = AbsolutePath(a.mountpoint);
  a.meta_url = AbsoluteMetaUrl(a.meta_url);
  if (!a.cache_dir.empty() && a.cache_dir != kNoCacheDir) {
    a.cache_dir = std::filesystem::absolute(a.cache_dir).string();
  }
  ParsedOptions p = ParseOptions(a.options);
  if (a.upload_delay > 0 && !a.writeback) {
    return Fail("mount", Status::InvalidArgument("--upload-delay applies to --writeback only"));
  }
  if (auto mode = vfs::ParseAtimeMode(a.atime_mode); !mode) return Fail("mount", mode.error());
  if (Status s = CheckMountPoint(a.mountpoint); !s.ok()) return Fail("mount", s);
  if (a.background && a.log_file.empty()) a.log_file = DefaultLogFile();
  if (!a.log_file.empty()) {
    a.log_file = std::filesystem::absolute(a.log_file).string();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(a.log_file).parent_path(), ec);
  }
  ReadyPipe ready;
  if (a.background) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return Fail("mount", Status::Errno(errno, "pipe"));
    std::fflush(nullptr);
    pid_t child = fork();
    if (child < 0) return Fail("mount", Status::Errno(errno, "fork"));
    if (child > 0) {
      close(fds[1]);
      return SetExitCode(WaitForChild(child, fds[0], a.log_file));
    }
    close(fds[0]);
    ready.fd = fds[1];
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
      if (devnull > 2) close(devnull);
    }
  }
  spdlog::drop_all();  // main() set up stderr logging for the other commands
  InitLogging(a.log_level, a.log_file);
  spdlog::flush_on(spdlog::level::info);  // a daemon's log must be readable while it runs
  int code = Serve(a, p, ready);
  spdlog::shutdown();
  if (a.background) _exit(code);
  SetExitCode(code);
}

// ---- umount ----

// Waits until process `pid` exits, at most `timeout_ms`. True when it is gone.
bool WaitForExit(pid_t pid, int timeout_ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  struct pollfd pfd = {pidfd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  close(pidfd);
  return rc > 0;
}

// The serving process of `mountpoint`, from its run file, if it is still a nexusfs process.
std::optional<pid_t> ServingPid(const std::string& mountpoint) {
  std::ifstream in(RunFile(mountpoint));
  long pid = 0;
  std::string recorded;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  in.ignore(1);
  std::getline(in, recorded);
  if (recorded != mountpoint) return std::nullopt;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  if (cmdline.find("nexusfs") == std::string::npos) return std::nullopt;
  return static_cast<pid_t>(pid);
}

Status Unmount(const std::string& mountpoint, bool force) {
  if (geteuid() == 0) {
    if (umount2(mountpoint.c_str(), force ? MNT_DETACH : 0) == 0) return Status::OK();
    int e = errno;
    if (e == EBUSY) {
      return Status::Busy(mountpoint +
                          " is busy (files or directories are in use); close them "
                          "or use --force for a lazy unmount");
    }
    return Status::Errno(e, "umount " + mountpoint + ": " + std::strerror(e));
  }
  pid_t child = fork();
  if (child == 0) {
    execlp("fusermount3", "fusermount3", force ? "-uz" : "-u", mountpoint.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) < 0) return Status::Errno(errno, "fusermount3");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::IOError("fusermount3 -u " + mountpoint + " failed");
  }
  return Status::OK();
}

void RunUmount(std::string mountpoint, bool force) {
  mountpoint = AbsolutePath(mountpoint);
  if (MountedType(mountpoint).empty()) {
    return Fail("umount", Status::Errno(EINVAL, mountpoint + " is not a mount point"));
  }
  std::optional<pid_t> pid = ServingPid(mountpoint);
  if (Status s = Unmount(mountpoint, force); !s.ok()) return Fail("umount", s);
  // A lazy unmount leaves the process serving the descriptors still open; --force stops it
  // (it flushes what was written and exits; those descriptors then fail with ENOTCONN).
  if (pid && force) kill(*pid, SIGTERM);
  if (pid && !WaitForExit(*pid, kUmountWaitMs)) {
    return Fail("umount", Status::TimedOut("nexusfs process " + std::to_string(*pid) + " of " +
                                           mountpoint + " is still flushing after " +
                                           std::to_string(kUmountWaitMs / 1000) + " s"));
  }
}

}  // namespace

void RegisterMount(CLI::App& app) {
  auto a = std::make_shared<MountArgs>();
  auto* cmd = app.add_subcommand("mount", "Mount a volume with FUSE");
  cmd->add_option("META-URL", a->meta_url, "Metadata engine URL of a formatted volume")->required();
  cmd->add_option("MOUNTPOINT", a->mountpoint, "An existing, empty directory")->required();
  cmd->add_flag("-d,--background", a->background,
                "Run in the background; return once the mount is ready");
  cmd->add_option("-o", a->options,
                  "Mount options: allow_other, default_permissions, ro, writeback_cache, ...")
      ->allow_extra_args(false);
  cmd->add_flag("--non-default-permission", a->non_default_permission,
                "Do not mount with default_permissions: NexusFS alone checks permissions (the "
                "kernel then skips search checks on cached path components)");
  cmd->add_option("--cache-dir", a->cache_dir,
                  "Directory of the local block cache; 'none' for no disk cache. Default: none "
                  "for file:// volumes, else /var/cache/nexusfs/<volume uuid> (root) or "
                  "~/.cache/nexusfs/<volume uuid>");
  cmd->add_option("--cache-size", a->cache_size_mib, "Local cache size in MiB")
      ->capture_default_str();
  cmd->add_option("--free-space-ratio", a->free_space_ratio,
                  "Fraction of the cache directory's file system the cache leaves free")
      ->capture_default_str();
  cmd->add_option("--buffer-size", a->buffer_size_mib, "Write buffer size in MiB")
      ->capture_default_str();
  cmd->add_option("--max-uploads", a->max_uploads, "Parallel block uploads")->capture_default_str();
  cmd->add_option("--max-downloads", a->max_downloads, "Parallel block downloads")
      ->capture_default_str();
  cmd->add_option("--max-readahead", a->max_readahead_mib,
                  "Readahead window of a sequential reader in MiB")
      ->capture_default_str();
  cmd->add_option("--kernel-readahead", a->kernel_readahead_kb,
                  "The kernel's readahead window for the mount's files in KiB (read_ahead_kb of "
                  "its bdi, set when run as root); 0 leaves the kernel's 128 KiB")
      ->check(CLI::Range(0u, 1u << 20))
      ->capture_default_str();
  cmd->add_option("--inline-requests", a->inline_requests,
                  "Serve metadata requests, writes and flushes in the thread that read them from "
                  "the kernel instead of handing each to another thread: on, off, or auto (on "
                  "for embedded metadata engines: rocksdb, sqlite3, mem)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd->add_option("--request-spin", a->request_spin_us,
                  "Microseconds the thread reading FUSE requests polls for the next one before "
                  "it sleeps; 0 sleeps at once")
      ->check(CLI::Range(0u, 10000u))
      ->capture_default_str();
  cmd->add_option("--mem-cache-size", a->mem_cache_mib, "Memory block cache size in MiB")
      ->capture_default_str();
  cmd->add_option("--prefetch", a->prefetch,
                  "Fetch the whole block after a small read that missed the caches: on, off, or "
                  "auto (on unless the objects are local: file://, mem://)")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd->add_option("--local-reads", a->local_reads,
                  "On a file:// volume, read ranges from the block objects in place (the page "
                  "cache is their cache); map: FUSE replies point into mappings of the objects "
                  "(one copy less, a page fault per page first touched); off: copy whole blocks "
                  "into the memory cache as on s3")
      ->check(CLI::IsMember({"on", "map", "off"}))
      ->capture_default_str();
  cmd->add_flag("--writeback", a->writeback,
                "Close and fsync return once the data is in --cache-dir; blocks upload in the "
                "background (other clients cannot read them before). Needs --cache-dir");
  cmd->add_option("--upload-delay", a->upload_delay,
                  "With --writeback: seconds a staged block waits before its upload (data deleted "
                  "sooner is never uploaded)")
      ->check(CLI::Range(0.0, 30.0 * 86400))
      ->capture_default_str();
  cmd->add_option("--attr-cache", a->attr_cache, "Attribute cache timeout in seconds")
      ->capture_default_str();
  cmd->add_option("--entry-cache", a->entry_cache, "File entry cache timeout in seconds")
      ->capture_default_str();
  cmd->add_option("--dir-entry-cache", a->dir_entry_cache,
                  "Directory entry cache timeout in seconds")
      ->capture_default_str();
  cmd->add_option("--atime-mode", a->atime_mode, "noatime, relatime or strictatime")
      ->capture_default_str();
  cmd->add_option("--log", a->log_file,
                  "Log file (background default: /var/log/nexusfs.log or ~/.nexusfs/nexusfs.log)");
  cmd->add_option("--log-level", a->log_level, "debug, info, warn, error")->capture_default_str();
  cmd->add_option("--session-timeout", a->session_timeout,
                  "Seconds after this mount's last heartbeat when other clients may declare it "
                  "dead and release its locks and open files (heartbeats every timeout/4, at "
                  "most every 10 s)")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  cmd->add_option("--metrics", a->metrics_addr,
                  "Serve Prometheus metrics on http://HOST:PORT/metrics (e.g. 127.0.0.1:9567)");
  cmd->add_option("--inject-faults", a->inject_faults,
                  "Testing: fail a fraction of object-store calls and delay them, e.g. "
                  "rate=0.1,delay=5ms,seed=1 (delays are drawn from [min_delay, delay])");
  cmd->callback([a] { RunMount(*a); });
}

void RegisterUmount(CLI::App& app) {
  auto mountpoint = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("umount", "Unmount a volume and wait for its process to finish");
  cmd->add_option("MOUNTPOINT", *mountpoint, "Where the volume is mounted")->required();
  cmd->add_flag("-f,--force", *force,
                "Detach even when busy or dead (MNT_DETACH) and stop the serving process");
  cmd->callback([mountpoint, force] { RunUmount(*mountpoint, *force); });
}

}  // namespace nexus::cli
