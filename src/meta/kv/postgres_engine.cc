// postgres://USER:PASS@HOST:PORT/DB[?sslmode=...] (also postgresql://): one table
// nexus_kv(k BYTEA PRIMARY KEY, v BYTEA NOT NULL); bytea compares byte by byte, so the primary
// key index gives range scans in key order.
//
// Update runs the body in a SERIALIZABLE transaction. Reads go to the server as they happen
// (a MultiGet is one pipeline of point reads), the first one carrying the BEGIN in the same
// libpq pipeline; writes are buffered (BufferedTxn: reads and scans see them) and Txn::Add is
// buffered as a delta. At commit one pipeline sends [BEGIN, if nothing was read], the puts and
// deletes, each Add as an upsert v = v + delta computed by the server, the commit fence (below)
// and COMMIT: a body that reads once and writes costs two round trips, a blind write one.
// Serializable snapshot isolation makes point reads, scans and absent keys conflict-checked;
// a serialization failure or deadlock (SQLSTATE 40001, 40P01), at any statement or at COMMIT,
// runs the body again after a jittered backoff. Two concurrent Adds to one counter still
// conflict (the second writer of a row in a SERIALIZABLE transaction gets 40001 when the first
// committed after the second's snapshot, taken at its first statement); neither reads it.
//
// View runs in REPEATABLE READ READ ONLY, BEGIN sent with its first read. It ends with a
// ROLLBACK (same as COMMIT for a read-only transaction) that is sent without waiting: its
// answer is read together with the next exchange on that connection. A View of one point read
// or one MultiGet is one round trip. A failed Update's body ends the same way.
//
// Server outages: a lost connection, or a server that is shutting down or starting up (SQLSTATE
// classes 08 and 57P), retries the attempt on a new connection for up to kOutageWait. A lost
// COMMIT reply is resolved through the commit fence: each connection has a random 16-byte id,
// and every write transaction upserts (id, seq) into nexus_txn with the connection's next seq.
// After a lost reply, a new connection upserts (id, unchanged) in autocommit: that waits for
// the old transaction if it is still running, returns the seq that committed (ours ->
// committed, else the body runs again), and leaves a newer row version that makes a late
// COMMIT of the old transaction fail with 40001. A connection closed normally deletes its row.
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/url.h"
#include "meta/kv/buffered_txn.h"
#include "meta/kv/conflict_gate.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using Clock = std::chrono::steady_clock;
using Visitor = std::function<bool(std::string_view, std::string_view)>;
constexpr auto kOutageWait = std::chrono::seconds(30);
constexpr size_t kMaxIdle = 32;
// Statements per pipeline sync. The client blocks while it sends, so the server's answers to a
// batch (a few dozen bytes per write) must fit in the socket buffers; a larger write set is
// sent as several batches in the same transaction, one round trip each.
constexpr size_t kMaxPipeline = 256;

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

// One statement of a pipeline: a prepared statement's name, or SQL text without parameters.
struct Stmt {
  const char* name;
  bool prepared = true;
  std::vector<Param> params;
};

Stmt Sql(const char* text) { return Stmt{text, false, {}}; }

std::string Hex(std::string_view s) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : s) {
    out.push_back(kDigits[ch >> 4]);
    out.push_back(kDigits[ch & 15]);
  }
  return out;
}

// An 8-byte little-endian counter in SQL: the value of nexus_kv.v (shorter than 8 bytes = 0,
// like DecodeCounter) plus $3, encoded back. bigint arithmetic: an overflow is an error.
std::string AddSql() {
  std::string dec = "CASE WHEN length(nexus_kv.v) < 8 THEN 0::bigint ELSE (";
  for (int i = 0; i < 8; ++i) {
    if (i) dec += " | ";
    dec += "(get_byte(nexus_kv.v, " + std::to_string(i) + ")::bigint << " + std::to_string(8 * i) +
           ")";
  }
  dec += ") END";
  std::string enc;
  for (int i = 8; i >= 1; --i) {  // int8send is big-endian
    if (i < 8) enc += " || ";
    enc += "substr(b, " + std::to_string(i) + ", 1)";
  }
  return "INSERT INTO nexus_kv(k, v) VALUES($1, $2) ON CONFLICT (k) DO UPDATE SET v = (SELECT " +
         enc + " FROM (SELECT int8send((" + dec + ") + $3::bigint) AS b) s)";
}

std::vector<std::pair<std::string, std::string>> Statements() {
  return {
      {"get", "SELECT v FROM nexus_kv WHERE k = $1"},
      {"put",
       "INSERT INTO nexus_kv(k, v) VALUES($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"},
      {"del", "DELETE FROM nexus_kv WHERE k = $1"},
      {"add", AddSql()},
      {"fence",
       "INSERT INTO nexus_txn(id, seq) VALUES($1, $2::bigint) ON CONFLICT (id) DO UPDATE SET "
       "seq = EXCLUDED.seq"},
      // Two scan statements so that both bounds are index conditions (as in the SQLite engine).
      {"scan", "SELECT k, v FROM nexus_kv WHERE k >= $1 AND k < $2 ORDER BY k LIMIT $3::int"},
      {"scan_tail", "SELECT k, v FROM nexus_kv WHERE k >= $1 ORDER BY k LIMIT $2::int"},
  };
}

// One server connection. It stays in libpq pipeline mode between transactions (left only for
// plain SQL outside transactions); every exchange is one batch of statements and a sync, one
// round trip, counted in *round_trips. A ROLLBACK sent without waiting (SendRollback) leaves
// its answer pending; the next exchange reads it before its own.
class PgConn {
 public:
  PgConn(const PgConfig* cfg, std::atomic<uint64_t>* round_trips)
      : cfg_(cfg), round_trips_(round_trips) {}
  ~PgConn() {
    if (!c_) return;
    if (seq_ > 0 && !unavailable_ && EnterPipeline()) {
      // Deletes this connection's commit fence row, sent before the Terminate message that
      // PQfinish sends: the server runs it, nobody waits.
      const std::string sql = "DELETE FROM nexus_txn WHERE id = '\\x" + Hex(id_) + "'";
      if (PQsendQueryParams(c_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)) {
        PQpipelineSync(c_);
      }
    }
    PQfinish(c_);
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
    std::random_device rd;
    for (int i = 0; i < 4; ++i) {
      uint32_t r = rd();
      id_.append(reinterpret_cast<const char*>(&r), sizeof r);
    }
    return Status::OK();
  }

  // Creates the tables (first connection of an engine) and prepares the statements (one
  // pipeline).
  Status Prepare(bool create_tables) {
    if (create_tables) {
      NX_TRY(
          Simple("CREATE TABLE IF NOT EXISTS nexus_kv(k BYTEA PRIMARY KEY, v BYTEA NOT NULL);"
                 "CREATE TABLE IF NOT EXISTS nexus_sync(id INT PRIMARY KEY, n BIGINT NOT NULL);"
                 "CREATE TABLE IF NOT EXISTS nexus_txn(id BYTEA PRIMARY KEY, seq BIGINT NOT NULL)",
                 "create tables"));
    }
    const auto statements = Statements();
    if (!EnterPipeline()) return Broken("prepare");
    for (const auto& [name, sql] : statements) {
      if (!PQsendPrepare(c_, name.c_str(), sql.c_str(), 0, nullptr)) return Broken("prepare");
    }
    if (!PQpipelineSync(c_)) return Broken("prepare");
    Count();
    return ReadResults(statements.size(), nullptr, "prepare");
  }

  // Sends `stmts` as one pipeline (kMaxPipeline statements per round trip) and returns their
  // results with binary columns; the first error stops it (the rest of its batch is skipped by
  // the server).
  Result<std::vector<Res>> Exchange(const std::vector<Stmt>& stmts, std::string_view what) {
    std::vector<Res> out;
    out.reserve(stmts.size());
    for (size_t at = 0; at < stmts.size(); at += kMaxPipeline) {
      const size_t n = std::min(kMaxPipeline, stmts.size() - at);
      if (!EnterPipeline()) return Err(Broken(what));
      for (size_t i = at; i < at + n; ++i) {
        if (!Send(stmts[i])) return Err(Broken(what));
      }
      if (!PQpipelineSync(c_)) return Err(Broken(what));
      Count();
      if (pending_) {
        pending_ = false;
        Status s = ReadResults(1, nullptr, "rollback");
        if (!s.ok() && unavailable_) return Err(s);
      }
      NX_TRY(ReadResults(n, &out, what));
    }
    return out;
  }

  // Ends the open transaction with a ROLLBACK whose answer is read by the next exchange.
  void SendRollback() {
    if (unavailable_ || pending_) return;
    if (!EnterPipeline() ||
        !PQsendQueryParams(c_, "ROLLBACK", 0, nullptr, nullptr, nullptr, nullptr, 1) ||
        !PQpipelineSync(c_)) {
      unavailable_ = true;
      return;
    }
    pending_ = true;
  }

  // Runs SQL text (one or more statements) outside pipeline mode; OK when every result is.
  Status Simple(const char* sql, std::string_view what) {
    NX_TRY(Leave(what));
    Res r(PQexec(c_, sql));
    Count();
    return Check(r.get(), what);
  }

  // The first column of the first row of `sql`, as text ("" when there is no row).
  Result<std::string> Scalar(const char* sql, std::string_view what) {
    NX_TRY(Leave(what));
    Res r(PQexec(c_, sql));
    Count();
    NX_TRY(Check(r.get(), what));
    if (PQntuples(r.get()) == 0) return std::string();
    return std::string(PQgetvalue(r.get(), 0, 0));
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
  // A transaction is open (or aborted and not yet rolled back) on the server.
  bool in_txn() const {
    if (pending_) return false;
    auto st = PQtransactionStatus(c_);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
  }
  // Fit for the pool: healthy, and idle or ending its transaction with a pending ROLLBACK.
  bool reusable() const {
    return !unavailable_ && (pending_ || PQtransactionStatus(c_) == PQTRANS_IDLE);
  }
  const std::string& id() const { return id_; }
  int64_t NextSeq() { return ++seq_; }
  const PgConfig& cfg() const { return *cfg_; }

 private:
  void Count() {
    if (round_trips_) round_trips_->fetch_add(1, std::memory_order_relaxed);
  }

  bool EnterPipeline() {
    return PQpipelineStatus(c_) != PQ_PIPELINE_OFF || PQenterPipelineMode(c_) == 1;
  }

  // Reads a pending ROLLBACK's answer and leaves pipeline mode.
  Status Leave(std::string_view what) {
    if (pending_) {
      pending_ = false;
      Status s = ReadResults(1, nullptr, "rollback");
      if (!s.ok() && unavailable_) return s;
    }
    if (PQpipelineStatus(c_) != PQ_PIPELINE_OFF && PQexitPipelineMode(c_) != 1) {
      return Broken(what);
    }
    return Status::OK();
  }

  // The connection is in an unknown state: never reused.
  Status Broken(std::string_view what) {
    Status s = Check(nullptr, what);
    unavailable_ = true;
    return s;
  }

  bool Send(const Stmt& st) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& p : st.params) {
      values.push_back(p.data.data() ? p.data.data() : "");  // NULL would be SQL NULL
      lengths.push_back(static_cast<int>(p.data.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    const int n = static_cast<int>(values.size());
    return st.prepared ? PQsendQueryPrepared(c_, st.name, n, values.data(), lengths.data(),
                                             formats.data(), 1)
                       : PQsendQueryParams(c_, st.name, n, nullptr, values.data(), lengths.data(),
                                           formats.data(), 1);
  }

  // Reads the results of `n` pipelined statements and the sync that ends them. Returns the
  // first error (statements after it come back as skipped); *out gets one result each.
  Status ReadResults(size_t n, std::vector<Res>* out, std::string_view what) {
    Status s;
    for (size_t i = 0; i < n; ++i) {
      Res first;
      while (PGresult* raw = PQgetResult(c_)) {
        Res r(raw);
        if (!first) first = std::move(r);
      }
      if (!first) return Broken(what);
      if (PQresultStatus(first.get()) != PGRES_PIPELINE_ABORTED && s.ok()) {
        s = Check(first.get(), what);
      }
      if (PQstatus(c_) == CONNECTION_BAD) {
        Status b = Broken(what);
        return s.ok() ? b : s;
      }
      if (out) out->push_back(std::move(first));
    }
    Res sync(PQgetResult(c_));
    if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
      Status b = Broken(what);
      if (!s.ok()) return s;
      return sync && PQresultStatus(sync.get()) == PGRES_FATAL_ERROR
                 ? b
                 : Status::IOError("postgres " + cfg_->name + " " + std::string(what) +
                                   ": pipeline out of step");
    }
    return s;
  }

  const PgConfig* cfg_;
  std::atomic<uint64_t>* round_trips_;
  PGconn* c_ = nullptr;
  std::string id_;   // commit fence row of this connection
  int64_t seq_ = 0;  // last seq written to it
  bool unavailable_ = false;
  bool pending_ = false;  // a ROLLBACK's answer is still to be read
};

std::string_view Value(PGresult* r, int row, int col) {
  return std::string_view(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}

std::optional<std::string> Row(PGresult* r) {
  if (PQntuples(r) == 0) return std::nullopt;
  return std::string(Value(r, 0, 0));
}

class PgTxn final : public BufferedTxn {
 public:
  PgTxn(PgConn* c, bool read_only) : BufferedTxn(read_only), c_(c), read_only_(read_only) {}

  // The keys not written by this transaction are read in one pipeline.
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    std::vector<size_t> remote;
    std::vector<Stmt> st;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (auto it = writes().find(keys[i]); it != writes().end()) {
        out[i] = it->second;
      } else {
        remote.push_back(i);
        st.push_back({"get", true, {{keys[i]}}});
      }
    }
    if (remote.empty()) return out;
    NX_ASSIGN_OR_RETURN(auto rs, Read(std::move(st), "get"));
    for (size_t j = 0; j < remote.size(); ++j) {
      out[remote[j]] = WithAdd(keys[remote[j]], Row(rs[j].get()));
    }
    return out;
  }

  Status Add(std::string_view key, int64_t delta) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    if (writes().count(key)) return Txn::Add(key, delta);  // folds into the buffered put
    adds_[std::string(key)] += delta;
    return Status::OK();
  }

  // Sends the writes, the commit fence and COMMIT in one pipeline (led by BEGIN when nothing
  // was read) and waits for the outcome. *unknown: the connection was lost after the COMMIT
  // may have been sent; *seq is then the fence value that tells (PostgresEngine::Resolve).
  Status Commit(bool* unknown, int64_t* seq) {
    *unknown = false;
    std::vector<Stmt> st;
    if (writes().empty() && adds_.empty()) {
      if (!begun_) return Status::OK();
      // Reads only: COMMIT still checks them against concurrent writers (SSI).
      auto r = c_->Exchange({Sql("COMMIT")}, "commit");
      return r ? Status::OK() : r.error();
    }
    std::deque<std::string> text;  // parameters that are not views of the write set
    if (!begun_) st.push_back(Begin());
    for (const auto& [k, v] : writes()) {
      if (v) {
        st.push_back({"put", true, {{k}, {*v}}});
      } else {
        st.push_back({"del", true, {{k}}});
      }
    }
    for (const auto& [k, d] : adds_) {
      if (writes().count(k)) continue;  // a later put or delete replaced the add
      const std::string& init = text.emplace_back(EncodeCounter(d));
      const std::string& delta = text.emplace_back(std::to_string(d));
      st.push_back({"add", true, {{k}, {init}, {delta, false}}});
    }
    *seq = c_->NextSeq();
    const std::string& seq_text = text.emplace_back(std::to_string(*seq));
    st.push_back({"fence", true, {{c_->id()}, {seq_text, false}}});
    st.push_back(Sql("COMMIT"));
    begun_ = true;
    auto r = c_->Exchange(st, "commit");
    if (r) return Status::OK();
    *unknown = c_->unavailable();
    return r.error();
  }

 protected:
  Result<std::optional<std::string>> BaseGet(std::string_view key) override {
    NX_ASSIGN_OR_RETURN(auto rs, Read({{"get", true, {{key}}}}, "get"));
    return WithAdd(key, Row(rs[0].get()));
  }

  // Batches of rows (64 -> 1024), each visited after its statement finished, so that the
  // visitor may read through the same transaction; pending Adds are merged in key order.
  Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) override {
    auto ait = adds_.lower_bound(begin);
    auto add_before = [&](const std::string_view* k) {  // next pending add to emit before *k
      return ait != adds_.end() && (end.empty() || ait->first < end) && (!k || ait->first < *k);
    };
    std::string from(begin);
    size_t batch = 64;
    for (;;) {
      const std::string n = std::to_string(batch);
      Stmt st = end.empty() ? Stmt{"scan_tail", true, {{from}, {n, false}}}
                            : Stmt{"scan", true, {{from}, {end}, {n, false}}};
      NX_ASSIGN_OR_RETURN(auto rs, Read({st}, "scan"));
      PGresult* r = rs[0].get();
      const int rows = PQntuples(r);
      for (int i = 0; i < rows; ++i) {
        const std::string_view k = Value(r, i, 0);
        for (; add_before(&k); ++ait) {
          if (!visit(ait->first, EncodeCounter(ait->second))) return Status::OK();
        }
        std::optional<std::string> v(std::string(Value(r, i, 1)));
        if (ait != adds_.end() && ait->first == k) {
          v = WithAdd(k, std::move(v));
          ++ait;
        }
        if (!visit(k, *v)) return Status::OK();
      }
      if (static_cast<size_t>(rows) < batch) break;
      from = std::string(Value(r, rows - 1, 0));
      from.push_back('\0');  // the smallest key after the last one visited
      batch = std::min<size_t>(batch * 4, 1024);
    }
    for (; add_before(nullptr); ++ait) {
      if (!visit(ait->first, EncodeCounter(ait->second))) break;
    }
    return Status::OK();
  }

 private:
  Stmt Begin() const {
    return Sql(read_only_ ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                          : "BEGIN ISOLATION LEVEL SERIALIZABLE");
  }

  // A read exchange; the transaction's first one starts it (BEGIN in the same pipeline).
  Result<std::vector<Res>> Read(std::vector<Stmt> st, std::string_view what) {
    const bool first = !begun_;
    if (first) st.insert(st.begin(), Begin());
    begun_ = true;
    NX_ASSIGN_OR_RETURN(auto rs, c_->Exchange(st, what));
    if (first) rs.erase(rs.begin());
    return rs;
  }

  std::optional<std::string> WithAdd(std::string_view key, std::optional<std::string> v) const {
    auto it = adds_.find(key);
    if (it == adds_.end()) return v;
    return EncodeCounter((v ? DecodeCounter(*v) : 0) + it->second);
  }

  PgConn* c_;
  bool read_only_;
  bool begun_ = false;
  std::map<std::string, int64_t, std::less<>> adds_;
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
  EngineStats Stats() const override {
    return {txns_.load(), conflicts_.load(), failures_.load(), round_trips_.load()};
  }

  Result<std::unique_ptr<PgConn>> Take(bool create_tables = false) {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<PgConn>(&cfg_, &round_trips_);
    NX_TRY(c->Connect());
    NX_TRY(c->Prepare(create_tables));
    return c;
  }
  void Give(std::unique_ptr<PgConn> c) {
    if (!c->reusable()) return;
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
        bool unknown = false;
        int64_t seq = 0;
        {
          std::optional<ConflictGate::Pass> pass;
          if (!read_only) pass.emplace(gate_, conflicts);
          PgTxn t(&c, read_only);
          s = body(t);
          if (s.ok() && !read_only) s = t.Commit(&unknown, &seq);
        }
        // A View's end, or a failed body: the ROLLBACK is not waited for.
        if (c.in_txn()) c.SendRollback();
        unavailable = c.unavailable();
        const std::string fence = c.id();
        Give(std::move(*conn));
        if (unknown) {
          // The COMMIT may have been sent and its answer lost: the fence row tells.
          auto committed = Resolve(fence, seq, deadline);
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

  // Whether the transaction that wrote `seq` to fence row `id` committed. The upsert (in
  // autocommit) waits for that transaction if it still runs, returns the committed seq, and
  // writes a new row version, so that the transaction can no longer commit after we looked.
  Result<bool> Resolve(const std::string& id, int64_t seq, Clock::time_point deadline) {
    const std::string sql = "INSERT INTO nexus_txn(id, seq) VALUES('\\x" + Hex(id) +
                            "', -1) ON CONFLICT (id) DO UPDATE SET seq = nexus_txn.seq "
                            "RETURNING seq";
    for (;;) {
      auto c = Take();
      if (c) {
        auto st = (*c)->Scalar(sql.c_str(), "commit fence");
        Give(std::move(*c));
        if (st && !st->empty()) {
          const bool committed = std::strtoll(st->c_str(), nullptr, 10) == seq;
          NX_LOG_WARN("postgres {}: the reply to a COMMIT was lost; the fence row says it {}",
                      cfg_.name, committed ? "committed" : "did not commit (retrying)");
          return committed;
        }
      }
      if (!WaitOutage(deadline)) {
        return Err(Status::IOError("postgres " + cfg_.name +
                                   ": the outcome of a commit is unknown after " +
                                   std::to_string(kOutageWait.count()) + " s"));
      }
    }
  }

  PgConfig cfg_;
  std::mutex mu_;
  std::vector<std::unique_ptr<PgConn>> idle_;
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0}, round_trips_{0};
  ConflictGate gate_;
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
