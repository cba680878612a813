// The nexusfs command: one binary, one subcommand per operation.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  CLI::App app{"NexusFS: a distributed POSIX file system on object storage", "nexusfs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", NEXUS_VERSION_STRING);
  // Commands print their results on stdout; only warnings and errors are logged (to stderr).
  // mount sets its own level and log file.
  nexus::InitLogging("warn");
  nexus::cli::RegisterCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return nexus::cli::ExitCode();
}
