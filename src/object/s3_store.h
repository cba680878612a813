// The S3 backend's pieces that tests reach directly: endpoint resolution from a URL and the
// parsing of S3's XML answers. Callers use ObjectStore::Open.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "object/object_store.h"
#include "object/s3_sigv4.h"

namespace nexus::object::s3 {

// Where a bucket lives and how requests address it (see docs/object-stores.md for the URL forms).
struct Endpoint {
  std::string scheme;  // "http" or "https"
  std::string host;    // the Host header: "bucket.s3.us-east-1.amazonaws.com", "h:9000"
  std::string bucket;  // bucket name
  std::string prefix;  // key prefix inside the bucket, "" or ending in '/'
  bool virtual_hosted = false;
  std::string region;  // for signing
  SigningKeys keys;    // empty access_key: anonymous requests
  // ?payload=signed: object bodies are signed with their SHA-256 (default: UNSIGNED-PAYLOAD).
  bool sign_payload = false;

  // "/bucket/" + prefix (path style) or "/" + prefix (virtual-hosted) + key, URI-encoded.
  std::string Path(std::string_view key) const;
  // The path of the bucket itself: "/bucket" or "/".
  std::string BucketPath() const;
  // scheme://host/[bucket/]prefix — no credentials, for Name() and messages.
  std::string Display() const;
};

// Resolves `url` with `options` (whose credentials, region and style win) and the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_DEFAULT_REGION).
Result<Endpoint> ResolveEndpoint(std::string_view url, const StoreOptions& options);

struct S3Error {
  std::string code;     // "NoSuchKey"
  std::string message;  // "The specified key does not exist."
};
// The Code and Message of an <Error> document; empty fields when `xml` is not one.
S3Error ParseError(std::string_view xml);

struct ListPage {
  std::vector<ObjectInfo> objects;  // keys as S3 returned them
  bool truncated = false;
  std::string continuation;  // NextContinuationToken
};
Result<ListPage> ParseListV2(std::string_view xml);
// The UploadId of an InitiateMultipartUploadResult.
Result<std::string> ParseUploadId(std::string_view xml);

// "Wed, 12 Oct 2009 17:50:00 GMT" or "2009-10-12T17:50:30.000Z" as ns since the epoch; 0 when
// neither.
int64_t ParseTime(std::string_view text);

}  // namespace nexus::object::s3
