// Locks of Meta over every engine: flock conflicts, POSIX byte-range semantics (split, merge,
// unlock of sub-ranges, GetLk) and mutual exclusion between threads waiting on each other.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "common/clock.h"
#include "meta_data_fixture.h"

namespace nexus::meta {
namespace {

constexpr uint64_t kEof = UINT64_MAX;
constexpr uint64_t kA = 1, kB = 2, kC = 3;  // lock owners

class MetaLockTest : public MetaVolumeTest {
 protected:
  Status Lock(Ino ino, uint64_t owner, LockType t, uint64_t start, uint64_t end, uint32_t pid = 0) {
    return meta_->SetLk(ino, owner, PosixLock{t, start, end, pid ? pid : 100 + uint32_t(owner)});
  }
  // What `owner` is told by F_GETLK for a write probe over [start, end].
  PosixLock Probe(Ino ino, uint64_t owner, uint64_t start, uint64_t end,
                  LockType t = LockType::kWrite) {
    auto r = meta_->GetLk(ino, owner, PosixLock{t, start, end, 0});
    EXPECT_TRUE(r.has_value()) << r.error().ToString();
    return r.value_or(PosixLock{});
  }
};

bool Same(const PosixLock& a, const PosixLock& b) {
  return a.type == b.type && a.start == b.start && a.end == b.end && a.pid == b.pid;
}
#define EXPECT_LOCK(got, t, s, e, p)                                                            \
  EXPECT_TRUE(Same((got), PosixLock{(t), (s), (e), (p)}))                                       \
      << "got type " << int((got).type) << " [" << (got).start << ", " << (got).end << "] pid " \
      << (got).pid

TEST_P(MetaLockTest, FlockSharedExclusiveAndConversion) {
  Ino ino = NewFile("f");
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kRead));
  ASSERT_OK(meta_->Flock(ino, kB, LockType::kRead));
  EXPECT_ERRNO(meta_->Flock(ino, kC, LockType::kWrite), EAGAIN);
  EXPECT_ERRNO(meta_->Flock(ino, kA, LockType::kWrite), EAGAIN);  // B still reads
  ASSERT_OK(meta_->Flock(ino, kB, LockType::kUnlock));
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kWrite));  // upgrade, now alone
  EXPECT_ERRNO(meta_->Flock(ino, kB, LockType::kRead), EAGAIN);
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kWrite));  // again: no change
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kRead));   // downgrade lets readers in
  ASSERT_OK(meta_->Flock(ino, kB, LockType::kRead));
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kUnlock));
  ASSERT_OK(meta_->Flock(ino, kB, LockType::kUnlock));
  ASSERT_OK(meta_->Flock(ino, kB, LockType::kUnlock));  // unlocking nothing is fine
  ASSERT_OK(meta_->Flock(ino, kC, LockType::kWrite));
  EXPECT_ERRNO(meta_->Flock(ino, kA, static_cast<LockType>(7)), EINVAL);
  EXPECT_ERRNO(Lock(ino, kA, static_cast<LockType>(7), 0, 1), EINVAL);
  // Another inode is independent; an empty record is deleted.
  Ino other = NewFile("g");
  ASSERT_OK(meta_->Flock(other, kA, LockType::kWrite));
  ASSERT_OK(meta_->Flock(ino, kC, LockType::kUnlock));
  EXPECT_FALSE(RawGet(keys::Flock(ino)).has_value());
  EXPECT_TRUE(RawGet(keys::Flock(other)).has_value());
}

TEST_P(MetaLockTest, ReadLocksShareWriteLocksExclude) {
  Ino ino = NewFile("f");
  ASSERT_OK(Lock(ino, kA, LockType::kRead, 0, 99));
  ASSERT_OK(Lock(ino, kB, LockType::kRead, 50, 149));
  EXPECT_ERRNO(Lock(ino, kC, LockType::kWrite, 149, 149), EAGAIN);
  ASSERT_OK(Lock(ino, kC, LockType::kWrite, 150, kEof));
  EXPECT_ERRNO(Lock(ino, kA, LockType::kRead, 1000, 1000), EAGAIN);
  EXPECT_ERRNO(Lock(ino, kA, LockType::kWrite, 60, 60), EAGAIN);  // B reads there
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 0, 49));              // own range: upgrade
  EXPECT_LOCK(Probe(ino, kB, 0, 0, LockType::kRead), LockType::kWrite, 0, 49, 101);
  // GetLk: the lowest conflicting lock, with its pid; own locks never conflict.
  EXPECT_LOCK(Probe(ino, kC, 0, kEof), LockType::kWrite, 0, 49, 101);
  EXPECT_LOCK(Probe(ino, kC, 120, kEof), LockType::kRead, 50, 149, 102);
  EXPECT_EQ(Probe(ino, kC, 200, 300).type, LockType::kUnlock);
  EXPECT_EQ(Probe(ino, kA, 0, 49).type, LockType::kUnlock);
  EXPECT_LOCK(Probe(ino, kA, 100, 100000), LockType::kRead, 50, 149, 102);
  EXPECT_EQ(Probe(ino, kA, 60, 70, LockType::kRead).type, LockType::kUnlock);
  EXPECT_ERRNO(meta_->GetLk(ino, kA, PosixLock{LockType::kUnlock, 0, 1, 0}), EINVAL);
  EXPECT_ERRNO(Lock(ino, kA, LockType::kWrite, 10, 5), EINVAL);
}

TEST_P(MetaLockTest, RangesMergeAndSplit) {
  Ino ino = NewFile("f");
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 0, 99));
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 100, 199));  // adjacent: merged
  EXPECT_LOCK(Probe(ino, kB, 150, 150), LockType::kWrite, 0, 199, 101);
  ASSERT_OK(Lock(ino, kA, LockType::kUnlock, 50, 59));  // split in two
  EXPECT_LOCK(Probe(ino, kB, 0, 0), LockType::kWrite, 0, 49, 101);
  EXPECT_LOCK(Probe(ino, kB, 60, 60), LockType::kWrite, 60, 199, 101);
  EXPECT_EQ(Probe(ino, kB, 50, 59).type, LockType::kUnlock);
  ASSERT_OK(Lock(ino, kB, LockType::kWrite, 50, 59));  // B fits in the gap
  ASSERT_OK(Lock(ino, kB, LockType::kUnlock, 0, kEof));
  // A read in the middle of a write range splits it into write/read/write.
  ASSERT_OK(Lock(ino, kA, LockType::kRead, 100, 109));
  EXPECT_LOCK(Probe(ino, kB, 100, 109), LockType::kRead, 100, 109, 101);
  EXPECT_LOCK(Probe(ino, kB, 110, 110), LockType::kWrite, 110, 199, 101);
  EXPECT_EQ(Probe(ino, kB, 100, 109, LockType::kRead).type, LockType::kUnlock);
  ASSERT_OK(Lock(ino, kB, LockType::kRead, 100, 109));
  // Overlapping own locks of one type merge into one range; the gap fills in.
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 40, 65));
  EXPECT_LOCK(Probe(ino, kC, 0, 0), LockType::kWrite, 0, 99, 101);
  // A lock to EOF swallows everything after it; unlock to EOF drops it.
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 300, kEof));
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 200, 299));
  EXPECT_LOCK(Probe(ino, kC, kEof, kEof), LockType::kWrite, 110, kEof, 101);
  ASSERT_OK(Lock(ino, kA, LockType::kUnlock, 150, kEof));
  EXPECT_EQ(Probe(ino, kC, 150, kEof).type, LockType::kUnlock);
  EXPECT_LOCK(Probe(ino, kC, 149, kEof), LockType::kWrite, 110, 149, 101);
  // Unlock everything: the record disappears.
  ASSERT_OK(Lock(ino, kA, LockType::kUnlock, 0, kEof));
  ASSERT_OK(Lock(ino, kB, LockType::kUnlock, 0, kEof));
  EXPECT_FALSE(RawGet(keys::Plock(ino)).has_value());
  ASSERT_OK(Lock(ino, kC, LockType::kUnlock, 0, kEof));  // nothing held: fine
}

TEST_P(MetaLockTest, WaitLockChangeWakesOnLocalRelease) {
  Ino ino = NewFile("f");
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 0, kEof));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_OK(Lock(ino, kA, LockType::kUnlock, 0, kEof));
  });
  const int64_t start = MonoNanos();
  meta_->WaitLockChange(ino, 10'000'000'000LL);
  const int64_t waited = MonoNanos() - start;
  releaser.join();
  EXPECT_LT(waited, 5'000'000'000LL);
  ASSERT_OK(Lock(ino, kB, LockType::kWrite, 0, kEof));
  // Without a release the wait ends at its timeout.
  const int64_t t0 = MonoNanos();
  meta_->WaitLockChange(ino, 20'000'000LL);
  EXPECT_GE(MonoNanos() - t0, 19'000'000LL);
}

// A release that lands between a failed attempt and the wait is not missed: the wait compares
// with the lock epoch seen before the attempt.
TEST_P(MetaLockTest, ReleaseBetweenAttemptAndWaitIsNotMissed) {
  Ino ino = NewFile("f");
  for (bool posix : {true, false}) {
    ASSERT_OK(posix ? Lock(ino, kB, LockType::kWrite, 0, kEof)
                    : meta_->Flock(ino, kB, LockType::kWrite));
    EXPECT_ERRNO(
        posix ? Lock(ino, kA, LockType::kWrite, 0, 10) : meta_->Flock(ino, kA, LockType::kWrite),
        EAGAIN);
    ASSERT_OK(posix ? Lock(ino, kB, LockType::kUnlock, 0, kEof)
                    : meta_->Flock(ino, kB, LockType::kUnlock));
    const int64_t start = MonoNanos();
    meta_->WaitLockChange(ino, 10'000'000'000LL);
    EXPECT_LT(MonoNanos() - start, 1'000'000'000LL) << (posix ? "posix" : "flock");
  }
}

// Two owners contend for the same write lock, each waiting with WaitLockChange after EAGAIN;
// at most one is ever inside the critical section.
TEST_P(MetaLockTest, ContendingOwnersAreMutuallyExclusive) {
  Ino ino = NewFile("f");
  std::atomic<int> inside{0}, violations{0}, entries{0};
  auto worker = [&](uint64_t owner, bool posix) {
    for (int i = 0; i < 20; ++i) {
      while (true) {
        Status s = posix ? Lock(ino, owner, LockType::kWrite, 0, kEof)
                         : meta_->Flock(ino, owner, LockType::kWrite);
        if (s.ok()) break;
        if (s.code() != EAGAIN) {
          ADD_FAILURE() << s.ToString();
          return;
        }
        meta_->WaitLockChange(ino, 5'000'000);
      }
      if (inside.fetch_add(1) != 0) violations.fetch_add(1);
      entries.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      inside.fetch_sub(1);
      Status s = posix ? Lock(ino, owner, LockType::kUnlock, 0, kEof)
                       : meta_->Flock(ino, owner, LockType::kUnlock);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  };
  for (bool posix : {true, false}) {
    entries = 0;
    std::thread a(worker, kA, posix), b(worker, kB, posix);
    a.join();
    b.join();
    EXPECT_EQ(violations.load(), 0) << (posix ? "posix" : "flock");
    EXPECT_EQ(entries.load(), 40);
  }
}

// Holders are (session, owner): the same owner number in two sessions is two holders, and
// closing a session releases every lock it held.
TEST_P(MetaLockTest, SessionsAreDistinctHoldersAndCleanupReleasesThem) {
  ASSERT_TRUE(meta_->NewSession(SessionInfo{}).has_value());
  auto other = OpenClient();
  Ino ino = NewFile("f"), ino2 = NewFile("g");
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kWrite));
  EXPECT_ERRNO(other->Flock(ino, kA, LockType::kRead), EAGAIN);
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 0, 99, 7));
  EXPECT_ERRNO(other->SetLk(ino, kA, PosixLock{LockType::kRead, 50, 50, 8}), EAGAIN);
  auto got = other->GetLk(ino, kA, PosixLock{LockType::kRead, 0, kEof, 8});
  ASSERT_TRUE(got.has_value());
  EXPECT_LOCK(*got, LockType::kWrite, 0, 99, 7);
  ASSERT_OK(other->SetLk(ino, kA, PosixLock{LockType::kWrite, 100, 199, 8}));
  ASSERT_OK(other->Flock(ino2, kB, LockType::kWrite));
  ASSERT_OK(other->SetLk(ino2, kB, PosixLock{LockType::kRead, 0, kEof, 8}));
  ASSERT_OK(other->CloseSession());
  // The other session's locks are gone, ours stay.
  EXPECT_EQ(Probe(ino, kB, 100, 199).type, LockType::kUnlock);
  EXPECT_LOCK(Probe(ino, kB, 0, kEof), LockType::kWrite, 0, 99, 7);
  EXPECT_FALSE(RawGet(keys::Flock(ino2)).has_value());
  EXPECT_FALSE(RawGet(keys::Plock(ino2)).has_value());
  EXPECT_ERRNO(meta_->Flock(ino, kB, LockType::kRead), EAGAIN);
}

// Unlinking a locked inode deletes its lock records (Attr::kAttrFlagLocks is set by the first
// lock); an inode never locked gets it not.
TEST_P(MetaLockTest, LockedInodesAreMarkedAndTheirRecordsGoWithThem) {
  Ino ino = NewFile("f"), plain = NewFile("g");
  ASSERT_OK(meta_->Flock(ino, kA, LockType::kWrite));
  ASSERT_OK(Lock(ino, kA, LockType::kWrite, 0, 99, 7));
  EXPECT_TRUE(meta_->GetAttr(ino)->flags & Attr::kAttrFlagLocks);
  EXPECT_FALSE(meta_->GetAttr(plain)->flags & Attr::kAttrFlagLocks);
  ASSERT_TRUE(RawGet(keys::Flock(ino)).has_value());
  ASSERT_TRUE(RawGet(keys::Plock(ino)).has_value());
  ASSERT_OK(meta_->Unlink(Context::Root(), kRootIno, "f"));
  EXPECT_FALSE(RawGet(keys::Flock(ino)).has_value());
  EXPECT_FALSE(RawGet(keys::Plock(ino)).has_value());
  // Released locks leave the flag: a later purge still looks for records.
  Ino again = NewFile("h");
  ASSERT_OK(meta_->Flock(again, kA, LockType::kRead));
  ASSERT_OK(meta_->Flock(again, kA, LockType::kUnlock));
  EXPECT_FALSE(RawGet(keys::Flock(again)).has_value());
  EXPECT_TRUE(meta_->GetAttr(again)->flags & Attr::kAttrFlagLocks);
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaLockTest, testing::ValuesIn(EngineUrls()), EngineTestName);

// The transactions of an engine, with every key they delete recorded (a test spy).
class DeleteSpyEngine final : public kv::Engine {
 public:
  explicit DeleteSpyEngine(std::unique_ptr<kv::Engine> inner) : inner_(std::move(inner)) {}
  Status Update(const std::function<Status(kv::Txn&)>& body) override {
    return inner_->Update([&](kv::Txn& txn) {
      Spy spy(txn, this);
      return body(spy);
    });
  }
  Status View(const std::function<Status(kv::Txn&)>& body) override { return inner_->View(body); }
  Status Sync() override { return inner_->Sync(); }
  std::string Name() const override { return inner_->Name(); }
  std::vector<std::string> deleted;

 private:
  class Spy final : public kv::Txn {
   public:
    Spy(kv::Txn& t, DeleteSpyEngine* e) : t_(t), e_(e) {}
    Result<std::optional<std::string>> Get(std::string_view k) override { return t_.Get(k); }
    Result<std::vector<std::optional<std::string>>> MultiGet(
        const std::vector<std::string>& keys) override {
      return t_.MultiGet(keys);
    }
    Status Put(std::string_view k, std::string_view v) override { return t_.Put(k, v); }
    Status Delete(std::string_view k) override {
      e_->deleted.emplace_back(k);
      return t_.Delete(k);
    }
    Status Scan(std::string_view b, std::string_view end, size_t limit,
                const std::function<bool(std::string_view, std::string_view)>& v) override {
      return t_.Scan(b, end, limit, v);
    }
    Result<int64_t> Increment(std::string_view k, int64_t d) override { return t_.Increment(k, d); }
    Status Add(std::string_view k, int64_t d) override { return t_.Add(k, d); }

   private:
    kv::Txn& t_;
    DeleteSpyEngine* e_;
  };
  std::unique_ptr<kv::Engine> inner_;
};

TEST(MetaLockFlagTest, UnlinkOfANeverLockedFileDeletesNoLockRecord) {
  auto e = kv::Engine::Open("mem://");
  ASSERT_TRUE(e);
  auto spy = std::make_unique<DeleteSpyEngine>(std::move(*e));
  DeleteSpyEngine* engine = spy.get();
  auto meta = Meta::Create(std::move(spy));
  Format f;
  f.name = "spy";
  ASSERT_OK(meta->Format(f, false));
  for (const char* name : {"plain", "locked"}) {
    const bool locked = std::string(name) == "locked";
    auto n = meta->Mknod(Context::Root(), kRootIno, name, FileType::kFile, 0644, 0);
    ASSERT_TRUE(n);
    if (locked) ASSERT_OK(meta->Flock(n->ino, kA, LockType::kWrite));
    engine->deleted.clear();
    ASSERT_OK(meta->Unlink(Context::Root(), kRootIno, name));
    size_t lock_keys = 0;
    for (const std::string& k : engine->deleted) {
      lock_keys += k == keys::Flock(n->ino) || k == keys::Plock(n->ino);
    }
    EXPECT_EQ(lock_keys, locked ? 2u : 0u) << name;
  }
}

}  // namespace
}  // namespace nexus::meta
