#include <chrono>
#include <random>
#include <thread>

#include "meta/kv/engines.h"

namespace nexus::kv {

void Backoff::Wait(int attempt) {
  if (attempt <= 1) return;
  // 20 µs doubling up to ~10 ms, with full jitter so that conflicting clients spread out.
  thread_local std::mt19937_64 rng(std::random_device{}());
  int64_t cap = std::min<int64_t>(20LL << std::min(attempt - 2, 9), 10000);
  std::uniform_int_distribution<int64_t> dist(cap / 2, cap);
  std::this_thread::sleep_for(std::chrono::microseconds(dist(rng)));
}

}  // namespace nexus::kv
