// Local opens: a Meta that is the only client of a single-process engine (the mount's, on
// RocksDB) keeps which files are open in memory. Opens and closes write no records; an unlink of
// an open file writes them, so that the last close, or the cleanup of a crashed session, removes
// the file. Run on mem:// and rocksdb://, the engines that say they are single-process.
#include <fcntl.h>

#include <atomic>
#include <thread>

#include "meta_data_fixture.h"

namespace nexus::meta {
namespace {

class MetaSoleClientTest : public MetaVolumeTest {
 protected:
  void SetUp() override {
    MetaVolumeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    meta_.reset();
    MetaOptions o;
    o.sole_client = true;
    meta_ = OpenVolume("sole", 0, o);
    ASSERT_NE(meta_, nullptr);
    auto sid = meta_->NewSession(SessionInfo{});
    ASSERT_TRUE(sid.has_value()) << sid.error().ToString();
    sid_ = *sid;
  }

  Ino File(const std::string& name) { return NewFile(name); }
  uint64_t Txns() { return meta_->engine()->Stats().txns; }
  uint64_t Writes() { return meta_->engine()->Stats().writes; }
  bool HasOpenRecords() { return !RawKeys("O").empty() || !RawKeys("SS").empty(); }

  Context root_ = Context::Root();
  uint64_t sid_ = 0;
};

TEST_P(MetaSoleClientTest, OpensAndClosesWriteNothingAndClosesRunNoTransaction) {
  auto c = meta_->Create(root_, kRootIno, "c", 0644, O_RDWR | O_CREAT);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  Ino g = File("g");
  const uint64_t writes = Writes();
  ASSERT_OK(meta_->Open(root_, g, O_RDWR));
  ASSERT_OK(meta_->Open(root_, g, O_RDONLY));
  ASSERT_OK(meta_->Open(root_, c->ino, O_RDONLY));
  // Both engines take writers in turns: a first open's Update orders it against unlinks without
  // writing anything.
  EXPECT_EQ(Writes(), writes) << "opens wrote to the engine";
  EXPECT_FALSE(HasOpenRecords());
  const uint64_t before = Txns();
  ASSERT_OK(meta_->Close(c->ino));
  ASSERT_OK(meta_->CloseDeferred(c->ino));
  ASSERT_OK(meta_->Close(g));
  ASSERT_OK(meta_->CloseDeferred(g));
  ASSERT_OK(meta_->FlushDeferredCloses());
  EXPECT_EQ(Txns(), before) << "closes of files nobody unlinked ran transactions";
  EXPECT_ERRNO(meta_->Close(g), EBADF);
  EXPECT_FALSE(HasOpenRecords());
  ASSERT_OK(meta_->Unlink(root_, kRootIno, "g"));  // closed: removed at once
  EXPECT_ERRNO(meta_->GetAttr(g), ENOENT);
}

TEST_P(MetaSoleClientTest, AFileUnlinkedWhileOpenLastsUntilItsLastClose) {
  Ino f = File("f");
  ASSERT_OK(meta_->Truncate(root_, f, 5000));
  ASSERT_OK(meta_->Open(root_, f, O_RDWR));
  ASSERT_OK(meta_->Open(root_, f, O_RDONLY));
  ASSERT_OK(meta_->Unlink(root_, kRootIno, "f"));
  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "f"), ENOENT);
  EXPECT_EQ(meta_->GetAttr(f)->nlink, 0u);
  EXPECT_TRUE(RawGet(keys::Open(f, sid_)).has_value());
  EXPECT_TRUE(RawGet(keys::Sustained(sid_, f)).has_value());
  ASSERT_OK(meta_->Truncate(root_, f, 6000));  // still usable
  ASSERT_OK(meta_->Open(root_, f, O_RDONLY));  // and openable by handle
  ASSERT_OK(meta_->Close(f));
  ASSERT_OK(meta_->CloseDeferred(f));
  ASSERT_OK(meta_->FlushDeferredCloses());
  EXPECT_EQ(meta_->GetAttr(f)->nlink, 0u);
  EXPECT_TRUE(RawKeys("D").empty());
  ASSERT_OK(meta_->CloseDeferred(f));
  ASSERT_OK(meta_->FlushDeferredCloses());
  EXPECT_ERRNO(meta_->GetAttr(f), ENOENT);
  EXPECT_TRUE(RawGet(keys::DelFile(f, 6000)).has_value());
  EXPECT_FALSE(HasOpenRecords());

  // A rename over an open file keeps the replaced inode the same way.
  Ino a = File("a"), b = File("b");
  ASSERT_OK(meta_->Open(root_, b, O_RDONLY));
  ASSERT_OK(meta_->Rename(root_, kRootIno, "a", kRootIno, "b", 0));
  EXPECT_EQ(meta_->GetAttr(b)->nlink, 0u);
  EXPECT_TRUE(RawGet(keys::Sustained(sid_, b)).has_value());
  ASSERT_OK(meta_->Close(b));
  EXPECT_ERRNO(meta_->GetAttr(b), ENOENT);
  EXPECT_FALSE(HasOpenRecords());
  EXPECT_EQ(meta_->Lookup(root_, kRootIno, "b")->ino, a);
  EXPECT_EQ(meta_->GetStatFs(kRootIno)->used_inodes, 1u);
}

// The records written at the unlink are what a crash leaves: the next client's cleanup of the
// dead session removes the file, as it does for a shared engine.
TEST_P(MetaSoleClientTest, ACrashedClientsUnlinkedOpenFileGoesWithItsSession) {
  MetaOptions o;
  o.sole_client = true;
  auto crashed = Meta::Create(std::make_unique<BorrowedEngine>(meta_->engine()), o);
  ASSERT_TRUE(crashed->Load().has_value());
  ASSERT_TRUE(crashed->NewSession(SessionInfo{}).has_value());
  auto e = crashed->Create(root_, kRootIno, "f", 0644, O_RDWR | O_CREAT);
  ASSERT_TRUE(e.has_value()) << e.error().ToString();
  ASSERT_OK(crashed->Truncate(root_, e->ino, 100));
  ASSERT_OK(crashed->Unlink(root_, kRootIno, "f"));
  crashed.reset();  // no Close, no CloseSession: its records stay, as after a kill -9
  EXPECT_EQ(meta_->GetAttr(e->ino)->nlink, 0u);
  auto cleaned = meta_->CleanStaleSessions(0);
  ASSERT_TRUE(cleaned.has_value()) << cleaned.error().ToString();
  EXPECT_EQ(*cleaned, 1);
  EXPECT_ERRNO(meta_->GetAttr(e->ino), ENOENT);
  EXPECT_TRUE(RawGet(keys::DelFile(e->ino, 100)).has_value());
  EXPECT_FALSE(HasOpenRecords());
}

// Opens racing unlinks of the same files: an open either fails with ENOENT (the unlink came
// first) or gets a file that stays readable until its close; afterwards nothing is left.
TEST_P(MetaSoleClientTest, OpensRacingUnlinksLeaveNothingBehind) {
  constexpr int kFiles = 500;
  std::vector<Ino> inos;
  for (int i = 0; i < kFiles; ++i) inos.push_back(File("f" + std::to_string(i)));
  std::atomic<int> opened{0}, vanished{0}, errors{0}, at{-1};
  std::thread opener([&] {
    for (int i = 0; i < kFiles; ++i) {
      const Ino ino = inos[i];
      at = i;  // the unlink of this file may start now
      for (int round = 0; round < 3; ++round) {
        auto a = meta_->Open(root_, ino, O_RDONLY);
        if (!a) {
          if (a.error().code() != ENOENT) errors++;
          break;
        }
        opened++;
        if (!meta_->GetAttr(ino)) vanished++;
        Status s = round % 2 ? meta_->Close(ino) : meta_->CloseDeferred(ino);
        if (!s.ok()) errors++;
      }
    }
  });
  for (int i = 0; i < kFiles; ++i) {
    while (at < i) std::this_thread::yield();
    if (!meta_->Unlink(root_, kRootIno, "f" + std::to_string(i)).ok()) errors++;
  }
  opener.join();
  ASSERT_OK(meta_->FlushDeferredCloses());
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(vanished, 0) << "an open file lost its inode before its close";
  EXPECT_GT(opened, 0);
  for (Ino ino : inos) EXPECT_ERRNO(meta_->GetAttr(ino), ENOENT);
  EXPECT_FALSE(HasOpenRecords());
  EXPECT_EQ(meta_->GetStatFs(kRootIno)->used_inodes, 0u);
}

// A Meta that is not the sole client, or whose engine other processes may share, keeps writing
// a record per open file.
TEST_P(MetaSoleClientTest, OtherClientsKeepOpenRecords) {
  auto other = Meta::Create(std::make_unique<BorrowedEngine>(meta_->engine()));
  ASSERT_TRUE(other->Load().has_value());
  auto sid = other->NewSession(SessionInfo{});
  ASSERT_TRUE(sid.has_value());
  Ino f = File("f");
  ASSERT_OK(other->Open(root_, f, O_RDONLY));
  EXPECT_TRUE(RawGet(keys::Open(f, *sid)).has_value());
  ASSERT_OK(other->Close(f));
  EXPECT_FALSE(HasOpenRecords());
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaSoleClientTest,
                         testing::Values("mem://", "rocksdb://<tmp>/rocks"), EngineTestName);

}  // namespace
}  // namespace nexus::meta
