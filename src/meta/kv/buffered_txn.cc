#include "meta/kv/buffered_txn.h"

namespace nexus::kv {

Result<std::optional<std::string>> BufferedTxn::Get(std::string_view key) {
  if (auto it = writes_.find(key); it != writes_.end()) return it->second;
  return BaseGet(key);
}

Status BufferedTxn::Put(std::string_view key, std::string_view value) {
  if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
  writes_.insert_or_assign(std::string(key), std::string(value));
  return Status::OK();
}

Status BufferedTxn::Delete(std::string_view key) {
  if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
  writes_.insert_or_assign(std::string(key), std::nullopt);
  return Status::OK();
}

Status BufferedTxn::Scan(std::string_view begin, std::string_view end, size_t limit,
                         const Visitor& visit) {
  NX_TRY(BeforeScan(begin, end));
  // Merge the base scan with the buffered writes in key order; buffered entries win.
  auto wit = writes_.lower_bound(begin);
  auto in_range = [&](const std::string& k) { return end.empty() || k < end; };
  size_t seen = 0;
  bool stopped = false;
  auto emit = [&](std::string_view k, std::string_view v) {
    if (limit && seen >= limit) return false;
    ++seen;
    if (!visit(k, v)) return false;
    return !(limit && seen >= limit);
  };
  Status s = BaseScan(begin, end, [&](std::string_view k, std::string_view v) {
    while (wit != writes_.end() && in_range(wit->first) && wit->first < k) {
      if (wit->second && !emit(wit->first, *wit->second)) return stopped = true, false;
      ++wit;
    }
    if (wit != writes_.end() && wit->first == k) {
      auto cur = wit++;
      if (!cur->second) return true;  // deleted in this txn
      if (!emit(k, *cur->second)) return stopped = true, false;
      return true;
    }
    if (!emit(k, v)) return stopped = true, false;
    return true;
  });
  if (!s.ok() || stopped) return s;
  for (; wit != writes_.end() && in_range(wit->first); ++wit) {
    if (wit->second && !emit(wit->first, *wit->second)) break;
  }
  return Status::OK();
}

}  // namespace nexus::kv
