// PostgreSQL engine specifics the conformance suite does not see: round trips per transaction
// (EngineStats::round_trips), the View's ROLLBACK sent without waiting, and the commit fence.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "meta/kv/engine.h"
#include "meta/kv/engines.h"
#include "servers.h"

namespace nexus::kv {
namespace {

class PostgresEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    server_ = testsrv::SharedPostgres(&why);
    if (!server_) GTEST_SKIP() << why;
    auto url = server_->NewUrl();
    ASSERT_TRUE(url) << url.error().ToString();
    url_ = *url;
    auto e = Engine::Open(url_);
    ASSERT_TRUE(e) << e.error().ToString();
    engine_ = std::move(*e);
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
  std::optional<std::string> Get(Engine& e, const std::string& k) {
    std::optional<std::string> v;
    Status s = e.View([&](Txn& t) -> Status {
      NX_ASSIGN_OR_RETURN(v, t.Get(k));
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return v;
  }

  testsrv::PostgresServer* server_ = nullptr;
  std::string url_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(PostgresEngineTest, RoundTripsPerTransaction) {
  ASSERT_TRUE(Put("a", "1").ok());
  ASSERT_TRUE(Put("b", "2").ok());
  std::optional<std::string> v;
  // A View of one key: BEGIN and the read in one pipeline; its ROLLBACK is not waited for.
  EXPECT_EQ(RoundTrips([&] { v = Get(*engine_, "a"); }), 1u);
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
  // A MultiGet is one pipeline.
  std::vector<std::optional<std::string>> values;
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->View([&](Txn& t) -> Status {
                                NX_ASSIGN_OR_RETURN(values, t.MultiGet({"a", "b", "none"}));
                                return Status::OK();
                              })
                              .ok());
            }),
            1u);
  EXPECT_EQ(values, (std::vector<std::optional<std::string>>{"1", "2", std::nullopt}));
  // The shape of a create: one MultiGet, writes and Adds, commit.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_ASSIGN_OR_RETURN(auto r, t.MultiGet({"a", "c"}));
                                if (!r[0] || r[1]) return Status::Corruption("unexpected");
                                NX_TRY(t.Put("c", "3"));
                                NX_TRY(t.Put("a", "1'"));
                                NX_TRY(t.Add("inodes", 1));
                                return t.Add("space", 4096);
                              })
                              .ok());
            }),
            2u);
  // Two separate reads and a write: two reads and the commit.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_TRY(t.Get("a"));
                                NX_TRY(t.Get("b"));
                                return t.Put("d", "4");
                              })
                              .ok());
            }),
            3u);
  // A blind write with an Add: the commit only.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_TRY(t.Put("e", "5"));
                                return t.Add("inodes", 1);
                              })
                              .ok());
            }),
            1u);
  // An Update that only reads: the read and a COMMIT (which validates it).
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                NX_TRY(t.Get("a"));
                                return Status::OK();
                              })
                              .ok());
            }),
            2u);
  // A failed body: its ROLLBACK is not waited for either.
  EXPECT_EQ(RoundTrips([&] {
              Status s = engine_->Update([&](Txn& t) -> Status {
                NX_TRY(t.Get("a"));
                NX_TRY(t.Put("f", "6"));
                return Status::Exists("refused by the body");
              });
              EXPECT_EQ(s.code(), EEXIST) << s.ToString();
            }),
            1u);
  EXPECT_EQ(Get(*engine_, "c"), "3");
  EXPECT_EQ(Get(*engine_, "a"), "1'");
  EXPECT_EQ(Get(*engine_, "f"), std::nullopt);
  EXPECT_EQ(Get(*engine_, "inodes"), EncodeCounter(2));
  EXPECT_EQ(Get(*engine_, "space"), EncodeCounter(4096));
}

// Write sets and MultiGets larger than one pipeline batch (256 statements) go in several
// batches of one transaction: everything arrives, one round trip per batch.
TEST_F(PostgresEngineTest, LargeTransactionsGoInBatches) {
  constexpr int kKeys = 700;
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back("big/" + std::to_string(i));
  // BEGIN + 700 puts + an Add + the fence + COMMIT = 704 statements: 3 batches.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->Update([&](Txn& t) -> Status {
                                for (const auto& k : keys) NX_TRY(t.Put(k, "v" + k));
                                return t.Add("count", kKeys);
                              })
                              .ok());
            }),
            3u);
  std::vector<std::optional<std::string>> values;
  // BEGIN + 700 reads: 3 batches.
  EXPECT_EQ(RoundTrips([&] {
              ASSERT_TRUE(engine_
                              ->View([&](Txn& t) -> Status {
                                NX_ASSIGN_OR_RETURN(values, t.MultiGet(keys));
                                return Status::OK();
                              })
                              .ok());
            }),
            3u);
  ASSERT_EQ(values.size(), keys.size());
  for (int i = 0; i < kKeys; ++i) EXPECT_EQ(values[i], "v" + keys[i]) << keys[i];
  EXPECT_EQ(Get(*engine_, "count"), EncodeCounter(kKeys));
}

// A View's transaction stays open on its pooled connection until the ROLLBACK sent after it is
// answered: the next View on that connection must see a newer snapshot, not the old one.
TEST_F(PostgresEngineTest, NextViewSeesCommitsAfterTheLastOne) {
  ASSERT_TRUE(Put("k", "old").ok());
  EXPECT_EQ(Get(*engine_, "k"), "old");
  auto other = Engine::Open(url_);
  ASSERT_TRUE(other) << other.error().ToString();
  ASSERT_TRUE((*other)->Update([](Txn& t) { return t.Put("k", "new"); }).ok());
  EXPECT_EQ(Get(*engine_, "k"), "new");
  // A plain statement after a View reads the pending ROLLBACK first (no "transaction in
  // progress" for TRUNCATE).
  EXPECT_EQ(Get(*engine_, "k"), "new");
  ASSERT_TRUE(engine_->Reset().ok());
  EXPECT_EQ(Get(*engine_, "k"), std::nullopt);
}

// Adds are applied by the server at commit on the stored little-endian counter, whatever its
// sign, and merge with reads and scans of the same transaction.
TEST_F(PostgresEngineTest, AddsAppliedByTheServerAreExact) {
  ASSERT_TRUE(Put("n", EncodeCounter(-5)).ok());
  ASSERT_TRUE(Put("short", "xy").ok());  // shorter than 8 bytes counts as 0
  ASSERT_TRUE(engine_
                  ->Update([](Txn& t) -> Status {
                    NX_TRY(t.Add("n", 3));
                    NX_TRY(t.Add("n", int64_t{1} << 40));
                    NX_TRY(t.Add("short", -7));
                    return t.Add("fresh", 9);
                  })
                  .ok());
  EXPECT_EQ(Get(*engine_, "n"), EncodeCounter((int64_t{1} << 40) - 2));
  EXPECT_EQ(Get(*engine_, "short"), EncodeCounter(-7));
  EXPECT_EQ(Get(*engine_, "fresh"), EncodeCounter(9));
  ASSERT_TRUE(engine_->Update([](Txn& t) { return t.Add("n", -(int64_t{1} << 40)); }).ok());
  EXPECT_EQ(Get(*engine_, "n"), EncodeCounter(-2));
  // Inside one transaction a pending Add shows in Get and Scan.
  std::vector<std::pair<std::string, std::string>> seen;
  ASSERT_TRUE(engine_
                  ->Update([&](Txn& t) -> Status {
                    seen.clear();
                    NX_TRY(t.Add("fresh", 1));
                    NX_TRY(t.Add("m", 2));  // absent: only the pending add
                    NX_ASSIGN_OR_RETURN(auto f, t.Get("fresh"));
                    if (f != EncodeCounter(10)) return Status::Corruption("get");
                    return t.Scan("f", "o", 0, [&](std::string_view k, std::string_view v) {
                      seen.emplace_back(k, v);
                      return true;
                    });
                  })
                  .ok());
  EXPECT_EQ(seen,
            (std::vector<std::pair<std::string, std::string>>{
                {"fresh", EncodeCounter(10)}, {"m", EncodeCounter(2)}, {"n", EncodeCounter(-2)}}));
}

}  // namespace
}  // namespace nexus::kv
