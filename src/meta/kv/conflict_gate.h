// Progress for optimistic transactions under contention. A transaction of a shared engine
// (Redis, PostgreSQL, etcd) that loses a conflict runs its body again; on a hot key (the
// directory that four threads create in) a slow attempt can keep losing to quicker ones, and
// on a loaded 2-core machine one lost 50 times in a row and the mkdir failed with EBUSY.
//
// Every attempt passes the gate of its engine. Normally passes are shared and cost one
// uncontended mutex round. After kEscalateAfter conflicts an attempt asks for the gate alone:
// new attempts of this process wait, the running ones finish, and the starved attempt then runs
// with no competitor from its own process. Waiting attempts are preferred over new shared ones,
// so the request cannot itself starve. Clients in other processes still compete; they are the
// rarer case and the attempt budget covers them.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace nexus::kv {

class ConflictGate {
 public:
  // Conflicts in a row after which an attempt runs alone among this process's attempts.
  static constexpr int kEscalateAfter = 8;

  // Held for the length of one attempt (its body and its commit). A thread that already holds a
  // pass of any gate (a transaction started inside another's body) passes freely: waiting there
  // could deadlock against an exclusive request that waits for the outer attempt.
  class Pass {
   public:
    Pass(ConflictGate& gate, int conflicts);
    ~Pass();
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    bool exclusive() const { return mode_ == Mode::kExclusive; }

   private:
    enum class Mode { kNone, kShared, kExclusive };
    ConflictGate& gate_;
    Mode mode_ = Mode::kNone;
  };

  // Passes that had to run alone (read by the tests).
  uint64_t exclusive_passes() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int shared_ = 0;             // attempts running with a shared pass
  int waiting_exclusive_ = 0;  // attempts waiting to run alone
  bool exclusive_ = false;     // an attempt is running alone
  uint64_t exclusive_passes_ = 0;
};

}  // namespace nexus::kv
