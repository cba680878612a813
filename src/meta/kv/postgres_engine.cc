// postgres://USER:PASS@HOST:PORT/DB[?sslmode=...] (also postgresql://): one table
// nexus_kv(k BYTEA PRIMARY KEY, v BYTEA NOT NULL); bytea compares byte by byte, so the primary
// key index gives range scans in key order.
//
// Update runs the body in a SERIALIZABLE transaction: every read and write goes to the server
// as it happens (PostgreSQL gives read-your-writes), and serializable snapshot isolation makes
// point reads, scans and absent keys conflict-checked; a serialization failure or deadlock
// (SQLSTATE 40001, 40P01), at any statement or at COMMIT, runs the body again after a jittered
// backoff. View runs in REPEATABLE READ READ ONLY: one snapshot for every read.
//
// Server outages: a lost connection, or a server that is shutting down or starting up (SQLSTATE
// classes 08 and 57P), retries the attempt on a new connection for up to kOutageWait. A COMMIT
// whose reply was lost is resolved with txid_status() of the transaction's id, which the
// engine fetched in the same round trip as the COMMIT.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "common/url.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using Clock = std::chrono::steady_clock;
using Visitor = std::function<bool(std::string_view, std::string_view)>;
constexpr auto kOutageWait = std::chrono::seconds(30);
constexpr size_t kMaxIdle = 32;

struct ResFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Res = std::unique_ptr<PGresult, ResFree>;

struct PgConfig {
  std::vector<std::pair<std::string, std::string>> params;  // libpq keywords and values
  std::string name;                                         // redacted URL
};

struct Param {
  std::string_view data;
  bool binary = true;
};

const struct {
  const char* name;
  const char* sql;
  int nparams;
} kStatements[] = {
    {"get", "SELECT v FROM nexus_kv WHERE k = $1", 1},
    {"put",
     "INSERT INTO nexus_kv(k, v) VALUES($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", 2},
    {"del", "DELETE FROM nexus_kv WHERE k = $1", 1},
    // Two scan statements so that both bounds are index conditions (as in the SQLite engine).
    {"scan", "SELECT k, v FROM nexus_kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3::int", 3},
    {"scan_tail", "SELECT k, v FROM nexus_kv WHERE k >= $1 ORDER BY k LIMIT $2::int", 2},
};

class PgConn {
 public:
  explicit PgConn(const PgConfig* cfg) : cfg_(cfg) {}
  ~PgConn() {
    if (c_) PQfinish(c_);
  }

  Status Connect() {
    std::vector<const char*> keys, values;
    for (const auto& [k, v] : cfg_->params) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    c_ = PQconnectdbParams(keys.data(), values.data(), 0);
    if (!c_ || PQstatus(c_) != CONNECTION_OK) {
      std::string why = c_ ? PQerrorMessage(c_) : "out of memory";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      // libpq's multi-line messages ("...failed: Connection refused\n\tIs the server
      // running...") become one line.
      for (size_t at; (at = why.find("\n\t")) != std::string::npos;) why.replace(at, 2, " ");
      std::replace(why.begin(), why.end(), '\n', ' ');
      // A refused or reset connection may be a restarting server; a rejected login is final.
      bool auth = why.find("authentication") != std::string::npos ||
                  why.find("password") != std::string::npos ||
                  why.find("does not exist") != std::string::npos;
      unavailable_ = !auth;
      return Status::IOError("postgres " + cfg_->name + " connect: " + why);
    }
    // Server notices (e.g. "terminating connection due to administrator command") would go to
    // stderr; the errors that matter come back as results.
    PQsetNoticeProcessor(
        c_, [](void*, const char*) {}, nullptr);
    return Status::OK();
  }

  // Creates the tables (first connection of an engine) and prepares the statements.
  Status Prepare(bool create_tables) {
    if (create_tables) {
      NX_TRY(
          Simple("CREATE TABLE IF NOT EXISTS nexus_kv(k BYTEA PRIMARY KEY, v BYTEA NOT NULL);"
                 "CREATE TABLE IF NOT EXISTS nexus_sync(id INT PRIMARY KEY, n BIGINT NOT NULL)",
                 "create tables"));
    }
    for (const auto& st : kStatements) {
      Res r(PQprepare(c_, st.name, st.sql, st.nparams, nullptr));
      NX_TRY(Check(r.get(), std::string("prepare ") + st.name));
    }
    return Status::OK();
  }

  // Runs a prepared statement with binary results.
  Result<Res> Exec(const char* stmt, std::initializer_list<Param> params) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& p : params) {
      values.push_back(p.data.data());
      lengths.push_back(static_cast<int>(p.data.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    Res r(PQexecPrepared(c_, stmt, static_cast<int>(values.size()), values.data(), lengths.data(),
                         formats.data(), 1));
    NX_TRY(Check(r.get(), stmt));
    return r;
  }

  // Runs SQL text (one or more statements); OK when every result is.
  Status Simple(const char* sql, std::string_view what) {
    Res r(PQexec(c_, sql));
    return Check(r.get(), what);
  }

  // The first column of the first row of `sql`, as text ("" when there is no row).
  Result<std::string> Scalar(const char* sql, std::string_view what) {
    Res r(PQexec(c_, sql));
    NX_TRY(Check(r.get(), what));
    if (PQntuples(r.get()) == 0) return std::string();
    return std::string(PQgetvalue(r.get(), 0, 0));
  }

  // Sends "SELECT txid_current(); COMMIT" and reads both results. *xid is set as soon as it
  // is known, so that a lost COMMIT reply can be resolved.
  Status Commit(int64_t* xid) {
    *xid = 0;
    if (!PQsendQuery(c_, "SELECT txid_current(); COMMIT")) return Check(nullptr, "commit");
    Status s;
    bool first = true;
    while (PGresult* raw = PQgetResult(c_)) {
      Res r(raw);
      Status rs = Check(r.get(), "commit");
      if (first && rs.ok() && PQntuples(r.get()) == 1) {
        *xid = std::strtoll(PQgetvalue(r.get(), 0, 0), nullptr, 10);
      }
      first = false;
      if (s.ok()) s = rs;
    }
    if (s.ok() && PQstatus(c_) == CONNECTION_BAD) s = Check(nullptr, "commit");
    return s;
  }

  // Maps a result to a Status: OK, a conflict (40001, 40P01), an outage (marks the
  // connection unavailable), or an error naming the statement.
  Status Check(PGresult* r, std::string_view what) {
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Status::OK();
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string code = state ? state : "";
    std::string msg = r ? PQresultErrorMessage(r) : "";
    if (msg.empty()) msg = PQerrorMessage(c_);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    std::string text = "postgres " + cfg_->name + " " + std::string(what) + ": " + msg;
    if (code == "40001" || code == "40P01") return Status::Conflict(text);
    if (PQstatus(c_) == CONNECTION_BAD || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) {
      unavailable_ = true;
      return Status::IOError(text);
    }
    if (code == "53100") return Status::NoSpace(text);
    if (code == "25006") return Status::Errno(EROFS, text);
    return Status::IOError(text);
  }

  bool unavailable() const { return unavailable_; }
  bool idle() const { return PQtransactionStatus(c_) == PQTRANS_IDLE; }
  const PgConfig& cfg() const { return *cfg_; }

 private:
  const PgConfig* cfg_;
  PGconn* c_ = nullptr;
  bool unavailable_ = false;
};

std::string_view Value(PGresult* r, int row, int col) {
  return std::string_view(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}

class PgTxn final : public Txn {
 public:
  PgTxn(PgConn* c, bool read_only) : c_(c), read_only_(read_only) {}

  Result<std::optional<std::string>> Get(std::string_view key) override {
    NX_ASSIGN_OR_RETURN(Res r, c_->Exec("get", {{key}}));
    if (PQntuples(r.get()) == 0) return std::optional<std::string>();
    return std::optional<std::string>(std::string(Value(r.get(), 0, 0)));
  }
  Status Put(std::string_view key, std::string_view value) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    wrote_ = true;
    auto r = c_->Exec("put", {{key}, {value}});
    return r ? Status::OK() : r.error();
  }
  Status Delete(std::string_view key) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    wrote_ = true;
    auto r = c_->Exec("del", {{key}});
    return r ? Status::OK() : r.error();
  }
  // Reads batches of rows and visits each batch after its statement finished, so that the
  // visitor may read and write through the same transaction.
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const Visitor& visit) override {
    std::string from(begin);
    size_t seen = 0, batch = 64;
    for (;;) {
      size_t want = limit ? std::min(batch, limit - seen) : batch;
      std::string n = std::to_string(want);
      Res r;
      if (end.empty()) {
        NX_ASSIGN_OR_RETURN(r, c_->Exec("scan_tail", {{from}, {n, false}}));
      } else {
        NX_ASSIGN_OR_RETURN(r, c_->Exec("scan", {{from}, {end}, {n, false}}));
      }
      const int rows = PQntuples(r.get());
      for (int i = 0; i < rows; ++i) {
        ++seen;
        if (!visit(Value(r.get(), i, 0), Value(r.get(), i, 1))) return Status::OK();
        if (limit && seen >= limit) return Status::OK();
      }
      if (static_cast<size_t>(rows) < want) return Status::OK();
      from = std::string(Value(r.get(), rows - 1, 0));
      from.push_back('\0');  // the smallest key after the last one visited
      batch = std::min<size_t>(batch * 4, 1024);
    }
  }

  bool wrote() const { return wrote_; }

 private:
  PgConn* c_;
  bool read_only_;
  bool wrote_ = false;
};

class PostgresEngine final : public Engine {
 public:
  explicit PostgresEngine(PgConfig cfg) : cfg_(std::move(cfg)) {}

  Status Update(const std::function<Status(Txn&)>& body) override { return Run(false, body); }
  Status View(const std::function<Status(Txn&)>& body) override { return Run(true, body); }

  // Every COMMIT is durable when it returns if the server runs with synchronous_commit=on (the
  // default) and fsync=on. With synchronous_commit=off, Sync commits a marker row with
  // synchronous_commit=on, which flushes the WAL up to it and with it every earlier commit.
  Status Sync() override {
    return Plain(
        "BEGIN; SET LOCAL synchronous_commit TO on; INSERT INTO nexus_sync(id, n) VALUES(1, 1) "
        "ON CONFLICT (id) DO UPDATE SET n = nexus_sync.n + 1; COMMIT",
        "sync");
  }
  Status Reset() override { return Plain("TRUNCATE nexus_kv", "reset"); }
  Status Compact() override { return Plain("VACUUM ANALYZE nexus_kv", "compact"); }
  std::string Name() const override { return cfg_.name; }
  EngineStats Stats() const override { return {txns_.load(), conflicts_.load(), failures_.load()}; }

  Result<std::unique_ptr<PgConn>> Take(bool create_tables = false) {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<PgConn>(&cfg_);
    NX_TRY(c->Connect());
    NX_TRY(c->Prepare(create_tables));
    return c;
  }
  void Give(std::unique_ptr<PgConn> c) {
    if (c->unavailable() || !c->idle()) return;
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
  }

 private:
  // SQL outside a body, on a pooled connection, waiting out an outage like Run.
  Status Plain(const char* sql, std::string_view what) {
    const auto deadline = Clock::now() + kOutageWait;
    for (;;) {
      auto c = Take();
      Status s = c ? (*c)->Simple(sql, what) : c.error();
      bool unavailable = c ? (*c)->unavailable() : c.error().code() == EIO;
      if (c) Give(std::move(*c));
      if (s.ok() || !unavailable || !WaitOutage(deadline)) return s;
    }
  }

  Status Run(bool read_only, const std::function<Status(Txn&)>& body) {
    const auto deadline = Clock::now() + kOutageWait;
    Status last;
    int conflicts = 0;
    for (;;) {
      if (conflicts > 0) Backoff::Wait(conflicts + 1);
      auto conn = Take();
      bool unavailable = false;
      Status s;
      if (!conn) {
        s = conn.error();
        unavailable = s.message().find(" connect: ") != std::string::npos && Retryable(s);
        if (!unavailable) {
          failures_++;
          return s;
        }
      } else {
        PgConn& c = **conn;
        s = c.Simple(read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                               : "BEGIN ISOLATION LEVEL SERIALIZABLE",
                     "begin");
        int64_t xid = 0;
        bool wrote = false;
        if (s.ok()) {
          PgTxn t(&c, read_only);
          s = body(t);
          wrote = t.wrote();
          if (s.ok() && !c.unavailable()) {
            s = wrote ? c.Commit(&xid) : c.Simple("COMMIT", "commit");
          }
          if (!c.idle() && !c.unavailable()) c.Simple("ROLLBACK", "rollback").ok();
        }
        unavailable = c.unavailable();
        Give(std::move(*conn));
        if (unavailable && wrote && s.message().find(" commit: ") != std::string::npos) {
          // The COMMIT was sent and its answer lost: ask the server what happened.
          auto committed = Resolve(xid, deadline);
          if (!committed) {
            failures_++;
            return committed.error();
          }
          if (*committed) s = Status::OK();
        }
      }
      if (s.ok()) {
        txns_++;
        return s;
      }
      last = s;
      if (unavailable) {
        if (!WaitOutage(deadline)) break;
        continue;
      }
      if (!s.IsConflict()) {
        failures_++;
        return s;
      }
      conflicts_++;
      if (++conflicts >= Backoff::kMaxAttempts) {
        failures_++;
        return Status::Busy("postgres transaction gave up after " +
                            std::to_string(Backoff::kMaxAttempts) + " attempts (" + last.message() +
                            ")");
      }
    }
    failures_++;
    return Status::IOError(last.message() + " (server unavailable for " +
                           std::to_string(kOutageWait.count()) + " s)");
  }

  // A failed connect is worth retrying unless the server rejected the login or the database.
  static bool Retryable(const Status& s) {
    const std::string& m = s.message();
    return m.find("authentication") == std::string::npos &&
           m.find("password") == std::string::npos && m.find("does not exist") == std::string::npos;
  }

  static bool WaitOutage(Clock::time_point deadline) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return true;
  }

  // Whether transaction `xid` committed, once the server answers (txid_status).
  Result<bool> Resolve(int64_t xid, Clock::time_point deadline) {
    if (xid == 0) {
      return Err(Status::IOError("postgres " + cfg_.name +
                                 ": lost the connection during a commit before learning the "
                                 "transaction id; its outcome is unknown"));
    }
    const std::string sql = "SELECT txid_status(" + std::to_string(xid) + ")";
    for (;;) {
      auto c = Take();
      if (c) {
        auto st = (*c)->Scalar(sql.c_str(), "txid_status");
        Give(std::move(*c));
        if (st && *st == "committed") return true;
        if (st && *st == "aborted") return false;
      }
      if (!WaitOutage(deadline)) {
        return Err(Status::IOError("postgres " + cfg_.name + ": the outcome of transaction " +
                                   std::to_string(xid) + " is unknown after " +
                                   std::to_string(kOutageWait.count()) + " s"));
      }
    }
  }

  PgConfig cfg_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PgConn>> idle_;
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0};
};

}  // namespace

Result<std::unique_ptr<Engine>> OpenPostgres(const Url& url) {
  PgConfig cfg;
  std::string password = url.password;
  if (password.empty()) {
    if (const char* p = std::getenv("META_PASSWORD")) password = p;
  }
  std::string db = url.path.empty() ? "" : url.path.substr(1);
  if (url.host.empty() || db.empty()) {
    return Err(EINVAL, "postgres URL '" + url.Redacted() +
                           "' needs a host and a database: postgres://USER:PASS@HOST:PORT/DB");
  }
  auto add = [&](const char* k, const std::string& v) {
    if (!v.empty()) cfg.params.emplace_back(k, v);
  };
  add("host", url.host);
  add("port", url.port ? std::to_string(url.port) : "");
  add("user", url.user);
  add("password", password);
  add("dbname", db);
  add("connect_timeout", "5");
  add("application_name", "nexusfs");
  for (const auto& [k, v] : url.query) {
    if (k != "sslmode" && k != "sslrootcert" && k != "sslcert" && k != "sslkey" &&
        k != "connect_timeout") {
      return Err(EINVAL, "postgres URL '" + url.Redacted() + "': unknown option '" + k +
                             "' (known: sslmode, sslrootcert, sslcert, sslkey, connect_timeout)");
    }
    add(k.c_str(), v);
  }
  Url shown = url;
  shown.scheme = "postgres";
  if (!password.empty()) shown.password = "****";
  cfg.name = shown.Redacted();
  auto engine = std::make_unique<PostgresEngine>(std::move(cfg));
  auto c = engine->Take(/*create_tables=*/true);
  if (!c) return Err(c.error());
  engine->Give(std::move(*c));
  return engine;
}

}  // namespace nexus::kv
