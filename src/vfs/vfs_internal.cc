// Vfs: the internal read-only files at the root of the mount.
//   .stats   operation and byte counters in Prometheus text format
//   .config  the mount's options and the volume format (secrets removed) as JSON
//   .accesslog  one line per operation while open (AccessLog, fed by the FUSE adapter)
//   .control  a JSON request/response channel to this mount process (vfs_control.cc)
// Each open of .stats/.config takes a snapshot of the content; reads serve that snapshot.
#include <fcntl.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "common/clock.h"
#include "common/metrics.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "vfs/vfs.h"
#include "vfs/vfs_handles.h"

namespace nexus::vfs {
namespace {

constexpr const char* kOpNames[] = {
    "lookup",  "getattr",  "setattr", "mknod",  "mkdir",     "unlink",     "rmdir",
    "symlink", "readlink", "link",    "rename", "open",      "create",     "read",
    "write",   "flush",    "release", "fsync",  "opendir",   "readdir",    "releasedir",
    "statfs",  "xattr",    "access",  "lock",   "fallocate", "copy_range", "lseek",
};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == static_cast<size_t>(Op::kCount),
              "one name per Op");

}  // namespace

std::optional<Ino> Vfs::InternalIno(Ino parent, std::string_view name) const {
  if (parent != meta::kRootIno) return std::nullopt;
  if (name == ".stats") return kStatsIno;
  if (name == ".config") return kConfigIno;
  if (name == ".accesslog") return kAccessLogIno;
  if (name == ".control") return kControlIno;
  return std::nullopt;
}

std::string Vfs::StatsText() const {
  std::ostringstream out;
  out << "# HELP nexusfs_vfs_ops_total File system operations served, by type.\n"
      << "# TYPE nexusfs_vfs_ops_total counter\n";
  for (int i = 0; i < static_cast<int>(Op::kCount); ++i) {
    out << "nexusfs_vfs_ops_total{op=\"" << kOpNames[i] << "\"} "
        << op_counts_[i].load(std::memory_order_relaxed) << "\n";
  }
  out << "# HELP nexusfs_vfs_read_bytes_total Bytes returned by read.\n"
      << "# TYPE nexusfs_vfs_read_bytes_total counter\n"
      << "nexusfs_vfs_read_bytes_total " << bytes_read_.load(std::memory_order_relaxed) << "\n"
      << "# HELP nexusfs_vfs_write_bytes_total Bytes accepted by write.\n"
      << "# TYPE nexusfs_vfs_write_bytes_total counter\n"
      << "nexusfs_vfs_write_bytes_total " << bytes_written_.load(std::memory_order_relaxed) << "\n"
      << "# HELP nexusfs_vfs_open_files Files open through this mount.\n"
      << "# TYPE nexusfs_vfs_open_files gauge\n"
      << "nexusfs_vfs_open_files " << open_files_.load(std::memory_order_relaxed) << "\n";
  kv::EngineStats es = meta_->engine()->Stats();
  out << "# HELP nexusfs_meta_txns_total Metadata transactions committed.\n"
      << "# TYPE nexusfs_meta_txns_total counter\n"
      << "nexusfs_meta_txns_total " << es.txns << "\n"
      << "# HELP nexusfs_meta_txn_conflicts_total Transaction bodies re-run after a conflict.\n"
      << "# TYPE nexusfs_meta_txn_conflicts_total counter\n"
      << "nexusfs_meta_txn_conflicts_total " << es.conflicts << "\n"
      << "# HELP nexusfs_meta_txn_failures_total Transactions that gave up.\n"
      << "# TYPE nexusfs_meta_txn_failures_total counter\n"
      << "nexusfs_meta_txn_failures_total " << es.failures << "\n";
  out << metrics::Registry::Default().Expose();
  return out.str();
}

std::string Vfs::ConfigText() const {
  nlohmann::json j;
  j["mount"] = nlohmann::json::parse(options_.mount_options_json, nullptr, false);
  if (j["mount"].is_discarded()) j["mount"] = options_.mount_options_json;
  j["mount"]["atime_mode"] = std::string(AtimeModeName(options_.atime_mode));
  j["mount"]["read_only"] = options_.read_only;
  j["mount"]["writeback_cache"] = options_.writeback_cache;
  auto format = nlohmann::json::parse(meta_->format().ToJson(true), nullptr, false);
  j["format"] = format.is_discarded() ? nlohmann::json(nullptr) : format;
  return j.dump(2) + "\n";
}

Result<Attr> Vfs::InternalAttr(Ino ino) const {
  std::string content;
  if (ino == kStatsIno) {
    content = StatsText();
  } else if (ino == kConfigIno) {
    content = ConfigText();
  } else if (ino == kAccessLogIno || ino == kControlIno) {
    content.clear();  // a stream: no length
  } else {
    return Err(ENOENT, "no internal file with inode " + std::to_string(ino));
  }
  Attr a;
  a.type = meta::FileType::kFile;
  a.mode = ino == kControlIno ? 0666 : 0444;
  a.nlink = 1;
  a.length = content.size();
  a.atime = a.mtime = a.ctime = NowNanos();
  a.parent = meta::kRootIno;
  return a;
}

Result<OpenResult> Vfs::OpenInternal(Ino ino, int flags) {
  if (ino == kControlIno) {
    NX_ASSIGN_OR_RETURN(Attr attr, InternalAttr(ino));
    auto h = std::make_shared<FileHandle>();
    h->ino = ino;
    h->flags = flags;
    h->internal = true;
    h->control = std::make_shared<ControlState>();
    OpenResult r;
    r.attr = attr;
    r.direct_io = true;
    r.fh = AddFile(std::move(h));
    return r;
  }
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
    return Err(EACCES, "internal files are read-only");
  }
  NX_ASSIGN_OR_RETURN(Attr attr, InternalAttr(ino));
  auto h = std::make_shared<FileHandle>();
  h->ino = ino;
  h->flags = flags;
  h->internal = true;
  if (ino == kAccessLogIno) {
    h->log_reader = access_log_.OpenReader();
  } else {
    h->content = ino == kStatsIno ? StatsText() : ConfigText();
  }
  attr.length = h->content.size();
  OpenResult r;
  r.attr = attr;
  r.direct_io = true;
  r.fh = AddFile(std::move(h));
  return r;
}

}  // namespace nexus::vfs
