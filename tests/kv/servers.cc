#include "servers.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

namespace nexus::testsrv {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kRedisBin[] = "/usr/bin/redis-server";

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string MakeTempDir(const char* what) {
  std::string tmpl = (fs::temp_directory_path() / (std::string("nexus-") + what + "-XXXXXX"));
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) return {};
  return buf.data();
}

// The newest installed PostgreSQL's bin directory, or "".
std::string PgBin() {
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    if (fs::exists(e.path() / "bin" / "postgres") && fs::exists(e.path() / "bin" / "initdb")) {
      std::string v = e.path().filename().string();
      if (best.empty() || std::stoi(v) > std::stoi(fs::path(best).parent_path().filename())) {
        best = (e.path() / "bin").string();
      }
    }
  }
  return best;
}

// PostgreSQL refuses to run as root: as root, its processes run as "postgres" (or "nobody").
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  bool change = false;
};
RunAs PgUser() {
  RunAs r;
  if (geteuid() != 0) return r;
  for (const char* name : {"postgres", "nobody"}) {
    if (passwd* pw = getpwnam(name)) {
      r = {pw->pw_uid, pw->pw_gid, true};
      return r;
    }
  }
  return r;
}

void ChownTree(const std::string& path, const RunAs& as) {
  if (!as.change) return;
  if (chown(path.c_str(), as.uid, as.gid) != 0) return;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
    if (lchown(e.path().c_str(), as.uid, as.gid) != 0) return;
  }
}

// Starts `argv` with stdout/stderr to `log`, as `as` when set. Returns the pid or -1.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, const RunAs& as) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (as.change && (setgid(as.gid) != 0 || setuid(as.uid) != 0)) _exit(126);
  // The server dies with the thread that started it, even when the test process is killed
  // (set after setuid, which clears it).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execv(args[0], args.data());
  _exit(127);
}

int RunWait(const std::vector<std::string>& argv, const std::string& log, const RunAs& as) {
  pid_t pid = Spawn(argv, log, as);
  if (pid < 0) return -1;
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Stops `pid` with `sig`, then SIGKILL after 20 s.
void StopPid(pid_t* pid, int sig) {
  if (*pid <= 0) return;
  kill(*pid, sig);
  for (int i = 0; i < 2000; ++i) {
    int st;
    if (waitpid(*pid, &st, WNOHANG) == *pid) {
      *pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(*pid, SIGKILL);
  waitpid(*pid, nullptr, 0);
  *pid = -1;
}

bool Exited(pid_t pid) {
  int st;
  return waitpid(pid, &st, WNOHANG) == pid;
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > 600 ? all.substr(all.size() - 600) : all;
}

}  // namespace

// ---- Redis ----

std::string RedisServer::Missing() {
  if (access(kRedisBin, X_OK) != 0) {
    return "redis-server is not installed (scripts/install-deps.sh --test installs it)";
  }
  return {};
}

RedisServer::~RedisServer() {
  Stop(true);
  if (!dir_.empty()) fs::remove_all(dir_);
}

Status RedisServer::Start() {
  if (std::string m = Missing(); !m.empty()) return Status::Errno(ENOENT, m);
  dir_ = MakeTempDir("redis");
  if (dir_.empty()) return Status::IOError("mkdtemp for redis");
  Status s;
  for (int tries = 0; tries < 3; ++tries) {
    port_ = FreePort();
    s = Launch();
    if (s.ok()) return s;
  }
  return s;
}

Status RedisServer::Launch() {
  std::vector<std::string> argv = {kRedisBin,
                                   "--port",
                                   std::to_string(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--dir",
                                   dir_,
                                   "--save",
                                   "",
                                   "--databases",
                                   "4096",
                                   "--requirepass",
                                   kServerPassword,
                                   "--daemonize",
                                   "no",
                                   "--appendonly",
                                   persistent_ ? "yes" : "no"};
  if (persistent_) argv.insert(argv.end(), {"--appendfsync", "always"});
  pid_ = Spawn(argv, dir_ + "/redis.log", RunAs{});
  if (pid_ < 0) return Status::IOError("fork redis-server");
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (Exited(pid_)) {
      pid_ = -1;
      return Status::IOError("redis-server exited: " + Tail(dir_ + "/redis.log"));
    }
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ready = false;
    if (c && !c->err) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "AUTH %s", kServerPassword));
      if (r) freeReplyObject(r);
      r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ready = r && r->type == REDIS_REPLY_STATUS && std::string(r->str) == "PONG";
      if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    if (ready) return Status::OK();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  StopPid(&pid_, SIGKILL);
  return Status::TimedOut("redis-server did not answer within 20 s: " + Tail(dir_ + "/redis.log"));
}

void RedisServer::Stop(bool kill9) { StopPid(&pid_, kill9 ? SIGKILL : SIGTERM); }

Status RedisServer::Restart(bool kill9) {
  Stop(kill9);
  return Launch();
}

std::string RedisServer::Url(int db) const {
  return "redis://:" + std::string(kServerPassword) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         std::to_string(db);
}

std::string RedisServer::NewUrl() { return Url(next_db_++ % 4096); }

// ---- PostgreSQL ----

std::string PostgresServer::Missing() {
  if (PgBin().empty()) {
    return "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres; "
           "scripts/install-deps.sh --test installs it)";
  }
  return {};
}

PostgresServer::~PostgresServer() {
  Stop(true);
  if (!dir_.empty()) fs::remove_all(dir_);
}

namespace {

// initdb takes ~0.7 s, so one cluster made by initdb is kept as a template in the temp
// directory (built once, under a lock, renamed into place when complete) and every server
// starts from a copy of it.
Result<std::string> PgTemplate(const std::string& bin, const RunAs& as) {
  const std::string base = (fs::temp_directory_path() / "nexus-pg-template").string() + "-" +
                           fs::path(bin).parent_path().filename().string() + "-" +
                           std::to_string(geteuid());
  const std::string data = base + "/data";
  if (fs::exists(data + "/PG_VERSION")) return data;
  int lock = open((base + ".lock").c_str(), O_CREAT | O_RDWR, 0600);
  if (lock < 0) return Err(Status::IOError("open " + base + ".lock"));
  flock(lock, LOCK_EX);
  Status s;
  if (!fs::exists(data + "/PG_VERSION")) {
    std::error_code ec;
    fs::remove_all(base + ".new", ec);
    fs::create_directories(base + ".new", ec);
    { std::ofstream(base + ".new/pw") << kServerPassword << "\n"; }
    ChownTree(base + ".new", as);
    int rc = RunWait({bin + "/initdb", "-D", base + ".new/data", "-U", "nexus", "--pwfile",
                      base + ".new/pw", "--auth-local=trust", "--auth-host=scram-sha-256",
                      "--no-sync", "-E", "UTF8", "--locale=C"},
                     base + ".new/initdb.log", as);
    if (rc != 0) {
      s = Status::IOError("initdb failed (" + std::to_string(rc) +
                          "): " + Tail(base + ".new/initdb.log"));
    } else {
      fs::remove_all(base, ec);
      fs::rename(base + ".new", base, ec);
      if (ec) s = Status::IOError("rename " + base + ": " + ec.message());
    }
  }
  close(lock);
  if (!s.ok()) return Err(s);
  return data;
}

}  // namespace

Status PostgresServer::Start() {
  const std::string bin = PgBin();
  if (bin.empty()) return Status::Errno(ENOENT, Missing());
  const RunAs as = PgUser();
  NX_ASSIGN_OR_RETURN(std::string tmpl, PgTemplate(bin, as));
  dir_ = MakeTempDir("pg");
  if (dir_.empty()) return Status::IOError("mkdtemp for postgres");
  std::error_code ec;
  fs::copy(tmpl, dir_ + "/data", fs::copy_options::recursive, ec);
  if (ec) return Status::IOError("copy " + tmpl + ": " + ec.message());
  fs::permissions(dir_ + "/data", fs::perms::owner_all, ec);
  ChownTree(dir_, as);
  Status s;
  for (int tries = 0; tries < 3; ++tries) {
    port_ = FreePort();
    s = Launch();
    if (s.ok()) return s;
  }
  return s;
}

Status PostgresServer::Launch() {
  const std::string bin = PgBin();
  // fsync off: a test server need not survive power loss, only its own restarts.
  pid_ = Spawn({bin + "/postgres", "-D", dir_ + "/data", "-k", dir_, "-p", std::to_string(port_),
                "-h", "127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off", "-c",
                "shared_buffers=16MB", "-c", "max_connections=200"},
               dir_ + "/postgres.log", PgUser());
  if (pid_ < 0) return Status::IOError("fork postgres");
  const std::string conninfo =
      "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=postgres connect_timeout=1";
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    if (Exited(pid_)) {
      pid_ = -1;
      return Status::IOError("postgres exited: " + Tail(dir_ + "/postgres.log"));
    }
    if (PQping(conninfo.c_str()) == PQPING_OK) return Status::OK();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  StopPid(&pid_, SIGQUIT);
  return Status::TimedOut("postgres did not answer within 30 s: " + Tail(dir_ + "/postgres.log"));
}

void PostgresServer::Stop(bool immediate) { StopPid(&pid_, immediate ? SIGQUIT : SIGINT); }

Status PostgresServer::Restart(bool immediate) {
  Stop(immediate);
  return Launch();
}

std::string PostgresServer::Url(const std::string& db) const {
  return "postgres://nexus:" + std::string(kServerPassword) +
         "@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

Result<std::string> PostgresServer::NewUrl() {
  const std::string db = "t" + std::to_string(next_db_++);
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port_) +
                               " dbname=postgres user=nexus password=" + kServerPassword;
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string err;
  if (PQstatus(c) != CONNECTION_OK) {
    err = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, ("CREATE DATABASE " + db + " STRATEGY FILE_COPY").c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) err = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(c);
  if (!err.empty()) return Err(Status::IOError("create database " + db + ": " + err));
  return Url(db);
}

// ---- shared instances ----

namespace {

template <typename Server>
Server* Shared(std::string* why) {
  static std::mutex mu;
  static std::unique_ptr<Server> server;
  static std::string error;
  static bool tried = false;
  std::lock_guard lock(mu);
  if (!tried) {
    tried = true;
    error = Server::Missing();
    if (error.empty()) {
      auto s = std::make_unique<Server>();
      Status st = s->Start();
      if (st.ok()) {
        server = std::move(s);
        // Stopped by the static unique_ptr's destructor at exit; also on SIGTERM/SIGINT from
        // ctest's timeout, which would otherwise leave the server running.
      } else {
        error = st.ToString();
      }
    }
  }
  if (!server && why) *why = error;
  return server.get();
}

}  // namespace

RedisServer* SharedRedis(std::string* why) { return Shared<RedisServer>(why); }
PostgresServer* SharedPostgres(std::string* why) { return Shared<PostgresServer>(why); }

Result<std::string> ResolveServerUrl(const std::string& url) {
  for (const char* tag : {"<redis>", "<postgres>"}) {
    const size_t at = url.find(tag);
    if (at == std::string::npos) continue;
    std::string why;
    std::string fresh;
    if (tag[1] == 'r') {
      RedisServer* r = SharedRedis(&why);
      if (!r) return Err(Status::Errno(RedisServer::Missing().empty() ? EIO : ENOENT, why));
      fresh = r->NewUrl();
    } else {
      PostgresServer* p = SharedPostgres(&why);
      if (!p) return Err(Status::Errno(PostgresServer::Missing().empty() ? EIO : ENOENT, why));
      NX_ASSIGN_OR_RETURN(fresh, p->NewUrl());
    }
    return fresh;
  }
  return url;
}

}  // namespace nexus::testsrv
