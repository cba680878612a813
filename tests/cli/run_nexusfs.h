// Running the built nexusfs binary from tests: its exit code and its output.
#pragma once

#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <string>

namespace nexus::clitest {

struct Output {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs `cmd` through the shell with stderr merged into stdout.
inline Output Shell(const std::string& cmd) {
  Output r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `nexusfs ARGS` (NEXUSFS_BIN, defined by the test's CMake target).
inline Output Nexusfs(const std::string& args) {
  return Shell(std::string(NEXUSFS_BIN) + " " + args);
}

}  // namespace nexus::clitest
