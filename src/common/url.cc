#include "common/url.h"

#include <algorithm>
#include <cctype>

namespace nexus {
namespace {

Result<std::string> PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
        return Err(EINVAL, "bad percent-escape in URL");
      }
      out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

Result<Url> Url::Parse(std::string_view text) {
  Url u;
  if (text.empty()) return Err(EINVAL, "empty URL");
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) {
    u.path = std::string(text);
    return u;
  }
  u.scheme = std::string(text.substr(0, sep));
  if (u.scheme.empty()) return Err(EINVAL, "URL '" + std::string(text) + "' has no scheme");
  for (char& c : u.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return Err(EINVAL, "URL scheme '" + u.scheme + "' is not valid");
    }
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string_view rest = text.substr(sep + 3);
  size_t q = rest.find('?');
  std::string_view query;
  if (q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view cred = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = cred.find(':');
    auto user = PercentDecode(cred.substr(0, colon));
    if (!user) return Err(user.error());
    u.user = *user;
    if (colon != std::string_view::npos) {
      auto pass = PercentDecode(cred.substr(colon + 1));
      if (!pass) return Err(pass.error());
      u.password = *pass;
    }
  }
  // A single host may carry a port; a comma-separated host list keeps its ports inline.
  if (authority.find(',') == std::string_view::npos) {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
      std::string_view port = authority.substr(colon + 1);
      if (port.empty() ||
          !std::all_of(port.begin(), port.end(),
                       [](char c) { return std::isdigit((unsigned char)c); }) ||
          port.size() > 5 || std::stoi(std::string(port)) > 65535) {
        return Err(EINVAL, "URL port '" + std::string(port) + "' is not a number from 1 to 65535");
      }
      u.port = std::stoi(std::string(port));
      authority = authority.substr(0, colon);
    }
  }
  u.host = std::string(authority);
  auto p = PercentDecode(path);
  if (!p) return Err(p.error());
  u.path = *p;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    size_t eq = kv.find('=');
    auto k = PercentDecode(kv.substr(0, eq));
    auto v = PercentDecode(eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1));
    if (!k || !v) return Err(EINVAL, "bad query in URL");
    if (!k->empty()) u.query[*k] = *v;
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  return u;
}

std::string Url::ToString() const {
  if (scheme.empty()) return path;
  std::string s = scheme + "://";
  if (!user.empty() || !password.empty()) {
    s += user;
    if (!password.empty()) s += ":" + password;
    s += "@";
  }
  s += host;
  if (port) s += ":" + std::to_string(port);
  s += path;
  char sep = '?';
  for (const auto& [k, v] : query) {
    s += sep + k + "=" + v;
    sep = '&';
  }
  return s;
}

std::string Url::Redacted() const {
  Url copy = *this;
  if (!copy.password.empty()) copy.password = "****";
  for (auto& [k, v] : copy.query) {
    if (k.find("secret") != std::string::npos || k.find("password") != std::string::npos ||
        k.find("token") != std::string::npos) {
      v = "****";
    }
  }
  return copy.ToString();
}

}  // namespace nexus
