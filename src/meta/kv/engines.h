// Constructors of the engine implementations and helpers they share; only engine.cc and the
// engines include this header. Callers use kv::Engine::Open.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/encoding.h"
#include "common/status.h"
#include "meta/kv/engine.h"

namespace nexus {
struct Url;
}

namespace nexus::kv {

Result<std::unique_ptr<Engine>> OpenMemory();
// redis://[USER:PASS@]HOST:PORT/DB and postgres://USER:PASS@HOST:PORT/DB (password also from
// META_PASSWORD).
Result<std::unique_ptr<Engine>> OpenRedis(const Url& url);
Result<std::unique_ptr<Engine>> OpenPostgres(const Url& url);
Result<std::unique_ptr<Engine>> OpenRocksDB(const std::string& path);
Result<std::unique_ptr<Engine>> OpenSQLite(const std::string& path);
// etcd://[USER[:PASS]@]HOST:PORT[,HOST:PORT...]/PREFIX[?timeout=SECONDS] (password also from
// META_PASSWORD), over etcd's v3 HTTP/JSON gateway.
Result<std::unique_ptr<Engine>> OpenEtcd(const Url& url);

// Counters: 8-byte little-endian two's complement.
std::string EncodeCounter(int64_t v);
int64_t DecodeCounter(std::string_view in);

// Bounded retries with jittered exponential backoff for optimistic transactions.
class Backoff {
 public:
  static constexpr int kMaxAttempts = 50;
  // Sleeps before attempt `attempt` (1-based; attempt 1 does not sleep).
  static void Wait(int attempt);
};

}  // namespace nexus::kv
