// nexusfs fsck: checks a volume's metadata and the block objects its files need
// (docs/operations.md). Exit codes: 0 clean, 1 fsck could not run, 2 problems remain,
// 3 every problem found was repaired.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/volume_store.h"
#include "meta/meta.h"
#include "ops/fsck.h"

namespace nexus::cli {
namespace {

struct FsckArgs {
  std::string meta_url;
  std::string path;
  bool repair = false;
  bool json = false;
  bool no_blocks = false;
  int threads = 10;
  uint64_t ino_window = 512 * 1024;
  uint64_t slice_window = 8 * 1024 * 1024;
};

nlohmann::json ProblemJson(const ops::Problem& p) {
  return {
      {"kind", p.kind}, {"object", p.object}, {"message", p.message}, {"repairable", p.repairable}};
}

void RunFsck(const FsckArgs& a) {
  if (a.threads < 1 || a.ino_window == 0 || a.slice_window == 0) {
    return Fail("fsck", Status::InvalidArgument("threads and windows must be positive"));
  }
  auto m = OpenMeta(a.meta_url);
  if (!m) return Fail("fsck", m.error());
  const meta::Format& f = (*m)->format();
  auto store = OpenVolumeStore(f);
  if (!store) return Fail("fsck", store.error());
  ops::FsckOptions o;
  o.repair = a.repair;
  o.check_blocks = !a.no_blocks;
  o.threads = a.threads;
  o.ino_window = a.ino_window;
  o.slice_window = a.slice_window;
  o.path = a.path;
  o.block_prefix = f.name + "/";
  if (!a.json) {
    o.on_problem = [](const ops::Problem& p) { std::printf("%s\n", p.Line().c_str()); };
    o.on_repair = [](const std::string& line) { std::printf("repair: %s\n", line.c_str()); };
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ops::Fsck(m->get(), store->get(), o);
  if (!r) return Fail("fsck", r.error());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool clean = r->problem_count == 0;
  const bool fixed = !clean && a.repair && r->repaired_all;
  const auto& s = r->stats;
  if (a.json) {
    nlohmann::json out;
    out["stats"] = {{"inodes", s.inodes},
                    {"entries", s.entries},
                    {"chunks", s.chunks},
                    {"slice_records", s.slice_records},
                    {"live_slices", s.live_slices},
                    {"blocks_checked", s.blocks_checked},
                    {"passes", s.passes},
                    {"used_bytes", s.used_space},
                    {"seconds", secs}};
    out["problem_count"] = r->problem_count;
    out["problems"] = nlohmann::json::array();
    for (const auto& p : r->problems) out["problems"].push_back(ProblemJson(p));
    out["repairs"] = r->repairs;
    out["remaining"] = nlohmann::json::array();
    for (const auto& p : r->remaining) out["remaining"].push_back(ProblemJson(p));
    out["clean"] = clean;
    out["repaired_all"] = fixed;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (a.repair && !clean) {
      for (const auto& p : r->remaining) std::printf("unrepaired: %s\n", p.Line().c_str());
    }
    std::printf(
        "fsck: %llu inodes, %llu entries, %llu chunks, %llu live slices, %llu blocks checked, "
        "%llu pass(es), %.2f s: %s\n",
        (unsigned long long)s.inodes, (unsigned long long)s.entries, (unsigned long long)s.chunks,
        (unsigned long long)s.live_slices, (unsigned long long)s.blocks_checked,
        (unsigned long long)s.passes, secs,
        clean   ? "clean"
        : fixed ? (std::to_string(r->problem_count) + " problems, all repaired").c_str()
        : a.repair
            ? (std::to_string(r->problem_count) + " problems, " +
               std::to_string(r->remaining.size()) + " left unrepaired")
                  .c_str()
            : (std::to_string(r->problem_count) + " problems (run with --repair to fix)").c_str());
  }
  SetExitCode(clean ? 0 : fixed ? 3 : 2);
}

}  // namespace

void RegisterFsck(CLI::App& app) {
  auto a = std::make_shared<FsckArgs>();
  auto* cmd = app.add_subcommand(
      "fsck", "Check a volume's metadata and block objects (exit 0 clean, 2 problems, 3 repaired)");
  cmd->add_option("META-URL", a->meta_url, "Metadata engine URL or path")->required();
  cmd->add_option("--path", a->path, "Only check the subtree under this directory");
  cmd->add_flag("--repair", a->repair, "Fix what can be fixed, then check again");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->add_flag("--no-blocks", a->no_blocks, "Do not check that block objects exist");
  cmd->add_option("-p,--threads", a->threads, "Parallel object Heads")->capture_default_str();
  cmd->add_option("--ino-window", a->ino_window, "Inode numbers counted per pass (72 B each)")
      ->capture_default_str();
  cmd->add_option("--slice-window", a->slice_window, "Slice ids counted per pass (8 B each)")
      ->capture_default_str();
  cmd->callback([a] { RunFsck(*a); });
}

}  // namespace nexus::cli
