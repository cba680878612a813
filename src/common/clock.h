#pragma once

#include <cstdint>
#include <ctime>

namespace nexus {

// Wall-clock time in nanoseconds since the epoch (CLOCK_REALTIME), for file timestamps.
inline int64_t NowNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Monotonic time in nanoseconds, for timeouts and latencies.
inline int64_t MonoNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace nexus
