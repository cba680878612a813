// FaultyStore: transient failures and delays in front of any store, for tests and for
// `nexusfs mount --inject-faults`. A failed call never reaches the inner store.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "common/logging.h"
#include "object/block_codec.h"

namespace nexus::object {
namespace {

class FaultyStore final : public ObjectStore {
 public:
  FaultyStore(std::unique_ptr<ObjectStore> inner, FaultOptions o)
      : inner_(std::move(inner)), opts_(o), rng_(o.seed) {}

  Status Put(std::string_view key, std::string_view data) override {
    NX_TRY(Inject("put", key));
    return inner_->Put(key, data);
  }
  Status PutParts(std::string_view key, std::span<const std::string_view> parts) override {
    NX_TRY(Inject("put", key));
    return inner_->PutParts(key, parts);
  }
  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    NX_TRY(Inject("get", key));
    return inner_->Get(key, off, len);
  }
  Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) override {
    NX_TRY(Inject("get", key));
    return inner_->GetInto(key, off, len, out);
  }
  Result<ObjectInfo> Head(std::string_view key) override {
    NX_TRY(Inject("head", key));
    return inner_->Head(key);
  }
  Status Delete(std::string_view key) override {
    NX_TRY(Inject("delete", key));
    return inner_->Delete(key);
  }
  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    NX_TRY(Inject("list", prefix));
    return inner_->List(prefix, marker, limit);
  }
  Status SweepLeftovers(std::string_view prefix, int64_t older_than_ns, bool remove,
                        Leftovers* found) override {
    return inner_->SweepLeftovers(prefix, older_than_ns, remove, found);
  }

  std::string Name() const override { return inner_->Name(); }

 private:
  // Draws this call's delay and fate from the seeded generator (one draw per call, in call
  // order), then sleeps outside the lock.
  Status Inject(const char* op, std::string_view key) {
    bool fail;
    int64_t delay_us = 0;
    {
      std::lock_guard lock(mu_);
      fail = std::uniform_real_distribution<double>(0, 1)(rng_) < opts_.fail_rate;
      if (opts_.max_delay_us > opts_.min_delay_us) {
        delay_us =
            std::uniform_int_distribution<int64_t>(opts_.min_delay_us, opts_.max_delay_us)(rng_);
      } else {
        delay_us = opts_.min_delay_us;
      }
    }
    if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    if (!fail) return Status::OK();
    return Status::IOError(std::string(op) + " " + std::string(key) + ": injected fault");
  }

  std::unique_ptr<ObjectStore> inner_;
  const FaultOptions opts_;
  std::mutex mu_;
  std::mt19937_64 rng_;
};

Result<int64_t> ParseDelayUs(std::string_view v) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  std::string_view unit(p, v.data() + v.size() - p);
  if (ec != std::errc() || n < 0) return Err(EINVAL, "bad delay '" + std::string(v) + "'");
  if (unit == "us") return n;
  if (unit == "ms" || unit.empty()) return n * 1000;
  if (unit == "s") return n * 1000000;
  return Err(EINVAL, "bad delay unit in '" + std::string(v) + "' (us, ms or s)");
}

}  // namespace

Result<FaultOptions> ParseFaultSpec(std::string_view spec) {
  FaultOptions o;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view part = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return Err(EINVAL, "fault spec part '" + std::string(part) + "' is not name=value");
    }
    std::string_view name = part.substr(0, eq), value = part.substr(eq + 1);
    if (name == "rate") {
      try {
        size_t used = 0;
        o.fail_rate = std::stod(std::string(value), &used);
        if (used != value.size() || o.fail_rate < 0 || o.fail_rate > 1) throw 0;
      } catch (...) {
        return Err(EINVAL, "fault rate '" + std::string(value) + "' is not a number in [0, 1]");
      }
    } else if (name == "delay") {
      NX_ASSIGN_OR_RETURN(o.max_delay_us, ParseDelayUs(value));
    } else if (name == "min_delay") {
      NX_ASSIGN_OR_RETURN(o.min_delay_us, ParseDelayUs(value));
    } else if (name == "seed") {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), o.seed);
      if (ec != std::errc() || p != value.data() + value.size()) {
        return Err(EINVAL, "fault seed '" + std::string(value) + "' is not a number");
      }
    } else {
      return Err(EINVAL, "unknown fault spec part '" + std::string(name) +
                             "' (rate=F, delay=D[us|ms|s], min_delay=D, seed=N)");
    }
  }
  return o;
}

std::unique_ptr<ObjectStore> NewFaultyStore(std::unique_ptr<ObjectStore> inner,
                                            FaultOptions options) {
  NX_LOG_WARN("object store {}: injecting faults (rate {}, delay {}-{} us, seed {})", inner->Name(),
              options.fail_rate, options.min_delay_us,
              std::max(options.min_delay_us, options.max_delay_us), options.seed);
  return std::make_unique<FaultyStore>(std::move(inner), options);
}

}  // namespace nexus::object
