// nexusfs info PATH [--json]: what the mount process knows of one inode, asked through the
// mount's .control file: attributes; for a file each chunk's slices and the object keys of the
// blocks they cover, with totals; for a directory its entry count.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/progress.h"

namespace nexus::cli {
namespace {

struct InfoArgs {
  std::string path;
  bool json = false;
};

std::string Time(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof(out), "%s.%09lld", buf, static_cast<long long>(ns % 1000000000));
  return out;
}

uint64_t U(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number_unsigned() ? j[key].get<uint64_t>() : 0;
}

void PrintHuman(const nlohmann::json& j) {
  std::printf("%s\n", j["path"].get<std::string>().c_str());
  std::printf("  %-8s %llu\n", "inode", static_cast<unsigned long long>(U(j, "ino")));
  std::printf("  %-8s %s\n", "type", j.value("type", "?").c_str());
  std::printf("  %-8s %04llo\n", "mode", static_cast<unsigned long long>(U(j, "mode")));
  std::printf("  %-8s %llu/%llu\n", "uid/gid", static_cast<unsigned long long>(U(j, "uid")),
              static_cast<unsigned long long>(U(j, "gid")));
  std::printf("  %-8s %llu (%s)\n", "size", static_cast<unsigned long long>(U(j, "size")),
              HumanBytes(static_cast<double>(U(j, "size"))).c_str());
  std::printf("  %-8s %llu\n", "nlink", static_cast<unsigned long long>(U(j, "nlink")));
  for (const char* t : {"atime", "mtime", "ctime"}) {
    std::printf("  %-8s %s\n", t, Time(static_cast<int64_t>(U(j, t))).c_str());
  }
  if (j.contains("target")) std::printf("  %-8s %s\n", "target", j["target"].dump().c_str());
  if (j.contains("entries")) {
    std::printf("  %-8s %llu\n", "entries", static_cast<unsigned long long>(U(j, "entries")));
  }
  if (!j.contains("totals")) return;
  const auto& t = j["totals"];
  std::printf("  %-8s %llu chunks, %llu slices, %llu objects, %llu bytes\n", "data",
              static_cast<unsigned long long>(U(t, "chunks")),
              static_cast<unsigned long long>(U(t, "slices")),
              static_cast<unsigned long long>(U(t, "objects")),
              static_cast<unsigned long long>(U(t, "bytes")));
  if (U(t, "slices") == 0) return;
  std::printf("  %5s %12s %10s %10s %10s %10s  %s\n", "CHUNK", "SLICE", "POS", "OFF", "LEN", "SIZE",
              "OBJECTS");
  for (const auto& c : j["chunks"]) {
    for (const auto& s : c["slices"]) {
      const auto& objs = s["objects"];
      std::printf(
          "  %5llu %12llu %10llu %10llu %10llu %10llu  %s\n",
          static_cast<unsigned long long>(U(c, "index")),
          static_cast<unsigned long long>(U(s, "id")), static_cast<unsigned long long>(U(s, "pos")),
          static_cast<unsigned long long>(U(s, "off")),
          static_cast<unsigned long long>(U(s, "len")),
          static_cast<unsigned long long>(U(s, "size")),
          objs.empty() ? (U(s, "id") == 0 ? "(hole)" : "-") : objs[0].get<std::string>().c_str());
      for (size_t i = 1; i < objs.size(); ++i) {
        std::printf("  %5s %12s %10s %10s %10s %10s  %s\n", "", "", "", "", "", "",
                    objs[i].get<std::string>().c_str());
      }
    }
  }
}

void RunInfo(const InfoArgs& a) {
  struct stat st;
  if (lstat(a.path.c_str(), &st) != 0) {
    return Fail("info", Status::Errno(errno, "stat " + a.path + ": " + std::strerror(errno)));
  }
  auto mount = FindMount(a.path);
  if (!mount) return Fail("info", mount.error());
  auto r = ControlRequest(mount->control, {{"op", "info"}, {"ino", st.st_ino}});
  if (!r) return Fail("info", Status::Errno(r.error().code(), a.path + ": " + r.error().message()));
  nlohmann::json j = std::move(*r);
  j.erase("ok");
  j["path"] = a.path;
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    PrintHuman(j);
  }
}

}  // namespace

void RegisterInfo(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  auto* cmd = app.add_subcommand(
      "info", "Show an inode of a mount: attributes, chunks, slices and their object keys");
  cmd->add_option("PATH", a->path, "A file or directory on a NexusFS mount")->required();
  cmd->add_flag("--json", a->json, "Print the result as JSON");
  cmd->callback([a] { RunInfo(*a); });
}

}  // namespace nexus::cli
