// Progress: a one-line progress bar on stderr for long-running commands, drawn only when stdout
// is a terminal (scripts reading the output see nothing of it). Thread-safe counters; a thread
// redraws every 200 ms until Done().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace nexus::cli {

class Progress {
 public:
  // `total` 0 = unknown (a counter without a bar). `bytes` shows byte counts as sizes.
  Progress(std::string label, uint64_t total, bool bytes = false);
  ~Progress() { Done(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void Add(uint64_t n = 1) { done_.fetch_add(n, std::memory_order_relaxed); }
  void AddTotal(uint64_t n) { total_.fetch_add(n, std::memory_order_relaxed); }
  // Draws the final state and ends the line.
  void Done();

 private:
  void Draw(bool final);

  std::string label_;
  std::atomic<uint64_t> total_;
  std::atomic<uint64_t> done_{0};
  bool bytes_;
  bool enabled_;
  int64_t start_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "1.5 GiB", "12 KiB", "100 B".
std::string HumanBytes(double n);

}  // namespace nexus::cli
