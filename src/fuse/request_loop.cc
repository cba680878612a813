// RunRequestLoop: one reading thread that serves quick requests itself (request_loop.h).
#include "fuse/request_loop.h"

#define FUSE_USE_VERSION 35
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace nexus::fuse {
namespace {

// Requests that nearly always wait for I/O: fsync, copies that flush their source, and reads
// unless the objects are local (from a remote store the kernel's readahead sends several at
// once, and each waits for a download).
bool WaitsForIo(uint32_t opcode, bool inline_reads) {
  switch (opcode) {
    case FUSE_READ:
      return !inline_reads;
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_COPY_FILE_RANGE:
      return true;
    default:
      return false;
  }
}

uint32_t OpcodeOf(const struct fuse_buf& buf) {
  if ((buf.flags & FUSE_BUF_IS_FD) || buf.size < sizeof(struct fuse_in_header)) return 0;
  struct fuse_in_header in;
  std::memcpy(&in, buf.mem, sizeof(in));
  return in.opcode;
}

// The workers leave SIGINT/SIGTERM/SIGHUP to other threads: libfuse's handlers only mark the
// session as exited, which the watchdog notices.
void BlockExitSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

metrics::Counter& Handoffs(const char* reason) {
  return metrics::Registry::Default()
      .CounterFamily("nexusfs_fuse_reader_handoffs_total",
                     "Times the thread reading FUSE requests passed that role to another thread: "
                     "before a request that waits for I/O (io), or because a request it served "
                     "itself ran too long (stall).",
                     {"reason"})
      .Get({reason});
}

class RequestLoop {
 public:
  RequestLoop(struct fuse_session* se, const RequestLoopOptions& options)
      : se_(se), o_(options), fd_(fuse_session_fd(se)) {
    o_.max_threads = std::max(o_.max_threads, 1u);
    // Without requests served in place the request is served by another thread than the one
    // polling: two threads would be busy for one request (on 2 cores, measured slower than
    // sleeping at once).
    if (!o_.inline_requests) o_.spin_ns = 0;
  }

  int Run() {
    // Only the reader reads, and only after poll(2) said a request is there; non-blocking so
    // that a request taken back by the kernel in between (an interrupt) cannot strand it.
    int fl = fcntl(fd_, F_GETFL);
    if (fl < 0 || fcntl(fd_, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) return -errno;
    std::unique_lock lock(mu_);
    if (!StartThreadLocked()) {
      lock.unlock();
      close(wake_fd_);
      return -EAGAIN;
    }
    constexpr int64_t kFastNs = 1'000'000, kSlowNs = 20'000'000;
    int64_t period = kFastNs;
    uint64_t seen = served_;
    while (threads_ > 0) {
      watchdog_.wait_for(lock, std::chrono::nanoseconds(period));
      if (!exiting_ && fuse_session_exited(se_)) ExitLocked();
      if (exiting_) continue;
      if (serving_since_ != 0 && MonoNanos() - serving_since_ > o_.stall_ns) {
        NX_LOG_DEBUG("fuse: a request served by the reader ran for {} us; another thread reads",
                     (MonoNanos() - serving_since_) / 1000);
        stalls_.Inc();
        serving_since_ = 0;
        ReleaseReaderLocked();
      }
      // Watch closely while requests are being served, rarely when the mount is idle.
      period = (served_ != seen || serving_since_ != 0) ? kFastNs : std::min(period * 2, kSlowNs);
      seen = served_;
    }
    JoinFinishedLocked();
    lock.unlock();
    close(wake_fd_);
    return error_;
  }

 private:
  // False when the system refuses a thread (EAGAIN at the process or memory limit). The loop
  // goes on with the threads it has: a thread that gave up the reading role takes it back when
  // its request is done.
  bool StartThreadLocked() {
    JoinFinishedLocked();
    try {
      std::thread t([this] { Worker(); });
      std::thread::id id = t.get_id();
      running_.emplace(id, std::move(t));
    } catch (const std::system_error& e) {
      NX_LOG_WARN("fuse: cannot start a request thread ({} running): {}", threads_, e.what());
      return false;
    }
    ++threads_;
    return true;
  }

  // Threads that left hand their std::thread to the next start or to the end of Run.
  void JoinFinishedLocked() {
    for (std::thread::id id : finished_) {
      auto it = running_.find(id);
      if (it == running_.end()) continue;
      it->second.join();  // it only returns after leaving the lock
      running_.erase(it);
    }
    finished_.clear();
  }

  // Gives up the reading role: an idle thread takes it, or a new one if none is idle.
  void ReleaseReaderLocked() {
    reader_ = false;
    ++reader_gen_;
    if (idle_ > 0) {
      followers_.notify_one();
    } else if (threads_ < o_.max_threads) {
      (void)StartThreadLocked();
    }
  }

  void ExitLocked() {
    exiting_ = true;
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    followers_.notify_all();
    watchdog_.notify_all();
  }

  // Polls the device for up to spin_ns, then sleeps in poll(2) until a request or the end.
  // Returns the request's size, 0 at the end, or a negative errno.
  int Receive(struct fuse_buf* buf) {
    struct pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    bool ready = false;
    if (o_.spin_ns > 0) {
      const int64_t until = MonoNanos() + o_.spin_ns;
      while (!(ready = poll(fds, 1, 0) > 0) && MonoNanos() < until) sched_yield();
    }
    for (;;) {
      if (!ready) {
        int n = poll(fds, 2, -1);
        if (n < 0) {
          if (errno == EINTR) continue;
          return -errno;
        }
        if (fds[1].revents != 0) return 0;  // ExitLocked
      }
      ready = false;
      int res = fuse_session_receive_buf(se_, buf);
      if (res == -EAGAIN || res == -EINTR) {
        if (fuse_session_exited(se_)) return 0;
        continue;
      }
      return res;  // 0 when the file system was unmounted (libfuse marks the session exited)
    }
  }

  void Worker() {
    BlockExitSignals();
    struct fuse_buf buf = {};
    std::unique_lock lock(mu_);
    for (;;) {
      ++idle_;
      bool surplus = false;
      while (reader_ && !exiting_) {
        if (idle_ > o_.max_idle_threads) {
          surplus = true;
          break;
        }
        followers_.wait(lock);
      }
      --idle_;
      if (surplus || exiting_) break;
      reader_ = true;
      const uint64_t gen = ++reader_gen_;
      lock.unlock();
      bool reading = true;
      while (reading) {
        int res = Receive(&buf);
        if (res <= 0) {
          lock.lock();
          if (res < 0 && res != -ENODEV && error_ == 0) error_ = res;
          if (!exiting_) ExitLocked();
          lock.unlock();
          break;
        }
        if (!o_.inline_requests || WaitsForIo(OpcodeOf(buf), o_.inline_reads)) {
          lock.lock();
          if (reader_gen_ == gen) {
            if (o_.inline_requests) io_handoffs_.Inc();
            ReleaseReaderLocked();
          }
          lock.unlock();
          fuse_session_process_buf(se_, &buf);
          break;
        }
        lock.lock();
        serving_since_ = MonoNanos();
        lock.unlock();
        fuse_session_process_buf(se_, &buf);
        lock.lock();
        ++served_;
        if (reader_gen_ == gen) {
          serving_since_ = 0;
        } else {
          reading = false;  // the watchdog gave the role to another thread meanwhile
        }
        lock.unlock();
      }
      lock.lock();
      if (exiting_) break;
    }
    --threads_;
    finished_.push_back(std::this_thread::get_id());
    watchdog_.notify_all();
    lock.unlock();
    free(buf.mem);
  }

  struct fuse_session* const se_;
  RequestLoopOptions o_;
  const int fd_;
  int wake_fd_ = -1;  // an eventfd, written to wake the reader at the end
  metrics::Counter& io_handoffs_ = Handoffs("io");
  metrics::Counter& stalls_ = Handoffs("stall");

  std::mutex mu_;
  std::condition_variable followers_;  // idle threads, waiting for the reading role
  std::condition_variable watchdog_;   // Run, between its checks
  bool reader_ = false;                // a thread holds the reading role
  uint64_t reader_gen_ = 0;            // changes each time the role is taken or given up
  int64_t serving_since_ = 0;          // when the reader started the request it serves; 0: none
  uint64_t served_ = 0;                // requests served by readers
  unsigned idle_ = 0, threads_ = 0;
  bool exiting_ = false;
  int error_ = 0;
  std::unordered_map<std::thread::id, std::thread> running_;
  std::vector<std::thread::id> finished_;
};

}  // namespace

int RunRequestLoop(struct fuse_session* se, const RequestLoopOptions& options) {
  RequestLoop loop(se, options);
  return loop.Run();
}

}  // namespace nexus::fuse
