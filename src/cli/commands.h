// Subcommand registration. Each command lives in its own file (cmd_<name>.cc) and registers
// itself through a Register<Name> function listed in commands.cc.
#pragma once

#include <CLI/CLI.hpp>

#define NEXUS_VERSION_STRING "0.1.0"

namespace nexus::cli {

void RegisterCommands(CLI::App& app);
// The exit code the command that ran asked for.
int ExitCode();
void SetExitCode(int code);

}  // namespace nexus::cli
