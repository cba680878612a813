#include "meta/kv/metered_engine.h"

#include <unordered_map>

#include "common/clock.h"
#include "common/metrics.h"

namespace nexus::kv {
namespace {

struct TxnMetrics {
  metrics::Counter* txns;
  metrics::Counter* retries;
  metrics::Counter* failures;
  metrics::Histogram* latency;
};

// The metrics of (kind, CurrentOp()); cached per thread so a transaction takes no lock.
TxnMetrics& MetricsFor(const char* kind) {
  thread_local std::unordered_map<std::string, TxnMetrics> cache;
  const char* op = metrics::CurrentOp();
  std::string key = std::string(kind) + '/' + op;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto& r = metrics::Registry::Default();
  TxnMetrics m;
  m.txns = &r.CounterFamily("nexusfs_meta_transactions_total",
                            "Metadata transactions, by kind (update, view) and FUSE operation.",
                            {"kind", "op"})
                .Get({kind, op});
  m.retries = &r.CounterFamily("nexusfs_meta_transaction_retries_total",
                               "Transaction bodies run again after a conflict.", {"kind", "op"})
                   .Get({kind, op});
  m.failures =
      &r.CounterFamily("nexusfs_meta_transaction_errors_total",
                       "Transactions that returned an error (ENOENT included).", {"kind", "op"})
           .Get({kind, op});
  m.latency = &r.HistogramFamily("nexusfs_meta_transaction_duration_seconds",
                                 "Metadata transaction latency, retries included.", {"kind", "op"})
                   .Get({kind, op});
  return cache.emplace(std::move(key), m).first->second;
}

class MeteredEngine final : public Engine {
 public:
  explicit MeteredEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}

  Status Update(const std::function<Status(Txn&)>& body) override {
    return Measure("update", body,
                   [this](const std::function<Status(Txn&)>& b) { return inner_->Update(b); });
  }
  Status View(const std::function<Status(Txn&)>& body) override {
    return Measure("view", body,
                   [this](const std::function<Status(Txn&)>& b) { return inner_->View(b); });
  }
  Status Sync() override { return inner_->Sync(); }
  std::string Name() const override { return inner_->Name(); }
  EngineStats Stats() const override { return inner_->Stats(); }
  Status Reset() override { return inner_->Reset(); }
  Status Compact() override { return inner_->Compact(); }
  bool DefersExpectedReads() const override { return inner_->DefersExpectedReads(); }
  bool SingleProcess() const override { return inner_->SingleProcess(); }
  bool OneWriterAtATime() const override { return inner_->OneWriterAtATime(); }
  bool Embedded() const override { return inner_->Embedded(); }

 private:
  template <typename Run>
  Status Measure(const char* kind, const std::function<Status(Txn&)>& body, Run run) {
    TxnMetrics& m = MetricsFor(kind);
    int attempts = 0;
    int64_t start = MonoNanos();
    Status s = run([&](Txn& txn) {
      ++attempts;
      return body(txn);
    });
    m.latency->ObserveNanos(MonoNanos() - start);
    m.txns->Inc();
    if (attempts > 1) m.retries->Inc(static_cast<uint64_t>(attempts - 1));
    if (!s.ok()) m.failures->Inc();
    return s;
  }

  std::unique_ptr<Engine> inner_;
};

}  // namespace

std::unique_ptr<Engine> NewMeteredEngine(std::unique_ptr<Engine> inner) {
  return std::make_unique<MeteredEngine>(std::move(inner));
}

}  // namespace nexus::kv
