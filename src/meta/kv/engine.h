// The whole contract a metadata engine implements: ordered keys and values with atomic,
// isolated transactions. Meta is written once over this interface (docs/architecture.md).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace nexus::kv {

// A transaction's view of the engine. Reads see the transaction's own writes. Inside
// Engine::Update, a read of a key makes the transaction conflict if another transaction commits
// a write to that key before this one commits (serializable for point reads). Scans do not
// register what they saw: a transaction that must conflict with changes inside a range also
// reads a key that every such change writes (Meta reads the directory's attributes).
class Txn {
 public:
  virtual ~Txn() = default;

  // The value of `key`, or std::nullopt when it is absent.
  virtual Result<std::optional<std::string>> Get(std::string_view key) = 0;
  // Values for several keys at once, in the order of `keys`.
  virtual Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys);
  // MultiGet for keys whose values the caller read moments ago (`expected`, e.g. in a View just
  // before): an engine that can check values at commit (Redis) returns `expected` without asking
  // the server and makes the commit verify that every key still holds it -- a conflict
  // otherwise, and the body runs again, when it should read normally. A body that fails is
  // judged the same way. The default reads (MultiGet).
  virtual Result<std::vector<std::optional<std::string>>> MultiGetExpecting(
      const std::vector<std::string>& keys,
      const std::vector<std::optional<std::string>>& expected);
  virtual Status Put(std::string_view key, std::string_view value) = 0;
  virtual Status Delete(std::string_view key) = 0;
  // Visits keys in [begin, end) in ascending order until `visit` returns false or `limit` keys
  // were visited (limit 0 = no limit). An empty `end` means "to the end of the key space".
  virtual Status Scan(
      std::string_view begin, std::string_view end, size_t limit,
      const std::function<bool(std::string_view key, std::string_view value)>& visit) = 0;

  // Scan of every key starting with `prefix`.
  Status ScanPrefix(std::string_view prefix, size_t limit,
                    const std::function<bool(std::string_view, std::string_view)>& visit);
  // Adds `delta` to a little-endian 8-byte counter at `key` (absent = 0) and returns the new
  // value. Engines may override it with a native increment.
  virtual Result<int64_t> Increment(std::string_view key, int64_t delta);
  // Adds `delta` to the same kind of counter without putting it in the transaction's read set:
  // concurrent Adds to one key never conflict with each other (usage counters touched by every
  // create). Engines with a native atomic add override it; the default is Increment.
  virtual Status Add(std::string_view key, int64_t delta);
};

struct EngineStats {
  uint64_t txns = 0;       // transactions committed
  uint64_t conflicts = 0;  // bodies re-run after a conflict
  uint64_t failures = 0;   // transactions that gave up (retry bound or error)
  // Request/response exchanges with the server (a pipeline of commands sent together and
  // answered together counts once); 0 for engines that do not count them (embedded ones).
  uint64_t round_trips = 0;
  // Snapshots the engine holds open now (RocksDB; 0 elsewhere): nonzero between transactions
  // would keep old versions from being compacted away.
  uint64_t open_snapshots = 0;
  // Point reads answered by the engine's own value cache, and those it had to pass on (RocksDB;
  // 0 elsewhere).
  uint64_t cache_hits = 0, cache_misses = 0;
  // Transactions that wrote something (RocksDB, mem; 0 elsewhere): txns minus the Updates whose
  // body changed nothing.
  uint64_t writes = 0;
};

class Engine {
 public:
  // Opens an engine by URL: "rocksdb:///var/lib/nexusfs/meta", "sqlite3:///path/meta.db",
  // "mem://" (a fresh in-process store), and later redis://, postgres://, etcd://. A URL without
  // a scheme is a path for the embedded default (RocksDB). Errors name the URL (password
  // redacted) and the reason.
  static Result<std::unique_ptr<Engine>> Open(std::string_view url);

  virtual ~Engine() = default;

  // Runs `body` in a read-write transaction and commits it. On a conflict the body runs again
  // after a jittered backoff, up to a bound (then Status::Busy naming the attempts). `body` may
  // run several times, so it must have no side effects outside `txn` other than resetting and
  // filling its own outputs. A non-OK Status from `body` aborts the transaction and is
  // returned as is. A committed transaction survives a kill -9 of the process. `body` must not
  // call Update or View of the same engine: mem:// and sqlite3:// serialize writers with a
  // lock that such a call would wait for.
  virtual Status Update(const std::function<Status(Txn&)>& body) = 0;
  // Runs `body` over a consistent read-only snapshot: every read in it, point or scan, sees the
  // same committed state. Writes inside it fail with EROFS. `body` may run again when the
  // engine must retry the read (SQLite: SQLITE_BUSY), so it fills its outputs afresh each time;
  // a non-OK Status from it is returned as is.
  virtual Status View(const std::function<Status(Txn&)>& body) = 0;
  // Makes every committed transaction durable against power loss (syncs the engine's log);
  // what survives without it is in docs/engines.md.
  virtual Status Sync() = 0;
  // Human-readable engine name and location, password redacted: "rocksdb:///x/meta".
  virtual std::string Name() const = 0;
  virtual EngineStats Stats() const { return {}; }
  // True when Txn::MultiGetExpecting saves a round trip (the caller may then keep values it read
  // to pass as expectations later).
  virtual bool DefersExpectedReads() const { return false; }
  // True when no other process can open this store while the engine has it open (RocksDB's
  // lock file; mem://): every client of it lives in this process.
  virtual bool SingleProcess() const { return false; }
  // True when Update bodies never overlap: each runs alone and reads what every earlier Update
  // committed (RocksDB's and mem's writers take turns). An Update that writes nothing then still
  // orders its reads against every other Update.
  virtual bool OneWriterAtATime() const { return false; }
  // True when transactions run inside this process, with no server to wait for (RocksDB,
  // SQLite, mem): a metadata request then takes microseconds, and the FUSE loop serves it in
  // the thread that read it (fuse/request_loop.h).
  virtual bool Embedded() const { return false; }
  // Deletes every key (for tests and `destroy`).
  virtual Status Reset();
  // Compacts the engine's storage (RocksDB: a full manual compaction), e.g. after a bulk load;
  // a no-op for engines where it does not apply.
  virtual Status Compact() { return Status::OK(); }
};

}  // namespace nexus::kv
