#include "meta/kv/engine.h"

#include <cstring>

#include "common/url.h"
#include "meta/kv/engines.h"

namespace nexus::kv {

Result<std::vector<std::optional<std::string>>> Txn::MultiGetExpecting(
    const std::vector<std::string>& keys, const std::vector<std::optional<std::string>>&) {
  return MultiGet(keys);
}

Result<std::vector<std::optional<std::string>>> Txn::MultiGet(
    const std::vector<std::string>& keys) {
  std::vector<std::optional<std::string>> out;
  out.reserve(keys.size());
  for (const auto& k : keys) {
    NX_ASSIGN_OR_RETURN(auto v, Get(k));
    out.push_back(std::move(v));
  }
  return out;
}

Status Txn::ScanPrefix(std::string_view prefix, size_t limit,
                       const std::function<bool(std::string_view, std::string_view)>& visit) {
  return Scan(prefix, PrefixEnd(prefix), limit, visit);
}

Result<int64_t> Txn::Increment(std::string_view key, int64_t delta) {
  NX_ASSIGN_OR_RETURN(auto cur, Get(key));
  int64_t v = cur ? DecodeCounter(*cur) : 0;
  v += delta;
  NX_TRY(Put(key, EncodeCounter(v)));
  return v;
}

Status Txn::Add(std::string_view key, int64_t delta) {
  auto r = Increment(key, delta);
  return r ? Status::OK() : r.error();
}

Status Engine::Reset() {
  // Deletes in bounded batches so that a large engine does not need one huge transaction.
  for (;;) {
    size_t deleted = 0;
    NX_TRY(Update([&](Txn& txn) -> Status {
      deleted = 0;
      std::vector<std::string> keys;
      NX_TRY(txn.Scan("", "", 10000, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      }));
      for (const auto& k : keys) NX_TRY(txn.Delete(k));
      deleted = keys.size();
      return Status::OK();
    }));
    if (deleted == 0) return Status::OK();
  }
}

std::string EncodeCounter(int64_t v) {
  std::string s(8, '\0');
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i, u >>= 8) s[i] = static_cast<char>(u & 0xff);
  return s;
}

int64_t DecodeCounter(std::string_view in) {
  if (in.size() < 8) return 0;
  uint64_t u = 0;
  for (int i = 7; i >= 0; --i) u = (u << 8) | static_cast<uint8_t>(in[i]);
  return static_cast<int64_t>(u);
}

Result<std::unique_ptr<Engine>> Engine::Open(std::string_view url) {
  auto u = Url::Parse(url);
  if (!u) return Err(u.error().With("metadata engine URL '" + std::string(url) + "'"));
  const std::string& scheme = u->scheme;
  if (scheme.empty() || scheme == "rocksdb") {
    std::string path = scheme.empty() ? u->path : u->host + u->path;
    if (path.empty()) return Err(EINVAL, "metadata engine URL '" + u->Redacted() + "' has no path");
    return OpenRocksDB(path);
  }
  if (scheme == "sqlite3" || scheme == "sqlite") {
    std::string path = u->host + u->path;
    if (path.empty()) return Err(EINVAL, "metadata engine URL '" + u->Redacted() + "' has no path");
    return OpenSQLite(path);
  }
  if (scheme == "mem" || scheme == "memkv") return OpenMemory();
  if (scheme == "redis" || scheme == "rediss") return OpenRedis(*u);
  if (scheme == "postgres" || scheme == "postgresql") return OpenPostgres(*u);
  if (scheme == "etcd") return OpenEtcd(*u);
  return Err(EINVAL, "unknown metadata engine '" + scheme + "' in '" + u->Redacted() +
                         "' (supported: rocksdb, sqlite3, mem)");
}

}  // namespace nexus::kv
