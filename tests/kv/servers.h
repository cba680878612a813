// Real Redis and PostgreSQL servers for tests: each runs on a free loopback port in its own
// temporary directory, is started by the test process, waited for until it answers, and always
// stopped (destructor, or at process exit for the shared instances).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace nexus::testsrv {

// The password both servers require from clients ("redis://:PW@..." / "postgres://nexus:PW@").
inline constexpr char kServerPassword[] = "nexus-test-pw";

class RedisServer {
 public:
  // Empty when redis-server is installed, else why the tests skip.
  static std::string Missing();

  // `persistent`: appendonly yes with appendfsync always (a restart keeps every EXEC).
  explicit RedisServer(bool persistent = false) : persistent_(persistent) {}
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  Status Start();
  // Stops the server: SIGTERM (a clean shutdown) or SIGKILL.
  void Stop(bool kill9 = false);
  // Starts it again on the same port and directory.
  Status Restart(bool kill9);

  int port() const { return port_; }
  // A URL for database `db` (of 4096), with the password.
  std::string Url(int db) const;
  // A URL for a database no other caller of this server got (tests are isolated by database).
  std::string NewUrl();

 private:
  Status Launch();
  bool persistent_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  int next_db_ = 0;
};

class PostgresServer {
 public:
  static std::string Missing();

  PostgresServer() = default;
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  Status Start();
  // Stops the server: fast shutdown (SIGINT) or immediate (SIGQUIT: no checkpoint, WAL replay
  // on the next start, like a crash of the server process).
  void Stop(bool immediate = false);
  Status Restart(bool immediate);

  int port() const { return port_; }
  std::string Url(const std::string& db) const;
  // Creates a fresh database and returns its URL.
  Result<std::string> NewUrl();

 private:
  Status Launch();
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  int next_db_ = 0;
};

// Servers shared by every test of one test binary: started on first use, stopped at exit.
// nullptr with *why set when the server binary is missing or does not start.
RedisServer* SharedRedis(std::string* why);
PostgresServer* SharedPostgres(std::string* why);

// Replaces "<redis>" or "<postgres>" in `url` with a fresh database of the shared server.
// Returns the URL unchanged when it has neither; an error (code ENOENT when the server is not
// installed) when the server cannot be had.
Result<std::string> ResolveServerUrl(const std::string& url);

}  // namespace nexus::testsrv
