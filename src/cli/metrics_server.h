// MetricsServer: a minimal HTTP/1.0 server on one thread that answers GET /metrics with the
// text `body()` returns (Prometheus text format); other paths get 404, other methods 405.
// One connection at a time, each closed after its response; a client that sends no request
// line within 5 s is dropped. It binds exactly the address given (use 127.0.0.1 to keep it
// local).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace nexus::cli {

class MetricsServer {
 public:
  // `addr` is "HOST:PORT" (an IPv4 address or "localhost"; PORT 0 picks a free port).
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& addr,
                                                      std::function<std::string()> body);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(int fd, int port, std::function<std::string()> body);
  void Run();
  void Serve(int conn);

  int fd_;
  int port_;
  std::function<std::string()> body_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace nexus::cli
