// etcd:// specifics against real etcd servers: URL errors, prefixes, conflicts across clients,
// etcd's limits, failover between endpoints, and a server restart under a transaction workload.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/encoding.h"
#include "etcd_server.h"
#include "meta/kv/engine.h"
#include "meta/kv/engines.h"

namespace nexus::kv {
namespace {

using test::EtcdServer;

#define SKIP_WITHOUT_ETCD() \
  if (EtcdServer::Binary().empty()) GTEST_SKIP() << "etcd is not installed (etcd-server)"

// Counters are 8-byte little-endian (engine.h).
std::string EncodeCounter(int64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i)
    s.push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  return s;
}
int64_t DecodeCounter(const std::string& s) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return static_cast<int64_t>(v);
}

std::string Unique(const char* what) {
  static std::atomic<int> n{0};
  return std::string(what) + "-" + std::to_string(getpid()) + "-" + std::to_string(n++);
}

// The shared server's URL for a fresh prefix.
std::string SharedUrl(const std::string& prefix, const std::string& query = "") {
  std::string why;
  EtcdServer* s = EtcdServer::Shared(&why);
  EXPECT_NE(s, nullptr) << why;
  return s ? "etcd://" + s->endpoint() + "/" + prefix + query : "";
}

std::unique_ptr<Engine> MustOpen(const std::string& url) {
  auto e = Engine::Open(url);
  EXPECT_TRUE(e) << url << ": " << e.error().ToString();
  return e ? std::move(*e) : nullptr;
}

std::optional<std::string> Get(Engine& e, std::string_view k) {
  std::optional<std::string> out;
  Status s = e.View([&](Txn& t) -> Status {
    NX_ASSIGN_OR_RETURN(out, t.Get(k));
    return Status::OK();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

int64_t Counter(Engine& e, std::string_view k) {
  auto v = Get(e, k);
  return v ? DecodeCounter(*v) : 0;
}

TEST(kv_Etcd, BadUrlsAndUnreachableServersGiveClearErrors) {
  auto none = Engine::Open("etcd://127.0.0.1:2379");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), EINVAL);
  EXPECT_NE(none.error().message().find("PREFIX"), std::string::npos) << none.error().ToString();
  auto bad = Engine::Open("etcd://127.0.0.1:2379/v?timeout=soon");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), EINVAL);
  auto empty = Engine::Open("etcd://127.0.0.1:1,,127.0.0.1:2/v");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), EINVAL);
  // Nothing listens on port 1: the open gives up after the timeout, naming the endpoint, and
  // never shows the password.
  auto t0 = std::chrono::steady_clock::now();
  auto down = Engine::Open("etcd://user:topsecret@127.0.0.1:1/v?timeout=0.5");
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code(), EIO);
  EXPECT_NE(down.error().message().find("127.0.0.1:1"), std::string::npos);
  EXPECT_EQ(down.error().ToString().find("topsecret"), std::string::npos);
  EXPECT_NE(down.error().ToString().find("user:****@"), std::string::npos)
      << down.error().ToString();
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(kv_Etcd, PrefixesKeepVolumesApartAndBinaryKeysWork) {
  SKIP_WITHOUT_ETCD();
  const std::string p = Unique("pfx");
  auto a = MustOpen(SharedUrl(p));
  auto ab = MustOpen(SharedUrl(p + "/b"));
  ASSERT_TRUE(a && ab);
  const std::string bin("\0\xff\x01/\n", 5);
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 NX_TRY(t.Put(bin, std::string("v\0w", 3)));
                 return t.Put("b/x", "in a");
               }).ok());
  ASSERT_TRUE(ab->Update([](Txn& t) { return t.Put("x", "in a/b"); }).ok());
  EXPECT_EQ(Get(*a, bin), std::string("v\0w", 3));
  EXPECT_EQ(Get(*a, "b/x"), "in a");
  EXPECT_EQ(Get(*ab, "x"), "in a/b");
  EXPECT_FALSE(Get(*ab, bin));
  std::vector<std::string> keys;
  ASSERT_TRUE(a->View([&](Txn& t) {
                 keys.clear();
                 return t.Scan("", "", 0, [&](std::string_view k, std::string_view) {
                   keys.emplace_back(k);
                   return true;
                 });
               }).ok());
  EXPECT_EQ(keys, (std::vector<std::string>{bin, "b/x"}));
  ASSERT_TRUE(a->Reset().ok());
  EXPECT_FALSE(Get(*a, "b/x"));
  EXPECT_EQ(Get(*ab, "x"), "in a/b");
  EXPECT_NE(a->Name().find("etcd://127.0.0.1:"), std::string::npos) << a->Name();
  ASSERT_TRUE(ab->Reset().ok());
}

// Two clients of one volume: a point read and a scanned range both make a transaction conflict
// with a commit of the other client, and the body runs again.
TEST(kv_Etcd, ReadsAndScansConflictAcrossClients) {
  SKIP_WITHOUT_ETCD();
  const std::string url = SharedUrl(Unique("conflict"));
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Update([](Txn& t) { return t.Put("x", "0"); }).ok());
  int runs = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 NX_ASSIGN_OR_RETURN(auto x, t.Get("x"));
                 if (runs == 1) {
                   EXPECT_TRUE(b->Update([](Txn& u) { return u.Put("x", "b"); }).ok());
                 }
                 return t.Put("y", *x + "+a");
               }).ok());
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(Get(*a, "y"), "b+a");
  // A key inserted into a range that a transaction scanned.
  runs = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 int n = 0;
                 NX_TRY(t.ScanPrefix("d/", 0, [&](std::string_view, std::string_view) {
                   ++n;
                   return true;
                 }));
                 if (runs == 1) {
                   EXPECT_TRUE(b->Update([](Txn& u) { return u.Put("d/new", "1"); }).ok());
                 }
                 return t.Put("count", std::to_string(n));
               }).ok());
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(Get(*a, "count"), "1");
  // A write outside what was read does not conflict.
  runs = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 NX_TRY(t.Get("x"));
                 if (runs == 1) {
                   EXPECT_TRUE(b->Update([](Txn& u) { return u.Put("e/other", "1"); }).ok());
                 }
                 return t.Put("z", "1");
               }).ok());
  EXPECT_EQ(runs, 1);
  EXPECT_GE(a->Stats().conflicts, 2u);
  ASSERT_TRUE(a->Reset().ok());
}

// HTTP requests per transaction (EngineStats::round_trips): a key read again in a body costs
// nothing, a MultiGet is one read-only etcd txn (of at most 128 ranges), and its reads conflict
// like single reads.
TEST(kv_Etcd, RequestsPerTransaction) {
  SKIP_WITHOUT_ETCD();
  const std::string url = SharedUrl(Unique("requests"));
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->Update([](Txn& t) -> Status {
                 NX_TRY(t.Put("a", "1"));
                 return t.Put("b", "2");
               }).ok());  // also takes the lease of the commit markers
  auto requests = [&](auto&& fn) {
    const uint64_t before = a->Stats().round_trips;
    fn();
    return a->Stats().round_trips - before;
  };
  std::optional<std::string> v;
  EXPECT_EQ(requests([&] {
              ASSERT_TRUE(a->View([&](Txn& t) -> Status {
                             NX_ASSIGN_OR_RETURN(v, t.Get("a"));
                             return Status::OK();
                           }).ok());
            }),
            1u);
  EXPECT_EQ(v, "1");
  EXPECT_EQ(requests([&] {
              ASSERT_TRUE(a->View([&](Txn& t) -> Status {
                             NX_TRY(t.Get("a"));
                             NX_TRY(t.Get("b"));
                             NX_ASSIGN_OR_RETURN(v, t.Get("a"));
                             return Status::OK();
                           }).ok());
            }),
            2u);
  EXPECT_EQ(v, "1");
  std::vector<std::optional<std::string>> got;
  EXPECT_EQ(requests([&] {
              ASSERT_TRUE(a->View([&](Txn& t) -> Status {
                             NX_ASSIGN_OR_RETURN(got, t.MultiGet({"a", "missing", "b", "a"}));
                             return Status::OK();
                           }).ok());
            }),
            1u);
  EXPECT_EQ(got, (std::vector<std::optional<std::string>>{"1", std::nullopt, "2", "1"}));
  // A MultiGet after a read of one of its keys, in an Update that also reads its own write:
  // one request for "b" alone, one for the commit.
  EXPECT_EQ(requests([&] {
              ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                             NX_TRY(t.Get("a"));
                             NX_TRY(t.Put("c", "3"));
                             NX_ASSIGN_OR_RETURN(got, t.MultiGet({"a", "b", "c"}));
                             return Status::OK();
                           }).ok());
            }),
            3u);
  EXPECT_EQ(got, (std::vector<std::optional<std::string>>{"1", "2", "3"}));
  // A blind write: the commit only.
  EXPECT_EQ(requests([&] { ASSERT_TRUE(a->Update([](Txn& t) { return t.Put("d", "4"); }).ok()); }),
            1u);
  // 300 keys: three txns of at most 128 ranges (etcd's default --max-txn-ops), one state.
  ASSERT_TRUE(a->Update([](Txn& t) -> Status {
                 for (int i = 0; i < 100; ++i) NX_TRY(t.Put("k" + std::to_string(i), "v"));
                 return Status::OK();
               }).ok());
  std::vector<std::string> many;
  for (int i = 0; i < 300; ++i) many.push_back("k" + std::to_string(i));
  EXPECT_EQ(requests([&] {
              ASSERT_TRUE(a->View([&](Txn& t) -> Status {
                             NX_ASSIGN_OR_RETURN(got, t.MultiGet(many));
                             return Status::OK();
                           }).ok());
            }),
            3u);
  ASSERT_EQ(got.size(), 300u);
  EXPECT_EQ(got[99], "v");
  EXPECT_EQ(got[100], std::nullopt);
  // A key read through MultiGet and changed by another client before the commit: conflict.
  int runs = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 NX_ASSIGN_OR_RETURN(got, t.MultiGet({"a", "b"}));
                 if (runs == 1) {
                   EXPECT_TRUE(b->Update([](Txn& u) { return u.Put("b", "b2"); }).ok());
                 }
                 return t.Put("sum", *got[0] + *got[1]);
               }).ok());
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(Get(*a, "sum"), "1b2");
  ASSERT_TRUE(a->Reset().ok());
}

// etcd has no atomic add: an Add to a counter the body did not read is applied at commit to
// the counter's value then. Another client's Add in between makes the commit go again with the
// new value, not the body; a read of the counter in the body sees base + delta and is an
// ordinary read (a change to it by another client is a conflict).
TEST(kv_Etcd, AddsOfOtherClientsDoNotRunTheBodyAgain) {
  SKIP_WITHOUT_ETCD();
  const std::string url = SharedUrl(Unique("adds"));
  auto a = MustOpen(url);
  auto b = MustOpen(url);
  ASSERT_TRUE(a && b);
  auto add = [](Engine& e, int64_t d) { return e.Update([&](Txn& t) { return t.Add("n", d); }); };
  ASSERT_TRUE(add(*a, 10).ok());
  int runs = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 NX_TRY(t.Add("n", 1));
                 NX_TRY(t.Put("x", "1"));
                 if (runs == 1) {
                   EXPECT_TRUE(add(*b, 100).ok());
                 }
                 return Status::OK();
               }).ok());
  EXPECT_EQ(runs, 1);
  auto value = Get(*a, "n");
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(DecodeCounter(*value), 111);
  // Read in the body (after the Add): base + delta, and a conflict when another client adds.
  runs = 0;
  int64_t seen = 0;
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 ++runs;
                 NX_TRY(t.Add("n", 2));
                 NX_ASSIGN_OR_RETURN(auto v, t.Get("n"));
                 seen = v ? DecodeCounter(*v) : -1;
                 if (runs == 1) {
                   EXPECT_TRUE(add(*b, 1000).ok());
                 }
                 return Status::OK();
               }).ok());
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(seen, 1113);
  value = Get(*a, "n");
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(DecodeCounter(*value), 1113);
  // A scan over the counter sees the pending delta too.
  ASSERT_TRUE(a->Update([&](Txn& t) -> Status {
                 NX_TRY(t.Add("n", 5));
                 return t.ScanPrefix("n", 0, [&](std::string_view, std::string_view v) {
                   seen = DecodeCounter(std::string(v));
                   return true;
                 });
               }).ok());
  EXPECT_EQ(seen, 1118);
  ASSERT_TRUE(a->Reset().ok());
}

// etcd's own limits (defaults: 128 operations per txn, 1.5 MiB per request) give E2BIG with a
// message that says which server flag to raise; a transaction is never split.
TEST(kv_Etcd, ServerLimitsGiveClearErrors) {
  SKIP_WITHOUT_ETCD();
  EtcdServer server;
  server.extra_flags = {"--max-txn-ops=128", "--max-request-bytes=1572864"};
  ASSERT_TRUE(server.Start().ok());
  auto e = MustOpen("etcd://" + server.endpoint() + "/limits");
  ASSERT_TRUE(e);
  Status many = e->Update([](Txn& t) -> Status {
    for (int i = 0; i < 300; ++i) NX_TRY(t.Put("k" + std::to_string(i), "v"));
    return Status::OK();
  });
  EXPECT_EQ(many.code(), E2BIG) << many.ToString();
  EXPECT_NE(many.message().find("--max-txn-ops"), std::string::npos) << many.ToString();
  Status big = e->Update([](Txn& t) { return t.Put("big", std::string(1800 << 10, 'x')); });
  EXPECT_EQ(big.code(), E2BIG) << big.ToString();
  EXPECT_NE(big.message().find("--max-request-bytes"), std::string::npos) << big.ToString();
  EXPECT_FALSE(Get(*e, "k0"));
  EXPECT_FALSE(Get(*e, "big"));
  ASSERT_TRUE(e->Update([](Txn& t) -> Status {
                 for (int i = 0; i < 100; ++i) NX_TRY(t.Put("k" + std::to_string(i), "v"));
                 return Status::OK();
               }).ok());
  EXPECT_EQ(Get(*e, "k99"), "v");
}

// The first endpoint is dead: every request goes to the second.
TEST(kv_Etcd, FailsOverToTheNextEndpoint) {
  SKIP_WITHOUT_ETCD();
  std::string why;
  EtcdServer* s = EtcdServer::Shared(&why);
  ASSERT_NE(s, nullptr) << why;
  EtcdServer dead;
  ASSERT_TRUE(dead.Start().ok());
  const std::string dead_ep = dead.endpoint();
  dead.Kill();
  const std::string url = "etcd://" + dead_ep + "," + s->endpoint() + "/" + Unique("failover");
  auto e = MustOpen(url);
  ASSERT_TRUE(e);
  EXPECT_NE(e->Name().find(dead_ep + "," + s->endpoint()), std::string::npos) << e->Name();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(e->Update([&](Txn& t) { return internal::ToStatus(t.Increment("n", 1)); }).ok());
  }
  EXPECT_EQ(Counter(*e, "n"), 20);
  ASSERT_TRUE(e->Reset().ok());
}

// A workload of transfers between accounts plus a per-transaction record runs while etcd is
// killed (-9) and started again on the same data directory. During the outage a client with a
// short timeout gets errors, the default client waits; afterwards every transaction that
// returned OK is there exactly once and the accounts still add up.
TEST(kv_Etcd, ServerRestartLosesNoCommittedTransaction) {
  SKIP_WITHOUT_ETCD();
  EtcdServer server;
  ASSERT_TRUE(server.Start().ok());
  const std::string url = "etcd://" + server.endpoint() + "/restart";
  auto e = MustOpen(url);
  auto impatient = MustOpen(url + "?timeout=0.3");
  ASSERT_TRUE(e && impatient);
  constexpr int kAccounts = 5, kThreads = 4;
  ASSERT_TRUE(e->Update([](Txn& t) -> Status {
                 for (int a = 0; a < kAccounts; ++a) {
                   NX_TRY(t.Put("acct/" + std::to_string(a), EncodeCounter(1000)));
                 }
                 return Status::OK();
               }).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        const std::string id = std::to_string(w) + "/" + std::to_string(i);
        Status s = e->Update([&](Txn& t) -> Status {
          std::string from = "acct/" + std::to_string((w + i) % kAccounts);
          std::string to = "acct/" + std::to_string((w + 2 * i + 1) % kAccounts);
          NX_TRY(t.Increment(from, -1));
          NX_TRY(t.Increment(to, 1));
          NX_TRY(t.Increment("txns", 1));
          return t.Put("done/" + id, "1");
        });
        (s.ok() ? ok : failed)++;
        if (!s.ok()) ADD_FAILURE() << "txn " << id << ": " << s.ToString();
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int before = ok.load();
  server.Kill();
  // The outage: the impatient client fails, and within its timeout.
  auto t0 = std::chrono::steady_clock::now();
  Status down = impatient->Update([](Txn& t) { return t.Put("probe", "1"); });
  EXPECT_EQ(down.code(), EIO) << down.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const int during = ok.load();
  ASSERT_TRUE(server.Restart().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(before, 0);
  EXPECT_GT(ok.load(), during) << "no transaction committed after the restart";
  EXPECT_EQ(failed.load(), 0);
  // Every OK transaction exactly once, nothing half applied.
  int64_t total = 0;
  for (int a = 0; a < kAccounts; ++a) total += Counter(*e, "acct/" + std::to_string(a));
  EXPECT_EQ(total, kAccounts * 1000);
  EXPECT_EQ(Counter(*e, "txns"), ok.load());
  size_t done = 0;
  ASSERT_TRUE(e->View([&](Txn& t) {
                 done = 0;
                 return t.ScanPrefix("done/", 0, [&](std::string_view, std::string_view) {
                   ++done;
                   return true;
                 });
               }).ok());
  EXPECT_EQ(done, static_cast<size_t>(ok.load()));
  EXPECT_TRUE(impatient->Update([](Txn& t) { return t.Put("probe", "1"); }).ok());
}

}  // namespace
}  // namespace nexus::kv
