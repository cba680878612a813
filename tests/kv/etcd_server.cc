#include "etcd_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nexus::test {
namespace {

// A port the kernel just handed out on 127.0.0.1 (free at that moment).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

size_t Discard(char*, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append("x");
  return size * n;
}

}  // namespace

EtcdServer::~EtcdServer() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string EtcdServer::Binary() {
  for (const char* p : {"/usr/bin/etcd", "/usr/local/bin/etcd"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

EtcdServer* EtcdServer::Shared(std::string* why) {
  static std::unique_ptr<EtcdServer> server;
  static std::string error;
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (Binary().empty()) {
      error = "etcd is not installed (Debian package etcd-server)";
    } else {
      server = std::make_unique<EtcdServer>();
      Status s = server->Start();
      if (!s.ok()) {
        error = "etcd did not start: " + s.ToString();
        server.reset();
      }
    }
  }
  if (!server && why) *why = error;
  return server.get();
}

std::string EtcdServer::endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }

Status EtcdServer::Start() {
  if (running()) return Status::OK();
  const std::string bin = Binary();
  if (bin.empty()) return Status::NotFound("etcd is not installed");
  if (dir_.empty()) {
    char tmpl[] = "/tmp/nexus-etcd-XXXXXX";
    if (!mkdtemp(tmpl)) return Status::IOError("mkdtemp failed");
    dir_ = tmpl;
    client_port_ = FreePort();
    peer_port_ = FreePort();
    while (peer_port_ == client_port_) peer_port_ = FreePort();
    if (!client_port_ || !peer_port_) return Status::IOError("no free loopback port");
  }
  const std::string client = "http://" + endpoint();
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  // Transactions of the test suites are larger than etcd's default limits (128 operations,
  // 1.5 MiB): the limits are raised as docs/engines.md tells operators to.
  std::vector<std::string> args = {bin,
                                   "--name=nexus",
                                   "--data-dir=" + dir_ + "/data",
                                   "--listen-client-urls=" + client,
                                   "--advertise-client-urls=" + client,
                                   "--listen-peer-urls=" + peer,
                                   "--initial-advertise-peer-urls=" + peer,
                                   "--initial-cluster=nexus=" + peer,
                                   "--initial-cluster-state=new",
                                   "--max-txn-ops=20000",
                                   "--max-request-bytes=16777216",
                                   "--heartbeat-interval=50",
                                   "--election-timeout=500",
                                   "--logger=zap",
                                   "--log-outputs=stderr",
                                   "--log-level=warn"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  const std::string log = dir_ + "/etcd.log";
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Status::IOError("fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  Status s = WaitReady();
  if (!s.ok()) Kill();
  return s;
}

Status EtcdServer::WaitReady() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  const std::string url = "http://" + endpoint() + "/v3/kv/range";
  CURL* c = curl_easy_init();
  Status result = Status::TimedOut("etcd did not answer within 30 s; log: " + LogTail());
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      result = Status::IOError("etcd exited at start; log: " + LogTail());
      break;
    }
    std::string reply;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"key\":\"AA==\"}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 500L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long http = 0;
    if (curl_easy_perform(c) == CURLE_OK &&
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http) == CURLE_OK && http == 200) {
      result = Status::OK();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  curl_easy_cleanup(c);
  return result;
}

void EtcdServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

Status EtcdServer::Restart() {
  Kill();
  return Start();
}

std::string EtcdServer::LogTail() const {
  std::ifstream in(dir_ + "/etcd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

}  // namespace nexus::test
