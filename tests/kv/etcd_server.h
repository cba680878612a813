// A real single-member etcd for tests: started from /usr/bin/etcd (Debian's etcd-server) in a
// fresh temporary directory on free loopback ports, waited for until it answers, and always
// killed (destructor, and PR_SET_PDEATHSIG should the test process die first).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace nexus::test {

class EtcdServer {
 public:
  EtcdServer() = default;
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // The etcd binary, or "" when it is not installed (tests then skip).
  static std::string Binary();
  // One server for the whole test process, started on first use; nullptr (and `why`) when
  // etcd is not installed or did not start.
  static EtcdServer* Shared(std::string* why);

  // Starts etcd (a new data directory and ports on the first call) and waits until it answers.
  Status Start();
  // SIGKILL, then waits for the process; the data directory stays.
  void Kill();
  // Kill() then Start() on the same ports and data directory.
  Status Restart();
  bool running() const { return pid_ > 0; }
  // "127.0.0.1:PORT" of the client URL.
  std::string endpoint() const;
  std::string dir() const { return dir_; }
  // Flags appended to the defaults on the next Start() (a later flag wins: "--max-txn-ops=128").
  std::vector<std::string> extra_flags;

 private:
  Status WaitReady();
  std::string LogTail() const;

  std::string dir_;
  int client_port_ = 0, peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace nexus::test
