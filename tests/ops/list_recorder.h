// A real ObjectStore decorator for tests: passes every request to the store below and
// remembers the prefix of every List (to show which listings an operation made).
#pragma once

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "object/object_store.h"

namespace nexus::test {

// Passes every request to the store below and remembers the prefix of every List.
class ListRecorder : public object::ObjectStore {
 public:
  explicit ListRecorder(object::ObjectStore* inner) : inner_(inner) {}
  Status Put(std::string_view k, std::string_view d) override { return inner_->Put(k, d); }
  Result<std::string> Get(std::string_view k, uint64_t off, uint64_t len) override {
    return inner_->Get(k, off, len);
  }
  Result<object::ObjectInfo> Head(std::string_view k) override { return inner_->Head(k); }
  Status Delete(std::string_view k) override { return inner_->Delete(k); }
  Result<object::ListResult> List(std::string_view prefix, std::string_view marker,
                                  size_t limit) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      prefixes_.emplace_back(prefix);
    }
    return inner_->List(prefix, marker, limit);
  }
  std::string Name() const override { return inner_->Name(); }

  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(prefixes_, {});
  }

 private:
  object::ObjectStore* inner_;
  std::mutex mu_;
  std::vector<std::string> prefixes_;
};

// True for "<vol>/chunks/<a>/<b>/" and "<vol>/chunks/<a>/<b>/<id>_": one 1000-id directory of
// blocks or narrower (never the whole bucket or the whole chunks/ tree).
inline bool NarrowBlockPrefix(const std::string& p) {
  size_t slashes = 0;
  for (char c : p) slashes += c == '/';
  return slashes == 4 && p.find("/chunks/") != std::string::npos;
}

}  // namespace nexus::test
