// redis://[USER:PASS@]HOST:PORT/DB: one Redis database holds the volume's metadata.
//
// Layout: the value of key K is the Redis string "v" + K, and every K is a member (score 0) of
// one sorted set "i", so that ZRANGEBYLEX returns keys in byte order for range scans.
//
// Transactions are optimistic. A point read of an Update WATCHes "v" + K before it GETs it (one
// pipelined round trip), so a commit by anyone else to that key makes our EXEC return nil -> the
// body runs again. A scan reads members from "i" in batches and MGETs their values (unwatched),
// and records the range it covered, how many members it got, and a digest of the values. A
// MultiGet of more than kWatchKeys keys is recorded the same way instead of WATCHed (WATCH of n
// keys is O(n^2) in Redis 7.0). The commit is MULTI, EVAL <commit script>, EXEC: the script
// first recounts every recorded range with ZLEXCOUNT and re-reads every recorded bulk read and
// compares its digest, and gives up (conflict, nothing written) if a count or a digest differs
// -- a key inserted into a scanned range, or a value read in bulk changed or deleted; a point
// read is caught by its WATCH -- and then applies the buffered puts, deletes and adds. Together
// that makes scans serializable too (no phantoms), at the cost of one O(log n) ZLEXCOUNT per
// scanned range and one GET per key read in bulk, on the server, at commit.
//
// A View's point reads are unwatched MGETs that re-read every key the View read before (see
// kSnapshotKeys), so a one-key View is one round trip with nothing after it. A View that scans
// or reads many keys WATCHes (or records, as above) what it read and runs the commit's
// validation without writes: its reads are the state at its final EXEC. Every exchange with the
// server is counted in EngineStats::round_trips.
//
// Txn::Add is buffered as a delta and applied by the script (64-bit two's complement, exact),
// so concurrent Adds never conflict; reading the counter in the same transaction WATCHes it.
//
// Server outages: a transport error (or LOADING while a restarted server reads its data) makes
// the attempt retry on a fresh connection for up to kOutageWait, then the error is returned. A
// commit whose reply was lost is resolved through a marker key that the commit script sets
// together with the writes ("t" + 16 random bytes, expiring after 10 minutes): present ->
// committed, absent -> the body runs again.
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <sys/time.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/url.h"
#include "meta/kv/buffered_txn.h"
#include "meta/kv/conflict_gate.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using Clock = std::chrono::steady_clock;
using Cmd = std::vector<std::string>;
constexpr auto kOutageWait = std::chrono::seconds(30);
constexpr size_t kMaxIdle = 32;
constexpr char kIndex[] = "i";

// ARGV: nranges, then (min, max, count) per range; nchecks, then (nkeys, digest, value keys...)
// per check (ValuesDigest of the values read); nexpect, then (key, "v" value | "n" "") per key
// whose value the body took as expected without reading it; the marker key; then ops: "p" K V, "P"
// K V (a put of a key the transaction read and found, so already in the index: no ZADD), "d" K, "a"
// K LO HI (the delta as two unsigned 32-bit halves). Returns 1, or 0 on a conflict.
constexpr char kCommitScript[] = R"lua(
local n = tonumber(ARGV[1])
local i = 2
for r = 1, n do
  if redis.call('ZLEXCOUNT', 'i', ARGV[i], ARGV[i + 1]) ~= tonumber(ARGV[i + 2]) then
    return 0
  end
  i = i + 3
end
n = tonumber(ARGV[i])
i = i + 1
for c = 1, n do
  local nk, parts = tonumber(ARGV[i]), {}
  for j = 1, nk do
    local v = redis.call('GET', ARGV[i + 1 + j])
    if v then parts[j] = 'v' .. #v .. ':' .. v else parts[j] = 'n' end
  end
  if redis.sha1hex(table.concat(parts)) ~= ARGV[i + 1] then return 0 end
  i = i + 2 + nk
end
n = tonumber(ARGV[i])
i = i + 1
for e = 1, n do
  local v = redis.call('GET', 'v' .. ARGV[i])
  if ARGV[i + 1] == 'n' then
    if v then return 0 end
  elseif v ~= ARGV[i + 2] then
    return 0
  end
  i = i + 3
end
if ARGV[i] ~= '' then redis.call('SET', ARGV[i], '1', 'EX', 600) end
i = i + 1
local W = 4294967296
while i <= #ARGV do
  local op, k = ARGV[i], ARGV[i + 1]
  if op == 'P' then
    redis.call('SET', 'v' .. k, ARGV[i + 2])
    i = i + 3
  elseif op == 'p' then
    redis.call('SET', 'v' .. k, ARGV[i + 2])
    redis.call('ZADD', 'i', 0, k)
    i = i + 3
  elseif op == 'd' then
    redis.call('DEL', 'v' .. k)
    redis.call('ZREM', 'i', k)
    i = i + 2
  else
    local cur = redis.call('GET', 'v' .. k)
    local lo, hi = 0, 0
    if cur and #cur >= 8 then
      local b = {string.byte(cur, 1, 8)}
      lo = b[1] + b[2] * 256 + b[3] * 65536 + b[4] * 16777216
      hi = b[5] + b[6] * 256 + b[7] * 65536 + b[8] * 16777216
    end
    lo = lo + tonumber(ARGV[i + 2])
    local carry = math.floor(lo / W)
    lo = lo % W
    hi = (hi + tonumber(ARGV[i + 3]) + carry) % W
    local s = string.char(lo % 256, math.floor(lo / 256) % 256, math.floor(lo / 65536) % 256,
                          math.floor(lo / 16777216) % 256, hi % 256, math.floor(hi / 256) % 256,
                          math.floor(hi / 65536) % 256, math.floor(hi / 16777216) % 256)
    redis.call('SET', 'v' .. k, s)
    if not cur then redis.call('ZADD', 'i', 0, k) end
    i = i + 4
  end
end
return 1
)lua";

struct ReplyFree {
  void operator()(redisReply* r) const {
    if (r) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

struct RedisConfig {
  std::string host;
  int port = 6379;
  std::string user, password;
  int db = 0;
  std::string name;  // redacted URL
};

std::string ReplyText(const redisReply* r) { return std::string(r->str, r->len); }

// Reads of more than this many keys at once (scan batches, big MultiGets) are not WATCHed:
// Redis 7.0's WATCH looks for each key in the list of keys the connection already watches, so
// WATCHing n keys costs O(n^2) (1,000 directory entries took tens of milliseconds). Their
// values are checked by the commit script instead, against a digest of what was read.
constexpr size_t kWatchKeys = 16;

// SHA-1 (hex) of the concatenation of `parts`.
std::string Sha1Hex(const std::vector<std::string_view>& parts) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha1(), nullptr);
  for (std::string_view p : parts) EVP_DigestUpdate(ctx.get(), p.data(), p.size());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

// SHA-1 (hex) of the values as the commit script encodes them: "v" LEN ":" VALUE, or "n" for
// an absent key.
std::string ValuesDigest(const std::vector<std::optional<std::string>>& values) {
  std::vector<std::string> heads;
  heads.reserve(values.size());
  std::vector<std::string_view> parts;
  parts.reserve(2 * values.size());
  for (const auto& v : values) {
    heads.push_back(v ? "v" + std::to_string(v->size()) + ":" : "n");
    parts.push_back(heads.back());
    if (v) parts.push_back(*v);
  }
  return Sha1Hex(parts);
}

// The commit script goes by its SHA-1 (EVALSHA): EVAL would make Redis hash the whole script
// on every commit (11% of the server's CPU during creates). Each connection loads it when it
// connects; a server that lost it (SCRIPT FLUSH) answers NOSCRIPT, and the commit is retried.
const std::string& CommitScriptSha() {
  static const std::string sha = Sha1Hex({kCommitScript});
  return sha;
}

bool IsNoScript(const redisReply* r) {
  return r && r->type == REDIS_REPLY_ERROR &&
         std::string_view(r->str, r->len).starts_with("NOSCRIPT");
}

// One connection. A transport error, or a server that is still loading its data, marks it
// unavailable: the engine drops it and may retry the attempt on a new one.
class RedisConn {
 public:
  RedisConn(const RedisConfig* cfg, std::atomic<uint64_t>* round_trips)
      : cfg_(cfg), round_trips_(round_trips) {}
  ~RedisConn() {
    if (c_) redisFree(c_);
  }

  Status Connect() {
    timeval tv{2, 0};
    c_ = redisConnectWithTimeout(cfg_->host.c_str(), cfg_->port, tv);
    if (!c_ || c_->err) return Transport("connect");
    timeval io{10, 0};
    redisSetTimeout(c_, io);
    std::vector<Cmd> cmds;
    if (!cfg_->password.empty()) {
      cmds.push_back(cfg_->user.empty() ? Cmd{"AUTH", cfg_->password}
                                        : Cmd{"AUTH", cfg_->user, cfg_->password});
    }
    cmds.push_back({"SELECT", std::to_string(cfg_->db)});
    cmds.push_back({"SCRIPT", "LOAD", kCommitScript});
    NX_ASSIGN_OR_RETURN(auto replies, Run(cmds));
    for (auto& r : replies) NX_TRY(Check(r.get(), "connect"));
    return Status::OK();
  }

  // Sends `cmds` as one pipeline and reads a reply for each: one round trip. Error replies are
  // returned as replies (see Check); a transport error fails the whole call and marks the
  // connection. A deferred UNWATCH (UnwatchLater) goes first in the same pipeline.
  Result<std::vector<Reply>> Run(const std::vector<Cmd>& cmds) {
    if (unavailable_) return Err(Status::IOError("redis " + cfg_->name + ": connection lost"));
    const bool unwatch = unwatch_pending_;
    if (unwatch && redisAppendCommand(c_, "UNWATCH") != REDIS_OK) return Err(Transport("UNWATCH"));
    for (const auto& cmd : cmds) {
      std::vector<const char*> argv;
      std::vector<size_t> lens;
      for (const auto& a : cmd) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      if (redisAppendCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
          REDIS_OK) {
        return Err(Transport(cmd[0]));
      }
    }
    if (round_trips_) round_trips_->fetch_add(1, std::memory_order_relaxed);
    if (unwatch) {
      void* r = nullptr;
      if (redisGetReply(c_, &r) != REDIS_OK) return Err(Transport("UNWATCH"));
      Reply reply(static_cast<redisReply*>(r));
      NX_TRY(Check(reply.get(), "unwatch"));
      unwatch_pending_ = false;
    }
    std::vector<Reply> out;
    for (const auto& cmd : cmds) {
      void* r = nullptr;
      if (redisGetReply(c_, &r) != REDIS_OK) return Err(Transport(cmd[0]));
      out.emplace_back(static_cast<redisReply*>(r));
    }
    return out;
  }

  // OK unless `r` is an error reply. LOADING/BUSY/MASTERDOWN mean "not available yet".
  Status Check(const redisReply* r, std::string_view what) {
    if (r->type != REDIS_REPLY_ERROR) return Status::OK();
    std::string msg = ReplyText(r);
    if (msg.rfind("LOADING", 0) == 0 || msg.rfind("BUSY", 0) == 0 ||
        msg.rfind("MASTERDOWN", 0) == 0 || msg.rfind("TRYAGAIN", 0) == 0) {
      unavailable_ = true;
    }
    if (msg.rfind("OOM", 0) == 0) return Status::NoSpace("redis " + cfg_->name + ": " + msg);
    return Status::IOError("redis " + cfg_->name + " " + std::string(what) + ": " + msg);
  }

  bool unavailable() const { return unavailable_; }
  const RedisConfig& cfg() const { return *cfg_; }
  // Clears this connection's WATCHes with the next command sent on it, not a round trip now.
  void UnwatchLater() { unwatch_pending_ = true; }

 private:
  Status Transport(std::string_view what) {
    unavailable_ = true;
    std::string why = c_ ? std::string(c_->errstr) : "cannot allocate a context";
    return Status::IOError("redis " + cfg_->name + " " + std::string(what) + ": " + why);
  }

  const RedisConfig* cfg_;
  std::atomic<uint64_t>* round_trips_;
  redisContext* c_ = nullptr;
  bool unavailable_ = false;
  bool unwatch_pending_ = false;
};

std::string ValueKey(std::string_view k) {
  std::string s = "v";
  s.append(k);
  return s;
}

std::optional<std::string> ValueOf(const redisReply* r) {
  if (r->type == REDIS_REPLY_STRING) return ReplyText(r);
  return std::nullopt;
}

// Point reads of a View start in "snapshot mode": no WATCH; each read is one MGET of the new key
// together with every key the View read before (MGET is atomic), and the attempt is a conflict
// if one of those earlier values changed. So all values the body got are the state at the last
// MGET, and the View needs no closing MULTI/EXEC: a View that reads one key is one round trip.
// Past kSnapshotKeys keys or kSnapshotBytes of values, or at its first scan, the View switches
// to WATCH mode: it WATCHes and re-reads the keys read so far in the same pipeline as its next
// read, and is validated by EXEC at the end like an Update.
constexpr size_t kSnapshotKeys = 16;
constexpr size_t kSnapshotBytes = 16 << 10;

class RedisTxn final : public BufferedTxn {
 public:
  RedisTxn(RedisConn* c, bool read_only)
      : BufferedTxn(read_only), c_(c), read_only_(read_only), snapshot_mode_(read_only) {}

  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> out(keys.size());
    std::vector<size_t> remote;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (auto it = writes().find(keys[i]); it != writes().end()) {
        out[i] = it->second;
      } else if (auto s = snap_.find(keys[i]); snapshot_mode_ && s != snap_.end()) {
        out[i] = s->second;
      } else {
        remote.push_back(i);
      }
    }
    if (remote.empty()) return out;
    if (snapshot_mode_ && SnapshotRoom(remote.size())) {
      std::vector<std::string> fresh;
      for (size_t i : remote) fresh.push_back(keys[i]);
      NX_ASSIGN_OR_RETURN(auto values, SnapshotRead(fresh));
      for (size_t j = 0; j < remote.size(); ++j) out[remote[j]] = std::move(values[j]);
      return out;
    }
    Cmd mget{"MGET"};
    for (size_t i : remote) mget.push_back(ValueKey(keys[i]));
    if (remote.size() > kWatchKeys) {
      NX_ASSIGN_OR_RETURN(auto r, Exchange({mget}));
      NX_TRY(c_->Check(r[0].get(), "mget"));
      NX_ASSIGN_OR_RETURN(auto values, CheckedValues(r[0].get(), mget));
      for (size_t j = 0; j < remote.size(); ++j) {
        out[remote[j]] = WithAdd(keys[remote[j]], std::move(values[j]));
      }
      return out;
    }
    Cmd watch = mget;
    watch[0] = "WATCH";
    NX_ASSIGN_OR_RETURN(auto r, Exchange({watch, mget}));
    NX_TRY(c_->Check(r[0].get(), "watch"));
    NX_TRY(c_->Check(r[1].get(), "mget"));
    watched_ = true;
    if (r[1]->type != REDIS_REPLY_ARRAY || r[1]->elements != remote.size()) {
      return Err(BadReply("MGET"));
    }
    for (size_t j = 0; j < remote.size(); ++j) {
      auto v = ValueOf(r[1]->element[j]);
      if (v) present_.insert(keys[remote[j]]);
      out[remote[j]] = WithAdd(keys[remote[j]], std::move(v));
    }
    return out;
  }

  // Keys not written yet in this attempt take their expected value without a read; the commit
  // script checks it (ARGV "nexpect" section). Views read normally.
  Result<std::vector<std::optional<std::string>>> MultiGetExpecting(
      const std::vector<std::string>& keys,
      const std::vector<std::optional<std::string>>& expected) override {
    if (read_only_ || expected.size() != keys.size()) return MultiGet(keys);
    std::vector<std::optional<std::string>> out(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (auto it = writes().find(keys[i]); it != writes().end()) {
        out[i] = it->second;
        continue;
      }
      if (expects_.emplace(keys[i], expected[i]).second && expected[i]) present_.insert(keys[i]);
      out[i] = WithAdd(keys[i], expects_.find(keys[i])->second);
    }
    return out;
  }

  Status Add(std::string_view key, int64_t delta) override {
    if (read_only_) return Status::Errno(EROFS, "write in a read-only transaction");
    if (writes().count(key)) return Txn::Add(key, delta);  // folds into the buffered put
    adds_[std::string(key)] += delta;
    return Status::OK();
  }

  // MULTI, EVAL, EXEC with the writes (or none, for validation only). Conflict when a watched
  // key changed or a scanned range gained a key. A View still in snapshot mode needs nothing.
  Status Commit(bool with_writes) {
    if (doomed_) return Status::Conflict("redis: a read key changed during the transaction");
    if (!with_writes && snapshot_mode_) return Status::OK();
    Cmd eval{"EVALSHA", CommitScriptSha(), "0", std::to_string(ranges_.size() / 3)};
    for (const auto& r : ranges_) eval.push_back(r);
    eval.push_back(std::to_string(nchecks_));
    eval.insert(eval.end(), checks_.begin(), checks_.end());
    eval.push_back(std::to_string(expects_.size()));
    for (const auto& [k, v] : expects_) eval.insert(eval.end(), {k, v ? "v" : "n", v ? *v : ""});
    eval.push_back(with_writes ? marker_ : "");
    size_t ops = 0;
    if (with_writes) {
      for (const auto& [k, v] : writes()) {
        eval.insert(eval.end(), {v ? (present_.count(k) ? "P" : "p") : "d", k});
        if (v) eval.push_back(*v);
        ++ops;
      }
      for (const auto& [k, d] : adds_) {
        if (writes().count(k)) continue;  // a later put or delete replaced the add
        uint64_t u = static_cast<uint64_t>(d);
        eval.insert(eval.end(), {"a", k, std::to_string(u & 0xffffffffu), std::to_string(u >> 32)});
        ++ops;
      }
    }
    if (ops == 0 && ranges_.empty() && checks_.empty() && expects_.empty()) {
      if (!watched_) return Status::OK();
      // Only point reads: an empty MULTI/EXEC checks the WATCHes.
      NX_ASSIGN_OR_RETURN(auto r, c_->Run({{"MULTI"}, {"EXEC"}}));
      watched_ = false;  // EXEC (or its refusal) always clears the connection's WATCHes
      NX_TRY(c_->Check(r[1].get(), "exec"));
      if (r[1]->type == REDIS_REPLY_NIL) return Status::Conflict("redis: a read key changed");
      return Status::OK();
    }
    if (ops > 0) sent_commit_ = true;
    NX_ASSIGN_OR_RETURN(auto r, c_->Run({{"MULTI"}, eval, {"EXEC"}}));
    watched_ = false;
    if (IsNoScript(r[1].get()) ||
        (r[2]->type == REDIS_REPLY_ARRAY && r[2]->elements == 1 && IsNoScript(r[2]->element[0]))) {
      sent_commit_ = false;  // the script did not run: nothing was written
      NX_ASSIGN_OR_RETURN(auto load, c_->Run({{"SCRIPT", "LOAD", kCommitScript}}));
      NX_TRY(c_->Check(load[0].get(), "script load"));
      return Status::Conflict("redis: the server had lost the commit script (loaded again)");
    }
    NX_TRY(c_->Check(r[0].get(), "multi"));
    NX_TRY(c_->Check(r[1].get(), "eval"));
    NX_TRY(c_->Check(r[2].get(), "exec"));
    sent_commit_ = false;
    if (r[2]->type == REDIS_REPLY_NIL) return Status::Conflict("redis: a read key changed");
    if (r[2]->type != REDIS_REPLY_ARRAY || r[2]->elements != 1) return BadReply("EXEC");
    NX_TRY(c_->Check(r[2]->element[0], "commit script"));
    if (r[2]->element[0]->integer != 1) {
      return Status::Conflict("redis: a scanned range or a key read in bulk changed");
    }
    return Status::OK();
  }

  // After a body failed: OK when what it read was one consistent state (then its error stands),
  // a conflict otherwise. One read exchange (GET, MGET, WATCH+GET) is atomic by itself, and a
  // View in snapshot mode was checked at every read; anything else is validated by EXEC.
  Status Validate() {
    if (doomed_) return Status::Conflict("redis: a read key changed during the transaction");
    if (snapshot_mode_ ||
        (read_exchanges_ <= 1 && ranges_.empty() && checks_.empty() && expects_.empty())) {
      return Status::OK();
    }
    return Commit(false);
  }

  // Ends the attempt without committing: the connection's WATCHes are cleared with its next
  // command (no round trip of its own).
  void Abandon() {
    if (watched_ && !c_->unavailable()) c_->UnwatchLater();
    watched_ = false;
  }

  void set_marker(std::string m) { marker_ = std::move(m); }
  bool sent_commit() const { return sent_commit_; }
  bool has_writes() const { return !writes().empty() || !adds_.empty(); }

 protected:
  Result<std::optional<std::string>> BaseGet(std::string_view key) override {
    if (snapshot_mode_) {
      if (auto it = snap_.find(key); it != snap_.end()) return it->second;
      if (SnapshotRoom(1)) {
        NX_ASSIGN_OR_RETURN(auto v, SnapshotRead({std::string(key)}));
        return std::move(v[0]);
      }
    }
    std::string vk = ValueKey(key);
    NX_ASSIGN_OR_RETURN(auto r, Exchange({{"WATCH", vk}, {"GET", vk}}));
    NX_TRY(c_->Check(r[0].get(), "watch"));
    NX_TRY(c_->Check(r[1].get(), "get"));
    watched_ = true;
    auto v = ValueOf(r[1].get());
    if (v) present_.emplace(key);
    return WithAdd(key, std::move(v));
  }

  Status BaseScan(std::string_view begin, std::string_view end, const Visitor& visit) override {
    const std::string lo = begin.empty() ? "-" : "[" + std::string(begin);
    const std::string hi = end.empty() ? "+" : "(" + std::string(end);
    auto ait = adds_.lower_bound(begin);
    auto add_before = [&](const std::string* k) {  // next pending add to emit before k
      return ait != adds_.end() && (end.empty() || ait->first < end) && (!k || ait->first < *k);
    };
    std::string from = lo;
    size_t batch = 64, fetched = 0;
    for (;;) {
      NX_ASSIGN_OR_RETURN(
          auto zr,
          Exchange({{"ZRANGEBYLEX", kIndex, from, hi, "LIMIT", "0", std::to_string(batch)}}));
      NX_TRY(c_->Check(zr[0].get(), "zrangebylex"));
      std::vector<std::string> keys;
      for (size_t i = 0; i < zr[0]->elements; ++i) keys.push_back(ReplyText(zr[0]->element[i]));
      std::vector<std::optional<std::string>> values;
      if (!keys.empty()) {
        Cmd mget{"MGET"};
        for (const auto& k : keys) mget.push_back(ValueKey(k));
        NX_ASSIGN_OR_RETURN(auto r, Exchange({mget}));
        NX_TRY(c_->Check(r[0].get(), "mget"));
        NX_ASSIGN_OR_RETURN(values, CheckedValues(r[0].get(), mget));
      }
      fetched += keys.size();
      const bool last = keys.size() < batch;
      bool stopped = false;
      for (size_t i = 0; i < keys.size() && !stopped; ++i) {
        for (; add_before(&keys[i]) && !stopped; ++ait) {
          stopped = !visit(ait->first, EncodeCounter(ait->second));
        }
        if (stopped) break;
        if (ait != adds_.end() && ait->first == keys[i]) ++ait;  // applied by WithAdd below
        auto v = std::move(values[i]);
        if (!v) {  // deleted between ZRANGEBYLEX and MGET: this attempt cannot commit
          doomed_ = true;
          continue;
        }
        stopped = !visit(keys[i], *WithAdd(keys[i], std::move(v)));
      }
      if (stopped || !last) {
        if (stopped) {
          ranges_.insert(ranges_.end(), {lo, "[" + keys.back(), std::to_string(fetched)});
          return Status::OK();
        }
        from = "(" + keys.back();
        batch = std::min<size_t>(batch * 4, 1024);
        continue;
      }
      ranges_.insert(ranges_.end(), {lo, hi, std::to_string(fetched)});
      for (; add_before(nullptr); ++ait) {
        if (!visit(ait->first, EncodeCounter(ait->second))) break;
      }
      return Status::OK();
    }
  }

 private:
  Status BadReply(std::string_view what) const {
    return Status::IOError("redis " + c_->cfg().name + ": bad " + std::string(what) + " reply");
  }

  bool SnapshotRoom(size_t more) const {
    return snap_.size() + more <= kSnapshotKeys && snap_bytes_ <= kSnapshotBytes;
  }

  // Snapshot mode: one MGET of the keys read so far followed by `keys`. Returns the values of
  // `keys`; a conflict (and the attempt doomed) when an earlier value changed meanwhile.
  Result<std::vector<std::optional<std::string>>> SnapshotRead(
      const std::vector<std::string>& keys) {
    Cmd mget{"MGET"};
    for (const auto& e : snap_) mget.push_back(ValueKey(e.first));
    for (const auto& k : keys) mget.push_back(ValueKey(k));
    ++read_exchanges_;
    NX_ASSIGN_OR_RETURN(auto r, c_->Run({mget}));
    NX_TRY(c_->Check(r[0].get(), "mget"));
    if (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements != mget.size() - 1) {
      return Err(BadReply("MGET"));
    }
    size_t j = 0;
    for (const auto& e : snap_) {
      if (ValueOf(r[0]->element[j++]) != e.second) {
        doomed_ = true;
        return Err(Status::Conflict("redis: a key read earlier in the view changed"));
      }
    }
    std::vector<std::optional<std::string>> out;
    for (const auto& k : keys) {
      out.push_back(ValueOf(r[0]->element[j++]));
      if (snap_.emplace(k, out.back()).second) {
        snap_bytes_ += k.size() + (out.back() ? out.back()->size() : 0);
      }
    }
    return out;
  }

  // A read exchange outside snapshot mode. The first one of a View that leaves snapshot mode
  // WATCHes and re-reads the keys read so far in the same pipeline: unchanged, they are still
  // the state the final EXEC validates (changed: a conflict).
  Result<std::vector<Reply>> Exchange(std::vector<Cmd> cmds) {
    ++read_exchanges_;
    if (!snapshot_mode_ || snap_.empty()) {
      snapshot_mode_ = false;
      return c_->Run(cmds);
    }
    snapshot_mode_ = false;
    Cmd watch{"WATCH"}, mget{"MGET"};
    for (const auto& e : snap_) {
      watch.push_back(ValueKey(e.first));
      mget.push_back(watch.back());
    }
    cmds.insert(cmds.begin(), {watch, mget});
    NX_ASSIGN_OR_RETURN(auto r, c_->Run(cmds));
    NX_TRY(c_->Check(r[0].get(), "watch"));
    NX_TRY(c_->Check(r[1].get(), "mget"));
    watched_ = true;
    if (r[1]->type != REDIS_REPLY_ARRAY || r[1]->elements != snap_.size()) {
      return Err(BadReply("MGET"));
    }
    size_t j = 0;
    for (const auto& e : snap_) {
      if (ValueOf(r[1]->element[j++]) != e.second) {
        doomed_ = true;
        return Err(Status::Conflict("redis: a key read earlier in the view changed"));
      }
    }
    snap_.clear();
    r.erase(r.begin(), r.begin() + 2);
    return r;
  }

  // The values of an unwatched MGET (`mget` = "MGET" and the value keys), recorded for the
  // commit script to check.
  Result<std::vector<std::optional<std::string>>> CheckedValues(const redisReply* r,
                                                                const Cmd& mget) {
    const size_t n = mget.size() - 1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) return Err(BadReply("MGET"));
    std::vector<std::optional<std::string>> values(n);
    for (size_t j = 0; j < n; ++j) {
      values[j] = ValueOf(r->element[j]);
      if (values[j]) present_.emplace(std::string_view(mget[j + 1]).substr(1));  // drop "v"
    }
    checks_.push_back(std::to_string(n));
    checks_.push_back(ValuesDigest(values));
    checks_.insert(checks_.end(), mget.begin() + 1, mget.end());
    ++nchecks_;
    return values;
  }

  std::optional<std::string> WithAdd(std::string_view key, std::optional<std::string> v) {
    auto it = adds_.find(key);
    if (it == adds_.end()) return v;
    return EncodeCounter((v ? DecodeCounter(*v) : 0) + it->second);
  }
  RedisConn* c_;
  bool read_only_;
  bool snapshot_mode_;
  std::map<std::string, std::optional<std::string>, std::less<>> snap_;  // snapshot-mode reads
  size_t snap_bytes_ = 0;
  int read_exchanges_ = 0;
  std::map<std::string, int64_t, std::less<>> adds_;
  // Keys read with a value by a WATCHed or digest-checked read: the commit only runs while
  // they still hold it, so they are in the index and a put of them needs no ZADD.
  std::set<std::string, std::less<>> present_;
  // Values taken as expected (MultiGetExpecting), checked by the commit script.
  std::map<std::string, std::optional<std::string>, std::less<>> expects_;
  std::vector<std::string> ranges_;  // (min, max, count) triples for the commit script
  std::vector<std::string> checks_;  // (nkeys, digest, value keys...) for the commit script
  size_t nchecks_ = 0;
  std::string marker_;
  bool watched_ = false, doomed_ = false, sent_commit_ = false;
};

class RedisEngine final : public Engine {
 public:
  explicit RedisEngine(RedisConfig cfg) : cfg_(std::move(cfg)) {}

  Status Update(const std::function<Status(Txn&)>& body) override { return Run(false, body); }
  Status View(const std::function<Status(Txn&)>& body) override { return Run(true, body); }

  // Redis acknowledges EXEC after applying it in memory; whether it is on disk depends on the
  // server (appendonly/appendfsync, docs/engines.md). Sync checks that the server answers.
  Status Sync() override {
    NX_ASSIGN_OR_RETURN(auto c, Take());
    auto r = c->Run({{"PING"}});
    if (!r) return r.error();
    NX_TRY(c->Check((*r)[0].get(), "ping"));
    Give(std::move(c));
    return Status::OK();
  }
  std::string Name() const override { return cfg_.name; }
  bool DefersExpectedReads() const override { return true; }
  EngineStats Stats() const override {
    return {txns_.load(), conflicts_.load(), failures_.load(), round_trips_.load()};
  }

  Result<std::unique_ptr<RedisConn>> Take() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<RedisConn>(&cfg_, &round_trips_);
    NX_TRY(c->Connect());
    return c;
  }
  void Give(std::unique_ptr<RedisConn> c) {
    if (c->unavailable()) return;
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
  }

 private:
  // Runs attempts of `body` until one commits, it fails, conflicts kMaxAttempts times, or the
  // server stays unreachable for kOutageWait.
  Status Run(bool read_only, const std::function<Status(Txn&)>& body) {
    const auto deadline = Clock::now() + kOutageWait;
    Status last;
    int conflicts = 0;
    for (int attempt = 1;; ++attempt) {
      if (conflicts > 0) Backoff::Wait(conflicts + 1);
      auto conn = Take();
      if (!conn) {
        last = conn.error();
        if (!WaitOutage(deadline)) break;
        continue;
      }
      std::optional<ConflictGate::Pass> pass;
      if (!read_only) pass.emplace(gate_, conflicts);
      RedisTxn t(conn->get(), read_only);
      std::string marker;
      if (!read_only) t.set_marker(marker = NewMarker());
      Status s = body(t);
      if (!(*conn)->unavailable()) {
        if (s.ok()) {
          s = t.Commit(!read_only);
        } else {
          // A body may fail because it read an inconsistent state: only a failure over reads
          // that are still valid is returned; otherwise it is a conflict.
          Status v = t.Validate();
          if (v.IsConflict()) s = v;
        }
      }
      pass.reset();
      const bool unavailable = (*conn)->unavailable();
      const bool in_doubt = unavailable && t.sent_commit();
      if (!unavailable) t.Abandon();
      Give(std::move(*conn));
      if (in_doubt) {
        auto committed = Resolve(marker, deadline);
        if (!committed) {
          failures_++;
          return committed.error();
        }
        if (*committed) s = Status::OK();
      }
      if (s.ok()) {
        txns_++;
        return s;
      }
      last = s;
      if (unavailable) {
        if (!WaitOutage(deadline)) break;
        continue;
      }
      if (!s.IsConflict()) {
        failures_++;
        return s;
      }
      conflicts_++;
      if (++conflicts >= Backoff::kMaxAttempts) {
        failures_++;
        return Status::Busy("redis transaction gave up after " +
                            std::to_string(Backoff::kMaxAttempts) + " attempts (" + last.message() +
                            ")");
      }
    }
    failures_++;
    return Status::IOError(last.message() + " (server unavailable for " +
                           std::to_string(kOutageWait.count()) + " s)");
  }

  // Sleeps a little before the next attempt during an outage; false once past the deadline.
  static bool WaitOutage(Clock::time_point deadline) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return true;
  }

  // Whether the commit that set `marker` happened, asking the server once it answers again.
  Result<bool> Resolve(const std::string& marker, Clock::time_point deadline) {
    for (;;) {
      auto conn = Take();
      if (conn) {
        auto r = (*conn)->Run({{"EXISTS", marker}});
        if (r && (*conn)->Check((*r)[0].get(), "exists").ok()) {
          Give(std::move(*conn));
          return (*r)[0]->integer == 1;
        }
      }
      if (!WaitOutage(deadline)) {
        return Err(Status::IOError("redis " + cfg_.name +
                                   ": lost the connection during a commit and could not learn "
                                   "its outcome within " +
                                   std::to_string(kOutageWait.count()) + " s"));
      }
    }
  }

  static std::string NewMarker() {
    thread_local std::mt19937_64 rng(std::random_device{}());
    std::string m = "t";
    for (int i = 0; i < 2; ++i) {
      uint64_t x = rng();
      m.append(reinterpret_cast<const char*>(&x), sizeof x);
    }
    return m;
  }

  RedisConfig cfg_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RedisConn>> idle_;
  std::atomic<uint64_t> txns_{0}, conflicts_{0}, failures_{0}, round_trips_{0};
  ConflictGate gate_;
};

}  // namespace

Result<std::unique_ptr<Engine>> OpenRedis(const Url& url) {
  RedisConfig cfg;
  if (url.scheme == "rediss") {
    return Err(ENOTSUP, "metadata engine '" + url.Redacted() +
                            "': TLS (rediss://) is not supported by this build; use redis://");
  }
  cfg.host = url.host.empty() ? "127.0.0.1" : url.host;
  cfg.port = url.port ? url.port : 6379;
  cfg.user = url.user;
  cfg.password = url.password;
  if (cfg.password.empty()) {
    if (const char* p = std::getenv("META_PASSWORD")) cfg.password = p;
  }
  std::string db = url.path.empty() ? "" : url.path.substr(1);
  if (!db.empty()) {
    char* endp = nullptr;
    long n = std::strtol(db.c_str(), &endp, 10);
    if (*endp != '\0' || n < 0 || n > 1000000) {
      return Err(EINVAL,
                 "redis URL '" + url.Redacted() + "': database '" + db + "' is not a number");
    }
    cfg.db = static_cast<int>(n);
  }
  cfg.name = "redis://" + (cfg.user.empty() ? "" : cfg.user) +
             (cfg.password.empty() ? "" : ":****") +
             (cfg.user.empty() && cfg.password.empty() ? "" : "@") + cfg.host + ":" +
             std::to_string(cfg.port) + "/" + std::to_string(cfg.db);
  auto engine = std::make_unique<RedisEngine>(std::move(cfg));
  auto c = engine->Take();
  if (!c) return Err(c.error());
  auto r = (*c)->Run({{"CONFIG", "GET", "appendonly"}});
  if (r && (*r)[0]->type == REDIS_REPLY_ARRAY && (*r)[0]->elements == 2 &&
      ReplyText((*r)[0]->element[1]) == "no") {
    NX_LOG_DEBUG(
        "{}: appendonly is off; committed metadata survives a Redis restart only up to "
        "its last snapshot",
        engine->Name());
  }
  engine->Give(std::move(*c));
  return engine;
}

}  // namespace nexus::kv
