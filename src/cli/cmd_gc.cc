// nexusfs gc: finds block objects no slice references, releases pending deletions, compacts
// fragmented chunks (docs/operations.md).
#include <algorithm>
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

struct GcArgs {
  std::string meta_url;
  bool do_delete = false;
  bool compact = false;
  bool full = false;
  bool json = false;
  int threads = 10;
  std::string min_age = "1h";
};

// "0", "90s", "30m", "1h", "2d" (a bare number is seconds).
Result<int64_t> ParseDuration(const std::string& text) {
  if (text.empty()) return Err(EINVAL, "empty duration");
  size_t n = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &n);
  } catch (...) {
    return Err(EINVAL, "bad duration '" + text + "'");
  }
  if (v < 0) return Err(EINVAL, "negative duration '" + text + "'");
  const std::string unit = text.substr(n);
  int64_t mult = 1;
  if (unit.empty() || unit == "s") {
    mult = 1;
  } else if (unit == "m") {
    mult = 60;
  } else if (unit == "h") {
    mult = 3600;
  } else if (unit == "d") {
    mult = 86400;
  } else {
    return Err(EINVAL, "bad duration unit in '" + text + "' (use s, m, h or d)");
  }
  return v * mult * 1000000000LL;
}

std::string Bytes(uint64_t b) {
  char buf[64];
  if (b >= (1ULL << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1ULL << 30));
  } else if (b >= (1ULL << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1ULL << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%llu B", (unsigned long long)b);
  }
  return buf;
}

void RunGc(const GcArgs& a) {
  auto age = ParseDuration(a.min_age);
  if (!age) return Fail("gc", age.error().With("--min-age"));
  if (a.threads < 1) return Fail("gc", Status::InvalidArgument("--threads must be positive"));
  auto m = OpenMeta(a.meta_url);
  if (!m) return Fail("gc", m.error());
  const meta::Format& f = (*m)->format();
  auto store = OpenVolumeStore(f);
  if (!store) return Fail("gc", store.error());
  ops::GcOptions o;
  o.do_delete = a.do_delete;
  o.compact = a.compact;
  o.full = a.full;
  // A session that recorded no timeout of its own is judged by the window too (capped at the
  // stale-session default): --min-age 0 says no client is writing.
  o.session_timeout_ns = std::min<int64_t>(*age, o.session_timeout_ns);
  o.threads = a.threads;
  o.min_age_ns = *age;
  o.block_prefix = f.name + "/";
  o.block_size = f.block_size;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = ops::Gc(m->get(), store->get(), o);
  if (!r) return Fail("gc", r.error());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.json) {
    nlohmann::json out = {{"objects", r->objects},
                          {"bytes", r->bytes},
                          {"referenced", r->referenced},
                          {"referenced_bytes", r->referenced_bytes},
                          {"pending", r->pending},
                          {"pending_bytes", r->pending_bytes},
                          {"leaked", r->leaked},
                          {"leaked_bytes", r->leaked_bytes},
                          {"young", r->young},
                          {"young_bytes", r->young_bytes},
                          {"deleted", r->deleted},
                          {"deleted_bytes", r->deleted_bytes},
                          {"delete_failed", r->delete_failed},
                          {"foreign", r->foreign},
                          {"foreign_keys", r->foreign_keys},
                          {"pending_files", r->pending_files},
                          {"pending_slices", r->pending_slices},
                          {"slices_released", r->slices_released},
                          {"chunks_compacted", r->chunks_compacted},
                          {"mode", a.full ? "full" : "recorded"},
                          {"list_calls", r->list_calls},
                          {"ranges", r->ranges},
                          {"ranges_active", r->ranges_active},
                          {"ranges_waiting", r->ranges_waiting},
                          {"ranges_removed", r->ranges_removed},
                          {"unrecorded_below", r->unrecorded_below},
                          {"leaked_keys", r->leaked_keys},
                          {"leftovers", r->leftovers},
                          {"leftover_bytes", r->leftover_bytes},
                          {"leftovers_removed", r->leftovers_removed},
                          {"seconds", secs}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (a.full) {
      std::printf("objects:    %llu (%s)\n", (unsigned long long)r->objects,
                  Bytes(r->bytes).c_str());
      std::printf("referenced: %llu (%s)\n", (unsigned long long)r->referenced,
                  Bytes(r->referenced_bytes).c_str());
      std::printf("pending:    %llu (%s) of slices awaiting deletion\n",
                  (unsigned long long)r->pending, Bytes(r->pending_bytes).c_str());
    } else {
      std::printf("batches:    %llu recorded (%llu of live sessions, %llu inside --min-age)\n",
                  (unsigned long long)r->ranges, (unsigned long long)r->ranges_active,
                  (unsigned long long)r->ranges_waiting);
      std::printf("objects:    %llu (%s) of uncommitted slice ids, in %llu narrow lists\n",
                  (unsigned long long)r->objects, Bytes(r->bytes).c_str(),
                  (unsigned long long)r->list_calls);
    }
    std::printf("leaked:     %llu (%s)\n", (unsigned long long)r->leaked,
                Bytes(r->leaked_bytes).c_str());
    std::printf("young:      %llu (%s) unreferenced but inside --min-age %s, kept\n",
                (unsigned long long)r->young, Bytes(r->young_bytes).c_str(), a.min_age.c_str());
    if (r->foreign) {
      std::printf("foreign:    %llu keys under chunks/ that are not block keys, kept\n",
                  (unsigned long long)r->foreign);
    }
    if (r->leftovers) {
      const std::string fate = a.do_delete ? std::to_string(r->leftovers_removed) + " removed"
                                           : std::string("removed with --delete");
      std::printf(
          "leftovers:  %llu (%s) temporary files of unfinished uploads, older than "
          "--min-age: %s\n",
          (unsigned long long)r->leftovers, Bytes(r->leftover_bytes).c_str(), fate.c_str());
    }
    std::printf("pending deletions: %llu files, %llu slices%s\n",
                (unsigned long long)r->pending_files, (unsigned long long)r->pending_slices,
                a.do_delete ? "" : " (released with --delete)");
    if (a.do_delete) {
      std::printf("deleted:    %llu (%s) leaked objects; %llu slices released",
                  (unsigned long long)r->deleted, Bytes(r->deleted_bytes).c_str(),
                  (unsigned long long)r->slices_released);
      if (r->delete_failed)
        std::printf("; %llu deletes failed", (unsigned long long)r->delete_failed);
      std::printf("\n");
    } else if (r->leaked) {
      std::printf("run with --delete to delete the leaked objects\n");
    }
    if (a.compact)
      std::printf("compacted:  %llu chunks\n", (unsigned long long)r->chunks_compacted);
    if (a.do_delete && !a.full) {
      std::printf("closed:     %llu batches\n", (unsigned long long)r->ranges_removed);
    }
    std::printf("gc: %.2f s\n", secs);
  }
  if (r->unrecorded_below > 1) {
    std::fprintf(stderr,
                 "gc: no allocation records before slice %llu (ids taken before this version): "
                 "run gc --full once\n",
                 (unsigned long long)r->unrecorded_below);
  }
  if (r->delete_failed) SetExitCode(1);
}

}  // namespace

void RegisterGc(CLI::App& app) {
  auto a = std::make_shared<GcArgs>();
  auto* cmd = app.add_subcommand(
      "gc", "Find (and with --delete remove) leaked block objects; release pending deletions");
  cmd->add_option("META-URL", a->meta_url, "Metadata engine URL or path")->required();
  cmd->add_flag("--delete", a->do_delete,
                "Delete leaked objects and release pending deletions (default: only count)");
  cmd->add_flag("--compact", a->compact, "Compact chunks of 5 or more slices first");
  cmd->add_flag("--full", a->full,
                "List every block object of the volume (volumes from before slice batches were "
                "recorded; a cross-check) instead of only the uncommitted recorded slice ids");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->add_option("-p,--threads", a->threads, "Parallel deletes")->capture_default_str();
  cmd->add_option("--min-age", a->min_age,
                  "Keep unreferenced objects younger than this (0, 90s, 30m, 1h, 2d)")
      ->capture_default_str();
  cmd->callback([a] { RunGc(*a); });
}

}  // namespace nexus::cli
