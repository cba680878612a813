// Networked engines across a server restart: transactions running while the server goes away
// wait (or fail) during the outage and succeed after it, and no acknowledged transaction is
// lost or half-applied.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <thread>

#include "common/encoding.h"
#include "meta/kv/engine.h"
#include "servers.h"

namespace nexus::kv {
namespace {

using Clock = std::chrono::steady_clock;

int64_t Counter(const std::string& v) {
  int64_t x = 0;
  for (int i = 7; i >= 0 && v.size() == 8; --i) x = (x << 8) | static_cast<uint8_t>(v[i]);
  return x;
}

std::string Key(char side, uint64_t i) {
  std::string k(1, side);
  PutBE64(&k, i);
  return k;
}

// Two writers commit transactions {a/i, b/i, count += 1} with i unique; `restart` is called
// while they run. Checks the committed state afterwards.
void RunAcrossRestart(const std::string& url, const std::function<Status()>& restart) {
  auto opened = Engine::Open(url);
  ASSERT_TRUE(opened) << opened.error().ToString();
  Engine& engine = **opened;
  constexpr int kWriters = 2;
  std::atomic<uint64_t> next{1};
  std::atomic<bool> stop{false};
  std::atomic<int> after_restart{0}, errors{0};
  std::atomic<bool> restarted{false};
  std::atomic<int64_t> slowest_ms{0};
  std::vector<std::vector<uint64_t>> acked(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      while (!stop) {
        const uint64_t i = next++;
        const auto t0 = Clock::now();
        Status s = engine.Update([&](Txn& t) -> Status {
          NX_ASSIGN_OR_RETURN(auto prev, t.Get(Key('a', i - 1)));  // a read: conflicts too
          NX_TRY(t.Put(Key('a', i), "x"));
          NX_TRY(t.Put(Key('b', i), prev ? "after" : "first"));
          return t.Add("count", 1);
        });
        const int64_t ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
        int64_t cur = slowest_ms;
        while (ms > cur && !slowest_ms.compare_exchange_weak(cur, ms)) {
        }
        if (s.ok()) {
          acked[w].push_back(i);
          if (restarted) after_restart++;
        } else {
          errors++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Status rs = restart();
  restarted = true;
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (after_restart < 200 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop = true;
  for (auto& t : writers) t.join();
  ASSERT_TRUE(rs.ok()) << rs.ToString();
  EXPECT_GE(after_restart.load(), 200) << "transactions did not resume after the restart";
  // The outage lasted at least 500 ms: some transaction waited through it.
  EXPECT_GE(slowest_ms.load(), 300);
  std::printf("[ %s ] slowest transaction %lld ms, %d errors, %d committed after the restart\n",
              engine.Name().c_str(), static_cast<long long>(slowest_ms.load()), errors.load(),
              after_restart.load());

  // Every acknowledged transaction is there; a and b keys come in pairs; the counter agrees.
  std::map<std::string, std::string> all;
  ASSERT_TRUE(engine
                  .View([&](Txn& t) {
                    all.clear();
                    return t.Scan("", "", 0, [&](std::string_view k, std::string_view v) {
                      all.emplace(k, v);
                      return true;
                    });
                  })
                  .ok());
  size_t acked_total = 0;
  for (const auto& list : acked) {
    acked_total += list.size();
    for (uint64_t i : list) {
      ASSERT_TRUE(all.count(Key('a', i))) << "acknowledged txn " << i << " lost";
      ASSERT_TRUE(all.count(Key('b', i))) << "acknowledged txn " << i << " half-applied";
    }
  }
  size_t pairs = 0;
  for (const auto& [k, v] : all) {
    if (k[0] != 'a') continue;
    std::string b = k;
    b[0] = 'b';
    ASSERT_TRUE(all.count(b)) << "half-applied transaction";
    ++pairs;
  }
  for (const auto& [k, v] : all) {
    if (k[0] == 'b') {
      std::string a = k;
      a[0] = 'a';
      ASSERT_TRUE(all.count(a)) << "half-applied transaction";
    }
  }
  ASSERT_TRUE(all.count("count"));
  EXPECT_EQ(Counter(all["count"]), static_cast<int64_t>(pairs));
  EXPECT_GE(pairs, acked_total);
}

TEST(kv_ServerRestart, Redis) {
  if (auto m = testsrv::RedisServer::Missing(); !m.empty()) GTEST_SKIP() << m;
  testsrv::RedisServer server(/*persistent=*/true);
  ASSERT_TRUE(server.Start().ok());
  RunAcrossRestart(server.Url(0), [&] {
    server.Stop(/*kill9=*/true);  // appendfsync always: every acknowledged EXEC is on disk
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return server.Restart(true);
  });
}

TEST(kv_ServerRestart, Postgres) {
  if (auto m = testsrv::PostgresServer::Missing(); !m.empty()) GTEST_SKIP() << m;
  testsrv::PostgresServer server;
  ASSERT_TRUE(server.Start().ok());
  auto url = server.NewUrl();
  ASSERT_TRUE(url) << url.error().ToString();
  RunAcrossRestart(*url, [&] {
    server.Stop(/*immediate=*/true);  // no checkpoint: WAL replay on start
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return server.Restart(true);
  });
}

// Bad credentials and unreachable servers fail at Open with the reason and no password.
TEST(kv_ServerRestart, OpenErrorsNameTheServerButNotThePassword) {
  if (auto m = testsrv::RedisServer::Missing(); m.empty()) {
    std::string why;
    auto* r = testsrv::SharedRedis(&why);
    ASSERT_NE(r, nullptr) << why;
    auto bad = Engine::Open("redis://:wrong-secret@127.0.0.1:" + std::to_string(r->port()) + "/0");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message().find("wrong-secret"), std::string::npos);
    EXPECT_NE(bad.error().message().find("127.0.0.1"), std::string::npos) << bad.error().message();
    // The password may come from META_PASSWORD instead of the URL.
    setenv("META_PASSWORD", testsrv::kServerPassword, 1);
    auto env = Engine::Open("redis://127.0.0.1:" + std::to_string(r->port()) + "/7");
    unsetenv("META_PASSWORD");
    ASSERT_TRUE(env) << env.error().ToString();
    EXPECT_EQ((*env)->Name(), "redis://:****@127.0.0.1:" + std::to_string(r->port()) + "/7");
    EXPECT_TRUE((*env)->Update([](Txn& t) { return t.Put("k", "v"); }).ok());
    auto tls = Engine::Open("rediss://127.0.0.1:1/0");
    ASSERT_FALSE(tls);
    EXPECT_EQ(tls.error().code(), ENOTSUP);
    auto baddb = Engine::Open("redis://127.0.0.1:1/notanumber");
    ASSERT_FALSE(baddb);
    EXPECT_EQ(baddb.error().code(), EINVAL);
  }
  if (auto m = testsrv::PostgresServer::Missing(); m.empty()) {
    std::string why;
    auto* p = testsrv::SharedPostgres(&why);
    ASSERT_NE(p, nullptr) << why;
    const std::string port = std::to_string(p->port());
    auto bad = Engine::Open("postgres://nexus:wrong-secret@127.0.0.1:" + port + "/postgres");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message().find("wrong-secret"), std::string::npos);
    EXPECT_NE(bad.error().message().find("authentication"), std::string::npos)
        << bad.error().message();
    setenv("META_PASSWORD", testsrv::kServerPassword, 1);
    auto env = Engine::Open("postgresql://nexus@127.0.0.1:" + port + "/postgres?sslmode=disable");
    unsetenv("META_PASSWORD");
    ASSERT_TRUE(env) << env.error().ToString();
    EXPECT_EQ((*env)->Name().find(testsrv::kServerPassword), std::string::npos);
    EXPECT_TRUE((*env)->Update([](Txn& t) { return t.Put("k", "v"); }).ok());
    auto opt = Engine::Open("postgres://nexus@127.0.0.1:" + port + "/postgres?bogus=1");
    ASSERT_FALSE(opt);
    EXPECT_EQ(opt.error().code(), EINVAL);
    auto nodb = Engine::Open("postgres://nexus@127.0.0.1:" + port);
    ASSERT_FALSE(nodb);
    EXPECT_EQ(nodb.error().code(), EINVAL);
  }
}

}  // namespace
}  // namespace nexus::kv
