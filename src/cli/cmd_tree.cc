// Commands that walk a directory tree with parallel readdir (cli/tree_walk.h):
//   nexusfs warmup PATH...   reads every file once so that its blocks land in the mount's caches
//   nexusfs summary PATH     a du-like tree of sizes, file and directory counts
//   nexusfs rmr PATH...      removes trees: not a walk, but one request to the mount process
//                            through its .control file (Meta::RemoveTree), which streams
//                            progress counts back
// Each shows a progress bar (rmr: a count) on stderr when stdout is a terminal.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/progress.h"
#include "cli/tree_walk.h"
#include "common/clock.h"

namespace nexus::cli {
namespace {

// ---- warmup ----

struct WarmupArgs {
  std::vector<std::string> paths;
  int threads = 4;
  bool json = false;
};

void RunWarmup(const WarmupArgs& a) {
  int64_t start = MonoNanos();
  // Files first (the walk), then reads from a shared list, so the bar knows the total.
  std::vector<std::pair<std::string, uint64_t>> files;
  std::mutex mu;
  for (const auto& p : a.paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) return Fail("warmup", Errno("stat " + p));
    if (S_ISREG(st.st_mode)) {
      files.emplace_back(p, st.st_size);
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    Status s = ParallelWalk(p, a.threads,
                            [&](const std::string& dir, int, const std::vector<WalkEntry>& es) {
                              std::lock_guard<std::mutex> lock(mu);
                              for (const auto& e : es) {
                                if (S_ISREG(e.mode)) files.emplace_back(dir + "/" + e.name, e.size);
                              }
                              return Status::OK();
                            });
    if (!s.ok()) return Fail("warmup", s);
  }
  uint64_t total = 0;
  for (const auto& f : files) total += f.second;
  Progress prog("warmup", total, true);
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes{0};
  std::vector<Status> errs(std::max(1, a.threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, a.threads); ++t) {
    pool.emplace_back([&, t] {
      std::string buf(4 << 20, '\0');
      uint64_t mine = 0;
      for (size_t i; (i = next.fetch_add(1)) < files.size();) {
        Status s = ReadThrough(files[i].first, buf, &prog, &mine);
        if (!s.ok() && errs[t].ok()) errs[t] = s;
      }
      bytes += mine;
    });
  }
  for (auto& th : pool) th.join();
  prog.Done();
  double secs = static_cast<double>(MonoNanos() - start) / 1e9;
  int failed = 0;
  for (const auto& e : errs) {
    if (!e.ok()) {
      std::fprintf(stderr, "nexusfs warmup: %s\n", e.ToString().c_str());
      ++failed;
    }
  }
  if (a.json) {
    nlohmann::json j = {{"files", files.size()}, {"bytes", bytes.load()}, {"seconds", secs}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("warmed up %zu files, %s in %.2f s\n", files.size(),
                HumanBytes(static_cast<double>(bytes.load())).c_str(), secs);
  }
  if (failed) SetExitCode(1);
}

// ---- summary ----

struct SummaryArgs {
  std::string path;
  int depth = 2;
  int threads = 8;
  bool json = false;
};

struct Node {
  uint64_t size = 0, files = 0, dirs = 0;  // the whole subtree, this directory excluded
  int depth = 0;
  std::vector<std::string> children;  // subdirectory paths
};

nlohmann::json NodeJson(const std::map<std::string, Node>& nodes, const std::string& path,
                        const std::string& name, int max_depth) {
  const Node& n = nodes.at(path);
  nlohmann::json j = {{"name", name}, {"size", n.size}, {"files", n.files}, {"dirs", n.dirs}};
  if (n.depth < max_depth && !n.children.empty()) {
    std::vector<std::string> kids = n.children;
    std::sort(kids.begin(), kids.end(),
              [&](const auto& x, const auto& y) { return nodes.at(x).size > nodes.at(y).size; });
    for (const auto& k : kids) {
      j["children"].push_back(NodeJson(nodes, k, k.substr(k.rfind('/') + 1), max_depth));
    }
  }
  return j;
}

void PrintNode(const nlohmann::json& j, const std::string& indent) {
  std::printf("%-12s %10llu %8llu  %s%s\n",
              HumanBytes(static_cast<double>(j["size"].get<uint64_t>())).c_str(),
              static_cast<unsigned long long>(j["files"].get<uint64_t>()),
              static_cast<unsigned long long>(j["dirs"].get<uint64_t>()), indent.c_str(),
              j["name"].get<std::string>().c_str());
  if (j.contains("children")) {
    for (const auto& c : j["children"]) PrintNode(c, indent + "  ");
  }
}

void RunSummary(const SummaryArgs& a) {
  struct stat st;
  if (stat(a.path.c_str(), &st) != 0) return Fail("summary", Errno("stat " + a.path));
  if (!S_ISDIR(st.st_mode)) {
    return Fail("summary", Status::Errno(ENOTDIR, a.path + " is not a directory"));
  }
  std::string root = a.path;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::map<std::string, Node> nodes;
  std::mutex mu;
  Progress prog("summary: directories", 0);
  Status s = ParallelWalk(root, a.threads,
                          [&](const std::string& dir, int depth, const std::vector<WalkEntry>& es) {
                            Node n;
                            n.depth = depth;
                            for (const auto& e : es) {
                              if (e.is_dir) {
                                n.dirs++;
                                n.children.push_back(dir + "/" + e.name);
                              } else {
                                n.files++;
                                n.size += e.size;
                              }
                            }
                            prog.Add();
                            std::lock_guard<std::mutex> lock(mu);
                            nodes[dir] = std::move(n);
                            return Status::OK();
                          });
  prog.Done();
  if (!s.ok()) return Fail("summary", s);
  // Bottom-up totals: deepest directories first.
  std::vector<std::string> order;
  for (const auto& [p, n] : nodes) order.push_back(p);
  std::sort(order.begin(), order.end(),
            [&](const auto& x, const auto& y) { return nodes[x].depth > nodes[y].depth; });
  for (const auto& p : order) {
    Node& n = nodes[p];
    for (const auto& c : n.children) {
      const Node& k = nodes[c];
      n.size += k.size;
      n.files += k.files;
      n.dirs += k.dirs;
    }
  }
  nlohmann::json j = NodeJson(nodes, root, root, a.depth);
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%-12s %10s %8s  %s\n", "SIZE", "FILES", "DIRS", "PATH");
  PrintNode(j, "");
}

// ---- rmr ----

struct RmrArgs {
  std::vector<std::string> paths;
};

// Removes one path through the mount's .control: the mount process deletes the tree inside the
// metadata engine (Meta::RemoveTree) as the caller, then drops the kernel's cached dentry.
Status RemoveOne(const std::string& arg) {
  std::string path = arg;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Errno("stat " + path);
  NX_ASSIGN_OR_RETURN(MountRef mount, FindMount(path));
  const std::filesystem::path p(path);
  const std::string name = p.filename().string();
  std::string parent = p.parent_path().string();
  if (parent.empty()) parent = ".";
  char real[PATH_MAX];
  if (S_ISDIR(st.st_mode) && realpath(path.c_str(), real) != nullptr && mount.root == real) {
    return Status::Errno(EBUSY, "cannot remove " + path + ": it is the mount point");
  }
  if (name.empty() || name == "." || name == "..") {
    return Status::Errno(EINVAL, "cannot remove " + path + ": name it by its last component");
  }
  struct stat pst;
  if (stat(parent.c_str(), &pst) != 0) return Errno("stat " + parent);
  Progress prog("rmr " + path + ": entries removed", 0);
  uint64_t shown = 0;
  auto r = ControlRequest(mount.control, {{"op", "rmr"}, {"parent", pst.st_ino}, {"name", name}},
                          [&](uint64_t n) {
                            if (n > shown) prog.Add(n - shown), shown = n;
                          });
  if (r && (*r)["removed"].is_number_unsigned()) {
    uint64_t n = (*r)["removed"].get<uint64_t>();
    if (n > shown) prog.Add(n - shown);
  }
  prog.Done();
  if (!r) {
    return Status::Errno(r.error().code(), "cannot remove " + path + ": " + r.error().message());
  }
  return Status::OK();
}

void RunRmr(const RmrArgs& a) {
  for (const auto& p : a.paths) {
    Status s = RemoveOne(p);
    if (!s.ok()) return Fail("rmr", s);
  }
}

}  // namespace

void RegisterWarmup(CLI::App& app) {
  auto a = std::make_shared<WarmupArgs>();
  auto* cmd = app.add_subcommand("warmup", "Read files once so that their data is cached");
  cmd->add_option("PATH", a->paths, "Files or directories (read recursively)")->required();
  cmd->add_option("-p,--threads", a->threads, "Parallel readers")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the result as JSON");
  cmd->callback([a] { RunWarmup(*a); });
}

void RegisterSummary(CLI::App& app) {
  auto a = std::make_shared<SummaryArgs>();
  auto* cmd = app.add_subcommand("summary", "Show the size, files and directories of a tree");
  cmd->add_option("PATH", a->path, "A directory")->required();
  cmd->add_option("--depth", a->depth, "Levels of subdirectories to show")->capture_default_str();
  cmd->add_option("-p,--threads", a->threads, "Parallel readdir")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the tree as JSON");
  cmd->callback([a] { RunSummary(*a); });
}

void RegisterRmr(CLI::App& app) {
  auto a = std::make_shared<RmrArgs>();
  auto* cmd = app.add_subcommand(
      "rmr", "Remove directory trees quickly (in the mount's metadata engine, via .control)");
  cmd->add_option("PATH", a->paths, "Directories (or files) on a NexusFS mount")->required();
  cmd->callback([a] { RunRmr(*a); });
}

}  // namespace nexus::cli
