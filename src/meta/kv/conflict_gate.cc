#include "meta/kv/conflict_gate.h"

namespace nexus::kv {

namespace {
thread_local int passes_held = 0;
}

ConflictGate::Pass::Pass(ConflictGate& gate, int conflicts) : gate_(gate) {
  if (passes_held++ > 0) return;
  std::unique_lock lock(gate_.mu_);
  if (conflicts >= kEscalateAfter) {
    gate_.waiting_exclusive_++;
    gate_.cv_.wait(lock, [&] { return !gate_.exclusive_ && gate_.shared_ == 0; });
    gate_.waiting_exclusive_--;
    gate_.exclusive_ = true;
    gate_.exclusive_passes_++;
    mode_ = Mode::kExclusive;
  } else {
    gate_.cv_.wait(lock, [&] { return !gate_.exclusive_ && gate_.waiting_exclusive_ == 0; });
    gate_.shared_++;
    mode_ = Mode::kShared;
  }
}

ConflictGate::Pass::~Pass() {
  passes_held--;
  if (mode_ == Mode::kNone) return;
  bool wake = false;
  {
    std::lock_guard lock(gate_.mu_);
    if (mode_ == Mode::kExclusive) {
      gate_.exclusive_ = false;
      wake = true;
    } else {
      wake = --gate_.shared_ == 0 && gate_.waiting_exclusive_ > 0;
    }
  }
  if (wake) gate_.cv_.notify_all();
}

uint64_t ConflictGate::exclusive_passes() const {
  std::lock_guard lock(mu_);
  return exclusive_passes_;
}

}  // namespace nexus::kv
