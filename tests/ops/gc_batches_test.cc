// gc's default mode: the batches of slice ids clients take are recorded with the counter, and
// gc finds the uploads that never committed from those records alone, listing only the narrow
// prefixes of the uncommitted ids (never the whole bucket). Two clients share one engine: one
// "crashes" (is dropped without closing its session), the other stays live.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../kv/borrowed_engine.h"
#include "common/encoding.h"
#include "list_recorder.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"
#include "object/stores.h"
#include "ops/fsck.h"

namespace {

using namespace nexus;
namespace keys = meta::keys;

constexpr uint32_t kBlock = 64 << 10;
constexpr uint32_t kBatch = 16;

std::string BlockKey(uint64_t id, uint32_t block, uint32_t size) {
  return "vol/chunks/" + std::to_string(id / 1000000) + "/" + std::to_string(id / 1000) + "/" +
         std::to_string(id) + "_" + std::to_string(block) + "_" + std::to_string(size);
}

class GcBatchesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    engine_ = std::move(*e);
    store_ = object::NewMemStore();
    recorder_ = std::make_unique<test::ListRecorder>(store_.get());
    a_ = NewClient();
    meta::Format f;
    f.name = "vol";
    f.storage = "mem";
    f.block_size = kBlock;
    ASSERT_TRUE(a_->Format(f, false).ok());
    ASSERT_TRUE(a_->Load().has_value());
    b_ = NewClient();
    ASSERT_TRUE(b_->Load().has_value());
    gc_ = NewClient();
    ASSERT_TRUE(gc_->Load().has_value());
  }

  std::unique_ptr<meta::Meta> NewClient(uint32_t batch = kBatch) {
    meta::MetaOptions mo;
    mo.slice_batch = batch;
    return meta::Meta::Create(std::make_unique<kv::BorrowedEngine>(engine_.get()), mo);
  }

  // An upload: the blocks of slice `id` (`size` bytes) put as the chunk layer would.
  void Upload(uint64_t id, uint32_t size) {
    for (uint32_t off = 0, b = 0; off < size; off += kBlock, ++b) {
      const uint32_t n = std::min(kBlock, size - off);
      const std::string key = BlockKey(id, b, n);
      ASSERT_TRUE(store_->Put(key, std::string(n, 'x')).ok());
      uploaded_[id].insert(key);
    }
  }
  // A commit of slice `id` as the whole of a new file.
  void Commit(meta::Meta* m, uint64_t id, uint32_t size) {
    auto e =
        m->Create(meta::Context::Root(), meta::kRootIno, "f" + std::to_string(id), 0644, O_RDWR);
    ASSERT_TRUE(e.has_value());
    meta::Slice s;
    s.id = id;
    s.size = size;
    s.len = size;
    ASSERT_TRUE(m->WriteSlice(e->ino, 0, s, 0).ok());
    ASSERT_TRUE(m->Close(e->ino).ok());
  }
  std::set<std::string> KeysOf(const std::set<uint64_t>& ids) {
    std::set<std::string> out;
    for (uint64_t id : ids) out.insert(uploaded_[id].begin(), uploaded_[id].end());
    return out;
  }
  std::set<std::string> StoreKeys() {
    std::set<std::string> out;
    auto page = store_->List("vol/", "", 100000);
    EXPECT_TRUE(page.has_value());
    if (page) {
      for (const auto& o : page->objects) out.insert(o.key);
    }
    return out;
  }
  std::set<uint64_t> RangeFirsts() {
    std::set<uint64_t> out;
    Status s = engine_->View([&](kv::Txn& txn) -> Status {
      out.clear();
      return txn.ScanPrefix("R", 0, [&](std::string_view k, std::string_view) {
        if (k.size() == 9) out.insert(GetBE64(k.data() + 1));
        return true;
      });
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  ops::GcOptions Options(int64_t window_ns) {
    ops::GcOptions o;
    o.min_age_ns = window_ns;
    o.block_prefix = "vol/";
    o.block_size = kBlock;
    o.threads = 2;
    return o;
  }
  ops::GcReport RunGc(const ops::GcOptions& o) {
    recorder_->Take();
    auto r = ops::Gc(gc_.get(), recorder_.get(), o);
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    const auto lists = recorder_->Take();
    EXPECT_EQ(r->list_calls, lists.size());
    for (const auto& p : lists) {
      if (o.full) {
        EXPECT_EQ(p, "vol/chunks/");
        continue;
      }
      EXPECT_TRUE(test::NarrowBlockPrefix(p)) << "a wide List in the default mode: '" << p << "'";
    }
    return r.value_or(ops::GcReport{});
  }
  static std::set<std::string> Leaked(const ops::GcReport& r) {
    return {r.leaked_keys.begin(), r.leaked_keys.end()};
  }

  std::unique_ptr<kv::Engine> engine_;
  std::unique_ptr<object::ObjectStore> store_;
  std::unique_ptr<test::ListRecorder> recorder_;
  std::unique_ptr<meta::Meta> a_, b_, gc_;
  std::map<uint64_t, std::set<std::string>> uploaded_;
};

TEST_F(GcBatchesTest, FindsExactlyTheUncommittedIdsOfADeadClientWithoutListingTheBucket) {
  ASSERT_TRUE(a_->NewSession(meta::SessionInfo{}).has_value());
  ASSERT_TRUE(b_->NewSession(meta::SessionInfo{}).has_value());

  // Client A takes 40 ids (three batches of 16): even ids are uploaded and committed, odd ones
  // uploaded (one or two blocks) and never committed; the last two are taken but never uploaded.
  std::vector<uint64_t> ids;
  for (int i = 0; i < 40; ++i) {
    auto id = a_->NewSliceId();
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
  }
  std::set<uint64_t> committed, lost_early, lost_last;
  for (size_t i = 0; i + 2 < ids.size(); ++i) {
    const uint64_t id = ids[i];
    const uint32_t size = (i % 3 == 0) ? kBlock + 100 : 5000;
    Upload(id, size);
    if (i % 2 == 0) {
      Commit(a_.get(), id, size);
      committed.insert(id);
    } else if (id < 2 * kBatch) {
      lost_early.insert(id);  // in batches A has since replaced
    } else {
      lost_last.insert(id);  // in A's last batch
    }
  }
  ASSERT_FALSE(lost_early.empty());
  ASSERT_FALSE(lost_last.empty());
  // A slice whose file was removed awaits deletion (L record): not a leak.
  const uint64_t removed = ids[0];
  ASSERT_TRUE(
      a_->Unlink(meta::Context::Root(), meta::kRootIno, "f" + std::to_string(removed)).ok());
  committed.erase(removed);

  // Client B (live) takes a fresh batch and has two uploads whose commit is under way.
  auto b1 = b_->NewSliceId(), b2 = b_->NewSliceId();
  ASSERT_TRUE(b1 && b2);
  Upload(*b1, 3000);
  Upload(*b2, 3000);

  a_.reset();  // A crashes: its session record stays, heartbeat and all.

  // Inside the window: nothing leaked, every uncommitted upload is young.
  ops::GcReport r = RunGc(Options(3600LL * 1000000000LL));
  EXPECT_EQ(r.leaked, 0u);
  EXPECT_EQ(r.young, KeysOf(lost_early).size() + KeysOf(lost_last).size() + 2);
  EXPECT_EQ(r.ranges, 4u);  // A's three, B's one
  EXPECT_EQ(r.unrecorded_below, 0u);

  // Window 0, A's session still looks live: only the batches A has replaced can close.
  r = RunGc(Options(0));
  EXPECT_EQ(Leaked(r), KeysOf(lost_early));
  EXPECT_EQ(r.ranges_active, 2u);  // A's last batch, B's batch
  EXPECT_EQ(r.list_calls, 1u);     // every candidate id is in directory 0: one List of it

  // A's session is cleaned by B (as a mount cleans stale sessions): all of A's leaks are found;
  // B's fresh batch is still not touched.
  ASSERT_EQ(b_->CleanStaleSessions(0).value_or(-1), 1);
  std::set<uint64_t> lost = lost_early;
  lost.insert(lost_last.begin(), lost_last.end());
  r = RunGc(Options(0));
  EXPECT_EQ(Leaked(r), KeysOf(lost));
  EXPECT_EQ(r.young, 2u);  // B's
  EXPECT_EQ(r.ranges_active, 1u);

  // The full listing agrees on A's leaks (and lists the bucket); knowing nothing of sessions, it
  // also takes B's uploads for leaks once the window is 0.
  ops::GcOptions full = Options(0);
  full.full = true;
  ops::GcReport f = RunGc(full);
  std::set<std::string> full_want = KeysOf(lost);
  for (const auto& k : KeysOf({*b1, *b2})) full_want.insert(k);
  EXPECT_EQ(Leaked(f), full_want);
  const std::set<std::string> before = StoreKeys();

  // --delete: exactly the leaked objects go, with the pending slice's; A's batch records are
  // removed, B's stays.
  ops::GcOptions del = Options(0);
  del.do_delete = true;
  r = RunGc(del);
  EXPECT_EQ(r.deleted, KeysOf(lost).size());
  EXPECT_GE(r.slices_released, 1u);
  std::set<std::string> want;
  for (const auto& k : before) {
    if (!KeysOf(lost).count(k) && !KeysOf({removed}).count(k)) want.insert(k);
  }
  EXPECT_EQ(StoreKeys(), want);
  EXPECT_EQ(r.ranges_removed, 3u);
  EXPECT_EQ(RangeFirsts(), (std::set<uint64_t>{*b1 / kBatch * kBatch}));
  for (uint64_t id : committed) {
    for (const auto& k : uploaded_[id]) EXPECT_TRUE(StoreKeys().count(k)) << k;
  }

  // B commits one upload and crashes too: the other is found (a session with no recorded
  // timeout judged by the window, as gc --min-age 0 does), and then nothing is left.
  Commit(b_.get(), *b1, 3000);
  b_.reset();
  del.session_timeout_ns = 0;
  r = RunGc(del);
  EXPECT_EQ(Leaked(r), KeysOf({*b2}));
  EXPECT_EQ(r.deleted, 1u);
  EXPECT_TRUE(RangeFirsts().empty());
  r = RunGc(del);
  EXPECT_EQ(r.leaked, 0u);
  EXPECT_EQ(r.list_calls, 0u);

  // fsck: the volume and the (remaining) batch records are clean.
  ops::FsckOptions fo;
  fo.check_blocks = false;
  fo.block_prefix = "vol/";
  auto ck = ops::Fsck(gc_.get(), store_.get(), fo);
  ASSERT_TRUE(ck.has_value()) << ck.error().ToString();
  EXPECT_EQ(ck->problem_count, 0u) << (ck->problems.empty() ? "" : ck->problems[0].Line());
}

// A live client's current batch is never closed, even with no window, however old the uploads.
// Its few candidate ids are looked up one narrow List each.
TEST_F(GcBatchesTest, LiveSessionsCurrentBatchIsNotTouched) {
  auto c = NewClient(4);
  ASSERT_TRUE(c->Load().has_value());
  ASSERT_TRUE(c->NewSession(meta::SessionInfo{}).has_value());
  auto id = c->NewSliceId();
  ASSERT_TRUE(id.has_value());
  Upload(*id, 100);
  ops::GcOptions o = Options(0);
  o.do_delete = true;
  recorder_->Take();
  ops::GcReport r = RunGc(o);
  EXPECT_EQ(r.leaked, 0u);
  EXPECT_EQ(r.young, 1u);
  EXPECT_EQ(r.ranges_active, 1u);
  EXPECT_EQ(r.ranges_removed, 0u);
  EXPECT_EQ(r.list_calls, 3u);  // ids 1, 2, 3 of [0, 4)
  EXPECT_EQ(StoreKeys(), KeysOf({*id}));
  EXPECT_EQ(RangeFirsts().size(), 1u);
}

// A volume from before the records: gc says which ids it cannot cover until gc --full ran once.
// fsck names a damaged batch record and repair removes it.
TEST_F(GcBatchesTest, VolumesWithoutRecordsNeedOneFullRun) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a_->NewSliceId().has_value());
  Upload(5, 100);  // leaked before the upgrade
  // As an older version left it: the counter, no records.
  ASSERT_TRUE(engine_
                  ->Update([&](kv::Txn& txn) -> Status {
                    NX_TRY(txn.Delete(keys::SliceRangeFloor()));
                    NX_TRY(txn.Delete(keys::SliceRange(0)));
                    return txn.Delete(keys::SliceRange(kBatch));
                  })
                  .ok());
  ops::GcReport r = RunGc(Options(0));
  EXPECT_EQ(r.unrecorded_below, 2u * kBatch);
  EXPECT_EQ(r.leaked, 0u);

  // The upgraded client's next batch sets the floor there.
  a_ = NewClient();
  ASSERT_TRUE(a_->Load().has_value());
  ASSERT_TRUE(a_->NewSliceId().has_value());
  r = RunGc(Options(0));
  EXPECT_EQ(r.unrecorded_below, 2u * kBatch);

  ops::GcOptions full = Options(0);
  full.full = true;
  full.do_delete = true;
  r = RunGc(full);
  EXPECT_EQ(Leaked(r), KeysOf({5}));
  EXPECT_EQ(r.deleted, 1u);
  r = RunGc(Options(0));
  EXPECT_EQ(r.unrecorded_below, 0u);

  // A damaged record: named by fsck, removed by repair.
  ASSERT_TRUE(engine_
                  ->Update([&](kv::Txn& txn) -> Status {
                    return txn.Put(keys::SliceRange(1000000), "short");
                  })
                  .ok());
  ops::FsckOptions fo;
  fo.check_blocks = false;
  fo.block_prefix = "vol/";
  auto ck = ops::Fsck(gc_.get(), store_.get(), fo);
  ASSERT_TRUE(ck.has_value());
  ASSERT_EQ(ck->problems.size(), 1u);
  EXPECT_EQ(ck->problems[0].kind, "bad-slice-batch");
  fo.repair = true;
  ck = ops::Fsck(gc_.get(), store_.get(), fo);
  ASSERT_TRUE(ck.has_value());
  EXPECT_TRUE(ck->remaining.empty());
  fo.repair = false;
  ck = ops::Fsck(gc_.get(), store_.get(), fo);
  ASSERT_TRUE(ck.has_value());
  EXPECT_EQ(ck->problem_count, 0u);
}

}  // namespace
