#include "cli/cli_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "cli/commands.h"
#include "cli/progress.h"
#include "common/url.h"
#include "meta/kv/engine.h"
#include "meta/kv/metered_engine.h"
#include "meta/meta.h"

namespace nexus::cli {

Result<std::unique_ptr<meta::Meta>> OpenMetaUnloaded(std::string_view meta_url,
                                                     meta::MetaOptions options) {
  auto engine = kv::Engine::Open(meta_url);
  if (!engine) return Err(engine.error());
  // Every command's transactions are measured (metrics::Registry; served by a mount's .stats).
  return meta::Meta::Create(kv::NewMeteredEngine(std::move(*engine)), options);
}

std::string MissingEmbeddedPath(std::string_view meta_url) {
  auto u = Url::Parse(meta_url);
  if (!u || !(u->scheme.empty() || u->scheme == "rocksdb" || u->scheme == "sqlite3" ||
              u->scheme == "sqlite")) {
    return {};
  }
  std::string path = u->scheme.empty() ? u->path : u->host + u->path;
  std::error_code ec;
  if (path.empty() || std::filesystem::exists(path, ec)) return {};
  return path;
}

Result<std::unique_ptr<meta::Meta>> OpenMeta(std::string_view meta_url, meta::MetaOptions options) {
  // Embedded engines create their files on open: refuse a path with nothing there instead of
  // leaving an empty database behind.
  if (!MissingEmbeddedPath(meta_url).empty()) {
    return Err(ENOENT, "volume at " + std::string(meta_url) +
                           " is not formatted (no such file or directory; run 'nexusfs format' "
                           "first)");
  }
  NX_ASSIGN_OR_RETURN(auto m, OpenMetaUnloaded(meta_url, options));
  auto loaded = m->Load();
  if (!loaded) {
    if (loaded.error().IsNotFound()) {
      return Err(ENOENT, "volume at " + m->engine()->Name() +
                             " is not formatted (run 'nexusfs format' first)");
    }
    return Err(loaded.error());
  }
  return m;
}

std::string StorageUrl(const std::string& storage, const std::string& bucket) {
  if (storage == "file")
    return bucket.find("://") == std::string::npos ? "file://" + bucket : bucket;
  if (storage == "mem") return "mem://";
  // s3: s3://BUCKET, http(s)://HOST/BUCKET, https://BUCKET.s3.REGION.amazonaws.com, or a name.
  if (storage == "s3") return bucket.find("://") != std::string::npos ? bucket : "s3://" + bucket;
  return storage + "://" + bucket;
}

object::StoreOptions StoreOptionsFor(const meta::Format& f) {
  object::StoreOptions o;
  o.access_key = f.access_key;
  o.secret_key = f.secret_key;
  o.session_token = f.session_token;
  return o;
}

std::string DefaultCacheDir(const std::string& uuid) {
  if (uuid.empty()) return "";
  if (geteuid() == 0) return "/var/cache/nexusfs/" + uuid;
  const char* xdg = getenv("XDG_CACHE_HOME");
  const char* home = getenv("HOME");
  const std::string base = xdg && *xdg     ? std::string(xdg)
                           : home && *home ? std::string(home) + "/.cache"
                                           : std::string("/tmp/.cache");
  return base + "/nexusfs/" + uuid;
}

std::string RedactedUrl(const std::string& url) {
  auto u = Url::Parse(url);
  return u ? u->Redacted() : url;
}

Result<uint64_t> ParseSize(std::string_view text) {
  std::string_view t = text;
  if (t.empty() || !std::isdigit(static_cast<unsigned char>(t[0]))) {
    return Err(EINVAL, "size '" + std::string(text) + "' is not a number");
  }
  uint64_t v = 0;
  size_t i = 0;
  for (; i < t.size() && std::isdigit(static_cast<unsigned char>(t[i])); ++i) {
    if (v > (UINT64_MAX - 9) / 10)
      return Err(EINVAL, "size '" + std::string(text) + "' is too big");
    v = v * 10 + static_cast<uint64_t>(t[i] - '0');
  }
  std::string_view unit = t.substr(i);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.remove_suffix(1);
  if (!unit.empty() && unit.back() == 'i') unit.remove_suffix(1);
  int shift = 0;
  if (unit.empty()) {
    shift = 0;
  } else if (unit.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        return Err(EINVAL, "size '" + std::string(text) + "' has an unknown unit");
    }
  } else {
    return Err(EINVAL, "size '" + std::string(text) + "' has an unknown unit");
  }
  if (shift && v > (UINT64_MAX >> shift)) {
    return Err(EINVAL, "size '" + std::string(text) + "' is too big");
  }
  return v << shift;
}

void Fail(std::string_view cmd, const Status& s) {
  std::string msg = s.message().empty() ? s.ToString() : s.message();
  std::fprintf(stderr, "nexusfs %.*s: %s\n", static_cast<int>(cmd.size()), cmd.data(), msg.c_str());
  SetExitCode(1);
}

Status Errno(const std::string& what) {
  return Status::Errno(errno, what + ": " + std::strerror(errno));
}

Status ReadThrough(const std::string& path, std::string& buf, Progress* prog, uint64_t* bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path);
  for (;;) {
    ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      Status s = Errno("read " + path);
      close(fd);
      return s;
    }
    if (r == 0) break;
    *bytes += static_cast<uint64_t>(r);
    if (prog) prog->Add(static_cast<uint64_t>(r));
  }
  close(fd);
  return Status::OK();
}

}  // namespace nexus::cli
