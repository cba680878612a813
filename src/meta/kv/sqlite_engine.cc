// sqlite3://PATH: one SQLite database in WAL mode, a table kv(k BLOB PRIMARY KEY, v BLOB).
//
// Writers are serialized: Update takes this process's writer connection under a mutex and runs
// BEGIN IMMEDIATE, so within a process bodies never conflict; another process holding the write
// lock gives SQLITE_BUSY, which is retried with jittered backoff up to a bound. View uses a pool
// of read connections with deferred transactions: WAL readers see a consistent snapshot and
// never wait for the writer.
//
// Durability: synchronous=NORMAL, so a commit survives a kill -9 of the process (it is in the
// WAL) but not necessarily a power loss; Sync() commits a marker row with synchronous=FULL,
// which fsyncs the WAL and with it every earlier commit.
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <vector>

#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using Visitor = std::function<bool(std::string_view, std::string_view)>;

bool IsBusy(int rc) { return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED; }

Status SqlError(sqlite3* db, int rc, std::string_view what) {
  std::string msg =
      "sqlite " + std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  if (IsBusy(rc)) return Status::Conflict(msg);
  if ((rc & 0xff) == SQLITE_FULL) return Status::NoSpace(msg);
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) return Status::Corruption(msg);
  if ((rc & 0xff) == SQLITE_READONLY) return Status::Errno(EROFS, msg);
  return Status::IOError(msg);
}

// One connection with its prepared statements.
class Conn {
 public:
  ~Conn() {
    for (sqlite3_stmt* s : {get_, put_, del_, scan_range_, scan_tail_, bump_sync_, begin_,
                            begin_imm_, commit_, rollback_}) {
      sqlite3_finalize(s);
    }
    sqlite3_close_v2(db_);
  }
  Status Open(const std::string& path, bool writer) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return SqlError(db_, rc, "open '" + path + "'");
    sqlite3_busy_timeout(db_, 50);
    const char* setup = writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                 "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) "
                                 "WITHOUT ROWID;"
                                 "CREATE TABLE IF NOT EXISTS nexus_sync(id INTEGER PRIMARY KEY, "
                                 "n INTEGER);"
                               : "PRAGMA synchronous=NORMAL;";
    NX_TRY(Exec(setup, "set up '" + path + "'"));
    NX_TRY(Prepare("SELECT v FROM kv WHERE k = ?", &get_));
    NX_TRY(Prepare("INSERT OR REPLACE INTO kv(k, v) VALUES(?, ?)", &put_));
    NX_TRY(Prepare("DELETE FROM kv WHERE k = ?", &del_));
    // Two scan statements rather than one with "(?2 = 0 OR k < ?3)": the planner uses only
    // plain comparisons as range bounds on the primary key, and an unbounded upper end would
    // make every short range scan read to the end of the table.
    NX_TRY(
        Prepare("SELECT k, v FROM kv WHERE k >= ?1 AND k < ?2 ORDER BY k LIMIT ?3", &scan_range_));
    NX_TRY(Prepare("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2", &scan_tail_));
    if (writer) {
      NX_TRY(
          Prepare("INSERT INTO nexus_sync(id, n) VALUES(1, 1) "
                  "ON CONFLICT(id) DO UPDATE SET n = n + 1",
                  &bump_sync_));
    }
    NX_TRY(Prepare("BEGIN", &begin_));
    NX_TRY(Prepare("BEGIN IMMEDIATE", &begin_imm_));
    NX_TRY(Prepare("COMMIT", &commit_));
    NX_TRY(Prepare("ROLLBACK", &rollback_));
    return Status::OK();
  }
  Status Exec(const char* sql, std::string_view what) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      Status s = SqlError(db_, rc, what);
      return Status(s.code(), "sqlite " + std::string(what) + ": " + msg);
    }
    return Status::OK();
  }
  Status Step(sqlite3_stmt* s, std::string_view what) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqlError(db_, rc, what);
    return Status::OK();
  }

  Result<std::optional<std::string>> Get(std::string_view key) {
    sqlite3_bind_blob(get_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    int rc = sqlite3_step(get_);
    std::optional<std::string> out;
    if (rc == SQLITE_ROW) {
      const char* p = static_cast<const char*>(sqlite3_column_blob(get_, 0));
      out.emplace(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(get_, 0)));
    }
    sqlite3_reset(get_);
    sqlite3_clear_bindings(get_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err(SqlError(db_, rc, "get"));
    return out;
  }
  Status Put(std::string_view key, std::string_view value) {
    sqlite3_bind_blob(put_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_blob(put_, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    Status s = Step(put_, "put");
    sqlite3_clear_bindings(put_);
    return s;
  }
  Status Delete(std::string_view key) {
    sqlite3_bind_blob(del_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    Status s = Step(del_, "delete");
    sqlite3_clear_bindings(del_);
    return s;
  }
  // Visits [begin, end) in key order. Rows are read in batches and each batch is visited after
  // its statement was reset, so `visit` may read and write through this connection.
  Status Scan(std::string_view begin, std::string_view end, size_t limit, const Visitor& visit) {
    std::string from(begin);
    size_t seen = 0;
    constexpr size_t kBatch = 256;
    for (;;) {
      size_t want = limit ? std::min(kBatch, limit - seen) : kBatch;
      std::vector<std::pair<std::string, std::string>> rows;
      NX_TRY(ScanBatch(from, end, want, &rows));
      for (auto& [k, v] : rows) {
        ++seen;
        if (!visit(k, v)) return Status::OK();
        if (limit && seen >= limit) return Status::OK();
      }
      if (rows.size() < want) return Status::OK();
      from = std::move(rows.back().first);
      from.push_back('\0');  // the smallest key after the last one visited
    }
  }

  sqlite3* db_ = nullptr;
  sqlite3_stmt *get_ = nullptr, *put_ = nullptr, *del_ = nullptr;
  sqlite3_stmt *scan_range_ = nullptr, *scan_tail_ = nullptr, *bump_sync_ = nullptr;
  sqlite3_stmt *begin_ = nullptr, *begin_imm_ = nullptr, *commit_ = nullptr, *rollback_ = nullptr;

 private:
  // Reads up to `want` rows of [from, end) ("" = no end) into `rows`.
  Status ScanBatch(const std::string& from, std::string_view end, size_t want,
                   std::vector<std::pair<std::string, std::string>>* rows) {
    sqlite3_stmt* st = end.empty() ? scan_tail_ : scan_range_;
    int n = 1;
    sqlite3_bind_blob(st, n++, from.data(), static_cast<int>(from.size()), SQLITE_STATIC);
    if (!end.empty()) {
      sqlite3_bind_blob(st, n++, end.data(), static_cast<int>(end.size()), SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, n, static_cast<int64_t>(want));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const char* k = static_cast<const char*>(sqlite3_column_blob(st, 0));
      size_t kn = static_cast<size_t>(sqlite3_column_bytes(st, 0));
      const char* v = static_cast<const char*>(sqlite3_column_blob(st, 1));
      size_t vn = static_cast<size_t>(sqlite3_column_bytes(st, 1));
      rows->emplace_back(std::string(k ? k : "", kn), std::string(v ? v : "", vn));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? Status::OK() : SqlError(db_, rc, "scan");
  }

  Status Prepare(const char* sql, sqlite3_stmt** out) {
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr);
    return rc == SQLITE_OK ? Status::OK() : SqlError(db_, rc, "prepare");
  }
};

class SqlTxn final : public Txn {
 public:
  SqlTxn(Conn* c, bool read_only) : c_(c), read_only_(read_only) {}
  Result<std::optional<std::string>> Get(std::string_view key) override { return c_->Get(key); }
  Status Put(std::string_view key, std::string_view value) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    return c_->Put(key, value);
  }
  Status Delete(std::string_view key) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    return c_->Delete(key);
  }
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const Visitor& visit) override {
    return c_->Scan(begin, end, limit, visit);
  }

 private:
  Conn* c_;
  bool read_only_;
};

class SqliteEngine final : public Engine {
 public:
  SqliteEngine(std::string path, std::unique_ptr<Conn> writer)
      : path_(std::move(path)), writer_(std::move(writer)) {}

  Status Update(const std::function<Status(Txn&)>& body) override {
    std::lock_guard lock(write_mu_);
    return RunWrite([&](Conn& c) {
      SqlTxn t(&c, false);
      return body(t);
    });
  }

  Status View(const std::function<Status(Txn&)>& body) override {
    NX_ASSIGN_OR_RETURN(std::unique_ptr<Conn> c, TakeReader());
    Status s;
    for (int attempt = 1; attempt <= Backoff::kMaxAttempts; ++attempt) {
      Backoff::Wait(attempt);
      s = c->Step(c->begin_, "begin");
      if (s.ok()) {
        SqlTxn t(c.get(), true);
        s = body(t);
        c->Step(c->commit_, "end read").ok();
      }
      if (!s.IsConflict()) break;
    }
    GiveBackReader(std::move(c));
    if (s.IsConflict()) return Status::Busy("sqlite read transaction: " + s.message());
    return s;
  }

  // In WAL mode a commit with synchronous=FULL fsyncs the WAL after appending to it; earlier
  // commits are either in that same WAL or were checkpointed into the database file, which a
  // checkpoint fsyncs before the WAL is reused. So one FULL commit of a marker row makes every
  // earlier commit durable. (A commit that writes nothing does not touch the WAL, hence the row.)
  Status Sync() override {
    std::lock_guard lock(write_mu_);
    NX_TRY(writer_->Exec("PRAGMA synchronous=FULL", "sync"));
    Status s = RunWrite([](Conn& c) { return c.Step(c.bump_sync_, "sync marker"); });
    Status restore = writer_->Exec("PRAGMA synchronous=NORMAL", "sync");
    return s.ok() ? restore : s.With("sync");
  }
  std::string Name() const override { return "sqlite3://" + path_; }
  bool Embedded() const override { return true; }
  EngineStats Stats() const override { return {txns_.load(), conflicts_.load(), failures_.load()}; }
  Status Compact() override {
    std::lock_guard lock(write_mu_);
    return writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;", "compact");
  }

 private:
  // Runs `write` in BEGIN IMMEDIATE ... COMMIT on the writer connection, retrying while another
  // process holds the write lock (SQLITE_BUSY) up to Backoff::kMaxAttempts. Requires write_mu_.
  Status RunWrite(const std::function<Status(Conn&)>& write) {
    Status last;
    for (int attempt = 1; attempt <= Backoff::kMaxAttempts; ++attempt) {
      Backoff::Wait(attempt);
      Status s = writer_->Step(writer_->begin_imm_, "begin");
      if (s.ok()) {
        s = write(*writer_);
        if (s.ok()) s = writer_->Step(writer_->commit_, "commit");
        if (!s.ok()) writer_->Step(writer_->rollback_, "rollback").ok();
      }
      if (s.ok()) {
        txns_++;
        return s;
      }
      if (!s.IsConflict()) {
        failures_++;
        return s;
      }
      conflicts_++;
      last = s;
    }
    failures_++;
    return Status::Busy("sqlite transaction gave up after " +
                        std::to_string(Backoff::kMaxAttempts) + " attempts (" + last.message() +
                        ")");
  }

  Result<std::unique_ptr<Conn>> TakeReader() {
    {
      std::lock_guard lock(pool_mu_);
      if (!readers_.empty()) {
        auto c = std::move(readers_.back());
        readers_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<Conn>();
    NX_TRY(c->Open(path_, false));
    return c;
  }
  void GiveBackReader(std::unique_ptr<Conn> c) {
    std::lock_guard lock(pool_mu_);
    if (readers_.size() < 16) readers_.push_back(std::move(c));
  }

  std::string path_;
  std::mutex write_mu_;  // one writer body at a time in this process
  std::unique_ptr<Conn> writer_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<Conn>> readers_;
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0};
};

}  // namespace

Result<std::unique_ptr<Engine>> OpenSQLite(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p, ec)) {
    return Err(EISDIR, "sqlite path '" + path + "' is a directory");
  }
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) {
    return Err(ec.value(),
               "sqlite: cannot create '" + p.parent_path().string() + "': " + ec.message());
  }
  auto writer = std::make_unique<Conn>();
  Status s;
  for (int attempt = 1; attempt <= Backoff::kMaxAttempts; ++attempt) {
    Backoff::Wait(attempt);
    s = writer->Open(path, true);
    if (!s.IsConflict()) break;
    writer = std::make_unique<Conn>();
  }
  if (!s.ok()) return Err(s.IsConflict() ? Status::Busy(s.message()) : s);
  return std::make_unique<SqliteEngine>(path, std::move(writer));
}

}  // namespace nexus::kv
