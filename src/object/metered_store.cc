#include "object/metered_store.h"

#include "common/clock.h"
#include "common/metrics.h"

namespace nexus::object {
namespace {

struct OpMetrics {
  explicit OpMetrics(const char* op) {
    auto& r = metrics::Registry::Default();
    requests = &r.CounterFamily("nexusfs_object_requests_total",
                                "Object store requests, by operation.", {"op"})
                    .Get({op});
    errors = &r.CounterFamily("nexusfs_object_request_errors_total",
                              "Object store requests that failed (a missing key included).", {"op"})
                  .Get({op});
    bytes = &r.CounterFamily("nexusfs_object_bytes_total",
                             "Object bytes sent (put) and received (get).", {"op"})
                 .Get({op});
    latency = &r.HistogramFamily("nexusfs_object_request_duration_seconds",
                                 "Object store request latency, by operation.", {"op"})
                   .Get({op});
    inflight = &r.GaugeFamily("nexusfs_object_requests_inflight",
                              "Object store requests running now (put: block uploads).", {"op"})
                    .Get({op});
  }
  metrics::Counter* requests;
  metrics::Counter* errors;
  metrics::Counter* bytes;
  metrics::Histogram* latency;
  metrics::Gauge* inflight;
};

// Times one request; Done() records its outcome.
class Request {
 public:
  explicit Request(OpMetrics& m) : m_(m), start_(MonoNanos()) {
    m_.requests->Inc();
    m_.inflight->Add(1);
  }
  void Done(bool ok, uint64_t bytes) {
    m_.inflight->Add(-1);
    m_.latency->ObserveNanos(MonoNanos() - start_);
    if (!ok) m_.errors->Inc();
    if (bytes) m_.bytes->Inc(bytes);
  }

 private:
  OpMetrics& m_;
  int64_t start_;
};

class MeteredStore final : public ObjectStore {
 public:
  explicit MeteredStore(std::unique_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

  Status Put(std::string_view key, std::string_view data) override {
    Request r(put_);
    Status s = inner_->Put(key, data);
    r.Done(s.ok(), s.ok() ? data.size() : 0);
    return s;
  }
  Status PutParts(std::string_view key, std::span<const std::string_view> parts) override {
    Request r(put_);
    Status s = inner_->PutParts(key, parts);
    uint64_t bytes = 0;
    for (std::string_view p : parts) bytes += p.size();
    r.Done(s.ok(), s.ok() ? bytes : 0);
    return s;
  }
  // A commit counts as one put of the object's bytes, timed from the Commit call.
  std::unique_ptr<ObjectWriter> NewWriter(std::string_view key, uint64_t size) override {
    auto inner = inner_->NewWriter(key, size);
    if (!inner) return nullptr;
    return std::make_unique<Writer>(std::move(inner), put_, size);
  }
  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    Request r(get_);
    auto v = inner_->Get(key, off, len);
    r.Done(v.has_value(), v ? v->size() : 0);
    return v;
  }
  Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) override {
    Request r(get_);
    Status s = inner_->GetInto(key, off, len, out);
    r.Done(s.ok(), s.ok() ? out->size() : 0);
    return s;
  }
  Status ReadTo(std::string_view key, uint64_t off, size_t len, char* out) override {
    Request r(get_);
    Status s = inner_->ReadTo(key, off, len, out);
    r.Done(s.ok(), s.ok() ? len : 0);
    return s;
  }
  Result<MappedRange> MapRange(std::string_view key, uint64_t off, size_t len) override {
    Request r(get_);
    auto m = inner_->MapRange(key, off, len);
    r.Done(m.has_value(), m ? len : 0);
    return m;
  }
  bool ReadsLocally() const override { return inner_->ReadsLocally(); }
  void WillRead(std::string_view key, uint64_t off, uint64_t len) override {
    inner_->WillRead(key, off, len);
  }
  Result<ObjectInfo> Head(std::string_view key) override {
    Request r(head_);
    auto v = inner_->Head(key);
    r.Done(v.has_value(), 0);
    return v;
  }
  Status Delete(std::string_view key) override {
    Request r(delete_);
    Status s = inner_->Delete(key);
    r.Done(s.ok(), 0);
    return s;
  }
  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    Request r(list_);
    auto v = inner_->List(prefix, marker, limit);
    r.Done(v.has_value(), 0);
    return v;
  }
  Status SweepLeftovers(std::string_view prefix, int64_t older_than_ns, bool remove,
                        Leftovers* found) override {
    return inner_->SweepLeftovers(prefix, older_than_ns, remove, found);
  }

  std::string Name() const override { return inner_->Name(); }

 private:
  class Writer final : public ObjectWriter {
   public:
    Writer(std::unique_ptr<ObjectWriter> inner, OpMetrics& m, uint64_t size)
        : inner_(std::move(inner)), m_(m), size_(size) {}
    Status Append(std::string_view data) override { return inner_->Append(data); }
    Status WriteAt(uint64_t off, std::string_view data) override {
      return inner_->WriteAt(off, data);
    }
    Status ReadAt(uint64_t off, size_t len, char* out) override {
      return inner_->ReadAt(off, len, out);
    }
    uint64_t size() const override { return inner_->size(); }
    Status Commit() override {
      Request r(m_);
      Status s = inner_->Commit();
      r.Done(s.ok(), s.ok() ? size_ : 0);
      return s;
    }

   private:
    std::unique_ptr<ObjectWriter> inner_;
    OpMetrics& m_;
    const uint64_t size_;
  };
  std::unique_ptr<ObjectStore> inner_;
  OpMetrics put_{"put"}, get_{"get"}, head_{"head"}, delete_{"delete"}, list_{"list"};
};

}  // namespace

std::unique_ptr<ObjectStore> NewMeteredStore(std::unique_ptr<ObjectStore> inner) {
  return std::make_unique<MeteredStore>(std::move(inner));
}

}  // namespace nexus::object
