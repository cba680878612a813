// S3Server: a real S3-compatible server (the npm package s3rver) for tests. Start() picks a free
// loopback port, runs s3rver in a fresh temporary directory with one bucket, and waits until it
// accepts connections; Stop() (and the destructor) kills it and removes the directory. The child
// also dies with the test process (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <string>

namespace nexus::testing {

class S3Server {
 public:
  static constexpr const char* kAccessKey = "S3RVER";  // s3rver's built-in account
  static constexpr const char* kSecretKey = "S3RVER";
  static constexpr const char* kBucket = "nexus-test";

  // The s3rver executable: $NEXUS_S3RVER, /opt/nexusfs-test/npm/node_modules/.bin/s3rver, or
  // s3rver on PATH; "" when none is installed (tests then skip).
  static std::string FindBinary();

  S3Server() = default;
  ~S3Server() { Stop(); }
  S3Server(const S3Server&) = delete;
  S3Server& operator=(const S3Server&) = delete;

  // Starts the server; on failure returns false with `error` set (and the server's log).
  bool Start(std::string* error);
  void Stop();
  // Stops or resumes the server process (SIGSTOP / SIGCONT), to make requests time out.
  void Pause();
  void Resume();

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string Endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // "http://127.0.0.1:PORT/nexus-test[/prefix]"
  std::string BucketUrl(const std::string& prefix = "") const;
  std::string Log() const;

  // A server shared by the tests of one process, started on first use and stopped at exit.
  // Returns nullptr with `error` set when it cannot run.
  static S3Server* Shared(std::string* error);

 private:
  pid_t pid_ = 0;
  int port_ = 0;
  std::string dir_;
};

}  // namespace nexus::testing
