// Endpoint resolution for the S3 backend: which host, bucket, key prefix, addressing style,
// region and credentials a URL and StoreOptions mean. See docs/object-stores.md.
#include <cctype>
#include <cstdlib>
#include <regex>

#include "common/url.h"
#include "object/s3_store.h"
#include "object/stores.h"

namespace nexus::object::s3 {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

Status ValidateBucket(const std::string& bucket, std::string_view url) {
  bool ok = bucket.size() >= 3 && bucket.size() <= 63;
  for (char c : bucket) {
    if (!std::islower(static_cast<unsigned char>(c)) &&
        !std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      ok = false;
    }
  }
  if (!ok) {
    return Status::InvalidArgument("s3 URL '" + std::string(url) + "': bucket name '" + bucket +
                                   "' must be 3 to 63 characters of a-z, 0-9, '.', '-', '_'");
  }
  return Status::OK();
}

// Splits "/bucket/some/prefix" into "bucket" and "some/prefix".
void SplitFirst(std::string_view path, std::string* first, std::string* rest) {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  size_t slash = path.find('/');
  *first = std::string(path.substr(0, slash));
  *rest = slash == std::string_view::npos ? "" : std::string(path.substr(slash + 1));
}

Result<std::string> NormalizePrefix(std::string p, std::string_view url) {
  while (!p.empty() && p.front() == '/') p.erase(0, 1);
  while (!p.empty() && p.back() == '/') p.pop_back();
  if (p.empty()) return p;
  if (Status s = ValidateKey(p); !s.ok()) {
    return Err(EINVAL, "s3 URL '" + std::string(url) + "': key prefix: " + s.message());
  }
  return p + "/";
}

}  // namespace

std::string Endpoint::BucketPath() const { return virtual_hosted ? "/" : "/" + bucket; }

std::string Endpoint::Path(std::string_view key) const {
  std::string p = virtual_hosted ? "/" : "/" + bucket + "/";
  p += prefix;
  p += key;
  return UriEncode(p, /*keep_slash=*/true);
}

std::string Endpoint::Display() const {
  return scheme + "://" + host + (virtual_hosted ? "/" : "/" + bucket + "/") + prefix;
}

Result<Endpoint> ResolveEndpoint(std::string_view url, const StoreOptions& options) {
  auto u = Url::Parse(url);
  if (!u) return Err(EINVAL, "s3 URL: " + u.error().message());
  if (u->scheme != "s3" && u->scheme != "http" && u->scheme != "https") {
    return Err(EINVAL, "'" + u->Redacted() + "' is not an s3://, http:// or https:// URL");
  }
  const std::string shown = u->Redacted();
  if (u->host.empty()) return Err(EINVAL, "s3 URL '" + shown + "' has no host or bucket");
  for (const auto& [k, v] : u->query) {
    if (k != "region" && k != "style" && k != "payload") {
      return Err(EINVAL, "s3 URL '" + shown + "': unknown parameter '" + k +
                             "' (known: region, style, payload)");
    }
  }
  Endpoint e;
  std::string host_region;  // a region the host names
  std::string rest;
  static const std::regex kAwsVirtual(R"(^(.+)\.s3[.-]([a-z0-9-]+)\.amazonaws\.com$)");
  static const std::regex kAwsVirtualGlobal(R"(^(.+)\.s3\.amazonaws\.com$)");
  static const std::regex kAwsPath(R"(^s3[.-]([a-z0-9-]+)\.amazonaws\.com$)");
  std::smatch m;
  if (u->scheme == "s3" && u->port == 0) {
    // s3://BUCKET[/PREFIX]: a bucket on AWS.
    e.scheme = "https";
    e.bucket = u->host;
    rest = u->path;
    e.virtual_hosted = true;
  } else {
    e.scheme = u->scheme == "http" ? "http" : "https";
    e.host = u->host + (u->port ? ":" + std::to_string(u->port) : "");
    if (std::regex_match(u->host, m, kAwsVirtual) && m[2] != "external-1") {
      e.bucket = m[1];
      host_region = m[2];
      rest = u->path;
      e.virtual_hosted = true;
    } else if (std::regex_match(u->host, m, kAwsVirtualGlobal)) {
      e.bucket = m[1];
      host_region = "us-east-1";
      rest = u->path;
      e.virtual_hosted = true;
    } else {
      if (std::regex_match(u->host, m, kAwsPath)) host_region = m[1];
      SplitFirst(u->path, &e.bucket, &rest);
      if (e.bucket.empty()) {
        return Err(EINVAL, "s3 URL '" + shown + "' names no bucket (expected " + e.scheme +
                               "://HOST[:PORT]/BUCKET[/PREFIX])");
      }
    }
  }
  NX_TRY(ValidateBucket(e.bucket, shown));
  NX_ASSIGN_OR_RETURN(e.prefix, NormalizePrefix(rest, shown));

  // Region: options, ?region=, the host, the environment, us-east-1.
  auto q = u->query.find("region");
  e.region = !options.region.empty()              ? options.region
             : q != u->query.end()                ? q->second
             : !host_region.empty()               ? host_region
             : !Env("AWS_REGION").empty()         ? Env("AWS_REGION")
             : !Env("AWS_DEFAULT_REGION").empty() ? Env("AWS_DEFAULT_REGION")
                                                  : "us-east-1";
  if (e.host.empty()) {
    // AWS: virtual-hosted, except for bucket names with dots, which TLS wildcards do not cover.
    e.virtual_hosted = e.bucket.find('.') == std::string::npos;
    e.host = e.virtual_hosted ? e.bucket + ".s3." + e.region + ".amazonaws.com"
                              : "s3." + e.region + ".amazonaws.com";
  }
  // Style: options, ?style=, the URL's form.
  auto st = u->query.find("style");
  std::string style = !options.s3_style.empty() ? options.s3_style
                      : st != u->query.end()    ? st->second
                                                : "";
  if (!style.empty() && style != "path" && style != "virtual") {
    return Err(EINVAL, "s3 URL '" + shown + "': style '" + style + "' is not path or virtual");
  }
  if (style == "virtual" && !e.virtual_hosted) {
    e.host = e.bucket + "." + e.host;
    e.virtual_hosted = true;
  } else if (style == "path" && e.virtual_hosted) {
    if (e.host.rfind(e.bucket + ".", 0) == 0) e.host = e.host.substr(e.bucket.size() + 1);
    e.virtual_hosted = false;
  }

  // Object bodies: unsigned (the default) or signed with their SHA-256.
  if (auto pl = u->query.find("payload"); pl != u->query.end()) {
    if (pl->second != "signed" && pl->second != "unsigned") {
      return Err(EINVAL,
                 "s3 URL '" + shown + "': payload '" + pl->second + "' is not signed or unsigned");
    }
    e.sign_payload = pl->second == "signed";
  }

  // Credentials: options, the URL's user:password, the environment; none means anonymous.
  if (!options.access_key.empty() || !options.secret_key.empty()) {
    e.keys = {options.access_key, options.secret_key, options.session_token};
  } else if (!u->user.empty()) {
    e.keys = {u->user, u->password, options.session_token};
  } else {
    e.keys = {Env("AWS_ACCESS_KEY_ID"), Env("AWS_SECRET_ACCESS_KEY"), Env("AWS_SESSION_TOKEN")};
  }
  if (e.keys.access_key.empty() != e.keys.secret_key.empty()) {
    return Err(EINVAL, "s3 store " + e.Display() +
                           ": an access key needs a secret key and the other way round");
  }
  return e;
}

}  // namespace nexus::object::s3
