// Redis engine specifics the conformance suite does not see: round trips per transaction
// (EngineStats::round_trips), the snapshot of multi-key Views that read without WATCH, and the
// digest check that replaces WATCH for keys read in bulk (scans, big MultiGets).
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "meta/kv/engine.h"
#include "meta/kv/engines.h"
#include "servers.h"

namespace nexus::kv {
namespace {

class RedisEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    testsrv::RedisServer* server = testsrv::SharedRedis(&why);
    if (!server) GTEST_SKIP() << why;
    port_ = server->port();
    url_ = server->NewUrl();
    auto e = Engine::Open(url_);
    ASSERT_TRUE(e) << e.error().ToString();
    engine_ = std::move(*e);
    ASSERT_TRUE(engine_->Reset().ok());
  }

  // Round trips spent by `fn`.
  template <typename F>
  uint64_t RoundTrips(F&& fn) {
    const uint64_t before = engine_->Stats().round_trips;
    fn();
    return engine_->Stats().round_trips - before;
  }

  Status Put(const std::string& k, const std::string& v) {
    return engine_->Update([&](Txn& t) { return t.Put(k, v); });
  }

  // Sends one command to the server on a connection of its own.
  void ServerCommand(const char* cmd) {
    redisContext* c = redisConnect("127.0.0.1", port_);
    ASSERT_TRUE(c && !c->err);
    auto* auth = static_cast<redisReply*>(redisCommand(c, "AUTH %s", testsrv::kServerPassword));
    ASSERT_TRUE(auth && auth->type != REDIS_REPLY_ERROR);
    freeReplyObject(auth);
    auto* r = static_cast<redisReply*>(redisCommand(c, cmd));
    ASSERT_TRUE(r && r->type != REDIS_REPLY_ERROR) << cmd;
    freeReplyObject(r);
    redisFree(c);
  }

  int port_ = 0;
  std::string url_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(RedisEngineTest, RoundTripsPerTransaction) {
  ASSERT_TRUE(Put("a", "1").ok());
  ASSERT_TRUE(Put("b", "2").ok());
  std::optional<std::string> v;
  // A View of one key: one MGET, no WATCH/MULTI/EXEC.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->View([&](Txn& t) -> Status {
                                NX_ASSIGN_OR_RETURN(v, t.Get("a"));
                                return Status::OK();
                              })
                              .ok());
            }),
            1u);
  EXPECT_EQ(v, "1");
  // A View whose single read finds nothing and fails: still one.
  EXPECT_EQ(RoundTrips([&] {
              Status s = engine_->View([&](Txn& t) -> Status {
                NX_ASSIGN_OR_RETURN(auto x, t.Get("missing"));
                return x ? Status::OK() : Status::NotFound("missing");
              });
              EXPECT_TRUE(s.IsNotFound()) << s.ToString();
            }),
            1u);
  // Two reads: two MGETs, no closing EXEC. Reading a key again costs nothing.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->View([&](Txn& t) -> Status {
                                NX_TRY(t.Get("a"));
                                NX_TRY(t.Get("b"));
                                NX_ASSIGN_OR_RETURN(v, t.Get("a"));
                                return Status::OK();
                              })
                              .ok());
            }),
            2u);
  // An Update reading two keys and writing: two reads and the commit.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_TRY(t.Get("a"));
                                NX_TRY(t.Get("b"));
                                return t.Put("c", "3");
                              })
                              .ok());
            }),
            3u);
  // A blind write with an Add: the commit only.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_TRY(t.Put("d", "4"));
                                return t.Add("n", 1);
                              })
                              .ok());
            }),
            1u);
}

// An Update that fails after one watched read leaves its WATCH to be cleared with the next
// command on the connection: a change to that key afterwards must not make the next
// transaction on the same (pooled) connection conflict.
TEST_F(RedisEngineTest, DeferredUnwatchDoesNotLeakIntoTheNextTransaction) {
  ASSERT_TRUE(Put("w", "0").ok());
  Status s = engine_->Update([&](Txn& t) -> Status {
    NX_TRY(t.Get("w"));
    return Status::Exists("refused by the body");
  });
  EXPECT_EQ(s.code(), EEXIST) << s.ToString();
  auto other = Engine::Open(url_);
  ASSERT_TRUE(other) << other.error().ToString();
  ASSERT_TRUE((*other)->Update([](Txn& t) { return t.Put("w", "changed"); }).ok());
  const uint64_t conflicts = engine_->Stats().conflicts;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_TRY(t.Get("x"));
                    return t.Put("x", "1");
                  })
                  .ok());
  EXPECT_EQ(engine_->Stats().conflicts, conflicts);
}

// Views reading 40 keys one at a time (past the snapshot-mode limit, so they switch to WATCH
// mode midway) while a writer sets all of them to the same new value in each transaction:
// every View sees one value throughout.
TEST_F(RedisEngineTest, LongViewsSeeOneSnapshotAcrossTheSwitchToWatch) {
  constexpr int kKeys = 40;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    for (int k = 0; k < kKeys; ++k) NX_TRY(t.Put("k" + std::to_string(k), "0"));
                    return Status::OK();
                  })
                  .ok());
  std::atomic<bool> done{false};
  std::atomic<int> writes{0}, reads{0};
  std::thread writer([&] {
    while (reads == 0 && !done) std::this_thread::yield();
    for (int i = 1; !done && i <= 200; ++i) {
      Status s = engine_->Update([&](Txn& t) -> Status {
        for (int k = 0; k < kKeys; ++k) {
          NX_TRY(t.Put("k" + std::to_string(k), std::to_string(i)));
        }
        return Status::OK();
      });
      if (!s.ok()) break;
      writes++;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
    done = true;
  });
  int mixed = 0;
  while (!done || reads < 20) {
    bool same = true;
    Status s = engine_->View([&](Txn& t) -> Status {
      same = true;
      std::optional<std::string> first;
      for (int k = 0; k < kKeys; ++k) {
        NX_ASSIGN_OR_RETURN(auto v, t.Get("k" + std::to_string(k)));
        if (k == 0) first = v;
        if (v != first) same = false;
        // The 16th read is the last one in snapshot mode: give the writer time to commit
        // before the View WATCHes what it read so far.
        if (k == 15) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      return Status::OK();
    });
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (!same) mixed++;
    reads++;
  }
  done = true;
  writer.join();
  EXPECT_EQ(mixed, 0) << "in " << reads << " views";
  EXPECT_GT(writes, 0);
}

// Keys read in bulk are not WATCHed; the commit script re-reads them and compares a digest. A
// value changed by another client after such a read -- not inserted or deleted, which the range
// count would catch -- must make the transaction run again, for a scan and for a MultiGet of
// more keys than are WATCHed, in an Update and in a View.
TEST_F(RedisEngineTest, ValuesReadInBulkAreValidatedAtCommit) {
  constexpr int kKeys = 300;
  std::vector<std::string> keys;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    for (int k = 0; k < kKeys; ++k) {
                      keys.push_back("b" + std::to_string(1000 + k));
                      NX_TRY(t.Put(keys.back(), "0"));
                    }
                    return Status::OK();
                  })
                  .ok());
  auto other = Engine::Open(url_);
  ASSERT_TRUE(other) << other.error().ToString();
  int round = 0;
  // Runs `read` in a transaction whose first attempt sees another client change one value
  // after the read; returns how many attempts it took and the sum it computed last.
  auto run = [&](bool view, const std::function<Status(Txn&, int*)>& read) {
    int attempts = 0, sum = 0;
    const std::string victim = keys[kKeys / 2];
    auto body = [&](Txn& t) -> Status {
      ++attempts;
      sum = 0;
      NX_TRY(read(t, &sum));
      if (attempts == 1) {
        ++round;
        NX_TRY((*other)->Update([&](Txn& o) { return o.Put(victim, std::to_string(round)); }));
      }
      return view ? Status::OK() : t.Put("result", std::to_string(sum));
    };
    Status s = view ? engine_->View(body) : engine_->Update(body);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return std::make_pair(attempts, sum);
  };
  auto scan = [&](Txn& t, int* sum) {
    return t.ScanPrefix("b", 0, [&](std::string_view, std::string_view v) {
      *sum += std::stoi(std::string(v));
      return true;
    });
  };
  auto multiget = [&](Txn& t, int* sum) -> Status {
    NX_ASSIGN_OR_RETURN(auto values, t.MultiGet(keys));
    for (const auto& v : values) *sum += v ? std::stoi(*v) : -1000000;
    return Status::OK();
  };
  for (bool view : {false, true}) {
    auto [a1, s1] = run(view, scan);
    EXPECT_EQ(a1, 2) << (view ? "view" : "update") << " scan";
    EXPECT_EQ(s1, round) << "the second attempt sees the change";
    auto [a2, s2] = run(view, multiget);
    EXPECT_EQ(a2, 2) << (view ? "view" : "update") << " multiget";
    EXPECT_EQ(s2, round);
  }
  // Unchanged, a bulk read commits at once.
  int attempts = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    ++attempts;
                    int sum = 0;
                    NX_TRY(scan(t, &sum));
                    NX_TRY(multiget(t, &sum));
                    return t.Put("result", std::to_string(sum));
                  })
                  .ok());
  EXPECT_EQ(attempts, 1);
}

// Commits call the commit script by its SHA-1 (EVALSHA). A server that lost its scripts (SCRIPT
// FLUSH, as an operator may run) answers NOSCRIPT: the engine loads the script again and runs
// the transaction again, and no write is lost or applied twice.
TEST_F(RedisEngineTest, CommitsSurviveAScriptFlush) {
  ASSERT_TRUE(Put("s", "0").ok());
  ASSERT_NO_FATAL_FAILURE(ServerCommand("SCRIPT FLUSH"));
  int attempts = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    ++attempts;
                    NX_TRY(t.Get("s"));
                    NX_TRY(t.Add("n", 5));
                    return t.Put("s", "1");
                  })
                  .ok());
  EXPECT_EQ(attempts, 2);
  std::optional<std::string> s, n;
  ASSERT_TRUE(engine_
                  ->View([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(s, t.Get("s"));
                    NX_ASSIGN_OR_RETURN(n, t.Get("n"));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(s, "1");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(DecodeCounter(*n), 5);
}

// A put of a key the transaction read and found skips the index ZADD (the key is listed
// already). The skip must not lose a key that another client deleted after the read: such a
// commit conflicts (WATCH, or the digest for keys read in bulk), the retry finds the key
// missing and indexes it again. Every key written must stay listed by a scan, for each read
// path (Get, a small MultiGet, a MultiGet of more keys than are WATCHed, a scan).
TEST_F(RedisEngineTest, RewritesOfKeysReadAndFoundStayListed) {
  constexpr int kKeys = 40;
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) keys.push_back("r" + std::to_string(100 + k));
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    for (const auto& k : keys) NX_TRY(t.Put(k, "0"));
                    return t.Add("cnt", 1);
                  })
                  .ok());
  auto other = Engine::Open(url_);
  ASSERT_TRUE(other) << other.error().ToString();
  using Read = std::function<Status(Txn&)>;
  const std::vector<std::pair<const char*, Read>> reads = {
      {"get",
       [&](Txn& t) -> Status {
         for (const auto& k : keys) NX_TRY(t.Get(k));
         return Status::OK();
       }},
      {"small multiget",
       [&](Txn& t) -> Status {
         for (size_t i = 0; i < keys.size(); i += 8) {
           NX_TRY(t.MultiGet(std::vector<std::string>(keys.begin() + i, keys.begin() + i + 8)));
         }
         return Status::OK();
       }},
      {"bulk multiget",
       [&](Txn& t) -> Status {
         NX_TRY(t.MultiGet(keys));
         return Status::OK();
       }},
      {"scan",
       [&](Txn& t) -> Status {
         return t.ScanPrefix("r", 0, [](std::string_view, std::string_view) { return true; });
       }},
  };
  int round = 0;
  for (const auto& [name, read] : reads) {
    ++round;
    const std::string victim = keys[round * 7 % kKeys];
    int attempts = 0;
    Status s = engine_->Update([&](Txn& t) -> Status {
      ++attempts;
      NX_TRY(read(t));
      if (attempts == 1) {  // another client deletes one of the keys just read
        NX_TRY((*other)->Update([&](Txn& o) { return o.Delete(victim); }));
      }
      for (const auto& k : keys) NX_TRY(t.Put(k, std::to_string(round)));
      return t.Add("cnt", 1);
    });
    ASSERT_TRUE(s.ok()) << name << ": " << s.ToString();
    EXPECT_EQ(attempts, 2) << name;
    std::vector<std::string> listed;
    ASSERT_TRUE(engine_
                    ->View([&](Txn& t) -> Status {
                      listed.clear();
                      return t.ScanPrefix("", 0, [&](std::string_view k, std::string_view) {
                        listed.emplace_back(k);
                        return true;
                      });
                    })
                    .ok());
    EXPECT_EQ(listed.size(), keys.size() + 1) << name << ": " << victim << " or cnt unlisted";
  }
  // A counter deleted by another client and added to again is listed again.
  ASSERT_TRUE((*other)->Update([](Txn& o) { return o.Delete("cnt"); }).ok());
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Add("cnt", 3); }).ok());
  std::vector<std::string> counters;
  ASSERT_TRUE(engine_
                  ->View([&](Txn& t) -> Status {
                    return t.ScanPrefix("cnt", 0, [&](std::string_view k, std::string_view) {
                      counters.emplace_back(k);
                      return true;
                    });
                  })
                  .ok());
  EXPECT_EQ(counters.size(), 1u);
}

// MultiGetExpecting takes values read moments ago instead of reading: an Update whose only
// reads are expected values is one round trip (the commit), and the commit checks them -- a
// changed or deleted key, or a key that appeared, makes the body run again with real reads.
TEST_F(RedisEngineTest, ExpectedValuesAreCheckedAtCommit) {
  ASSERT_TRUE(Put("e1", "one").ok());
  auto other = Engine::Open(url_);
  ASSERT_TRUE(other) << other.error().ToString();
  const std::vector<std::string> keys = {"e1", "e2"};
  // Right expectations: the commit only.
  int attempts = 0;
  EXPECT_EQ(
      RoundTrips([&] {
        ASSERT_TRUE(
            engine_
                ->Update([&](Txn& t) -> Status {
                  ++attempts;
                  NX_ASSIGN_OR_RETURN(auto v, t.MultiGetExpecting(keys, {"one", std::nullopt}));
                  EXPECT_EQ(v[0], "one");
                  EXPECT_FALSE(v[1].has_value());
                  return t.Put("e3", "x");
                })
                .ok());
      }),
      1u);
  EXPECT_EQ(attempts, 1);
  // Wrong ones, each way: a changed value, a deleted key, a key that appeared.
  struct Case {
    const char* what;
    std::function<Status(Txn&)> change;
    std::vector<std::optional<std::string>> expected, actual;
  };
  const std::vector<Case> cases = {
      {"changed",
       [](Txn& o) { return o.Put("e1", "two"); },
       {"one", std::nullopt},
       {"two", std::nullopt}},
      {"deleted",
       [](Txn& o) { return o.Delete("e1"); },
       {"two", std::nullopt},
       {std::nullopt, std::nullopt}},
      {"appeared",
       [](Txn& o) { return o.Put("e2", "new"); },
       {std::nullopt, std::nullopt},
       {std::nullopt, "new"}},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE((*other)->Update(c.change).ok()) << c.what;
    attempts = 0;
    std::vector<std::optional<std::string>> last;
    ASSERT_TRUE(engine_
                    ->Update([&](Txn& t) -> Status {
                      ++attempts;
                      if (attempts == 1) {
                        NX_ASSIGN_OR_RETURN(last, t.MultiGetExpecting(keys, c.expected));
                      } else {
                        NX_ASSIGN_OR_RETURN(last, t.MultiGet(keys));
                      }
                      return t.Put("e3", c.what);
                    })
                    .ok())
        << c.what;
    EXPECT_EQ(attempts, 2) << c.what;
    EXPECT_EQ(last, c.actual) << c.what;
  }
  // A body that fails on an expected value that is stale is judged by the current state: the
  // failure does not stand, the body runs again.
  attempts = 0;
  Status s = engine_->Update([&](Txn& t) -> Status {
    ++attempts;
    NX_ASSIGN_OR_RETURN(auto v, attempts == 1 ? t.MultiGetExpecting(keys, {"stale", std::nullopt})
                                              : t.MultiGet(keys));
    if (v[0] == "stale") return Status::Exists("refused on the expected value");
    return Status::OK();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(attempts, 2);
}

}  // namespace
}  // namespace nexus::kv
