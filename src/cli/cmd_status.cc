// nexusfs status / nexusfs config: show and change a volume's settings.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace nexus::cli {
namespace {

nlohmann::json SessionsJson(const std::vector<meta::SessionInfo>& sessions) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : sessions) {
    out.push_back({{"sid", s.sid},
                   {"host", s.host},
                   {"pid", s.pid},
                   {"mount_point", s.mount_point},
                   {"version", s.version},
                   {"start_time_ns", s.start_time},
                   {"heartbeat_ns", s.heartbeat},
                   {"timeout_ns", s.timeout}});
  }
  return out;
}

void RunStatus(const std::string& url) {
  auto m = OpenMeta(url);
  if (!m) return Fail("status", m.error());
  nlohmann::json out;
  out["setting"] = nlohmann::json::parse((*m)->format().ToJson(/*redact=*/true));
  out["engine"] = (*m)->engine()->Name();
  auto sessions = (*m)->ListSessions();
  if (!sessions) return Fail("status", sessions.error());
  out["sessions"] = SessionsJson(*sessions);
  auto st = (*m)->GetStatFs(meta::kRootIno);
  if (!st) return Fail("status", st.error());
  out["usage"] = {{"used_bytes", st->used_space},
                  {"available_bytes", st->avail_space},
                  {"used_inodes", st->used_inodes},
                  {"available_inodes", st->avail_inodes}};
  std::printf("%s\n", out.dump(2).c_str());
}

struct ConfigArgs {
  std::string meta_url;
  uint64_t capacity_gib = 0;
  uint64_t inodes = 0;
  uint32_t trash_days = 0;
};

void RunConfig(const ConfigArgs& a, const CLI::App& cmd) {
  auto m = OpenMeta(a.meta_url);
  if (!m) return Fail("config", m.error());
  meta::Format f = (*m)->format();
  std::vector<std::string> changes;
  auto change = [&](const char* name, uint64_t* field, uint64_t value) {
    if (*field != value) {
      changes.push_back(std::string(name) + ": " + std::to_string(*field) + " -> " +
                        std::to_string(value));
      *field = value;
    }
  };
  if (cmd.count("--capacity")) change("capacity", &f.capacity, a.capacity_gib << 30);
  if (cmd.count("--inodes")) change("inodes", &f.inodes, a.inodes);
  if (cmd.count("--trash-days")) {
    uint64_t days = f.trash_days;
    change("trash-days", &days, a.trash_days);
    f.trash_days = static_cast<uint32_t>(days);
  }
  if (changes.empty()) {
    std::printf("%s\n", nlohmann::json::parse(f.ToJson(true)).dump(2).c_str());
    return;
  }
  if (Status s = (*m)->UpdateFormat(f); !s.ok()) return Fail("config", s);
  for (const auto& c : changes) std::printf("%s\n", c.c_str());
}

}  // namespace

void RegisterStatus(CLI::App& app) {
  auto url = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("status", "Show a volume's settings, usage and sessions (JSON)");
  cmd->add_option("META-URL", *url, "Metadata engine URL or path")->required();
  cmd->callback([url] { RunStatus(*url); });
}

void RegisterConfig(CLI::App& app) {
  auto a = std::make_shared<ConfigArgs>();
  auto* cmd = app.add_subcommand("config", "Show or change a volume's settings");
  cmd->add_option("META-URL", a->meta_url, "Metadata engine URL or path")->required();
  cmd->add_option("--capacity", a->capacity_gib, "Volume capacity in GiB (0 = unlimited)");
  cmd->add_option("--inodes", a->inodes, "Maximum number of inodes (0 = unlimited)");
  cmd->add_option("--trash-days", a->trash_days, "Days removed files stay in .trash");
  cmd->callback([a, cmd] { RunConfig(*a, *cmd); });
}

}  // namespace nexus::cli
