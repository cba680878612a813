// A fixed set of worker threads with a bounded queue of tasks.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nexus {

class ThreadPool {
 public:
  // `threads` workers; at most `max_queue` tasks wait (0 = unbounded).
  ThreadPool(int threads, size_t max_queue, std::string name = "pool");
  ~ThreadPool();  // runs the queued tasks, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task`, waiting while the queue is full.
  void Submit(std::function<void()> task);
  // Queues `task` unless the queue is full; returns whether it was queued.
  bool TrySubmit(std::function<void()> task);
  size_t queued() const;

 private:
  void Work();

  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<std::function<void()>> queue_;
  size_t max_queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nexus
