// A transaction that buffers its writes over a base reader and merges them into every read and
// scan (read-your-writes). Engines that apply a write set at commit build on it.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "meta/kv/engine.h"

namespace nexus::kv {

class BufferedTxn : public Txn {
 public:
  using WriteSet = std::map<std::string, std::optional<std::string>, std::less<>>;
  using Visitor = std::function<bool(std::string_view, std::string_view)>;

  explicit BufferedTxn(bool read_only) : read_only_(read_only) {}

  Result<std::optional<std::string>> Get(std::string_view key) final;
  Status Put(std::string_view key, std::string_view value) final;
  Status Delete(std::string_view key) final;
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const Visitor& visit) final;

  const WriteSet& writes() const { return writes_; }

 protected:
  // Reads the committed state the transaction started from.
  virtual Result<std::optional<std::string>> BaseGet(std::string_view key) = 0;
  // Visits committed keys in [begin, end) in order until `visit` returns false.
  virtual Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) = 0;
  // Called by Scan before it merges: an engine may turn pending state for keys in the range
  // into buffered writes here (etcd's deferred Adds).
  virtual Status BeforeScan(std::string_view /*begin*/, std::string_view /*end*/) {
    return Status::OK();
  }

 private:
  bool read_only_;
  WriteSet writes_;
};

}  // namespace nexus::kv
