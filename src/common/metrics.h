// Metrics: counters, gauges and latency histograms in one registry, exposed in the Prometheus
// text format (version 0.0.4) by `.stats` and `nexusfs mount --metrics ADDR`.
//
// Contract:
//  - Updating a metric is lock-free (relaxed atomics) and allocation-free, so every FUSE
//    operation may do it: hold the Counter&/Histogram& returned by a family's Get() and update it.
//  - Family::Get(labels) takes a mutex and may allocate; call it once and keep the reference
//    (references stay valid for the registry's lifetime).
//  - Histograms have fixed log-scale buckets: 1 µs * 2^k, k = 0..kBuckets-2, then +Inf.
//  - Collectors are callbacks run at exposition time for values another component already
//    keeps (cache statistics, engine counters); they are removed with the returned id before
//    what they read is destroyed.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace nexus::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { v_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { v_.fetch_add(d, std::memory_order_relaxed); }
  int64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  static constexpr int kBuckets = 26;  // 1 µs .. ~16.8 s, then +Inf
  // Upper bound of bucket `i` in seconds (+Inf for the last).
  static double UpperBound(int i);

  void ObserveNanos(int64_t ns);
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  // Sum of the observations in seconds.
  double Sum() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9; }
  // Non-cumulative count of bucket `i`.
  uint64_t Bucket(int i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

// Times a scope into a histogram (and nothing else).
class ScopedTimer {
 public:
  explicit ScopedTimer(Histogram& h);
  ~ScopedTimer();
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

 private:
  Histogram& h_;
  int64_t start_;
};

// The operation this thread serves now (the FUSE adapter sets it), so that lower layers can
// label their metrics by it; "other" outside one (background work, commands).
const char* CurrentOp();
class CurrentOpScope {
 public:
  explicit CurrentOpScope(const char* op);
  ~CurrentOpScope();
  CurrentOpScope(const CurrentOpScope&) = delete;
  CurrentOpScope& operator=(const CurrentOpScope&) = delete;

 private:
  const char* prev_;
};

enum class Type { kCounter, kGauge, kHistogram };

// Writes samples for collectors: Sample("name", {{"k","v"}}, value).
class Writer {
 public:
  // Starts a metric: its "# HELP" and "# TYPE" lines (once per name per exposition).
  void Header(std::string_view name, std::string_view help, Type type);
  void Sample(std::string_view name, const Labels& labels, double value);
  void Sample(std::string_view name, double value) { Sample(name, {}, value); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  std::vector<std::string> seen_;
};

template <typename T>
class Family;

class Registry {
 public:
  // The registry of this process (a mount serves one volume per process).
  static Registry& Default();

  Family<Counter>& CounterFamily(std::string name, std::string help,
                                 std::vector<std::string> label_names = {});
  Family<Gauge>& GaugeFamily(std::string name, std::string help,
                             std::vector<std::string> label_names = {});
  Family<Histogram>& HistogramFamily(std::string name, std::string help,
                                     std::vector<std::string> label_names = {});

  // Adds a callback run by Expose(); returns an id for RemoveCollector.
  uint64_t AddCollector(std::function<void(Writer&)> collect);
  void RemoveCollector(uint64_t id);

  // Every family, then every collector, in Prometheus text format.
  std::string Expose() const;

  // The common part of Family<T> (public so that Family can derive from it).
  struct FamilyBase;

 private:
  template <typename T>
  Family<T>& Add(std::string name, std::string help, std::vector<std::string> label_names,
                 Type type);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::map<uint64_t, std::function<void(Writer&)>> collectors_;
  uint64_t next_collector_ = 1;
};

struct Registry::FamilyBase {
  virtual ~FamilyBase() = default;
  virtual void Write(Writer& w) const = 0;
  std::string name, help;
  std::vector<std::string> label_names;
  Type type = Type::kCounter;
};

template <typename T>
class Family final : public Registry::FamilyBase {
 public:
  // The metric with these label values (one per label name, in order); created on first use.
  T& Get(const std::vector<std::string>& values = {});
  void Write(Writer& w) const override;

 private:
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> metrics_;
};

// One parsed sample of the text format: `name{k="v",...} value`.
struct ParsedSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses Prometheus text (comments skipped); EINVAL naming the line when one is malformed.
Result<std::vector<ParsedSample>> ParseText(std::string_view text);

// Sum of the samples named `name` whose labels include every pair of `match`.
double SumOf(const std::vector<ParsedSample>& samples, std::string_view name,
             const std::map<std::string, std::string>& match = {});

// Cumulative histogram buckets: (upper bound in seconds, observations <= it), ascending.
using Buckets = std::vector<std::pair<double, double>>;
// The `<name>_bucket` samples whose labels include `match`, summed over the other labels.
Buckets BucketsOf(const std::vector<ParsedSample>& samples, std::string_view name,
                  const std::map<std::string, std::string>& match = {});
// `a - b` bucket by bucket (for the observations between two scrapes); same bounds required.
Buckets Subtract(const Buckets& a, const Buckets& b);
// The `q` quantile (0..1) in seconds, interpolated within its bucket; 0 when empty.
double Quantile(const Buckets& buckets, double q);

}  // namespace nexus::metrics
