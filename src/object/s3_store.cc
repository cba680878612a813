// s3:// (and http(s):// endpoints): objects in an S3-compatible bucket, over libcurl with
// Signature V4. See docs/object-stores.md for URL forms, credentials, retries and multipart.
//
// Every request is signed afresh on each try and retried with capped exponential backoff and
// full jitter on 5xx, 429, S3's RequestTimeout, timeouts and broken connections, at most
// StoreOptions::max_tries times; then the operation fails with EIO and one log line naming it and
// the key. Put is a single PUT (atomic on S3) below multipart_threshold, else a multipart upload
// that is aborted when any step fails (the object only appears on CompleteMultipartUpload).
#include "object/s3_store.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "common/logging.h"
#include "object/s3_http.h"
#include "object/stores.h"

namespace nexus::object {
namespace {

using s3::Endpoint;
using s3::HttpResponse;

constexpr int kBackoffBaseMs = 100;
constexpr int kBackoffCapMs = 5000;
constexpr size_t kListPage = 1000;

struct Call {
  std::string method;
  std::string path;  // encoded
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;  // extra, lower-case names
  std::string_view body;
  // An object's data (PutObject, UploadPart): signed as UNSIGNED-PAYLOAD unless the endpoint
  // asks for signed payloads. Other bodies (XML documents) are always hashed.
  bool object_data = false;
};

bool Retriable(const HttpResponse& r) {
  if (r.status >= 500 || r.status == 429) return true;
  return r.status == 400 && s3::ParseError(r.body).code == "RequestTimeout";
}

std::string Describe(const HttpResponse& r) {
  s3::S3Error e = s3::ParseError(r.body);
  std::string s = "HTTP " + std::to_string(r.status);
  if (!e.code.empty()) s += " " + e.code;
  if (!e.message.empty()) s += ": " + e.message;
  return s;
}

class S3Store final : public ObjectStore {
 public:
  S3Store(Endpoint ep, const StoreOptions& o)
      : ep_(std::move(ep)),
        http_(s3::HttpOptions{o.connect_timeout_ms, o.request_timeout_ms}),
        threshold_(std::max<uint64_t>(o.multipart_threshold, 1)),
        part_size_(std::max<uint64_t>(o.multipart_part_size, 1)),
        max_tries_(std::max(o.max_tries, 1)) {}

  // Checks that the bucket answers; creates it when missing and `create` is set.
  Status CheckBucket(bool create) {
    Call head{"HEAD", ep_.BucketPath(), {}, {}, {}};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("head bucket", ep_.bucket, head));
    if (r.status / 100 == 2) return Status::OK();
    if (r.status != 404) return Failure("open bucket", ep_.bucket, r);
    if (!create) {
      return Status::NotFound("bucket '" + ep_.bucket + "' does not exist at " + ep_.Display() +
                              " (nexusfs format creates it)");
    }
    std::string body;
    if (ep_.region != "us-east-1") {
      body =
          "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
          "<LocationConstraint>" +
          ep_.region + "</LocationConstraint></CreateBucketConfiguration>";
    }
    Call put{"PUT", ep_.BucketPath(), {}, {}, body};
    NX_ASSIGN_OR_RETURN(r, Do("create bucket", ep_.bucket, put));
    if (r.status / 100 == 2 || s3::ParseError(r.body).code == "BucketAlreadyOwnedByYou") {
      NX_LOG_INFO("s3: created bucket {} at {}", ep_.bucket, ep_.Display());
      return Status::OK();
    }
    return Failure("create bucket", ep_.bucket, r);
  }

  Status Put(std::string_view key, std::string_view data) override {
    NX_TRY(ValidateKey(key));
    if (data.size() >= threshold_ && data.size() > part_size_) return PutMultipart(key, data);
    Call c{"PUT", ep_.Path(key), {}, {}, data, /*object_data=*/true};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("put", key, c));
    if (r.status / 100 != 2) return Failure("put", key, r);
    return Status::OK();
  }

  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    std::string out;
    NX_TRY(GetInto(key, off, len, &out));
    return out;
  }

  // The body is received straight into *out's storage (a recycled block buffer keeps its pages:
  // no allocation, page faults or copy per block).
  Status GetInto(std::string_view key, uint64_t off, uint64_t len, std::string* out) override {
    NX_TRY(ValidateKey(key));
    if (len == 0) {  // nothing to read, but a missing key is still ENOENT
      NX_TRY(Head(key));
      out->clear();
      return Status::OK();
    }
    Call c{"GET", ep_.Path(key), {}, {}, {}};
    const bool ranged = off > 0 || len != UINT64_MAX;
    if (ranged) {
      std::string range = "bytes=" + std::to_string(off) + "-";
      if (len != UINT64_MAX && off + len > off) range += std::to_string(off + len - 1);
      c.headers.emplace_back("range", range);
    }
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("get", key, c, out));
    // 416: the object exists and the range starts at or past its end (S3 answers so for any
    // range of an empty object too).
    if (r.status == 416) {
      out->clear();
      return Status::OK();
    }
    if (r.status == 206) {
      if (r.body.size() > len) r.body.resize(len);
      *out = std::move(r.body);
      return Status::OK();
    }
    if (r.status == 200) {
      // A whole object although a range was asked for: servers may ignore Range.
      if (ranged) {
        if (off >= r.body.size()) {
          r.body.clear();
        } else {
          r.body.erase(0, off);
          if (r.body.size() > len) r.body.resize(len);
        }
      }
      *out = std::move(r.body);
      return Status::OK();
    }
    return Failure("get", key, r);
  }

  Result<ObjectInfo> Head(std::string_view key) override {
    NX_TRY(ValidateKey(key));
    Call c{"HEAD", ep_.Path(key), {}, {}, {}};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("head", key, c));
    if (r.status != 200) return Err(Failure("head", key, r));
    ObjectInfo info{std::string(key), 0, 0};
    auto it = r.headers.find("content-length");
    if (it != r.headers.end()) info.size = std::strtoull(it->second.c_str(), nullptr, 10);
    it = r.headers.find("last-modified");
    if (it != r.headers.end()) info.mtime = s3::ParseTime(it->second);
    return info;
  }

  Status Delete(std::string_view key) override {
    NX_TRY(ValidateKey(key));
    Call c{"DELETE", ep_.Path(key), {}, {}, {}};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("delete", key, c));
    if (r.status / 100 == 2) return Status::OK();
    if (r.status == 404 && s3::ParseError(r.body).code != "NoSuchBucket") return Status::OK();
    return Failure("delete", key, r);
  }

  Result<ListResult> List(std::string_view prefix, std::string_view marker, size_t limit) override {
    ListResult out;
    std::string token;
    const std::string full_prefix = ep_.prefix + std::string(prefix);
    while (true) {
      size_t want = limit ? std::min(kListPage, limit - out.objects.size()) : kListPage;
      Call c{"GET",
             ep_.BucketPath(),
             {{"list-type", "2"}, {"max-keys", std::to_string(want)}},
             {},
             {}};
      if (!full_prefix.empty()) c.query.emplace_back("prefix", full_prefix);
      if (!token.empty()) {
        c.query.emplace_back("continuation-token", token);
      } else if (!marker.empty()) {
        c.query.emplace_back("start-after", ep_.prefix + std::string(marker));
      }
      NX_ASSIGN_OR_RETURN(HttpResponse r, Do("list", full_prefix, c));
      if (r.status != 200) return Err(Failure("list", full_prefix, r));
      auto page = s3::ParseListV2(r.body);
      if (!page) return Err(page.error().With("s3 " + ep_.Display()));
      for (ObjectInfo& o : page->objects) {
        if (o.key.compare(0, ep_.prefix.size(), ep_.prefix) != 0) continue;
        o.key.erase(0, ep_.prefix.size());
        if (!marker.empty() && o.key <= marker) continue;
        if (limit && out.objects.size() >= limit) break;
        out.objects.push_back(std::move(o));
      }
      if (!page->truncated || page->continuation.empty()) return out;
      if (limit && out.objects.size() >= limit) {
        out.next_marker = out.objects.back().key;
        return out;
      }
      token = page->continuation;
    }
  }

  std::string Name() const override { return ep_.Display(); }

 private:
  Status PutMultipart(std::string_view key, std::string_view data) {
    Call init{"POST", ep_.Path(key), {{"uploads", ""}}, {}, {}};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("put (initiate multipart)", key, init));
    if (r.status != 200) return Failure("put (initiate multipart)", key, r);
    auto id = s3::ParseUploadId(r.body);
    if (!id) return id.error().With("put " + std::string(key));
    Status s = UploadParts(key, data, *id);
    if (!s.ok()) {
      Call abort{"DELETE", ep_.Path(key), {{"uploadId", *id}}, {}, {}};
      auto a = Do("put (abort multipart)", key, abort);
      if (!a || (a->status / 100 != 2 && a->status != 404)) {
        NX_LOG_WARN("s3: put {}: could not abort multipart upload after a failure: {}", key,
                    a ? Describe(*a) : a.error().ToString());
      }
    }
    return s;
  }

  Status UploadParts(std::string_view key, std::string_view data, const std::string& id) {
    std::string complete = "<CompleteMultipartUpload>";
    int number = 0;
    for (uint64_t off = 0; off < data.size(); off += part_size_) {
      ++number;
      std::string_view part = data.substr(off, part_size_);
      Call c{"PUT",
             ep_.Path(key),
             {{"partNumber", std::to_string(number)}, {"uploadId", id}},
             {},
             part,
             /*object_data=*/true};
      std::string op = "put (part " + std::to_string(number) + ")";
      NX_ASSIGN_OR_RETURN(HttpResponse r, Do(op, key, c));
      if (r.status != 200) return Failure(op, key, r);
      auto etag = r.headers.find("etag");
      if (etag == r.headers.end())
        return Status::IOError(op + " " + std::string(key) + ": no ETag");
      complete += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" +
                  etag->second + "</ETag></Part>";
    }
    complete += "</CompleteMultipartUpload>";
    Call c{"POST", ep_.Path(key), {{"uploadId", id}}, {}, complete};
    NX_ASSIGN_OR_RETURN(HttpResponse r, Do("put (complete multipart)", key, c));
    // CompleteMultipartUpload may fail with 200 and an <Error> body.
    if (r.status != 200 || !s3::ParseError(r.body).code.empty()) {
      return Failure("put (complete multipart)", key, r);
    }
    return Status::OK();
  }

  // One signed try. `recycled`: storage for the response body (its capacity is kept).
  Result<HttpResponse> Send(const Call& c, std::string recycled) {
    const std::string date = s3::AmzDateNow();
    // Object data goes unsigned by default, as JuiceFS sends it: SHA-256 of every block cost
    // about a CPU second per GiB here, and each block carries its own checksum (and with
    // encryption, a GCM tag) that readers verify. ?payload=signed restores signed bodies.
    const std::string payload_hash = c.object_data && !ep_.sign_payload
                                         ? std::string("UNSIGNED-PAYLOAD")
                                         : s3::Sha256Hex(c.body);
    s3::SigV4Request sr;
    sr.method = c.method;
    sr.canonical_uri = c.path;
    sr.query = c.query;
    sr.headers = c.headers;
    sr.headers.emplace_back("host", ep_.host);
    sr.headers.emplace_back("x-amz-date", date);
    sr.headers.emplace_back("x-amz-content-sha256", payload_hash);
    if (!ep_.keys.session_token.empty()) {
      sr.headers.emplace_back("x-amz-security-token", ep_.keys.session_token);
    }
    sr.payload_hash = payload_hash;
    s3::HttpRequest req;
    req.method = c.method;
    std::string query = s3::CanonicalQuery(c.query);
    req.url = ep_.scheme + "://" + ep_.host + c.path + (query.empty() ? "" : "?" + query);
    for (const auto& [name, value] : sr.headers) {
      if (name != "host") req.headers.push_back(name + ": " + value);
    }
    if (!ep_.keys.access_key.empty()) {
      req.headers.push_back("authorization: " +
                            s3::SignV4(sr, ep_.keys, ep_.region, "s3", date).authorization);
    }
    if (c.method == "PUT" || c.method == "POST") {
      req.headers.push_back("content-type: application/octet-stream");
    }
    req.body = c.body;
    return http_.Perform(req, std::move(recycled));
  }

  // Sends `c` until it gets an answer that is not worth retrying, or the bound is reached (EIO).
  // `recycle`: a buffer whose storage the first try's response body takes over.
  Result<HttpResponse> Do(std::string_view op, std::string_view key, const Call& c,
                          std::string* recycle = nullptr) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    std::string last;
    for (int attempt = 1; attempt <= max_tries_; ++attempt) {
      auto r = Send(c, attempt == 1 && recycle ? std::move(*recycle) : std::string());
      if (r && !Retriable(*r)) return r;
      last = r ? Describe(*r) : r.error().message();
      if (attempt == max_tries_) break;
      int64_t cap = std::min<int64_t>(kBackoffCapMs, int64_t{kBackoffBaseMs} << (attempt - 1));
      auto delay = std::uniform_int_distribution<int64_t>(cap / 4, cap)(rng);
      NX_LOG_DEBUG("s3: {} {}: {} (try {}), retrying in {} ms", op, key, last, attempt, delay);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
    NX_LOG_ERROR("s3: {} {} at {} failed after {} tries: {}", op, key, ep_.Display(), max_tries_,
                 last);
    return Err(EIO, std::string(op) + " " + std::string(key) + ": " + last + " (after " +
                        std::to_string(max_tries_) + " tries)");
  }

  // The Status for a final answer that is not a success.
  Status Failure(std::string_view op, std::string_view key, const HttpResponse& r) const {
    s3::S3Error e = s3::ParseError(r.body);
    std::string msg = std::string(op) + " " + std::string(key) + ": " + Describe(r);
    if (e.code == "NoSuchBucket") {
      return Status::IOError(msg + " (bucket '" + ep_.bucket + "' at " + ep_.Display() + ")");
    }
    if (r.status == 404) return Status::NotFound(e.code.empty() ? msg + " (no such object)" : msg);
    if (r.status == 403) return Status(EACCES, msg);
    if (r.status == 400) return Status::InvalidArgument(msg);
    return Status::IOError(msg);
  }

  Endpoint ep_;
  s3::HttpClient http_;
  uint64_t threshold_;
  uint64_t part_size_;
  int max_tries_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> NewS3Store(std::string_view url, const StoreOptions& options) {
  NX_ASSIGN_OR_RETURN(s3::Endpoint ep, s3::ResolveEndpoint(url, options));
  auto store = std::make_unique<S3Store>(std::move(ep), options);
  NX_TRY(store->CheckBucket(options.create_bucket));
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace nexus::object
