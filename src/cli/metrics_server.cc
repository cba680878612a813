#include "cli/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace nexus::cli {
namespace {

constexpr int kRequestTimeoutMs = 5000;

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string Response(int code, const char* reason, const std::string& type,
                     const std::string& body) {
  return "HTTP/1.0 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
         body;
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& addr,
                                                            std::function<std::string()> body) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos || colon + 1 == addr.size()) {
    return Err(EINVAL, "--metrics '" + addr + "' is not HOST:PORT (e.g. 127.0.0.1:9567)");
  }
  std::string host = addr.substr(0, colon);
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  char* end = nullptr;
  long port = std::strtol(addr.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    return Err(EINVAL, "--metrics '" + addr + "': the port is not a number in 0..65535");
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) {
    return Err(EINVAL, "--metrics '" + addr + "': '" + host + "' is not an IPv4 address");
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Err(errno, std::string("metrics socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(fd, 16) != 0) {
    int e = errno;
    close(fd);
    return Err(e, "metrics server on " + addr + ": " + std::strerror(e));
  }
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  NX_LOG_INFO("metrics on http://{}:{}/metrics", host, ntohs(sa.sin_port));
  return std::unique_ptr<MetricsServer>(new MetricsServer(fd, ntohs(sa.sin_port), std::move(body)));
}

MetricsServer::MetricsServer(int fd, int port, std::function<std::string()> body)
    : fd_(fd), port_(port), body_(std::move(body)), thread_([this] { Run(); }) {}

MetricsServer::~MetricsServer() {
  stop_ = true;
  shutdown(fd_, SHUT_RDWR);  // wakes poll()
  thread_.join();
  close(fd_);
}

void MetricsServer::Run() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, 500);
    if (r <= 0 || stop_) continue;
    int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    Serve(conn);
    close(conn);
  }
}

void MetricsServer::Serve(int conn) {
  std::string req;
  char buf[2048];
  // Read until the end of the headers (or the request line at least), bounded in size and time.
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos &&
         req.size() < 16384) {
    pollfd p{conn, POLLIN, 0};
    if (poll(&p, 1, kRequestTimeoutMs) <= 0) break;
    ssize_t n = recv(conn, buf, sizeof(buf), 0);
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  size_t eol = req.find_first_of("\r\n");
  if (eol == std::string::npos) return;  // no request line: drop
  std::string line = req.substr(0, eol);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  std::string method = line.substr(0, sp1);
  std::string path = sp1 == std::string::npos ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (size_t q = path.find('?'); q != std::string::npos) path.resize(q);
  if (method != "GET" && method != "HEAD") {
    WriteAll(conn, Response(405, "Method Not Allowed", "text/plain", "only GET\n"));
  } else if (path != "/metrics") {
    WriteAll(conn, Response(404, "Not Found", "text/plain", "try /metrics\n"));
  } else {
    std::string r = Response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body_());
    if (method == "HEAD") r.resize(r.find("\r\n\r\n") + 4);
    WriteAll(conn, r);
  }
}

}  // namespace nexus::cli
