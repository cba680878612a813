#include "fuse/lock_waiter.h"

#include "vfs/vfs.h"

namespace nexus::fuse {
namespace {
constexpr int64_t kRetryNs = 200'000'000;  // other clients' releases are seen this often
}

LockWaiter::LockWaiter(vfs::Vfs* vfs) : vfs_(vfs), thread_([this] { Run(); }) {}

LockWaiter::~LockWaiter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (Waiter& w : waiters_) fuse_reply_err(w.req, EINTR);
}

void LockWaiter::Add(fuse_req_t req, fuse_ino_t ino, std::function<Status()> attempt) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.push_back(Waiter{req, ino, std::move(attempt)});
  }
  cv_.notify_all();
}

void LockWaiter::RetryAll() {
  std::list<Waiter> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(waiters_);
  }
  for (auto it = batch.begin(); it != batch.end();) {
    Status s = it->attempt();
    if (s.code() == EAGAIN && fuse_req_interrupted(it->req)) s = Status::Errno(EINTR);
    if (s.code() == EAGAIN) {
      ++it;
      continue;
    }
    fuse_reply_err(it->req, s.ok() ? 0 : s.ToErrno());
    it = batch.erase(it);
  }
  std::lock_guard<std::mutex> lock(mu_);
  waiters_.splice(waiters_.begin(), batch);
}

void LockWaiter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (waiters_.empty()) {
      cv_.wait(lock, [this] { return stop_ || !waiters_.empty(); });
      continue;
    }
    fuse_ino_t ino = waiters_.front().ino;
    lock.unlock();
    RetryAll();
    // Wakes early when this client releases a lock; releases elsewhere show on the timeout.
    vfs_->WaitLockChange(ino, kRetryNs);
    lock.lock();
  }
}

}  // namespace nexus::fuse
