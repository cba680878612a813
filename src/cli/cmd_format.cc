// nexusfs format: writes a new volume's settings and root directory.
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/clock.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::cli {
namespace {

struct FormatArgs {
  std::string meta_url;
  std::string name;
  std::string storage = "file";
  std::string bucket;
  std::string block_size = "4M";
  uint64_t capacity_gib = 0;
  uint64_t inodes = 0;
  uint32_t trash_days = 0;
  bool force = false;
};

Status ValidateVolumeName(const std::string& name) {
  bool ok = name.size() >= 3 && name.size() <= 63;
  for (char c : name) {
    if (!std::islower(static_cast<unsigned char>(c)) &&
        !std::isdigit(static_cast<unsigned char>(c)) && c != '-') {
      ok = false;
    }
  }
  if (!ok || name.front() == '-' || name.back() == '-') {
    return Status::InvalidArgument("volume name '" + name +
                                   "' must be 3 to 63 characters of a-z, 0-9 and '-', not "
                                   "starting or ending with '-'");
  }
  return Status::OK();
}

std::string NewUuid() {
  std::ifstream in("/proc/sys/kernel/random/uuid");
  std::string uuid;
  std::getline(in, uuid);
  return uuid;
}

std::string DefaultBucket() {
  if (geteuid() == 0) return "/var/lib/nexusfs/data";
  const char* home = getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.nexusfs/data";
}

// Writes, reads back and deletes one object, so that a volume is never formatted over a store
// it cannot use.
Status CheckStore(const meta::Format& f) {
  std::string url = StorageUrl(f.storage, f.bucket);
  auto store = object::ObjectStore::Open(url);
  if (!store) return store.error().With("object store " + url);
  std::string key = f.name + "/.format-check-" + f.uuid;
  NX_TRY(((*store)->Put(key, "nexusfs")).With("object store " + url + ": cannot write"));
  auto got = (*store)->Get(key);
  if (!got || *got != "nexusfs") {
    return Status::IOError("object store " + url + ": an object written could not be read back");
  }
  return ((*store)->Delete(key)).With("object store " + url + ": cannot delete");
}

void RunFormat(const FormatArgs& a, const CLI::App& cmd) {
  auto m = OpenMetaUnloaded(a.meta_url);
  if (!m) return Fail("format", m.error());
  auto existing = (*m)->Load();
  if (existing && !a.force) {
    return Fail("format",
                Status::Exists("volume '" + existing->name + "' is already formatted at " +
                               (*m)->engine()->Name() + " (use --force to change its settings)"));
  }
  if (!existing && !existing.error().IsNotFound()) return Fail("format", existing.error());

  meta::Format f = existing ? *existing : meta::Format{};
  if (!existing) {
    if (Status s = ValidateVolumeName(a.name); !s.ok()) return Fail("format", s);
    f.name = a.name;
    f.uuid = NewUuid();
    f.created = NowNanos();
  } else if (a.name != f.name) {
    return Fail("format",
                Status::InvalidArgument("volume at " + (*m)->engine()->Name() + " is named '" +
                                        f.name + "', not '" + a.name + "'"));
  }
  if (!existing || cmd.count("--storage")) f.storage = a.storage;
  if (!existing || cmd.count("--bucket")) f.bucket = a.bucket.empty() ? DefaultBucket() : a.bucket;
  if (f.storage != "file" && f.storage != "mem" && f.storage != "s3") {
    return Fail("format",
                Status::InvalidArgument("storage '" + f.storage + "' is not one of file, mem, s3"));
  }
  if (!existing || cmd.count("--block-size")) {
    auto bs = ParseSize(a.block_size);
    if (!bs) return Fail("format", bs.error());
    if (*bs < (64 << 10) || *bs > (16 << 20) || (*bs & (*bs - 1)) != 0) {
      return Fail("format", Status::InvalidArgument("block size " + a.block_size +
                                                    " must be a power of two from 64K to 16M"));
    }
    if (existing && *bs != f.block_size) {
      return Fail("format",
                  Status::InvalidArgument("the block size of an existing volume cannot change"));
    }
    f.block_size = static_cast<uint32_t>(*bs);
  }
  if (!existing || cmd.count("--capacity")) f.capacity = a.capacity_gib << 30;
  if (!existing || cmd.count("--inodes")) f.inodes = a.inodes;
  if (!existing || cmd.count("--trash-days")) f.trash_days = a.trash_days;

  if (Status s = CheckStore(f); !s.ok()) return Fail("format", s);
  if (Status s = (*m)->Format(f, a.force); !s.ok()) return Fail("format", s);
  std::printf("%s volume '%s' (uuid %s): metadata in %s, data in %s\n",
              existing ? "Updated" : "Formatted", f.name.c_str(), f.uuid.c_str(),
              (*m)->engine()->Name().c_str(), StorageUrl(f.storage, f.bucket).c_str());
}

}  // namespace

void RegisterFormat(CLI::App& app) {
  auto a = std::make_shared<FormatArgs>();
  auto* cmd = app.add_subcommand("format", "Create a volume (or change its settings with --force)");
  cmd->add_option("META-URL", a->meta_url,
                  "Metadata engine: a path (embedded RocksDB), rocksdb://PATH, sqlite3://PATH")
      ->required();
  cmd->add_option("NAME", a->name, "Volume name: 3-63 characters of a-z, 0-9, '-'")->required();
  cmd->add_option("--storage", a->storage, "Object store kind: file, mem, s3")
      ->capture_default_str();
  cmd->add_option("--bucket", a->bucket,
                  "Object store location (for file: a directory; default /var/lib/nexusfs/data "
                  "as root, ~/.nexusfs/data otherwise)");
  cmd->add_option("--block-size", a->block_size, "Block size, a power of two from 64K to 16M")
      ->capture_default_str();
  cmd->add_option("--capacity", a->capacity_gib, "Volume capacity in GiB (0 = unlimited)");
  cmd->add_option("--inodes", a->inodes, "Maximum number of inodes (0 = unlimited)");
  cmd->add_option("--trash-days", a->trash_days, "Days removed files stay in .trash (0 = off)");
  cmd->add_flag("--force", a->force, "Change the settings of an existing volume");
  cmd->callback([a, cmd] { RunFormat(*a, *cmd); });
}

}  // namespace nexus::cli
