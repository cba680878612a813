// nexusfs dump / load / destroy: a volume's metadata to a file and back, and removal of a whole
// volume (docs/dump.md).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/clock.h"
#include "meta/dump.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::cli {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct DumpArgs {
  std::string meta_url;
  std::string file = "-";
  bool binary = false;
  bool keep_secret_key = false;
};

// Copies a spooled dump to stdout.
Status CopyOut(std::FILE* from) {
  if (std::fflush(from) != 0 || fseeko(from, 0, SEEK_SET) != 0) {
    return Status::IOError("cannot read back the spooled dump");
  }
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), from)) > 0) {
    if (std::fwrite(buf.data(), 1, n, stdout) != n)
      return Status::IOError("write to stdout failed");
  }
  if (std::fflush(stdout) != 0) return Status::IOError("write to stdout failed");
  return Status::OK();
}

void RunDump(const DumpArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  auto m = OpenMeta(a.meta_url);
  if (!m) return Fail("dump", m.error());
  meta::dump::DumpOptions o;
  o.encoding = a.binary ? meta::dump::Encoding::kBinary : meta::dump::Encoding::kJson;
  o.keep_secrets = a.keep_secret_key;
  const bool to_stdout = a.file == "-";
  // The dump restarts from offset 0 when the engine re-runs its snapshot read, so it goes to a
  // seekable file: the target itself, or a temporary file copied to a pipe at the end.
  std::FILE* out = nullptr;
  if (to_stdout) {
    out = (lseek(STDOUT_FILENO, 0, SEEK_CUR) >= 0 && ftruncate(STDOUT_FILENO, 0) == 0)
              ? stdout
              : std::tmpfile();
  } else {
    out = std::fopen(a.file.c_str(), "w+");
  }
  if (!out) {
    return Fail("dump", Status(errno, "cannot open " + a.file + ": " + std::strerror(errno)));
  }
  auto stats = meta::dump::Dump(*(*m)->engine(), out, o);
  Status s = stats ? Status::OK() : stats.error();
  if (s.ok() && to_stdout && out != stdout) s = CopyOut(out);
  if (out != stdout && std::fclose(out) != 0 && s.ok()) {
    s = Status(errno, std::string("closing the dump failed: ") + std::strerror(errno));
  }
  if (!s.ok()) {
    if (!to_stdout) std::remove(a.file.c_str());
    return Fail("dump", s);
  }
  std::fprintf(stderr,
               "dumped volume '%s' from %s: %llu inodes, %llu entries, %llu chunks, %llu xattrs, "
               "%llu removed files, %llu bytes (%s) in %.1f s%s\n",
               (*m)->format().name.c_str(), (*m)->engine()->Name().c_str(),
               (unsigned long long)stats->inodes, (unsigned long long)stats->entries,
               (unsigned long long)stats->chunks, (unsigned long long)stats->xattrs,
               (unsigned long long)stats->deleted_files, (unsigned long long)stats->bytes,
               a.binary ? "binary" : "JSON", Since(t0),
               a.keep_secret_key ? "; secrets included" : "; secrets left out");
}

struct LoadArgs {
  std::string meta_url;
  std::string file;
  int threads = 4;
};

void RunLoad(const LoadArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  std::FILE* in = a.file == "-" ? stdin : std::fopen(a.file.c_str(), "r");
  if (!in) {
    return Fail("load", Status(errno, "cannot open " + a.file + ": " + std::strerror(errno)));
  }
  auto m = OpenMetaUnloaded(a.meta_url);
  if (!m) {
    if (in != stdin) std::fclose(in);
    return Fail("load", m.error());
  }
  meta::dump::LoadOptions o;
  o.threads = std::max(1, a.threads);
  auto stats = meta::dump::Load(*(*m)->engine(), in, o);
  if (in != stdin) std::fclose(in);
  if (!stats) return Fail("load", stats.error());
  for (const auto& w : stats->warnings) std::fprintf(stderr, "nexusfs load: note: %s\n", w.c_str());
  auto f = (*m)->Load();
  if (!f) return Fail("load", f.error());
  std::printf(
      "loaded volume '%s' (uuid %s) into %s: %llu inodes, %llu entries, %llu chunks, "
      "%llu keys in %.1f s\n",
      f->name.c_str(), f->uuid.c_str(), (*m)->engine()->Name().c_str(),
      (unsigned long long)stats->inodes, (unsigned long long)stats->entries,
      (unsigned long long)stats->chunks, (unsigned long long)stats->keys, Since(t0));
  if (f->secret_key == "removed" || f->encrypt_key == "removed") {
    std::fprintf(stderr,
                 "nexusfs load: warning: the dump was taken without --keep-secret-key: the "
                 "volume's secret key and encryption key read \"removed\" and must be restored "
                 "before its blocks can be read\n");
  }
}

struct DestroyArgs {
  std::string meta_url;
  std::string uuid;
  bool yes = false;
};

constexpr int64_t kDefaultSessionTimeoutNs = 300LL * 1000 * 1000 * 1000;  // 5 min

void RunDestroy(const DestroyArgs& a) {
  auto m = OpenMeta(a.meta_url);
  if (!m) return Fail("destroy", m.error());
  const meta::Format f = (*m)->format();
  if (f.uuid != a.uuid) {
    return Fail("destroy", Status::InvalidArgument("the volume at " + (*m)->engine()->Name() +
                                                   " has uuid " + f.uuid + ", not " + a.uuid));
  }
  auto sessions = (*m)->ListSessions();
  if (!sessions) return Fail("destroy", sessions.error());
  const int64_t now = NowNanos();
  int live = 0;
  std::string who;
  for (const auto& s : *sessions) {
    int64_t timeout = s.timeout > 0 ? s.timeout : kDefaultSessionTimeoutNs;
    if (now - s.heartbeat < timeout) {
      ++live;
      if (who.empty())
        who = s.host + ":" + s.mount_point + " (session " + std::to_string(s.sid) + ")";
    }
  }
  if (live > 0) {
    return Fail("destroy",
                Status::Busy("volume '" + f.name + "' has " + std::to_string(live) +
                             " live session(s), e.g. " + who + "; unmount every client first"));
  }
  auto st = (*m)->GetStatFs(meta::kRootIno);
  if (!st) return Fail("destroy", st.error());
  const std::string store_url = StorageUrl(f.storage, f.bucket);
  if (!a.yes) {
    if (!isatty(STDIN_FILENO)) {
      return Fail("destroy", Status::InvalidArgument(
                                 "refusing to destroy without confirmation: standard input is "
                                 "not a terminal (pass --yes)"));
    }
    std::printf(
        "Volume '%s' (uuid %s): %llu inodes, %llu bytes in %s, metadata in %s.\n"
        "This deletes every block object and all metadata. Type the volume name to "
        "confirm: ",
        f.name.c_str(), f.uuid.c_str(), (unsigned long long)st->used_inodes,
        (unsigned long long)st->used_space, RedactedUrl(store_url).c_str(),
        (*m)->engine()->Name().c_str());
    std::fflush(stdout);
    std::string answer;
    if (!std::getline(std::cin, answer) || answer != f.name) {
      return Fail("destroy", Status(ECANCELED, "not confirmed; nothing was removed"));
    }
  }
  // Blocks first: the metadata is what tells where they are.
  auto store = object::ObjectStore::Open(store_url, StoreOptionsFor(f));
  if (!store) return Fail("destroy", store.error().With("object store " + RedactedUrl(store_url)));
  uint64_t objects = 0, bytes = 0;
  std::string marker;
  const std::string prefix = f.name + "/";
  for (;;) {
    auto list = (*store)->List(prefix, marker, 1000);
    if (!list) return Fail("destroy", list.error().With("list " + RedactedUrl(store_url)));
    for (const auto& o : list->objects) {
      if (Status s = (*store)->Delete(o.key); !s.ok()) {
        return Fail("destroy", s.With("delete " + o.key + " (after " + std::to_string(objects) +
                                      " objects; run destroy again)"));
      }
      ++objects;
      bytes += o.size;
    }
    if (list->next_marker.empty() || list->objects.empty()) break;
    marker = list->next_marker;
  }
  uint64_t keys = 0;
  Status counted = (*m)->engine()->View([&](kv::Txn& txn) -> Status {
    keys = 0;
    return txn.Scan("", "", 0, [&](std::string_view, std::string_view) {
      ++keys;
      return true;
    });
  });
  if (!counted.ok()) return Fail("destroy", counted);
  if (Status s = (*m)->engine()->Reset(); !s.ok()) return Fail("destroy", s);
  std::printf(
      "destroyed volume '%s' (uuid %s): removed %llu objects (%llu bytes) from %s and "
      "%llu metadata keys from %s\n",
      f.name.c_str(), f.uuid.c_str(), (unsigned long long)objects, (unsigned long long)bytes,
      RedactedUrl(store_url).c_str(), (unsigned long long)keys, (*m)->engine()->Name().c_str());
  // The volume's default disk cache on this machine (mounts without --cache-dir) goes too: its
  // blocks belong to nothing now. A directory given with --cache-dir is the user's to remove.
  const std::string cache = DefaultCacheDir(f.uuid);
  std::error_code ec;
  if (!cache.empty() && std::filesystem::exists(cache, ec)) {
    const auto removed = std::filesystem::remove_all(cache, ec);
    if (ec) {
      std::fprintf(stderr, "nexusfs destroy: could not remove the cache directory %s: %s\n",
                   cache.c_str(), ec.message().c_str());
    } else {
      std::printf("removed the volume's cache directory %s (%llu entries)\n", cache.c_str(),
                  (unsigned long long)removed);
    }
  }
}

}  // namespace

void RegisterDump(CLI::App& app) {
  auto a = std::make_shared<DumpArgs>();
  auto* cmd = app.add_subcommand(
      "dump", "Write a volume's metadata to a file (JSON, or --binary) from one snapshot");
  cmd->add_option("META-URL", a->meta_url, "Metadata engine URL or path")->required();
  cmd->add_option("FILE", a->file, "Output file, or - for stdout (default)");
  cmd->add_flag("--binary", a->binary, "Compact binary format instead of JSON");
  cmd->add_flag("--keep-secret-key", a->keep_secret_key,
                "Keep the secret key, session token and encryption keys in the dump");
  cmd->callback([a] { RunDump(*a); });

  auto l = std::make_shared<LoadArgs>();
  auto* load = app.add_subcommand("load", "Load a dump (JSON or binary) into an empty engine");
  load->add_option("META-URL", l->meta_url, "Metadata engine URL or path (must be empty)")
      ->required();
  load->add_option("FILE", l->file, "Dump file, or - for stdin")->required();
  load->add_option("--threads", l->threads, "Concurrent write transactions (default 4)");
  load->callback([l] { RunLoad(*l); });

  auto d = std::make_shared<DestroyArgs>();
  auto* destroy =
      app.add_subcommand("destroy", "Delete a volume: every block object, then all its metadata");
  destroy->add_option("META-URL", d->meta_url, "Metadata engine URL or path")->required();
  destroy->add_option("UUID", d->uuid, "The volume's UUID (nexusfs status shows it)")->required();
  destroy->add_flag("--yes,-y", d->yes, "Do not ask for confirmation");
  destroy->callback([d] { RunDestroy(*d); });
}

}  // namespace nexus::cli
