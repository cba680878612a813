// A small HTTP/1.1 client for the S3 backend on libcurl: a pool of reusable easy handles (each
// keeps its keep-alive connections between requests) sharing one DNS and TLS-session cache.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

typedef void CURL;
typedef void CURLSH;

namespace nexus::object::s3 {

struct HttpRequest {
  std::string method;                // GET, PUT, HEAD, DELETE, POST
  std::string url;                   // full URL, already encoded
  std::vector<std::string> headers;  // "name: value"
  std::string_view body;             // sent for PUT and POST
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpOptions {
  long connect_timeout_ms = 10000;
  long request_timeout_ms = 120000;  // whole request, connection included
};

// Thread-safe.
class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole response. A transport failure is an error Status:
  // ETIMEDOUT (connect or request timeout), ECONNREFUSED, ECONNRESET (the connection broke),
  // EHOSTUNREACH (name resolution), EIO otherwise; the message has curl's explanation. Any HTTP
  // status is a response, not an error.
  // `body_storage`: a string whose capacity the response body reuses (its content is dropped).
  Result<HttpResponse> Perform(const HttpRequest& req, std::string body_storage = {});

 private:
  CURL* Acquire();
  void Release(CURL* h);

  HttpOptions options_;
  CURLSH* share_ = nullptr;
  std::mutex share_mu_[8];  // one per curl_lock_data kind
  std::mutex pool_mu_;
  std::vector<CURL*> idle_;
};

}  // namespace nexus::object::s3
