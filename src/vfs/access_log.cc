#include "vfs/access_log.h"

#include <chrono>

namespace nexus::vfs {

uint64_t AccessLog::OpenReader() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t id = next_id_++;
  readers_map_.emplace(id, Reader{});
  readers_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void AccessLog::CloseReader(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (readers_map_.erase(id)) readers_.fetch_sub(1, std::memory_order_relaxed);
  cv_.notify_all();
}

void AccessLog::Append(const std::string& line) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, r] : readers_map_) {
      if (r.bytes + line.size() > kMaxBufferedBytes) {
        ++r.dropped;
        continue;
      }
      r.lines.push_back(line);
      r.bytes += line.size();
    }
  }
  cv_.notify_all();
}

std::string AccessLog::Read(uint64_t id, size_t max, int64_t timeout_ns) {
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [&] {
    auto it = readers_map_.find(id);
    return it == readers_map_.end() || !it->second.partial.empty() || !it->second.lines.empty() ||
           it->second.dropped > 0;
  };
  if (!cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), ready)) return "#\n";
  auto it = readers_map_.find(id);
  if (it == readers_map_.end()) return "";
  Reader& r = it->second;
  std::string out;
  if (!r.partial.empty()) {
    out = r.partial.substr(0, max);
    r.partial.erase(0, out.size());
    return out;
  }
  if (r.dropped > 0) {
    out = "#dropped " + std::to_string(r.dropped) + " lines: reader too slow\n";
    r.dropped = 0;
  }
  while (!r.lines.empty() && out.size() + r.lines.front().size() <= max) {
    out += r.lines.front();
    r.bytes -= r.lines.front().size();
    r.lines.pop_front();
  }
  if (out.empty() && !r.lines.empty()) {  // a line longer than the read: split it
    std::string line = std::move(r.lines.front());
    r.bytes -= line.size();
    r.lines.pop_front();
    out = line.substr(0, max);
    r.partial = line.substr(out.size());
  }
  return out;
}

}  // namespace nexus::vfs
