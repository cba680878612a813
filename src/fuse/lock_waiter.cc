#include "fuse/lock_waiter.h"

#include <algorithm>

#include "vfs/vfs.h"

namespace nexus::fuse {
namespace {
// Other clients' releases are not announced: waiters retry with a backoff that starts short, so
// a lock released soon after a waiter arrived is granted within a few ms, and grows to
// kMaxRetryNs so that a long wait costs at most ten attempts a second per waiter. A new waiter
// restarts it; a release by this client ends a wait at once whatever its length.
constexpr int64_t kFirstRetryNs = 2'000'000;
constexpr int64_t kMaxRetryNs = 100'000'000;
}  // namespace

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
    retry_ns_ = kFirstRetryNs;
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
    const int64_t wait_ns = retry_ns_;
    retry_ns_ = std::min(kMaxRetryNs, retry_ns_ * 2);
    lock.unlock();
    RetryAll();
    // Wakes early when this client releases a lock; releases elsewhere show on the timeout.
    vfs_->WaitLockChange(ino, wait_ns);
    lock.lock();
  }
}

}  // namespace nexus::fuse
