#include "cli/commands.h"

#include <cstdio>

namespace nexus::cli {

namespace {
int g_exit_code = 0;
}

int ExitCode() { return g_exit_code; }
void SetExitCode(int code) { g_exit_code = code; }

void RegisterVersion(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the version of nexusfs");
  cmd->callback([] { std::printf("nexusfs %s\n", NEXUS_VERSION_STRING); });
}

void RegisterFormat(CLI::App& app);
void RegisterStatus(CLI::App& app);
void RegisterConfig(CLI::App& app);
void RegisterMount(CLI::App& app);
void RegisterUmount(CLI::App& app);
void RegisterObjbench(CLI::App& app);
void RegisterDump(CLI::App& app);  // dump, load, destroy
void RegisterStats(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterWarmup(CLI::App& app);
void RegisterSummary(CLI::App& app);
void RegisterRmr(CLI::App& app);
void RegisterInfo(CLI::App& app);
void RegisterFsck(CLI::App& app);
void RegisterGc(CLI::App& app);

void RegisterCommands(CLI::App& app) {
  RegisterVersion(app);
  RegisterFormat(app);
  RegisterStatus(app);
  RegisterConfig(app);
  RegisterMount(app);
  RegisterUmount(app);
  RegisterObjbench(app);
  RegisterDump(app);
  RegisterStats(app);
  RegisterBench(app);
  RegisterWarmup(app);
  RegisterSummary(app);
  RegisterRmr(app);
  RegisterInfo(app);
  RegisterFsck(app);
  RegisterGc(app);
}

}  // namespace nexus::cli
