// etcd://[USER[:PASS]@]HOST:PORT[,HOST:PORT...]/PREFIX[?timeout=SECONDS]: metadata in etcd v3,
// spoken over its HTTP/JSON gateway (POST /v3/kv/range, /v3/kv/txn, /v3/kv/deleterange, keys
// and values base64 in JSON) with libcurl.
//
// Every engine key K is the etcd key PREFIX + "\0" + K (the NUL keeps the ranges of two volumes
// disjoint even when one PREFIX starts with another, "a" and "a/b"). A transaction buffers its
// writes (BufferedTxn) and reads the committed state at one etcd revision R (taken by its first
// read), recording the mod_revision of every key it read and the part of every range it scanned.
// Commit is one etcd txn: compares (each key read still has the mod_revision it had at R, 0 =
// absent; no key in a scanned range has a mod_revision above R) and the puts and deletes. A failed
// compare is a conflict, and Update re-runs the body after a jittered backoff. etcd has no atomic
// add: a Txn::Add of a counter the body did not read is kept as a delta and applied at commit to
// the counter's latest value, with a compare on that value's mod_revision; when only the
// counters moved (another client's Add), the commit is sent again with their new values instead
// of re-running the body.
//
// A commit whose reply is lost (connection broken, timeout, leader change) may or may not have
// been applied. Each commit therefore also writes a marker key of its own (one "slot" per
// in-flight commit, outside PREFIX, attached to a lease so that it disappears if the process
// dies) and compares that the marker has not changed since the previous commit on the slot.
// After a lost reply the engine reads the marker: if it holds this commit's id the commit was
// applied; otherwise it fences the slot (rewrites the marker), after which the lost commit can
// never apply, and the body runs again. So a transaction is applied exactly once or not at all.
//
// Several endpoints: a request that cannot reach one goes to the next; while none answers,
// requests wait with backoff up to the operation timeout (?timeout=, default 30 s), then fail
// with EIO naming the last error.
#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "common/url.h"
#include "meta/kv/buffered_txn.h"
#include "meta/kv/conflict_gate.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Visitor = std::function<bool(std::string_view, std::string_view)>;

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string B64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], kB64[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {kB64[v >> 18], kB64[(v >> 12) & 63], kB64[(v >> 6) & 63], '='};
  }
  return out;
}

Result<std::string> Unb64(std::string_view in) {
  static const auto table = [] {
    std::array<int8_t, 256> t;
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kB64[i])] = static_cast<int8_t>(i);
    return t;
  }();
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int8_t d = table[static_cast<uint8_t>(c)];
    if (d < 0) return Err(EIO, "etcd reply has bad base64");
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

// int64 fields arrive as JSON strings ("revision":"3"); absent means 0.
int64_t Int(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_string()) return std::strtoll(it->get_ref<const std::string&>().c_str(), nullptr, 10);
  if (it->is_number()) return it->get<int64_t>();
  return 0;
}

Result<std::string> Bytes(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return std::string();
  return Unb64(it->get_ref<const std::string&>());
}

std::string RandomHex(size_t bytes) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < bytes; ++i) {
    auto b = static_cast<uint8_t>(rng());
    s += {hex[b >> 4], hex[b & 15]};
  }
  return s;
}

size_t WriteBody(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

// How a request failed, for the caller's retry decision.
struct Outcome {
  bool unknown = false;  // a write may have been applied (its reply was lost)
};

class Client {
 public:
  Client(std::vector<std::string> endpoints, std::string user, std::string password,
         std::chrono::milliseconds timeout)
      : endpoints_(std::move(endpoints)),
        user_(std::move(user)),
        password_(std::move(password)),
        timeout_(timeout) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~Client() {
    for (CURL* c : pool_) curl_easy_cleanup(c);
  }

  std::chrono::milliseconds timeout() const { return timeout_; }
  // HTTP requests answered or failed (EngineStats::round_trips).
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

  // POSTs `req` to `path` ("/v3/kv/range"). `idempotent` requests are retried on any endpoint
  // until the deadline; a non-idempotent one whose reply is lost returns with out->unknown set.
  Result<json> Post(const char* path, const json& req, bool idempotent, Outcome* out = nullptr,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    const auto deadline = Clock::now() + (timeout.count() ? timeout : timeout_);
    const std::string body = req.dump();
    std::string last = "no endpoint tried";
    bool reauthed = false;
    for (int round = 0;; ++round) {
      const size_t n = endpoints_.size();
      const size_t start = current_.load();
      for (size_t i = 0; i < n; ++i) {
        const size_t idx = (start + i) % n;
        const std::string& ep = endpoints_[idx];
        long http = 0;
        std::string reply;
        CURLcode cc = Send(ep, path, body, deadline, &http, &reply);
        if (cc != CURLE_OK) {
          last = ep + ": " + curl_easy_strerror(cc);
          // A refused connection does not prove the request was never sent: libcurl resends a
          // request whose reused keep-alive connection died, so "couldn't connect" can follow a
          // request the server applied just before it went down (a commit applied twice, seen
          // in the restart test). Only an unresolvable name is certain.
          bool not_sent = cc == CURLE_COULDNT_RESOLVE_HOST;
          if (!not_sent && !idempotent) {
            if (out) out->unknown = true;
            return Err(EIO, "etcd " + std::string(path) + " at " + last);
          }
          continue;
        }
        json j = json::parse(reply, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
          last = ep + ": HTTP " + std::to_string(http) + " with a reply that is not JSON";
          if (!idempotent) {
            if (out) out->unknown = true;
            return Err(EIO, "etcd " + std::string(path) + " at " + last);
          }
          continue;
        }
        current_.store(idx);
        if (http == 200 && !j.contains("error")) return j;
        const int code = static_cast<int>(Int(j, "code"));
        std::string msg = j.value("error", j.value("message", std::string("HTTP error")));
        last = ep + ": " + msg;
        if ((code == 16 || msg.find("auth token") != std::string::npos) && !user_.empty() &&
            !reauthed) {
          reauthed = true;
          NX_TRY(Authenticate(ep, deadline));
          --i;  // same endpoint again with a fresh token
          continue;
        }
        if (msg.find("compacted") != std::string::npos) return Err(Status::Conflict(msg));
        if (msg.find("too many operations") != std::string::npos) {
          return Err(E2BIG,
                     "etcd transaction has more operations than the server's "
                     "--max-txn-ops allows (default 128; raise it): " +
                         msg);
        }
        if (msg.find("too large") != std::string::npos ||
            msg.find("larger than max") != std::string::npos) {
          return Err(E2BIG, "etcd request of " + std::to_string(body.size()) +
                                " bytes is over the server's --max-request-bytes (default 1.5 "
                                "MiB; raise it): " +
                                msg);
        }
        if (msg.find("lease not found") != std::string::npos) {
          return Err(Status::Conflict(msg));
        }
        if (code == 16 || code == 7 || msg.find("permission denied") != std::string::npos ||
            msg.find("authentication failed") != std::string::npos) {
          return Err(EACCES, "etcd " + std::string(path) + ": " + msg);
        }
        if (code == 14 || code == 4 || code == 13 || msg.find("leader") != std::string::npos ||
            msg.find("timed out") != std::string::npos ||
            msg.find("future revision") != std::string::npos) {
          // Unavailable: no leader, leader changed, request timed out. A write may be applied.
          if (!idempotent) {
            if (out) out->unknown = true;
            return Err(EIO, "etcd " + std::string(path) + " at " + last);
          }
          continue;
        }
        return Err(EIO, "etcd " + std::string(path) + " at " + last);
      }
      if (Clock::now() >= deadline) {
        return Err(EIO, "etcd unreachable: no endpoint of " + std::to_string(n) + " answered " +
                            path + " within " +
                            std::to_string((timeout.count() ? timeout : timeout_).count()) +
                            " ms (last error: " + last + ")");
      }
      auto pause = std::chrono::milliseconds(std::min(25 << std::min(round, 4), 400));
      std::this_thread::sleep_for(
          std::min<Clock::duration>(pause, deadline - Clock::now() + std::chrono::milliseconds(1)));
    }
  }

 private:
  CURLcode Send(const std::string& ep, const char* path, const std::string& body,
                Clock::time_point deadline, long* http, std::string* reply) {
    CURL* c = Take();
    std::string url = "http://" + ep + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    long total = std::max<long>(200, static_cast<long>(left.count()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, total);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min<long>(total, 2000));
    struct curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    // libcurl asks for "100 Continue" before a body over 1 MiB (7.88; over 1 KiB before 7.?),
    // one more round trip for a large commit: the gateway always takes the body.
    headers = curl_slist_append(headers, "Expect:");
    std::string auth;
    {
      std::lock_guard lock(mu_);
      if (!token_.empty()) auth = "Authorization: " + token_;
    }
    if (!auth.empty()) headers = curl_slist_append(headers, auth.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    CURLcode cc = curl_easy_perform(c);
    requests_.fetch_add(1, std::memory_order_relaxed);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    Give(c, cc == CURLE_OK);
    return cc;
  }

  // Exchanges the user name and password for a token (etcd auth); the password is never logged.
  Status Authenticate(const std::string& ep, Clock::time_point deadline) {
    json req = {{"name", user_}, {"password", password_}};
    long http = 0;
    std::string reply;
    CURLcode cc = Send(ep, "/v3/auth/authenticate", req.dump(), deadline, &http, &reply);
    if (cc != CURLE_OK) {
      return Status::IOError("etcd authenticate at " + ep + ": " + curl_easy_strerror(cc));
    }
    json j = json::parse(reply, nullptr, false);
    if (j.is_discarded() || !j.contains("token")) {
      std::string msg = j.is_discarded() ? "reply is not JSON"
                                         : j.value("error", j.value("message", std::string("?")));
      return Status::Errno(EACCES, "etcd authenticate as '" + user_ + "' at " + ep + ": " + msg);
    }
    std::lock_guard lock(mu_);
    token_ = j["token"].get<std::string>();
    return Status::OK();
  }

  CURL* Take() {
    {
      std::lock_guard lock(mu_);
      if (!pool_.empty()) {
        CURL* c = pool_.back();
        pool_.pop_back();
        return c;
      }
    }
    return curl_easy_init();
  }
  void Give(CURL* c, bool healthy) {
    if (healthy) {
      std::lock_guard lock(mu_);
      if (pool_.size() < 32) {
        pool_.push_back(c);
        return;
      }
    }
    curl_easy_cleanup(c);
  }

  const std::vector<std::string> endpoints_;
  const std::string user_, password_;
  const std::chrono::milliseconds timeout_;
  std::atomic<size_t> current_{0};
  std::atomic<uint64_t> requests_{0};
  std::mutex mu_;
  std::string token_;
  std::vector<CURL*> pool_;
};

class EtcdEngine;

class EtcdTxn final : public BufferedTxn {
 public:
  EtcdTxn(EtcdEngine* e, bool read_only) : BufferedTxn(read_only), e_(e), read_only_(read_only) {}

  // Reads of several keys in one request: one read-only etcd txn of ranges at the
  // transaction's revision (the first read of a body takes it from the reply).
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override;

  // A counter that the body has not read is not read now: the delta is kept and applied at
  // commit to the counter's value then (EtcdEngine::Commit), so concurrent Adds of different
  // clients do not make each other's bodies run again. Read, or written, first: an ordinary
  // read-modify-write.
  Status Add(std::string_view key, int64_t delta) override;

  int64_t revision() const { return rev_; }
  const std::map<std::string, int64_t, std::less<>>& adds() const { return adds_; }
  const std::map<std::string, int64_t, std::less<>>& reads() const { return reads_; }
  const std::vector<std::pair<std::string, std::string>>& scans() const { return scans_; }

 protected:
  Result<std::optional<std::string>> BaseGet(std::string_view key) override;
  Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) override;
  Status BeforeScan(std::string_view begin, std::string_view end) override;

 private:
  // A read of `key` (engine key) at rev_, without the pending Add folding of BaseGet.
  Result<std::optional<std::string>> ReadKey(std::string_view key);
  // Turns the pending Add of `key`, if any, into a read of the counter and a buffered write.
  Status FoldAdd(std::string_view key);

  // Records a key read at rev_ (full etcd key) with its value and mod_revision.
  void Seen(const std::string& full, std::optional<std::string> value, int64_t mod);

  EtcdEngine* e_;
  bool read_only_;
  int64_t rev_ = 0;                                    // the revision every read sees; 0 = none yet
  std::map<std::string, int64_t, std::less<>> reads_;  // key -> mod_revision at rev_ (0 absent)
  // Values read at rev_ (engine keys): a key read again is answered without a request, since
  // every read of the body is at the same revision.
  std::map<std::string, std::optional<std::string>, std::less<>> values_;
  std::vector<std::pair<std::string, std::string>> scans_;  // scanned etcd ranges [b, e)
  std::map<std::string, int64_t, std::less<>> adds_;        // deferred Adds (engine keys)
};

class EtcdEngine final : public Engine {
 public:
  EtcdEngine(Url url, std::vector<std::string> endpoints, std::string prefix,
             std::chrono::milliseconds timeout)
      : url_(std::move(url)),
        client_(std::move(endpoints), url_.user, url_.password, timeout),
        prefix_(std::move(prefix)),
        prefix_end_(PrefixEnd(prefix_)) {
    // Markers live beside the volume's range, never inside it.
    marker_base_ =
        prefix_.substr(0, prefix_.size() - 1) + std::string("\x01txn/", 5) + RandomHex(8) + "/";
  }
  ~EtcdEngine() override {
    // Revoking the lease deletes this engine's marker keys at once; best effort.
    std::lock_guard lock(lease_mu_);
    if (lease_) {
      client_
          .Post("/v3/lease/revoke", {{"ID", lease_}}, true, nullptr, std::chrono::milliseconds(500))
          .has_value();
    }
  }

  Client& client() { return client_; }
  const std::string& prefix() const { return prefix_; }
  const std::string& prefix_end() const { return prefix_end_; }

  Status Check() {
    // One read proves an endpoint answers (and the credentials work). It waits at most 5 s, so
    // that format or mount against a dead server or a wrong address says so promptly; once
    // open, requests ride out outages up to the full timeout.
    const auto wait = std::min(client_.timeout(), std::chrono::milliseconds(5000));
    NX_ASSIGN_OR_RETURN(
        json r, client_.Post("/v3/kv/range", {{"key", B64(prefix_)}, {"count_only", true}}, true,
                             nullptr, wait));
    (void)r;
    return Status::OK();
  }

  // A transaction is several requests (~5 ms with the WAL fsync) and loses whenever another
  // client commits a key it read meanwhile; under 2 mounts x 2 writers an unlink lost 50 times
  // in a row (EBUSY) while Adds still read the usage counters. Adds no longer conflict (see
  // EtcdTxn::Add), and an etcd transaction gets 4x the usual attempts before it gives up.
  static constexpr int kMaxAttempts = 4 * Backoff::kMaxAttempts;
  // Commits re-sent with fresh counter values before the body runs again (see Commit).
  static constexpr int kCounterRounds = 8;

  Status Update(const std::function<Status(Txn&)>& body) override {
    Status last;
    for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
      Backoff::Wait(attempt);
      Status s;
      {
        ConflictGate::Pass pass(gate_, attempt - 1);
        EtcdTxn txn(this, false);
        s = body(txn);
        if (s.ok()) s = Commit(txn);
      }
      if (s.ok()) {
        txns_++;
        return s;
      }
      if (!s.IsConflict()) {
        failures_++;
        return s;
      }
      conflicts_++;
      last = s;
    }
    failures_++;
    return Status::Busy("etcd transaction gave up after " + std::to_string(kMaxAttempts) +
                        " attempts (" + last.message() + ")");
  }

  Status View(const std::function<Status(Txn&)>& body) override {
    Status s;
    for (int attempt = 1; attempt <= Backoff::kMaxAttempts; ++attempt) {
      Backoff::Wait(attempt);
      EtcdTxn txn(this, true);
      s = body(txn);
      if (!s.IsConflict()) return s;  // a read at a compacted revision runs again
    }
    return Status::Busy("etcd read gave up: " + s.message());
  }

  // etcd acknowledges a write only after the raft log entry is fsynced on a quorum of members,
  // so every committed transaction is already durable.
  Status Sync() override { return Status::OK(); }
  std::string Name() const override { return url_.Redacted(); }
  EngineStats Stats() const override {
    return {txns_.load(), conflicts_.load(), failures_.load(), client_.requests()};
  }

  // One delete of the whole prefix: atomic, and free of the per-transaction op limit.
  Status Reset() override {
    NX_ASSIGN_OR_RETURN(
        json r, client_.Post("/v3/kv/deleterange",
                             {{"key", B64(prefix_)}, {"range_end", B64(prefix_end_)}}, true));
    (void)r;
    return Status::OK();
  }

  // Drops the history older than the current revision (of the whole etcd cluster).
  Status Compact() override {
    NX_ASSIGN_OR_RETURN(
        json r, client_.Post("/v3/kv/range", {{"key", B64(prefix_)}, {"count_only", true}}, true));
    int64_t rev = Int(r["header"], "revision");
    auto c = client_.Post("/v3/kv/compaction", {{"revision", rev}}, true);
    if (!c && !c.error().IsConflict()) return c.error();  // already compacted is fine
    return Status::OK();
  }

 private:
  struct Slot {
    std::string key;
    int64_t mod = 0;  // the marker's mod_revision after this engine's last write to it
  };

  std::unique_ptr<Slot> TakeSlot() {
    std::lock_guard lock(slot_mu_);
    if (!slots_.empty()) {
      auto s = std::move(slots_.back());
      slots_.pop_back();
      return s;
    }
    auto s = std::make_unique<Slot>();
    s->key = marker_base_ + std::to_string(next_slot_++);
    return s;
  }
  void GiveSlot(std::unique_ptr<Slot> s) {
    std::lock_guard lock(slot_mu_);
    slots_.push_back(std::move(s));
  }

  // The lease the markers are attached to: a new one every 2 minutes, each living 10.
  Result<int64_t> Lease() {
    std::lock_guard lock(lease_mu_);
    if (lease_ && Clock::now() - lease_at_ < std::chrono::minutes(2)) return lease_;
    NX_ASSIGN_OR_RETURN(json r, client_.Post("/v3/lease/grant", {{"TTL", 600}}, true));
    lease_ = Int(r, "ID");
    lease_at_ = Clock::now();
    return lease_;
  }
  void DropLease(int64_t id) {
    std::lock_guard lock(lease_mu_);
    if (lease_ == id) lease_ = 0;
  }

  static json Put(const std::string& key, std::string_view value, int64_t lease = 0) {
    json p = {{"key", B64(key)}, {"value", B64(value)}};
    if (lease) p["lease"] = lease;
    return {{"request_put", std::move(p)}};
  }

  // The current value and mod_revision of each counter in `adds` (one read-only txn of ranges,
  // linearizable: the latest state).
  Status ReadCounters(const std::map<std::string, int64_t, std::less<>>& adds,
                      std::map<std::string, std::pair<int64_t, int64_t>>* out) {
    json ops = json::array();
    for (const auto& [k, d] : adds) ops.push_back({{"request_range", {{"key", B64(prefix_ + k)}}}});
    NX_ASSIGN_OR_RETURN(json r, client_.Post("/v3/kv/txn", {{"success", std::move(ops)}}, true));
    const json& resp = r["responses"];
    if (!resp.is_array() || resp.size() != adds.size()) {
      return Status::IOError("etcd: a read of " + std::to_string(adds.size()) +
                             " counters answered " +
                             std::to_string(resp.is_array() ? resp.size() : 0));
    }
    size_t i = 0;
    for (const auto& [k, d] : adds) NX_TRY(CounterFrom(resp[i++], k, out));
    return Status::OK();
  }

  // Records counter `k`'s value and mod_revision from one range response (absent: 0, 0).
  static Status CounterFrom(const json& response, const std::string& k,
                            std::map<std::string, std::pair<int64_t, int64_t>>* out) {
    const json kvs = response.value("response_range", json::object()).value("kvs", json::array());
    int64_t value = 0, mod = 0;
    if (kvs.is_array() && !kvs.empty()) {
      NX_ASSIGN_OR_RETURN(std::string v, Bytes(kvs[0], "value"));
      value = DecodeCounter(v);
      mod = Int(kvs[0], "mod_revision");
    }
    (*out)[k] = {value, mod};
    return Status::OK();
  }

  // Commits the transaction's writes if nothing it read changed since its read revision. Its
  // deferred Adds are applied to the counters' latest values, with compares on those: when
  // only a counter moved (another client's Add), the commit is sent again with the new values
  // instead of re-running the body.
  Status Commit(const EtcdTxn& txn) {
    std::map<std::string, int64_t, std::less<>> adds;
    for (const auto& [k, d] : txn.adds()) {
      if (!txn.writes().count(k)) adds.emplace(k, d);  // a later put or delete replaced it
    }
    if (txn.writes().empty() && adds.empty()) return Status::OK();  // reads at one revision
    std::map<std::string, std::pair<int64_t, int64_t>> counters;    // key -> (value, mod_revision)
    if (!adds.empty()) NX_TRY(ReadCounters(adds, &counters));
    json cmp = json::array();
    for (const auto& [k, mod] : txn.reads()) {
      cmp.push_back(
          {{"key", B64(k)}, {"target", "MOD"}, {"result", "EQUAL"}, {"mod_revision", mod}});
    }
    for (const auto& [b, e] : txn.scans()) {
      cmp.push_back({{"key", B64(b)},
                     {"range_end", B64(e)},
                     {"target", "MOD"},
                     {"result", "LESS"},
                     {"mod_revision", txn.revision() + 1}});
    }
    json ops = json::array();
    for (const auto& [k, v] : txn.writes()) {
      if (v) {
        ops.push_back(Put(prefix_ + k, *v));
      } else {
        ops.push_back({{"request_delete_range", {{"key", B64(prefix_ + k)}}}});
      }
    }
    NX_ASSIGN_OR_RETURN(int64_t lease, Lease());
    auto slot = TakeSlot();
    for (int round = 0;; ++round) {
      json c = cmp;
      json o = ops;
      json failure = json::array({{{"request_range", {{"key", B64(slot->key)}}}}});
      for (const auto& [k, d] : adds) {
        const auto& [value, mod] = counters[k];
        c.push_back({{"key", B64(prefix_ + k)},
                     {"target", "MOD"},
                     {"result", "EQUAL"},
                     {"mod_revision", mod}});
        o.push_back(Put(prefix_ + k, EncodeCounter(value + d)));
        failure.push_back({{"request_range", {{"key", B64(prefix_ + k)}}}});
      }
      const std::string id = RandomHex(12);
      c.push_back({{"key", B64(slot->key)},
                   {"target", "MOD"},
                   {"result", "EQUAL"},
                   {"mod_revision", slot->mod}});
      o.push_back(Put(slot->key, id, lease));
      json req = {{"compare", std::move(c)}, {"success", std::move(o)}, {"failure", failure}};
      Outcome out;
      auto r = client_.Post("/v3/kv/txn", req, false, &out);
      if (!r) {
        if (!out.unknown) {
          if (r.error().message().find("lease not found") != std::string::npos) DropLease(lease);
          GiveSlot(std::move(slot));
          return r.error();
        }
        // The reply was lost: find out whether the commit was applied, and make sure that it
        // never will be if it was not.
        auto applied = Resolve(slot.get(), id, lease);
        if (!applied) return applied.error().With("etcd commit outcome unknown");  // slot leaks
        GiveSlot(std::move(slot));
        return *applied ? Status::OK() : Status::Conflict("etcd commit reply lost, not applied");
      }
      if (r->value("succeeded", false)) {
        slot->mod = Int((*r)["header"], "revision");
        GiveSlot(std::move(slot));
        return Status::OK();
      }
      // A compare failed. Learn the marker's state in case it was what changed (lease expiry),
      // and the counters' (another client's Add).
      int64_t mod = 0;
      bool counter_moved = false;
      const json& resp = (*r)["responses"];
      if (resp.is_array() && resp.size() == 1 + adds.size()) {
        // value(), not operator[]: the marker may be gone (no "kvs"), and operator[] of a const
        // json on an absent key is undefined.
        const json kvs =
            resp[0].value("response_range", json::object()).value("kvs", json::array());
        if (kvs.is_array() && !kvs.empty()) mod = Int(kvs[0], "mod_revision");
        size_t i = 1;
        for (const auto& [k, d] : adds) {
          const int64_t before = counters[k].second;
          NX_TRY(CounterFrom(resp[i++], k, &counters));
          if (counters[k].second != before) counter_moved = true;
        }
      }
      const bool marker_moved = mod != slot->mod;
      slot->mod = mod;
      // Only the counters moved (the marker did not): the body's reads may still hold, so the
      // commit is tried again with the new counter values, a bounded number of times.
      if (!counter_moved || marker_moved || round >= kCounterRounds) {
        GiveSlot(std::move(slot));
        return Status::Conflict("etcd txn compare failed");
      }
    }
  }

  // After a commit with marker `id` lost its reply: true when it was applied; false when it was
  // not and never will be (the slot is fenced).
  Result<bool> Resolve(Slot* slot, const std::string& id, int64_t lease) {
    for (int round = 0; round < 100; ++round) {
      NX_ASSIGN_OR_RETURN(json r, client_.Post("/v3/kv/range", {{"key", B64(slot->key)}}, true));
      std::string value;
      int64_t mod = 0;
      const json& kvs = r["kvs"];
      if (kvs.is_array() && !kvs.empty()) {
        NX_ASSIGN_OR_RETURN(value, Bytes(kvs[0], "value"));
        mod = Int(kvs[0], "mod_revision");
      }
      if (value == id) {
        slot->mod = mod;
        return true;
      }
      if (mod != slot->mod) {
        // Changed by a fence of ours (or expired): the lost commit's compare can never hold.
        slot->mod = mod;
        return false;
      }
      const std::string fence = RandomHex(12);
      json req = {{"compare", json::array({{{"key", B64(slot->key)},
                                            {"target", "MOD"},
                                            {"result", "EQUAL"},
                                            {"mod_revision", slot->mod}}})},
                  {"success", json::array({Put(slot->key, fence, lease)})}};
      Outcome out;
      auto f = client_.Post("/v3/kv/txn", req, false, &out);
      if (f && f->value("succeeded", false)) {
        slot->mod = Int((*f)["header"], "revision");
        return false;
      }
      if (!f && !out.unknown) {
        if (f.error().message().find("lease not found") != std::string::npos) {
          DropLease(lease);
          NX_ASSIGN_OR_RETURN(lease, Lease());
          continue;
        }
        return Err(f.error());
      }
      // The fence failed its compare or lost its reply: read the marker again.
    }
    return Err(EIO, "etcd: could not settle a commit whose reply was lost");
  }

  Url url_;
  Client client_;
  std::string prefix_, prefix_end_, marker_base_;
  std::mutex slot_mu_;
  std::vector<std::unique_ptr<Slot>> slots_;
  uint64_t next_slot_ = 0;
  std::mutex lease_mu_;
  int64_t lease_ = 0;
  Clock::time_point lease_at_;
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0};
  ConflictGate gate_;

  friend class EtcdTxn;
};

void EtcdTxn::Seen(const std::string& full, std::optional<std::string> value, int64_t mod) {
  if (!read_only_) reads_.emplace(full, mod);
  values_.emplace(full.substr(e_->prefix().size()), std::move(value));
}

Status EtcdTxn::Add(std::string_view key, int64_t delta) {
  if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
  if (writes().count(key) || values_.count(key)) return Txn::Add(key, delta);
  adds_[std::string(key)] += delta;
  return Status::OK();
}

Status EtcdTxn::FoldAdd(std::string_view key) {
  auto it = adds_.find(key);
  if (it == adds_.end()) return Status::OK();
  const int64_t delta = it->second;
  adds_.erase(it);
  NX_ASSIGN_OR_RETURN(auto base, ReadKey(key));
  return Put(key, EncodeCounter((base ? DecodeCounter(*base) : 0) + delta));
}

Status EtcdTxn::BeforeScan(std::string_view begin, std::string_view end) {
  std::vector<std::string> inside;
  for (auto it = adds_.lower_bound(begin); it != adds_.end() && (end.empty() || it->first < end);
       ++it) {
    inside.push_back(it->first);
  }
  for (const std::string& k : inside) NX_TRY(FoldAdd(k));
  return Status::OK();
}

Result<std::optional<std::string>> EtcdTxn::BaseGet(std::string_view key) {
  if (adds_.count(key)) {
    NX_TRY(FoldAdd(key));
    return Get(key);  // now a buffered write
  }
  return ReadKey(key);
}

Result<std::optional<std::string>> EtcdTxn::ReadKey(std::string_view key) {
  if (auto it = values_.find(key); it != values_.end()) return it->second;
  const std::string full = e_->prefix() + std::string(key);
  json req = {{"key", B64(full)}};
  if (rev_) {  // later reads of a transaction: at its revision, without a raft round
    req["revision"] = rev_;
    req["serializable"] = true;
  }
  NX_ASSIGN_OR_RETURN(json r, e_->client().Post("/v3/kv/range", req, true));
  if (!rev_) rev_ = Int(r["header"], "revision");
  std::optional<std::string> out;
  int64_t mod = 0;
  const json& kvs = r["kvs"];
  if (kvs.is_array() && !kvs.empty()) {
    NX_ASSIGN_OR_RETURN(out, Bytes(kvs[0], "value"));
    mod = Int(kvs[0], "mod_revision");
  }
  Seen(full, out, mod);
  return out;
}

Result<std::vector<std::optional<std::string>>> EtcdTxn::MultiGet(
    const std::vector<std::string>& keys) {
  for (const std::string& k : keys) NX_TRY(FoldAdd(k));
  std::vector<std::optional<std::string>> out(keys.size());
  std::vector<size_t> remote;  // indexes of keys neither written nor read before
  for (size_t i = 0; i < keys.size(); ++i) {
    if (auto w = writes().find(keys[i]); w != writes().end()) {
      out[i] = w->second;
    } else if (auto v = values_.find(keys[i]); v != values_.end()) {
      out[i] = v->second;
    } else if (std::find_if(remote.begin(), remote.end(),
                            [&](size_t j) { return keys[j] == keys[i]; }) == remote.end()) {
      remote.push_back(i);
    }
  }
  if (remote.size() == 1) {
    NX_ASSIGN_OR_RETURN(out[remote[0]], ReadKey(keys[remote[0]]));
  }
  // etcd refuses a txn of more than --max-txn-ops operations (default 128): larger reads go in
  // several txns, all at the revision of the first, so they still see one state.
  constexpr size_t kOpsPerTxn = 128;
  for (size_t from = 0; remote.size() > 1 && from < remote.size(); from += kOpsPerTxn) {
    const size_t to = std::min(remote.size(), from + kOpsPerTxn);
    json ops = json::array();
    for (size_t j = from; j < to; ++j) {
      json range = {{"key", B64(e_->prefix() + keys[remote[j]])}};
      if (rev_) {  // a txn whose ranges are all serializable skips the raft read round
        range["revision"] = rev_;
        range["serializable"] = true;
      }
      ops.push_back({{"request_range", std::move(range)}});
    }
    NX_ASSIGN_OR_RETURN(json r,
                        e_->client().Post("/v3/kv/txn", {{"success", std::move(ops)}}, true));
    // A txn reads one revision: the first one's header names it for the rest of the body.
    if (!rev_) rev_ = Int(r["header"], "revision");
    const json& resp = r["responses"];
    if (!resp.is_array() || resp.size() != to - from) {
      return Err(EIO, "etcd txn of " + std::to_string(to - from) + " reads answered " +
                          std::to_string(resp.is_array() ? resp.size() : 0));
    }
    for (size_t j = from; j < to; ++j) {
      const std::string& key = keys[remote[j]];
      // The gateway leaves out empty fields ("kvs" of a missing key); a const json's
      // operator[] must not be used on an absent key.
      const json& range = resp[j - from].value("response_range", json::object());
      const json kvs = range.value("kvs", json::array());
      std::optional<std::string> value;
      int64_t mod = 0;
      if (kvs.is_array() && !kvs.empty()) {
        NX_ASSIGN_OR_RETURN(value, Bytes(kvs[0], "value"));
        mod = Int(kvs[0], "mod_revision");
      }
      out[remote[j]] = value;
      Seen(e_->prefix() + key, std::move(value), mod);
    }
  }
  // Duplicates of a key fetched above.
  for (size_t i = 0; i < keys.size(); ++i) {
    if (writes().count(keys[i])) continue;
    if (auto v = values_.find(keys[i]); v != values_.end()) out[i] = v->second;
  }
  return out;
}

Status EtcdTxn::BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) {
  std::string from = e_->prefix() + std::string(begin);
  const std::string to = end.empty() ? e_->prefix_end() : e_->prefix() + std::string(end);
  const std::string first = from;
  // Short scans (limit 1 to check emptiness) should not fetch much; long ones grow the batch.
  int64_t batch = 64;
  for (;;) {
    json req = {{"key", B64(from)}, {"range_end", B64(to)}, {"limit", batch}};
    if (rev_) {
      req["revision"] = rev_;
      req["serializable"] = true;
    }
    NX_ASSIGN_OR_RETURN(json r, e_->client().Post("/v3/kv/range", req, true));
    if (!rev_) rev_ = Int(r["header"], "revision");
    const json& kvs = r["kvs"];
    size_t n = kvs.is_array() ? kvs.size() : 0;
    for (size_t i = 0; i < n; ++i) {
      NX_ASSIGN_OR_RETURN(std::string k, Bytes(kvs[i], "key"));
      NX_ASSIGN_OR_RETURN(std::string v, Bytes(kvs[i], "value"));
      if (k.compare(0, e_->prefix().size(), e_->prefix()) != 0) {
        return Status::IOError("etcd returned a key outside the scanned range");
      }
      if (!visit(std::string_view(k).substr(e_->prefix().size()), v)) {
        // Stopped: what the caller saw is [first, k].
        if (!read_only_) scans_.emplace_back(first, k + std::string(1, '\0'));
        return Status::OK();
      }
      from = k + std::string(1, '\0');
    }
    if (!r.value("more", false) || n == 0) break;
    batch = std::min<int64_t>(batch * 8, 4096);
  }
  if (!read_only_) scans_.emplace_back(first, to);
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<Engine>> OpenEtcd(const Url& url) {
  Url u = url;
  const std::string shown = u.Redacted();
  if (u.host.empty()) return Err(EINVAL, "etcd URL '" + shown + "' names no HOST:PORT");
  std::vector<std::string> endpoints;
  std::string_view hosts = u.host;
  while (!hosts.empty()) {
    size_t comma = hosts.find(',');
    std::string h(hosts.substr(0, comma));
    if (h.empty()) return Err(EINVAL, "etcd URL '" + shown + "' has an empty host in its list");
    if (u.port)
      h += ":" + std::to_string(u.port);
    else if (h.find(':') == std::string::npos)
      h += ":2379";
    endpoints.push_back(std::move(h));
    if (comma == std::string_view::npos) break;
    hosts.remove_prefix(comma + 1);
  }
  std::string prefix = u.path;
  while (!prefix.empty() && prefix.front() == '/') prefix.erase(0, 1);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (prefix.empty()) {
    return Err(EINVAL,
               "etcd URL '" + shown + "' needs a /PREFIX path: the volume's keys live under it");
  }
  for (char c : prefix) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return Err(EINVAL, "etcd URL '" + shown + "': PREFIX has a control character");
    }
  }
  std::chrono::milliseconds timeout(30000);
  if (auto it = u.query.find("timeout"); it != u.query.end()) {
    char* endp = nullptr;
    double secs = std::strtod(it->second.c_str(), &endp);
    if (endp == it->second.c_str() || *endp || !(secs > 0) || secs > 86400) {
      return Err(EINVAL, "etcd URL '" + shown + "': timeout '" + it->second +
                             "' is not a number of seconds");
    }
    timeout = std::chrono::milliseconds(static_cast<int64_t>(secs * 1000));
  }
  if (!u.user.empty() && u.password.empty()) {
    if (const char* p = std::getenv("META_PASSWORD")) u.password = p;
  }
  auto e =
      std::make_unique<EtcdEngine>(u, std::move(endpoints), prefix + std::string(1, '\0'), timeout);
  Status s = e->Check();
  if (!s.ok()) return Err(s.With("open " + shown));
  return e;
}

}  // namespace nexus::kv
