// The engine conformance suite: the same tests on every kv engine.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "common/encoding.h"
#include "etcd_server.h"
#include "meta/kv/engine.h"
#include "servers.h"

namespace nexus::kv {
namespace {

namespace fs = std::filesystem;

std::string Key(uint64_t i) {
  std::string k = "k";
  PutBE64(&k, i);
  return k;
}

class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "etcd") {
      if (test::EtcdServer::Binary().empty()) GTEST_SKIP() << "etcd is not installed";
      std::string why;
      test::EtcdServer* server = test::EtcdServer::Shared(&why);
      ASSERT_NE(server, nullptr) << why;
      etcd_ = server->endpoint();
    }
    if (Networked()) {
      // A fresh database of this test binary's shared server (tests/kv/servers.h).
      auto url = testsrv::ResolveServerUrl(GetParam() + "://<" + GetParam() + ">");
      if (!url && url.error().code() == ENOENT) GTEST_SKIP() << url.error().message();
      ASSERT_TRUE(url) << url.error().ToString();
      server_url_ = *url;
    }
    dir_ = fs::temp_directory_path() /
           ("nexus-kv-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Reopen();
  }
  void TearDown() override {
    if (GetParam() == "etcd" && engine_) {  // the server is shared by the whole binary
      EXPECT_TRUE(engine_->Reset().ok());
    }
    engine_.reset();
    fs::remove_all(dir_);
  }
  std::string Url() const {
    if (GetParam() == "mem") return "mem://";
    if (GetParam() == "rocksdb") return "rocksdb://" + (dir_ / "db").string();
    if (GetParam() == "redis" || GetParam() == "postgres") return server_url_;
    if (GetParam() == "etcd") return "etcd://" + etcd_ + "/" + dir_.filename().string();
    return "sqlite3://" + (dir_ / "meta.db").string();
  }
  bool Persistent() const { return GetParam() != "mem"; }
  // Engines behind a network round trip (redis, postgres) run the heavy concurrency tests with
  // fewer operations: each transaction costs two to five round trips instead of microseconds.
  bool Networked() const { return GetParam() == "redis" || GetParam() == "postgres"; }
  int Ops(int local) const {
    if (GetParam() == "etcd") return local / 50;  // hot-key contention costs a round trip per retry
    return Networked() ? local / 10 : local;
  }
  void Reopen() {
    engine_.reset();
    auto e = Engine::Open(Url());
    ASSERT_TRUE(e) << e.error().ToString();
    engine_ = std::move(*e);
  }
  Status Put(std::string_view k, std::string_view v) {
    return engine_->Update([&](Txn& t) { return t.Put(k, v); });
  }
  std::optional<std::string> Get(std::string_view k) {
    std::optional<std::string> out;
    Status s = engine_->View([&](Txn& t) -> Status {
      NX_ASSIGN_OR_RETURN(out, t.Get(k));
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  std::vector<std::string> ScanKeys(std::string_view b, std::string_view e, size_t limit) {
    std::vector<std::string> keys;
    Status s = engine_->View([&](Txn& t) {
      keys.clear();
      return t.Scan(b, e, limit, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      });
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return keys;
  }

  static inline std::atomic<int> counter_{0};
  fs::path dir_;
  std::string server_url_;  // redis, postgres: a database of the shared server
  std::string etcd_;        // endpoint of the shared etcd server
  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineTest, PutGetDelete) {
  EXPECT_FALSE(Get("a"));
  ASSERT_TRUE(Put("a", "1").ok());
  EXPECT_EQ(Get("a"), "1");
  ASSERT_TRUE(Put("a", "2").ok());
  EXPECT_EQ(Get("a"), "2");
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Delete("a"); }).ok());
  EXPECT_FALSE(Get("a"));
  ASSERT_TRUE(Put("empty", "").ok());
  EXPECT_EQ(Get("empty"), "");
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Delete("never-there"); }).ok());
}

TEST_P(EngineTest, ScanOrderRangesAndLimits) {
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    for (uint64_t i : {5ULL, 1ULL, 300ULL, 2ULL, 256ULL, 0xff00000000000000ULL})
                      NX_TRY(t.Put(Key(i), "v"));
                    NX_TRY(t.Put(std::string("a\0b", 3), "nul"));
                    NX_TRY(t.Put(std::string("a\xff", 2), "ff"));
                    NX_TRY(t.Put("b", "b"));
                    return Status::OK();
                  })
                  .ok());
  auto all = ScanKeys("k", "l", 0);
  std::vector<std::string> want = {Key(1),   Key(2),   Key(5),
                                   Key(256), Key(300), Key(0xff00000000000000ULL)};
  EXPECT_EQ(all, want);
  EXPECT_EQ(ScanKeys("k", "l", 2), std::vector<std::string>(want.begin(), want.begin() + 2));
  EXPECT_EQ(ScanKeys(Key(3), Key(300), 0), (std::vector<std::string>{Key(5), Key(256)}));
  auto a = ScanKeys("a", "b", 0);
  EXPECT_EQ(a, (std::vector<std::string>{std::string("a\0b", 3), std::string("a\xff", 2)}));
  // An empty end scans to the end of the key space.
  auto tail = ScanKeys("k", "", 0);
  EXPECT_EQ(tail.size(), want.size());
  auto from_b = ScanKeys("b", "", 0);
  EXPECT_EQ(from_b.front(), "b");
  // ScanPrefix and stopping early from the visitor.
  size_t seen = 0;
  ASSERT_TRUE(engine_
                  ->View([&](Txn& t) {
                    return t.ScanPrefix(
                        "k", 0, [&](std::string_view, std::string_view) { return ++seen < 3; });
                  })
                  .ok());
  EXPECT_EQ(seen, 3u);
}

TEST_P(EngineTest, ReadYourWritesInsideTxn) {
  ASSERT_TRUE(Put(Key(1), "old").ok());
  ASSERT_TRUE(Put(Key(3), "gone").ok());
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_TRY(t.Put(Key(1), "new"));
                    NX_TRY(t.Put(Key(2), "two"));
                    NX_TRY(t.Delete(Key(3)));
                    NX_ASSIGN_OR_RETURN(auto v, t.Get(Key(1)));
                    EXPECT_EQ(v, "new");
                    NX_ASSIGN_OR_RETURN(auto gone, t.Get(Key(3)));
                    EXPECT_FALSE(gone);
                    std::vector<std::pair<std::string, std::string>> seen;
                    NX_TRY(t.ScanPrefix("k", 0, [&](std::string_view k, std::string_view v) {
                      seen.emplace_back(k, v);
                      return true;
                    }));
                    EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{
                                        {Key(1), "new"}, {Key(2), "two"}}));
                    NX_ASSIGN_OR_RETURN(auto multi, t.MultiGet({Key(1), Key(2), Key(3)}));
                    EXPECT_EQ(multi[0], "new");
                    EXPECT_EQ(multi[1], "two");
                    EXPECT_FALSE(multi[2]);
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(Get(Key(2)), "two");
  EXPECT_FALSE(Get(Key(3)));
}

// A transaction's own writes outside [begin, end) never show in a scan, and limits count the
// merged result (own puts and deletes included).
TEST_P(EngineTest, ScanInsideTxnHonoursBoundsAndLimits) {
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    for (uint64_t i = 10; i < 20; ++i) NX_TRY(t.Put(Key(i), "base"));
                    return Status::OK();
                  })
                  .ok());
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_TRY(t.Put(Key(5), "before"));
                    NX_TRY(t.Put(Key(25), "after"));
                    NX_TRY(t.Put("z", "far"));
                    NX_TRY(t.Delete(Key(10)));
                    NX_TRY(t.Delete(Key(11)));
                    NX_TRY(t.Put(Key(12), "own"));
                    NX_TRY(t.Put(Key(15) + "x", "between"));
                    std::vector<std::string> keys;
                    auto collect = [&](std::string_view k, std::string_view) {
                      keys.emplace_back(k);
                      return true;
                    };
                    NX_TRY(t.Scan(Key(10), Key(20), 0, collect));
                    std::vector<std::string> want = {Key(12), Key(13),       Key(14),
                                                     Key(15), Key(15) + "x", Key(16),
                                                     Key(17), Key(18),       Key(19)};
                    EXPECT_EQ(keys, want);
                    keys.clear();
                    NX_TRY(t.Scan(Key(10), Key(20), 3, collect));
                    EXPECT_EQ(keys, std::vector<std::string>(want.begin(), want.begin() + 3));
                    keys.clear();
                    NX_TRY(t.Scan(Key(19), "", 0, collect));
                    EXPECT_EQ(keys, (std::vector<std::string>{Key(19), Key(25), "z"}));
                    return Status::OK();
                  })
                  .ok());
}

// Add, Increment and Get inside one transaction see each other; a scan shows the counter.
TEST_P(EngineTest, CountersInsideOneTxn) {
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Add("ctr", 5); }).ok());
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    NX_TRY(t.Add("ctr", 2));
                    NX_TRY(t.Add("new", -3));
                    NX_ASSIGN_OR_RETURN(auto raw, t.Get("ctr"));
                    EXPECT_TRUE(raw && raw->size() == 8);
                    NX_ASSIGN_OR_RETURN(int64_t v, t.Increment("ctr", 10));
                    EXPECT_EQ(v, 17);
                    NX_TRY(t.Add("ctr", 1));
                    std::map<std::string, std::string> seen;
                    NX_TRY(t.Scan("", "", 0, [&](std::string_view k, std::string_view v) {
                      seen.emplace(k, v);
                      return true;
                    }));
                    EXPECT_EQ(seen.size(), 2u);
                    EXPECT_EQ(seen["ctr"], std::string("\x12\0\0\0\0\0\0\0", 8));
                    EXPECT_EQ(seen["new"], std::string("\xfd\xff\xff\xff\xff\xff\xff\xff", 8));
                    return Status::OK();
                  })
                  .ok());
  auto v = Get("ctr");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, std::string("\x12\0\0\0\0\0\0\0", 8));
  int64_t n = 0;
  ASSERT_TRUE(engine_
                  ->View([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(auto m, t.MultiGet({"new", "ctr", "none"}));
                    EXPECT_EQ(m[0], std::string("\xfd\xff\xff\xff\xff\xff\xff\xff", 8));
                    EXPECT_FALSE(m[2]);
                    NX_ASSIGN_OR_RETURN(auto raw, t.Get("new"));
                    n = raw ? static_cast<int64_t>(raw->size()) : -1;
                    return t.Add("ctr", 1);
                  })
                  .code() == EROFS);
  EXPECT_EQ(n, 8);
}

TEST_P(EngineTest, ResetDeletesEverythingAndStatsCount) {
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Put(Key(i), "v").ok());
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Add("c", 1); }).ok());
  EXPECT_FALSE(engine_->Update([](Txn&) { return Status::IOError("no"); }).ok());
  EngineStats st = engine_->Stats();
  EXPECT_GE(st.txns, 51u);
  EXPECT_GE(st.failures, 1u);
  ASSERT_TRUE(engine_->Reset().ok());
  EXPECT_TRUE(ScanKeys("", "", 0).empty());
  EXPECT_FALSE(Get("c"));
  EXPECT_TRUE(engine_->Sync().ok());
  EXPECT_NE(engine_->Name().find(GetParam() == "sqlite3" ? "sqlite3://" : GetParam() + "://"),
            std::string::npos);
}

TEST_P(EngineTest, FailedBodyLeavesNothing) {
  Status s = engine_->Update([](Txn& t) -> Status {
    NX_TRY(t.Put("x", "1"));
    return Status::Errno(ENOENT, "abort on purpose");
  });
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.message(), "abort on purpose");
  EXPECT_FALSE(Get("x"));
}

TEST_P(EngineTest, ViewIsReadOnly) {
  Status s = engine_->View([](Txn& t) { return t.Put("x", "1"); });
  EXPECT_EQ(s.code(), EROFS);
  EXPECT_FALSE(Get("x"));
}

TEST_P(EngineTest, ConcurrentIncrementsAreExact) {
  const int kThreads = 8, kPerThread = Ops(10000);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kPerThread; ++j) {
        Status s = engine_->Update([](Txn& t) -> Status {
          NX_TRY(t.Increment("counter", 1));
          return Status::OK();
        });
        if (!s.ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t v = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(v, t.Increment("counter", 0));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(v, kThreads * kPerThread);
}

TEST_P(EngineTest, ConcurrentAddsAreExact) {
  const int kThreads = 8, kPerThread = Ops(10000);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kPerThread; ++j) {
        if (!engine_->Update([](Txn& t) { return t.Add("used", 3); }).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t v = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(v, t.Increment("used", -1));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(v, 3 * kThreads * kPerThread - 1);
}

// Transfers between accounts through read-modify-write transactions never lose an update:
// the total stays the same and every account's balance is accounted for.
TEST_P(EngineTest, ConcurrentReadModifyWriteLosesNothing) {
  const int kAccounts = 4, kThreads = 4,
            kTransfers = GetParam() == "etcd" ? Ops(2000)
                         : Networked()        ? 100
                                              : 2000;
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    for (int a = 0; a < kAccounts; ++a)
                      NX_TRY(t.Put("acct" + std::to_string(a), "1000"));
                    return Status::OK();
                  })
                  .ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937 rng(i);
      for (int j = 0; j < kTransfers; ++j) {
        int from = rng() % kAccounts, to = rng() % kAccounts;
        Status s = engine_->Update([&](Txn& t) -> Status {
          std::string fk = "acct" + std::to_string(from), tk = "acct" + std::to_string(to);
          NX_ASSIGN_OR_RETURN(auto fv, t.Get(fk));
          NX_TRY(t.Put(fk, std::to_string(std::stoll(*fv) - 1)));
          NX_ASSIGN_OR_RETURN(auto tv, t.Get(tk));
          return t.Put(tk, std::to_string(std::stoll(*tv) + 1));
        });
        if (!s.ok()) failures++;
      }
    });
  }
  // Meanwhile, snapshots always see the same total.
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      long long total = 0;
      ASSERT_TRUE(engine_
                      ->View([&](Txn& t) -> Status {
                        total = 0;
                        return t.ScanPrefix("acct", 0, [&](std::string_view, std::string_view v) {
                          total += std::stoll(std::string(v));
                          return true;
                        });
                      })
                      .ok());
      ASSERT_EQ(total, 1000LL * kAccounts);
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures.load(), 0);
  long long total = 0;
  for (int a = 0; a < kAccounts; ++a) total += std::stoll(*Get("acct" + std::to_string(a)));
  EXPECT_EQ(total, 1000LL * kAccounts);
}

// A slow transaction on a hot key commits although quicker ones keep writing that key: after a
// few lost conflicts it runs alone among this process's transactions (meta/kv/conflict_gate.h).
// Without that, every attempt of the slow one lost to a quick one and it gave up with EBUSY.
TEST_P(EngineTest, SlowTransactionOnAHotKeyCommits) {
  ASSERT_TRUE(Put("hot", "0").ok());
  std::atomic<bool> done{false};
  std::atomic<int> quick_failures{0};
  std::atomic<int64_t> quick_commits{0};
  std::vector<std::thread> quick;
  for (int i = 0; i < 3; ++i) {
    quick.emplace_back([&] {
      while (!done) {
        Status s = engine_->Update([](Txn& t) -> Status {
          NX_ASSIGN_OR_RETURN(auto v, t.Get("hot"));
          return t.Put("hot", std::to_string(std::stoll(*v) + 1));
        });
        if (s.ok()) {
          quick_commits++;
        } else {
          quick_failures++;
        }
      }
    });
  }
  while (quick_commits < 10 && quick_failures == 0) std::this_thread::yield();
  int attempts = 0;
  Status slow = engine_->Update([&](Txn& t) -> Status {
    attempts++;
    NX_ASSIGN_OR_RETURN(auto v, t.Get("hot"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return t.Put("hot", std::to_string(std::stoll(*v) + 1'000'000));
  });
  done = true;
  for (auto& th : quick) th.join();
  EXPECT_TRUE(slow.ok()) << slow.ToString() << " after " << attempts << " attempts";
  EXPECT_EQ(quick_failures.load(), 0);
  EXPECT_EQ(std::stoll(*Get("hot")), quick_commits.load() + 1'000'000);
}

// Keys read but not written are part of the conflict check (no write skew): in each round two
// "doctors" are on call and a transaction may take one off call only if both still are. Threads
// that take different doctors off must conflict, so at least one stays on call in every round.
TEST_P(EngineTest, ReadsConflictWithoutWritesNoWriteSkew) {
  const int kThreads = 4, kRounds = Ops(1500);
  auto key = [](int round, int who) { return "call/" + std::to_string(round) + "/" + "xy"[who]; };
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) {
        Status s = engine_->Update([&](Txn& t) -> Status {
          NX_ASSIGN_OR_RETURN(auto x, t.Get(key(r, 0)));
          NX_ASSIGN_OR_RETURN(auto y, t.Get(key(r, 1)));
          if (x || y) return Status::OK();  // someone is already off call
          return t.Put(key(r, i % 2), "off");
        });
        if (!s.ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  int both_off = 0;
  for (int r = 0; r < kRounds; ++r) both_off += Get(key(r, 0)) && Get(key(r, 1));
  EXPECT_EQ(both_off, 0);
}

// Point reads inside one View all come from the same snapshot: two keys that every writer
// updates together are always seen equal.
TEST_P(EngineTest, ViewPointReadsShareOneSnapshot) {
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    NX_TRY(t.Put("pair/a", "0"));
                    return t.Put("pair/b", "0");
                  })
                  .ok());
  std::atomic<bool> done{false};
  std::atomic<int> writes{0};
  std::atomic<int> reads{0};
  std::atomic<bool> writer_finished{false};
  std::thread writer([&] {
    // Start writing only once the reader runs: on mem:// all the writes can otherwise finish
    // before the reader's first View, and the test would check nothing.
    while (reads == 0 && !done) std::this_thread::yield();
    for (int i = 1; i <= Ops(2000) && !done; ++i) {
      Status s = engine_->Update([&](Txn& t) -> Status {
        NX_TRY(t.Put("pair/a", std::to_string(i)));
        return t.Put("pair/b", std::to_string(i));
      });
      if (!s.ok()) break;
      writes++;
    }
    writer_finished = true;
  });
  int mismatches = 0;
  do {
    std::optional<std::string> a, b;
    Status s = engine_->View([&](Txn& t) -> Status {
      NX_ASSIGN_OR_RETURN(a, t.Get("pair/a"));
      std::this_thread::yield();
      NX_ASSIGN_OR_RETURN(b, t.Get("pair/b"));
      return Status::OK();
    });
    if (!s.ok()) {
      ADD_FAILURE() << s.ToString();
      break;
    }
    if (a != b) mismatches++;
    ++reads;
  } while (!writer_finished && (reads < 20000 || writes == 0));
  done = true;
  writer.join();
  EXPECT_EQ(mismatches, 0) << "in " << reads << " reads";
  EXPECT_GT(writes, 0);
}

TEST_P(EngineTest, LargeValues) {
  std::string big(1 << 20, '\0');
  std::mt19937 rng(7);
  for (auto& c : big) c = static_cast<char>(rng());
  ASSERT_TRUE(Put("big", big).ok());
  EXPECT_EQ(Get("big"), big);
  if (Persistent()) {
    Reopen();
    EXPECT_EQ(Get("big"), big);
  }
}

// Random transactions checked against an in-memory model (db_stress style): puts, deletes,
// counter adds, gets and scans with random bounds and limits (keys with 0x00 and 0xff bytes),
// a quarter of the bodies aborted. Every read inside a body must match the model's committed
// state overlaid with the body's own writes; the final state must match after a reopen.
TEST_P(EngineTest, RandomTxnsMatchAModel) {
  using Model = std::map<std::string, std::string>;
  std::mt19937 rng(12345);
  const std::vector<std::string> alphabet = {std::string(1, '\0'),     "a",       "ab", "b", "\xff",
                                             std::string("\xff\0", 2), "\xff\xff"};
  auto random_key = [&] {
    std::string k = "r";
    for (int n = rng() % 3 + 1; n > 0; --n) k += alphabet[rng() % alphabet.size()];
    return k;
  };
  auto model_scan = [](const Model& m, const std::string& b, const std::string& e, size_t limit) {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = m.lower_bound(b); it != m.end() && (e.empty() || it->first < e); ++it) {
      if (limit && out.size() == limit) break;
      out.emplace_back(it->first, it->second);
    }
    return out;
  };
  Model committed;
  for (int round = 0; round < 400; ++round) {
    Model local;
    bool abort = rng() % 4 == 0;
    Status s = engine_->Update([&](Txn& t) -> Status {
      local = committed;  // the body may run again: start from the committed state each time
      for (int op = rng() % 8 + 1; op > 0; --op) {
        std::string k = random_key();
        switch (rng() % 6) {
          case 0:
          case 1: {
            std::string v = std::to_string(rng());
            NX_TRY(t.Put(k, v));
            local[k] = v;
            break;
          }
          case 2:
            NX_TRY(t.Delete(k));
            local.erase(k);
            break;
          case 3: {
            std::string ck = "rc" + std::to_string(rng() % 3);
            int64_t d = static_cast<int64_t>(rng() % 100) - 50;
            NX_TRY(t.Add(ck, d));
            int64_t cur = 0;
            if (auto it = local.find(ck); it != local.end()) {
              for (int i = 7; i >= 0; --i) cur = (cur << 8) | static_cast<uint8_t>(it->second[i]);
            }
            std::string enc(8, '\0');
            uint64_t u = static_cast<uint64_t>(cur + d);
            for (int i = 0; i < 8; ++i, u >>= 8) enc[i] = static_cast<char>(u & 0xff);
            local[ck] = enc;
            break;
          }
          case 4: {
            NX_ASSIGN_OR_RETURN(auto v, t.Get(k));
            auto it = local.find(k);
            EXPECT_EQ(v, it == local.end() ? std::nullopt : std::optional(it->second)) << round;
            break;
          }
          default: {
            std::string b = random_key(), e = rng() % 3 ? random_key() : "";
            if (!e.empty() && e < b) std::swap(b, e);
            size_t limit = rng() % 3 ? 0 : rng() % 5 + 1;
            std::vector<std::pair<std::string, std::string>> got;
            NX_TRY(t.Scan(b, e, limit, [&](std::string_view k2, std::string_view v2) {
              got.emplace_back(k2, v2);
              return true;
            }));
            EXPECT_EQ(got, model_scan(local, b, e, limit)) << "round " << round;
          }
        }
      }
      return abort ? Status::Errno(ECANCELED, "abort on purpose") : Status::OK();
    });
    if (abort) {
      ASSERT_EQ(s.code(), ECANCELED);
    } else {
      ASSERT_TRUE(s.ok()) << s.ToString();
      committed = local;
    }
    if (HasFailure()) return;
  }
  auto all = [&] {
    std::vector<std::pair<std::string, std::string>> out;
    EXPECT_TRUE(engine_
                    ->View([&](Txn& t) {
                      out.clear();
                      return t.Scan("", "", 0, [&](std::string_view k, std::string_view v) {
                        out.emplace_back(k, v);
                        return true;
                      });
                    })
                    .ok());
    return out;
  };
  EXPECT_EQ(all(), model_scan(committed, "", "", 0));
  if (Persistent()) {
    Reopen();
    EXPECT_EQ(all(), model_scan(committed, "", "", 0));
  }
}

// Scans longer than an engine's internal batch (SQLite reads 256 rows at a time) resume at the
// right key even when keys are prefixes of each other ("x", "x\0", "x\0\0"), and a visitor
// may write through the same transaction while the scan runs.
TEST_P(EngineTest, LongScansResumeExactly) {
  std::vector<std::string> want;
  for (int i = 0; i < 400; ++i) {
    std::string base = "L" + std::to_string(1000 + i);
    for (int z = 0; z < 3; ++z) want.push_back(base + std::string(z, '\0'));
  }
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    for (const auto& k : want) NX_TRY(t.Put(k, k));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(ScanKeys("L", "M", 0), want);
  EXPECT_EQ(ScanKeys("L", "", 700), std::vector<std::string>(want.begin(), want.begin() + 700));
  EXPECT_EQ(ScanKeys(want[255], want[770], 0),
            std::vector<std::string>(want.begin() + 255, want.begin() + 770));
  // Rewrite every value from inside the scan's visitor, then check what was committed.
  size_t visited = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    visited = 0;
                    Status inner;
                    NX_TRY(t.ScanPrefix("L", 0, [&](std::string_view k, std::string_view v) {
                      ++visited;
                      if (k != v) inner = Status::Corruption("value of " + std::string(k));
                      if (inner.ok()) inner = t.Put(k, std::string(k) + "!");
                      return inner.ok();
                    }));
                    return inner;
                  })
                  .ok());
  EXPECT_EQ(visited, want.size());
  auto v = Get(want[600]);
  EXPECT_EQ(v, want[600] + "!");
}

// Persistence tests run on the engines that keep data (not mem://).
class PersistentEngineTest : public EngineTest {};

TEST_P(PersistentEngineTest, ReopenKeepsCommittedData) {
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(Put(Key(i), std::to_string(i)).ok());
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Add("c", 42); }).ok());
  ASSERT_TRUE(engine_->Sync().ok());
  Reopen();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(Get(Key(i)), std::to_string(i));
  int64_t c = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(c, t.Increment("c", 0));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(c, 42);
  EXPECT_TRUE(engine_->Compact().ok());
  EXPECT_EQ(Get(Key(999)), "999");
}

// A child commits numbered transactions and reports each one through a pipe after Update
// returned; it is killed with SIGKILL mid-stream. Every reported transaction must be there.
TEST_P(PersistentEngineTest, CommittedTxnsSurviveKill9) {
  engine_.reset();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto e = Engine::Open(Url());
    if (!e) _exit(3);
    for (uint64_t i = 1;; ++i) {
      Status s = (*e)->Update([&](Txn& t) -> Status {
        NX_TRY(t.Put(Key(i), "committed"));
        return t.Add("count", 1);
      });
      if (!s.ok()) _exit(4);
      if (write(fds[1], &i, sizeof i) != sizeof i) _exit(5);
    }
  }
  close(fds[1]);
  // Reads reports until 2000 transactions committed; a child that stops reporting for 20 s
  // (stuck) fails the test instead of hanging it.
  uint64_t last = 0, v;
  bool stuck = false;
  while (last < 2000) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 20000) != 1) {
      stuck = true;
      break;
    }
    if (read(fds[0], &v, sizeof v) != sizeof v) break;
    last = v;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  ASSERT_FALSE(stuck) << "child reported nothing for 20 s after txn " << last;
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  Reopen();
  for (uint64_t i = 1; i <= last; ++i) ASSERT_EQ(Get(Key(i)), "committed") << "txn " << i;
  // Transactions are atomic across the crash: the keys present are 1..n without gaps, and the
  // counter added by the same transactions (merge operands on RocksDB) says n.
  auto keys = ScanKeys("k", "l", 0);
  ASSERT_GE(keys.size(), last);
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(keys[i], Key(i + 1));
  int64_t count = 0;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(count, t.Increment("count", 0));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(count, static_cast<int64_t>(keys.size()));
}

// RocksDB's writers take turns (one process holds the DB): read-modify-writes from several
// threads never conflict and lose nothing, a View running meanwhile sees each commit whole (also
// through the engine's value cache, which must never answer for a state other than the View's
// snapshot), an
// Update's MultiGet sees its own writes and Adds, and an Update called from inside an Update
// fails with EDEADLK instead of waiting for itself, committing nothing of the outer body.
TEST(kv_RocksDB, WritersTakeTurnsAndViewsSeeWholeCommits) {
  auto dir = fs::temp_directory_path() / ("nexus-kv-turns-" + std::to_string(getpid()));
  fs::remove_all(dir);
  auto e = Engine::Open("rocksdb://" + (dir / "db").string());
  ASSERT_TRUE(e) << e.error().ToString();
  Engine& engine = **e;

  Status nested = engine.Update([&](Txn& t) -> Status {
    NX_TRY(t.Put("mine", "x"));
    return engine.Update([&](Txn& other) { return other.Put("other", "y"); });
  });
  EXPECT_EQ(nested.code(), EDEADLK) << nested.ToString();
  EXPECT_NE(nested.message().find("same engine"), std::string::npos) << nested.message();

  auto counter = [](const std::optional<std::string>& v) {  // an 8-byte little-endian counter
    uint64_t n = 0;
    for (int i = 7; v && v->size() == 8 && i >= 0; --i)
      n = (n << 8) | static_cast<uint8_t>((*v)[i]);
    return n;
  };
  constexpr int kThreads = 4, kPerThread = 1500;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, view_errors{0}, views{0};
  std::thread viewer([&] {
    while (!done) {
      Status s = engine.View([&](Txn& t) -> Status {
        // "a" by a point read (the engine may answer it from its value cache), "b" by a scan
        // (always from the DB at the snapshot): a cached value older or newer than the
        // snapshot would show as a difference.
        NX_ASSIGN_OR_RETURN(auto a, t.Get("a"));
        std::optional<std::string> b;
        NX_TRY(t.ScanPrefix("b", 1, [&](std::string_view, std::string_view v) {
          b = std::string(v);
          return false;
        }));
        if (counter(a) != counter(b)) torn++;
        return Status::OK();
      });
      if (!s.ok()) view_errors++;
      views++;
    }
  });
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int i = 0; i < kThreads; ++i) {
    writers.emplace_back([&] {
      for (int n = 0; n < kPerThread; ++n) {
        Status s = engine.Update([&](Txn& t) -> Status {
          NX_ASSIGN_OR_RETURN(auto v, t.MultiGet({"a", "b"}));
          std::string next(8, '\0');
          for (uint64_t i = 0, n = counter(v[0]) + 1; i < 8; ++i, n >>= 8) next[i] = char(n & 0xff);
          NX_TRY(t.Put("a", next));
          return t.Put("b", next);
        });
        if (!s.ok()) failures++;
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  viewer.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(torn, 0) << "a View saw one key of a commit without the other";
  EXPECT_EQ(view_errors, 0);
  EXPECT_GT(views, 0);
  std::optional<std::string> a, b;
  ASSERT_TRUE(engine
                  .View([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(a, t.Get("a"));
                    NX_ASSIGN_OR_RETURN(b, t.Get("b"));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(counter(a), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(counter(b), counter(a));
  EngineStats st = engine.Stats();
  EXPECT_EQ(st.conflicts, 0u);
  EXPECT_GT(st.cache_hits, 0u);  // the writers' reads of "a" and "b" after the first
  EXPECT_EQ(st.failures, 2u);    // the nested Update, and the body that called it
  EXPECT_GE(st.txns, static_cast<uint64_t>(kThreads * kPerThread));

  ASSERT_TRUE(engine.Update([](Txn& t) { return t.Add("d", 10); }).ok());
  ASSERT_TRUE(engine
                  .Update([&](Txn& t) -> Status {
                    NX_TRY(t.Put("x", "1"));
                    NX_TRY(t.Add("c", 5));
                    NX_TRY(t.Add("d", 2));
                    NX_ASSIGN_OR_RETURN(auto m, t.MultiGet({"x", "c", "d", "none", "mine"}));
                    EXPECT_EQ(m[0], std::optional<std::string>("1"));
                    EXPECT_EQ(counter(m[1]), 5u);
                    EXPECT_EQ(counter(m[2]), 12u);
                    EXPECT_FALSE(m[3]);
                    EXPECT_FALSE(m[4]) << "the body that called Update nested was committed";
                    return Status::OK();
                  })
                  .ok());
  // Views hold snapshots only while they run.
  EXPECT_EQ(engine.Stats().open_snapshots, 0u);
  e->reset();
  fs::remove_all(dir);
}

// Two engines on one SQLite file stand for two processes: writers of both are serialized by
// SQLite's write lock (SQLITE_BUSY is retried), so increments through both are exact.
TEST(kv_SQLite, TwoConnectionsOnOneFileStayExact) {
  auto dir = fs::temp_directory_path() / ("nexus-kv-two-" + std::to_string(getpid()));
  fs::remove_all(dir);
  std::string url = "sqlite3://" + (dir / "meta.db").string();
  auto a = Engine::Open(url);
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = Engine::Open(url);
  ASSERT_TRUE(b) << b.error().ToString();
  constexpr int kPerThread = 1000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (Engine* e : {a->get(), b->get(), a->get(), b->get()}) {
    threads.emplace_back([&, e] {
      for (int i = 0; i < kPerThread; ++i) {
        Status s = e->Update([](Txn& t) -> Status {
          NX_TRY(t.Increment("n", 1));
          return Status::OK();
        });
        if (!s.ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  std::optional<std::string> raw;
  ASSERT_TRUE((*b)->View([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(raw, t.Get("n"));
                    return Status::OK();
                  })
                  .ok());
  // 4000 = 0x0fa0 as a little-endian 8-byte counter.
  EXPECT_EQ(raw, std::string("\xa0\x0f\0\0\0\0\0\0", 8));
  int64_t le = 0;
  ASSERT_TRUE((*a)->Update([&](Txn& t) -> Status {
                    NX_ASSIGN_OR_RETURN(le, t.Increment("n", 0));
                    return Status::OK();
                  })
                  .ok());
  EXPECT_EQ(le, 4 * kPerThread);
  EXPECT_TRUE((*a)->Sync().ok());
  a->reset();
  b->reset();
  fs::remove_all(dir);
}

TEST(kv_EngineOpen, InUseCorruptAndUnwritable) {
  auto tmp = fs::temp_directory_path() / ("nexus-kv-open-" + std::to_string(getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  // A RocksDB directory is locked by the engine that has it open.
  std::string rocks = "rocksdb://" + (tmp / "db").string();
  auto first = Engine::Open(rocks);
  ASSERT_TRUE(first) << first.error().ToString();
  auto second = Engine::Open(rocks);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), EBUSY) << second.error().ToString();
  first->reset();
  // A damaged RocksDB directory: CURRENT names a manifest that is not there.
  { std::ofstream(tmp / "db" / "CURRENT", std::ios::trunc) << "MANIFEST-999999\n"; }
  auto damaged = Engine::Open(rocks);
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.error().message().find((tmp / "db").string()), std::string::npos)
      << damaged.error().ToString();
  // Paths that cannot be created.
  { std::ofstream(tmp / "file") << "x"; }
  for (std::string url : {"rocksdb://" + (tmp / "file" / "db").string(),
                          "sqlite3://" + (tmp / "file" / "meta.db").string(),
                          std::string("rocksdb:///proc/nexus-kv-no/db"),
                          std::string("sqlite3:///proc/nexus-kv-no/meta.db")}) {
    auto r = Engine::Open(url);
    ASSERT_FALSE(r) << url;
    EXPECT_FALSE(r.error().message().empty()) << url;
  }
  // A plain path is the embedded default, RocksDB.
  auto plain = Engine::Open((tmp / "plain").string());
  ASSERT_TRUE(plain) << plain.error().ToString();
  EXPECT_EQ((*plain)->Name(), "rocksdb://" + (tmp / "plain").string());
  plain->reset();
  fs::remove_all(tmp);
}

TEST(kv_EngineOpen, BadUrlsGiveClearErrors) {
  auto unknown = Engine::Open("nosuch://x");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), EINVAL);
  EXPECT_NE(unknown.error().message().find("nosuch"), std::string::npos);
  auto redis = Engine::Open("redis://user:secret@127.0.0.1:6379/1");
  ASSERT_FALSE(redis);
  EXPECT_EQ(redis.error().message().find("secret"), std::string::npos);
  EXPECT_FALSE(Engine::Open("rocksdb://"));
  EXPECT_FALSE(Engine::Open("sqlite3://"));
  // A rocksdb path that is a file, a sqlite path that is a directory.
  auto tmp = fs::temp_directory_path() / ("nexus-kv-bad-" + std::to_string(getpid()));
  fs::create_directories(tmp);
  { std::ofstream(tmp / "file") << "x"; }
  auto r = Engine::Open("rocksdb://" + (tmp / "file").string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ENOTDIR);
  auto s = Engine::Open("sqlite3://" + tmp.string());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), EISDIR);
  // A file that is not a database.
  { std::ofstream(tmp / "garbage") << std::string(4096, 'g'); }
  auto notdb = Engine::Open("sqlite3://" + (tmp / "garbage").string());
  EXPECT_FALSE(notdb);
  fs::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(kv_conformance, EngineTest,
                         ::testing::Values("mem", "rocksdb", "sqlite3", "etcd", "redis",
                                           "postgres"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(kv_conformance, PersistentEngineTest,
                         ::testing::Values("rocksdb", "sqlite3", "etcd", "redis", "postgres"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace nexus::kv
