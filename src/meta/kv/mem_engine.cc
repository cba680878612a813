// mem://: an in-process ordered store for tests. Update runs bodies one at a time under an
// exclusive lock (so it never conflicts) and applies the buffered writes only when the body
// succeeds; View runs under a shared lock.
#include <atomic>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "meta/kv/buffered_txn.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using Map = std::map<std::string, std::string, std::less<>>;

class MemTxn final : public BufferedTxn {
 public:
  MemTxn(const Map& data, bool read_only) : BufferedTxn(read_only), data_(data) {}

 protected:
  Result<std::optional<std::string>> BaseGet(std::string_view key) override {
    auto it = data_.find(key);
    if (it == data_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) override {
    for (auto it = data_.lower_bound(begin); it != data_.end(); ++it) {
      if (!end.empty() && it->first >= end) break;
      if (!visit(it->first, it->second)) break;
    }
    return Status::OK();
  }

 private:
  const Map& data_;
};

class MemEngine final : public Engine {
 public:
  Status Update(const std::function<Status(Txn&)>& body) override {
    std::unique_lock lock(mu_);
    MemTxn txn(data_, false);
    Status s = body(txn);
    if (!s.ok()) {
      failures_++;
      return s;
    }
    for (const auto& [k, v] : txn.writes()) {
      if (v) {
        data_.insert_or_assign(k, *v);
      } else {
        data_.erase(k);
      }
    }
    if (!txn.writes().empty()) writes_++;
    txns_++;
    return Status::OK();
  }
  Status View(const std::function<Status(Txn&)>& body) override {
    std::shared_lock lock(mu_);
    MemTxn txn(data_, true);
    return body(txn);
  }
  Status Sync() override { return Status::OK(); }
  std::string Name() const override { return "mem://"; }
  bool SingleProcess() const override { return true; }
  bool OneWriterAtATime() const override { return true; }
  bool Embedded() const override { return true; }
  EngineStats Stats() const override {
    EngineStats s{txns_.load(), 0, failures_.load()};
    s.writes = writes_.load();
    return s;
  }

 private:
  mutable std::shared_mutex mu_;
  Map data_;
  std::atomic<uint64_t> txns_{0}, failures_{0}, writes_{0};
};

}  // namespace

Result<std::unique_ptr<Engine>> OpenMemory() { return std::make_unique<MemEngine>(); }

}  // namespace nexus::kv
