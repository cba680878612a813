// mem://: objects in a map, for tests. Same semantics as every other store.
#include <map>
#include <mutex>

#include "common/clock.h"
#include "object/stores.h"

namespace nexus::object {
namespace {

class MemStore final : public ObjectStore {
 public:
  Status Put(std::string_view key, std::string_view data) override {
    NX_TRY(ValidateKey(key));
    std::lock_guard lock(mu_);
    objects_.insert_or_assign(std::string(key), Object{std::string(data), NowNanos()});
    return Status::OK();
  }
  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    NX_TRY(ValidateKey(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Err(ENOENT, "get " + std::string(key) + ": no such object");
    const std::string& d = it->second.data;
    if (off >= d.size()) return std::string();
    return d.substr(off, std::min<uint64_t>(len, d.size() - off));
  }
  Result<ObjectInfo> Head(std::string_view key) override {
    NX_TRY(ValidateKey(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Err(ENOENT, "head " + std::string(key) + ": no such object");
    return ObjectInfo{it->first, it->second.data.size(), it->second.mtime};
  }
  Status Delete(std::string_view key) override {
    NX_TRY(ValidateKey(key));
    std::lock_guard lock(mu_);
    objects_.erase(std::string(key));
    return Status::OK();
  }
  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    std::lock_guard lock(mu_);
    ListResult out;
    auto it = marker.empty() ? objects_.lower_bound(prefix) : objects_.upper_bound(marker);
    if (it != objects_.end() && it->first < prefix) it = objects_.lower_bound(prefix);
    for (; it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      if (limit && out.objects.size() >= limit) {
        out.next_marker = out.objects.back().key;
        break;
      }
      out.objects.push_back(ObjectInfo{it->first, it->second.data.size(), it->second.mtime});
    }
    return out;
  }
  std::string Name() const override { return "mem://"; }

 private:
  struct Object {
    std::string data;
    int64_t mtime;
  };
  std::mutex mu_;
  std::map<std::string, Object, std::less<>> objects_;
};

}  // namespace

std::unique_ptr<ObjectStore> NewMemStore() { return std::make_unique<MemStore>(); }

}  // namespace nexus::object
