// AccessLog: the operations of a mount as text lines, for readers of the internal file
// `.accesslog`. Lines are produced only while at least one reader has the file open; each
// reader has its own bounded buffer, and lines that do not fit are dropped (counted, and
// reported to that reader as "#dropped N lines: reader too slow").
//
// Contract: thread-safe. Active() is one relaxed atomic load, so producers check it before
// formatting a line. Read blocks until a line is buffered or the timeout passes (then it
// returns "#\n", a keep-alive that also lets a FUSE request finish at unmount).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace nexus::vfs {

class AccessLog {
 public:
  static constexpr size_t kMaxBufferedBytes = 4 << 20;  // per reader

  bool Active() const { return readers_.load(std::memory_order_relaxed) > 0; }
  // Registers a reader; returns its id.
  uint64_t OpenReader();
  void CloseReader(uint64_t id);
  // Hands `line` (ending in '\n') to every reader.
  void Append(const std::string& line);
  // Up to `max` bytes of whole lines for reader `id` (a line longer than `max` is split).
  std::string Read(uint64_t id, size_t max, int64_t timeout_ns);

 private:
  struct Reader {
    std::deque<std::string> lines;
    size_t bytes = 0;
    uint64_t dropped = 0;
    std::string partial;  // the rest of a line split by a short read
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Reader> readers_map_;
  uint64_t next_id_ = 1;
  std::atomic<int> readers_{0};
};

}  // namespace nexus::vfs
