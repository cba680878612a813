#include "common/thread_pool.h"

#include <pthread.h>

namespace nexus {

ThreadPool::ThreadPool(int threads, size_t max_queue, std::string name) : max_queue_(max_queue) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { Work(); });
    pthread_setname_np(threads_.back().native_handle(), name.substr(0, 15).c_str());
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  not_empty_.notify_all();
  not_full_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::Submit(std::function<void()> task) {
  std::unique_lock lock(mu_);
  not_full_.wait(lock, [&] { return max_queue_ == 0 || queue_.size() < max_queue_ || stop_; });
  queue_.push_back(std::move(task));
  not_empty_.notify_one();
}

bool ThreadPool::TrySubmit(std::function<void()> task) {
  std::lock_guard lock(mu_);
  if (stop_ || (max_queue_ && queue_.size() >= max_queue_)) return false;
  queue_.push_back(std::move(task));
  not_empty_.notify_one();
  return true;
}

size_t ThreadPool::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void ThreadPool::Work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      not_empty_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      not_full_.notify_one();
    }
    task();
  }
}

}  // namespace nexus
