// AWS Signature Version 4 for S3 requests (header-based authentication), as specified in the
// Amazon S3 API reference ("Signature Calculations for the Authorization Header").
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nexus::object::s3 {

// Lower-case hex of SHA-256(data).
std::string Sha256Hex(std::string_view data);
// Raw HMAC-SHA256(key, data).
std::string HmacSha256(std::string_view key, std::string_view data);
// S3's URI encoding: every byte but A-Z a-z 0-9 '-' '.' '_' '~' becomes %XX (upper-case hex);
// '/' is kept when `keep_slash` (object key paths).
std::string UriEncode(std::string_view in, bool keep_slash);

struct SigningKeys {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // sent as x-amz-security-token when not empty
};

// One request to sign. `headers` hold lower-case names and trimmed values, and must include
// "host", "x-amz-date" and "x-amz-content-sha256" (and x-amz-security-token when a session
// token is used); all of them are signed.
struct SigV4Request {
  std::string method;                                      // "GET"
  std::string canonical_uri;                               // already URI-encoded: "/bucket/k%20y"
  std::vector<std::pair<std::string, std::string>> query;  // decoded names and values
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash;  // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

struct SigV4Result {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // hex
  std::string authorization;  // the Authorization header's value
};

// `amz_date` is "YYYYMMDDTHHMMSSZ" (the x-amz-date header's value); `service` is "s3".
SigV4Result SignV4(const SigV4Request& req, const SigningKeys& keys, std::string_view region,
                   std::string_view service, std::string_view amz_date);

// The canonical query string: names and values URI-encoded, sorted by name then value.
std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query);

// "YYYYMMDDTHHMMSSZ" for the current UTC time.
std::string AmzDateNow();

}  // namespace nexus::object::s3
