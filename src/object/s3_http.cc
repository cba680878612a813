#include "object/s3_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

namespace nexus::object::s3 {
namespace {

constexpr size_t kMaxIdleHandles = 64;
// Bodies up to this size are allocated whole from their Content-Length (blocks are at most 16 MiB;
// multipart parts and listings are smaller).
constexpr unsigned long long kMaxReserve = 64ULL << 20;
// Bigger socket reads and upload chunks than curl's 16 KiB and 64 KiB defaults: a 4 MiB block
// then takes a few dozen recv/send calls and read callbacks instead of hundreds.
constexpr long kRecvBuffer = 512 << 10;
constexpr long kUploadBuffer = 512 << 10;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Upload {
  std::string_view data;
  size_t pos = 0;
};

size_t ReadBody(char* buf, size_t size, size_t n, void* user) {
  auto* up = static_cast<Upload*>(user);
  size_t len = std::min(size * n, up->data.size() - up->pos);
  std::memcpy(buf, up->data.data() + up->pos, len);
  up->pos += len;
  return len;
}

int SeekBody(void* user, curl_off_t offset, int origin) {
  auto* up = static_cast<Upload*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<size_t>(offset) > up->data.size()) {
    return CURL_SEEKFUNC_FAIL;
  }
  up->pos = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t WriteBody(char* p, size_t size, size_t n, void* user) {
  auto* resp = static_cast<HttpResponse*>(user);
  if (resp->body.empty()) {
    // Size the body once from Content-Length (already parsed: headers come first). Growing a
    // 4 MiB block by doubling instead copied it about twice more and page-faulted twice its size.
    if (auto it = resp->headers.find("content-length"); it != resp->headers.end()) {
      char* end = nullptr;
      unsigned long long want = std::strtoull(it->second.c_str(), &end, 10);
      if (end && *end == '\0' && want <= kMaxReserve) resp->body.reserve(want);
    }
  }
  resp->body.append(p, size * n);
  return size * n;
}

size_t WriteHeader(char* p, size_t size, size_t n, void* user) {
  auto* resp = static_cast<HttpResponse*>(user);
  std::string_view line(p, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    resp->headers.clear();  // a new response (after a redirect or 100 Continue)
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) {
    value.remove_prefix(1);
  }
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
    value.remove_suffix(1);
  }
  resp->headers[name] = std::string(value);
  return size * n;
}

void LockShare(CURL*, curl_lock_data data, curl_lock_access, void* user) {
  static_cast<std::mutex*>(user)[static_cast<int>(data) & 7].lock();
}
void UnlockShare(CURL*, curl_lock_data data, void* user) {
  static_cast<std::mutex*>(user)[static_cast<int>(data) & 7].unlock();
}

Status TransportError(CURLcode rc, const char* detail) {
  std::string msg = std::string(curl_easy_strerror(rc));
  if (detail && *detail) msg += std::string(": ") + detail;
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Status(ETIMEDOUT, msg);
    case CURLE_COULDNT_CONNECT:
      return Status(ECONNREFUSED, msg);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Status(EHOSTUNREACH, msg);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
      return Status(ECONNRESET, msg);
    default:
      return Status(EIO, msg);
  }
}

}  // namespace

HttpClient::HttpClient(HttpOptions options) : options_(options) {
  GlobalInit();
  share_ = curl_share_init();
  curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, LockShare);
  curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, UnlockShare);
  curl_share_setopt(share_, CURLSHOPT_USERDATA, share_mu_);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

HttpClient::~HttpClient() {
  for (CURL* h : idle_) curl_easy_cleanup(h);
  curl_share_cleanup(share_);
}

CURL* HttpClient::Acquire() {
  {
    std::lock_guard lock(pool_mu_);
    if (!idle_.empty()) {
      CURL* h = idle_.back();
      idle_.pop_back();
      curl_easy_reset(h);  // keeps the handle's live connections and caches
      return h;
    }
  }
  return curl_easy_init();
}

void HttpClient::Release(CURL* h) {
  {
    std::lock_guard lock(pool_mu_);
    if (idle_.size() < kMaxIdleHandles) {
      idle_.push_back(h);
      return;
    }
  }
  curl_easy_cleanup(h);
}

Result<HttpResponse> HttpClient::Perform(const HttpRequest& req, std::string body_storage) {
  CURL* h = Acquire();
  if (!h) return Err(ENOMEM, "cannot create a curl handle");
  HttpResponse resp;
  resp.body = std::move(body_storage);
  resp.body.clear();
  Upload up{req.body, 0};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  for (const std::string& hdr : req.headers) headers = curl_slist_append(headers, hdr.c_str());
  // No "Expect: 100-continue" round trip; S3 answers errors before reading a body anyway.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(h, CURLOPT_SHARE, share_);
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, options_.request_timeout_ms);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kRecvBuffer);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &resp);
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.method == "PUT" || req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, kUploadBuffer);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, SeekBody);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &up);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    if (req.method == "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "POST");
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  CURLcode rc = curl_easy_perform(h);
  if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    // A handle whose transfer failed may hold a broken connection: drop it.
    curl_easy_cleanup(h);
    return Err(TransportError(rc, errbuf));
  }
  Release(h);
  return resp;
}

}  // namespace nexus::object::s3
