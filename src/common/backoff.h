// Bounded retries with jittered exponential backoff, for calls to an object store that may
// fail transiently (a 503, a reset connection, an injected fault).
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>

#include "common/status.h"

namespace nexus {

// Attempts of one object-store call on the data path: with 10% of calls failing independently
// all 8 fail once in 10^8 calls. The sleeps between them add up to at most ~1.3 s.
inline constexpr int kStoreAttempts = 8;

// Sleeps before retry number `attempt` (1 for the first retry): a random time in [d/2, d],
// d = min(1 s, 10 ms * 2^(attempt-1)), so that clients retrying together spread out.
inline void BackoffSleep(int attempt) {
  thread_local std::minstd_rand rng(std::random_device{}());
  const int64_t d_us = std::min<int64_t>(1'000'000, int64_t(10'000) << std::min(attempt - 1, 10));
  std::uniform_int_distribution<int64_t> dist(d_us / 2, d_us);
  std::this_thread::sleep_for(std::chrono::microseconds(dist(rng)));
}

// Whether an object-store error is worth retrying: not a missing object, a bad key, or a
// refused permission.
inline bool IsTransientStoreError(const Status& s) {
  const int c = s.code();
  return c != 0 && c != ENOENT && c != EINVAL && c != EACCES && c != EPERM && c != EROFS;
}

}  // namespace nexus
