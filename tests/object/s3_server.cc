#include "object/s3_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace nexus::testing {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

bool Executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

}  // namespace

std::string S3Server::FindBinary() {
  if (const char* env = std::getenv("NEXUS_S3RVER"); env && Executable(env)) return env;
  const std::string fixed = "/opt/nexusfs-test/npm/node_modules/.bin/s3rver";
  if (Executable(fixed)) return fixed;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (!dir.empty() && Executable(dir + "/s3rver")) return dir + "/s3rver";
    }
  }
  return "";
}

std::string S3Server::BucketUrl(const std::string& prefix) const {
  return Endpoint() + "/" + kBucket + (prefix.empty() ? "" : "/" + prefix);
}

std::string S3Server::Log() const {
  std::ifstream in(dir_ + "/s3rver.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (log.size() > 4000) log = log.substr(log.size() - 4000);
  return log;
}

bool S3Server::Start(std::string* error) {
  const std::string bin = FindBinary();
  if (bin.empty()) {
    *error = "s3rver is not installed (scripts/install-deps.sh --test installs it)";
    return false;
  }
  char tmpl[] = "/tmp/nexus-s3rver-XXXXXX";
  if (!mkdtemp(tmpl)) {
    *error = std::string("mkdtemp: ") + std::strerror(errno);
    return false;
  }
  dir_ = tmpl;
  std::filesystem::create_directories(dir_ + "/data");
  for (int attempt = 0; attempt < 3 && pid_ == 0; ++attempt) {
    port_ = FreePort();
    if (port_ == 0) continue;
    std::vector<std::string> argv = {bin,
                                     "-d",
                                     dir_ + "/data",
                                     "-a",
                                     "127.0.0.1",
                                     "-p",
                                     std::to_string(port_),
                                     "--service-endpoint",
                                     "localhost",
                                     "--configure-bucket",
                                     kBucket};
    const std::string log = dir_ + "/s3rver.log";
    // s3rver's ListObjectsV2 continuation tokens use DES, which Node 17+ (OpenSSL 3) only has
    // in its legacy provider; without it, a truncated listing is an HTTP 500.
    std::vector<std::string> env_strings = {"NODE_OPTIONS=--openssl-legacy-provider"};
    for (char** e = environ; *e; ++e) {
      if (std::strncmp(*e, "NODE_OPTIONS=", 13) != 0) env_strings.emplace_back(*e);
    }
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      execve(args[0], args.data(), envp.data());
      _exit(127);
    }
    if (pid < 0) break;
    // Wait until it accepts connections (node starts in well under a second here), or exits.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = 0;  // exited: e.g. the port was taken meanwhile; try another
        break;
      }
      if (Accepts(port_)) {
        pid_ = pid;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ == 0 && pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  if (pid_ == 0) {
    *error = "s3rver did not start: " + Log();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
    return false;
  }
  return true;
}

void S3Server::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void S3Server::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

void S3Server::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGCONT);
    kill(pid_, SIGTERM);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = waitpid(pid_, nullptr, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    pid_ = 0;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
}

S3Server* S3Server::Shared(std::string* error) {
  static std::mutex mu;
  static std::unique_ptr<S3Server> server;
  static std::string start_error;
  std::lock_guard lock(mu);
  if (!server && start_error.empty()) {
    auto s = std::make_unique<S3Server>();
    if (s->Start(&start_error)) {
      server = std::move(s);
      // Stopped at exit; the child also dies with this process if it is killed.
      std::atexit([] { server.reset(); });
    }
  }
  *error = start_error;
  return server.get();
}

}  // namespace nexus::testing
