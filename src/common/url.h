// URL parsing for META-URLs and storage URLs: scheme://[user[:pass]@]host[:port][/path][?query].
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace nexus {

struct Url {
  std::string scheme;    // lower-case, without "://"; empty for a plain path
  std::string user;      // percent-decoded
  std::string password;  // percent-decoded; never log it (see Redacted())
  std::string host;      // may hold several "h1:p1,h2:p2" for etcd
  int port = 0;          // 0 when absent
  std::string path;      // with its leading '/', percent-decoded
  std::map<std::string, std::string> query;

  // Parses `text`. A string without "://" is a plain path with an empty scheme.
  static Result<Url> Parse(std::string_view text);
  // The URL with the password replaced by "****", for logs and status output.
  std::string Redacted() const;
  std::string ToString() const;
};

}  // namespace nexus
