#include "cli/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "common/clock.h"

namespace nexus::cli {

std::string HumanBytes(double n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (n >= 1024 && u < 4) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", n, units[u]);
  return buf;
}

Progress::Progress(std::string label, uint64_t total, bool bytes)
    : label_(std::move(label)),
      total_(total),
      bytes_(bytes),
      enabled_(isatty(STDOUT_FILENO) == 1),
      start_ns_(MonoNanos()) {
  if (!enabled_) return;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stop_; });
      if (!stop_) Draw(false);
    }
  });
}

void Progress::Done() {
  if (!enabled_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  Draw(true);
}

void Progress::Draw(bool final) {
  uint64_t done = done_.load(), total = total_.load();
  double secs = static_cast<double>(MonoNanos() - start_ns_) / 1e9;
  auto fmt = [&](uint64_t v) {
    return bytes_ ? HumanBytes(static_cast<double>(v)) : std::to_string(v);
  };
  std::string line = "\r" + label_ + " ";
  if (total > 0) {
    constexpr int kWidth = 30;
    int filled = static_cast<int>(kWidth * std::min(1.0, static_cast<double>(done) / total));
    line += "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
    line += fmt(done) + "/" + fmt(total);
  } else {
    line += fmt(done);
  }
  char rate[64];
  double r = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::snprintf(rate, sizeof(rate), "  %s/s  %.1fs",
                bytes_ ? HumanBytes(r).c_str() : std::to_string(static_cast<uint64_t>(r)).c_str(),
                secs);
  line += rate;
  line += "\x1b[K";
  if (final) line += "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace nexus::cli
