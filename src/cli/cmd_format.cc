// nexusfs format: writes a new volume's settings and root directory.
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/volume_store.h"
#include "common/clock.h"
#include "common/url.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"
#include "object/volume_key.h"

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
  std::string access_key, secret_key, session_token;  // s3; kept in the volume, never printed
  std::string compress = "none";
  std::string encrypt_rsa_key;  // PEM file of the RSA private key
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
  std::string url = RedactedUrl(StorageUrl(f.storage, f.bucket));
  object::StoreOptions options = StoreOptionsFor(f);
  options.create_bucket = true;  // a new S3 bucket is created when missing
  auto store = object::ObjectStore::Open(StorageUrl(f.storage, f.bucket), options);
  if (!store) return store.error().With("object store " + url);
  std::string key = f.name + "/.format-check-" + f.uuid;
  NX_TRY(((*store)->Put(key, "nexusfs")).With("object store " + url + ": cannot write"));
  auto got = (*store)->Get(key);
  if (!got || *got != "nexusfs") {
    return Status::IOError("object store " + url + ": an object written could not be read back");
  }
  return ((*store)->Delete(key)).With("object store " + url + ": cannot delete");
}

// S3 credentials: --access-key/--secret-key/--session-token, or the bucket URL's user:password
// (moved out of the URL so that it is never shown). Without any, the store falls back to
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN when it is opened.
Status SetCredentials(const FormatArgs& a, const CLI::App& cmd, meta::Format* f) {
  if (cmd.count("--access-key")) f->access_key = a.access_key;
  if (cmd.count("--secret-key")) f->secret_key = a.secret_key;
  if (cmd.count("--session-token")) f->session_token = a.session_token;
  if (f->storage == "s3" && cmd.count("--bucket")) {
    auto u = Url::Parse(f->bucket);
    if (u && !u->user.empty()) {
      if (!cmd.count("--access-key")) f->access_key = u->user;
      if (!cmd.count("--secret-key")) f->secret_key = u->password;
      u->user.clear();
      u->password.clear();
      f->bucket = u->ToString();
    }
  }
  if (f->access_key.empty() != f->secret_key.empty()) {
    return Status::InvalidArgument("--access-key and --secret-key go together");
  }
  return Status::OK();
}

// Checks the arguments that do not depend on an existing volume, before anything is opened.
Status ValidateArgs(const FormatArgs& a, const CLI::App& cmd) {
  if (cmd.count("--storage") && a.storage != "file" && a.storage != "mem" && a.storage != "s3") {
    return Status::InvalidArgument("storage '" + a.storage + "' is not one of file, mem, s3");
  }
  if (auto c = object::ParseCompression(a.compress); !c) return c.error();
  if (cmd.count("--block-size")) {
    auto bs = ParseSize(a.block_size);
    if (!bs) return bs.error();
    if (*bs < (64 << 10) || *bs > (16 << 20) || (*bs & (*bs - 1)) != 0) {
      return Status::InvalidArgument("block size " + a.block_size +
                                     " must be a power of two from 64K to 16M");
    }
  }
  return Status::OK();
}

// The settings to write: those of `existing` (when --force changes a volume) with the options
// given on the command line applied, or a new volume's from the options and defaults.
Result<meta::Format> BuildFormat(const FormatArgs& a, const CLI::App& cmd,
                                 const meta::Format* existing) {
  meta::Format f = existing ? *existing : meta::Format{};
  if (!existing) {
    NX_TRY(ValidateVolumeName(a.name));
    f.name = a.name;
    f.uuid = NewUuid();
    f.created = NowNanos();
  } else if (a.name != f.name) {
    return Err(EINVAL, "the volume is named '" + f.name + "', not '" + a.name + "'");
  }
  if (!existing || cmd.count("--storage")) f.storage = a.storage;
  if (!existing || cmd.count("--bucket")) f.bucket = a.bucket.empty() ? DefaultBucket() : a.bucket;
  if (!existing || cmd.count("--block-size")) {
    NX_ASSIGN_OR_RETURN(uint64_t bs, ParseSize(a.block_size));
    if (existing && bs != f.block_size) {
      return Err(EINVAL, "the block size of an existing volume cannot change");
    }
    f.block_size = static_cast<uint32_t>(bs);
  }
  if (!existing || cmd.count("--capacity")) f.capacity = a.capacity_gib << 30;
  if (!existing || cmd.count("--inodes")) f.inodes = a.inodes;
  if (!existing || cmd.count("--trash-days")) f.trash_days = a.trash_days;
  NX_TRY(SetCredentials(a, cmd, &f));
  if (!existing) f.block_format = kFramedBlockFormat;
  if (!existing || cmd.count("--compress")) {
    if (f.block_format.empty() && a.compress != "none") {
      return Err(EINVAL, "volume '" + f.name +
                             "' stores raw blocks (it was formatted before "
                             "framing): it cannot be compressed");
    }
    f.compression = a.compress == "none" ? "" : a.compress;
  }
  if (cmd.count("--encrypt-rsa-key")) {
    if (existing) return Err(EINVAL, "the encryption of an existing volume cannot change");
    std::ifstream in(a.encrypt_rsa_key);
    if (!in) return Err(ENOENT, "cannot read the RSA key file " + a.encrypt_rsa_key);
    std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (pem.empty()) return Err(EINVAL, "the RSA key file " + a.encrypt_rsa_key + " is empty");
    auto key = object::NewVolumeKey(pem, RsaPassphrase());
    if (!key) return Err(key.error().With("RSA key " + a.encrypt_rsa_key));
    f.encrypt_key = key->private_pem;
    f.encrypt_data_key = key->wrapped_key;
    f.encrypt_algo = std::string(object::kEncryptAlgo);
  }
  return f;
}

void RunFormat(const FormatArgs& a, const CLI::App& cmd) {
  if (Status s = ValidateArgs(a, cmd); !s.ok()) return Fail("format", s);
  // A new embedded volume: check everything, the object store included, before the engine
  // creates its files, so that a failed format leaves nothing behind.
  const std::string fresh_path = MissingEmbeddedPath(a.meta_url);
  std::optional<meta::Format> existing;
  meta::Format f;
  if (!fresh_path.empty()) {
    auto built = BuildFormat(a, cmd, nullptr);
    if (!built) return Fail("format", built.error());
    f = *built;
    if (Status s = CheckStore(f); !s.ok()) return Fail("format", s);
  }
  auto m = OpenMetaUnloaded(a.meta_url);
  if (!m) return Fail("format", m.error());
  if (fresh_path.empty()) {
    auto loaded = (*m)->Load();
    if (loaded && !a.force) {
      return Fail("format",
                  Status::Exists("volume '" + loaded->name + "' is already formatted at " +
                                 (*m)->engine()->Name() + " (use --force to change its settings)"));
    }
    if (!loaded && !loaded.error().IsNotFound()) return Fail("format", loaded.error());
    if (loaded) existing = *loaded;
    auto built = BuildFormat(a, cmd, existing ? &*existing : nullptr);
    if (!built) return Fail("format", built.error());
    f = *built;
    if (Status s = CheckStore(f); !s.ok()) return Fail("format", s);
  }
  Status s = (*m)->Format(f, a.force);
  std::string engine_name = (*m)->engine()->Name();
  m->reset();
  if (!s.ok()) {
    if (!fresh_path.empty()) {
      std::error_code ec;
      for (const char* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove_all(fresh_path + suffix, ec);
      }
    }
    return Fail("format", s);
  }
  std::string blocks = f.block_format.empty() ? "raw" : "framed";
  if (!f.compression.empty()) blocks += ", " + f.compression;
  if (!f.encrypt_algo.empty()) blocks += ", encrypted (" + f.encrypt_algo + ")";
  std::printf("%s volume '%s' (uuid %s): metadata in %s, data in %s (blocks: %s)\n",
              existing ? "Updated" : "Formatted", f.name.c_str(), f.uuid.c_str(),
              engine_name.c_str(), RedactedUrl(StorageUrl(f.storage, f.bucket)).c_str(),
              blocks.c_str());
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
  cmd->add_option(
      "--bucket", a->bucket,
      "Object store location (for file: a directory; for s3: s3://BUCKET[/PREFIX], "
      "http(s)://HOST[:PORT]/BUCKET[/PREFIX] or https://BUCKET.s3.REGION.amazonaws.com; "
      "default /var/lib/nexusfs/data "
      "as root, ~/.nexusfs/data otherwise)");
  cmd->add_option("--block-size", a->block_size, "Block size, a power of two from 64K to 16M")
      ->capture_default_str();
  cmd->add_option("--capacity", a->capacity_gib, "Volume capacity in GiB (0 = unlimited)");
  cmd->add_option("--inodes", a->inodes, "Maximum number of inodes (0 = unlimited)");
  cmd->add_option("--trash-days", a->trash_days, "Days removed files stay in .trash (0 = off)");
  cmd->add_option("--compress", a->compress, "Block compression: none, lz4, zstd")
      ->capture_default_str();
  cmd->add_option("--encrypt-rsa-key", a->encrypt_rsa_key,
                  "Encrypt blocks (AES-256-GCM) under a data key wrapped by this RSA private key "
                  "(PEM file, 2048 bits or more); its passphrase comes from NEXUS_RSA_PASSPHRASE");
  cmd->add_option("--access-key", a->access_key,
                  "S3 access key (default: AWS_ACCESS_KEY_ID when the volume is opened)");
  cmd->add_option("--secret-key", a->secret_key,
                  "S3 secret key, kept in the volume's settings and never printed");
  cmd->add_option("--session-token", a->session_token, "S3 session token (temporary credentials)");
  cmd->add_flag("--force", a->force, "Change the settings of an existing volume");
  cmd->callback([a, cmd] { RunFormat(*a, *cmd); });
}

}  // namespace nexus::cli
