// LockWaiter: serves blocking lock requests (F_SETLKW, flock without LOCK_NB) without holding a
// FUSE worker thread per waiter. libfuse runs a bounded number of workers; if every one of them
// waited for a lock, the request that releases it could never be served. One thread retries
// all waiting requests whenever a lock may have changed and replies to each exactly once:
// OK when granted, EINTR when the kernel interrupted the request, the error otherwise.
#pragma once

#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "fuse/fuse_ops.h"

namespace nexus::vfs {
class Vfs;
}

namespace nexus::fuse {

class LockWaiter {
 public:
  explicit LockWaiter(vfs::Vfs* vfs);
  ~LockWaiter();  // replies EINTR to requests still waiting
  LockWaiter(const LockWaiter&) = delete;
  LockWaiter& operator=(const LockWaiter&) = delete;

  // Takes over `req`: retries `attempt` (a non-blocking lock call that gives EAGAIN while the
  // lock is held) until it returns anything else, and replies with that.
  void Add(fuse_req_t req, fuse_ino_t ino, std::function<Status()> attempt);

 private:
  struct Waiter {
    fuse_req_t req;
    fuse_ino_t ino;
    std::function<Status()> attempt;
  };
  void Run();
  // Tries every waiter once; replies to and removes the ones that are done.
  void RetryAll();

  vfs::Vfs* vfs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Waiter> waiters_;
  bool stop_ = false;
  int64_t retry_ns_ = 0;  // the next wait between rounds of retries; guarded by mu_
  std::thread thread_;
};

}  // namespace nexus::fuse
