// Meta::RemoveTree over every engine: a mixed tree (files with data, subdirectories, symlinks,
// hard links with a link outside the tree), an open file that outlives its removal, permission
// and sticky-bit refusals, plain files, ENOENT, an entry added while the walk is under way, and
// a large tree removed in bounded transactions. Each volume is checked with fsck afterwards.
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "meta/slice_view.h"
#include "meta_data_fixture.h"
#include "ops/fsck.h"

namespace nexus::meta {
namespace {

// Forwards to another engine and records the largest number of writes one committed
// transaction made, to show that RemoveTree keeps its transactions bounded.
class CountingTxn : public kv::Txn {
 public:
  explicit CountingTxn(kv::Txn& inner) : inner_(inner) {}
  Result<std::optional<std::string>> Get(std::string_view key) override { return inner_.Get(key); }
  Result<std::vector<std::optional<std::string>>> MultiGet(
      const std::vector<std::string>& keys) override {
    return inner_.MultiGet(keys);
  }
  Status Put(std::string_view key, std::string_view value) override {
    ++writes;
    return inner_.Put(key, value);
  }
  Status Delete(std::string_view key) override {
    ++writes;
    return inner_.Delete(key);
  }
  Status Scan(std::string_view begin, std::string_view end, size_t limit,
              const std::function<bool(std::string_view, std::string_view)>& visit) override {
    return inner_.Scan(begin, end, limit, visit);
  }
  Result<int64_t> Increment(std::string_view key, int64_t delta) override {
    ++writes;
    return inner_.Increment(key, delta);
  }
  Status Add(std::string_view key, int64_t delta) override {
    ++writes;
    return inner_.Add(key, delta);
  }
  size_t writes = 0;

 private:
  kv::Txn& inner_;
};

class CountingEngine : public kv::Engine {
 public:
  explicit CountingEngine(kv::Engine* inner) : inner_(inner) {}
  Status Update(const std::function<Status(kv::Txn&)>& body) override {
    size_t writes = 0;
    Status s = inner_->Update([&](kv::Txn& txn) -> Status {
      CountingTxn counting(txn);
      Status b = body(counting);
      writes = counting.writes;
      return b;
    });
    if (s.ok()) {
      ++txns;
      max_writes = std::max(max_writes, writes);
    }
    return s;
  }
  Status View(const std::function<Status(kv::Txn&)>& body) override { return inner_->View(body); }
  Status Sync() override { return inner_->Sync(); }
  std::string Name() const override { return inner_->Name(); }
  size_t txns = 0;
  size_t max_writes = 0;

 private:
  kv::Engine* inner_;
};

Context User(uint32_t uid, uint32_t gid) {
  Context c;
  c.uid = uid;
  c.gid = gid;
  return c;
}

class MetaRmrTest : public MetaVolumeTest {
 protected:
  Context root_ = Context::Root();

  Ino Mk(Ino parent, const std::string& name, FileType type = FileType::kFile,
         const Context& ctx = Context::Root(), uint32_t mode = 0) {
    Result<Entry> e = type == FileType::kDir ? meta_->Mkdir(ctx, parent, name, mode ? mode : 0755)
                      : type == FileType::kSymlink
                          ? meta_->Symlink(ctx, parent, name, "../target")
                          : meta_->Mknod(ctx, parent, name, type, mode ? mode : 0644, 0);
    EXPECT_TRUE(e.has_value()) << name << ": " << e.error().ToString();
    return e ? e->ino : 0;
  }
  void Write(Ino ino, uint32_t len) {
    auto id = meta_->NewSliceId();
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    ASSERT_OK(meta_->WriteSlice(ino, 0, Slice{0, *id, len, 0, len}, 0));
  }
  Attr A(Ino ino) {
    auto a = meta_->GetAttr(ino);
    EXPECT_TRUE(a.has_value()) << "getattr " << ino << ": " << a.error().ToString();
    return a.value_or(Attr{});
  }
  void Chmod(Ino ino, uint32_t mode) {
    SetAttrRequest r;
    r.mask = kSetMode;
    r.mode = mode;
    ASSERT_OK(meta_->SetAttr(root_, ino, r));
  }
  uint64_t Counter(const std::string& name) {
    auto v = RawGet(keys::Counter(name));
    return v ? keys::DecodeU64(*v) : 0;
  }
  // fsck of the whole volume (metadata only) finds nothing.
  void ExpectClean() {
    ops::FsckOptions o;
    o.check_blocks = false;
    auto r = ops::Fsck(meta_.get(), nullptr, o);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    for (const ops::Problem& p : r->problems) ADD_FAILURE() << "fsck: " << p.Line();
    EXPECT_EQ(r->problem_count, 0u);
  }
  uint64_t Remove(const Context& ctx, Ino parent, const std::string& name) {
    auto n = meta_->RemoveTree(ctx, parent, name);
    EXPECT_TRUE(n.has_value()) << "rmr " << name << ": " << n.error().ToString();
    return n.value_or(0);
  }
};

TEST_P(MetaRmrTest, RemovesMixedTreeAndKeepsOutsideLinks) {
  Ino outer = Mk(kRootIno, "outer");
  Write(outer, 1000);
  Ino keep = Mk(kRootIno, "keep", FileType::kDir);
  Ino t = Mk(kRootIno, "t", FileType::kDir);
  Ino f1 = Mk(t, "f1");
  Write(f1, 5000);
  Mk(t, "f2");
  Mk(t, "sym", FileType::kSymlink);
  Mk(t, "fifo", FileType::kFifo);
  Ino d1 = Mk(t, "d1", FileType::kDir);
  Mk(d1, "g1");
  Ino d2 = Mk(d1, "d2", FileType::kDir);
  Mk(d2, "h");
  Mk(d2, "deep", FileType::kDir);
  Mk(t, "empty", FileType::kDir);
  // `outer` gets two links in the tree and keeps its own; `inner` has both links in the tree.
  ASSERT_OK(meta_->Link(root_, outer, d1, "hl1"));
  ASSERT_OK(meta_->Link(root_, outer, d2, "hl2"));
  Ino inner = Mk(t, "inner");
  Write(inner, 300);
  ASSERT_OK(meta_->Link(root_, inner, d1, "inner2"));
  ASSERT_OK(meta_->Link(root_, inner, d1, "inner3"));
  ASSERT_EQ(A(outer).nlink, 3u);
  ASSERT_EQ(A(kRootIno).nlink, 4u);  // keep, t
  const Attr before = A(kRootIno);

  // t f1 f2 sym fifo d1 g1 d2 h deep empty hl1 hl2 inner inner2 inner3
  std::vector<uint64_t> seen;
  auto n = meta_->RemoveTree(root_, kRootIno, "t", [&](uint64_t c) { seen.push_back(c); });
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 16u);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 16u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));

  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "t"), ENOENT);
  for (Ino gone : {t, f1, d1, d2, inner}) EXPECT_ERRNO(meta_->GetAttr(gone), ENOENT);
  const Attr root = A(kRootIno);
  EXPECT_EQ(root.nlink, 3u);  // keep only
  EXPECT_GE(root.mtime, before.mtime);
  EXPECT_GE(root.ctime, before.ctime);
  const Attr o = A(outer);
  EXPECT_EQ(o.nlink, 1u);
  EXPECT_EQ(o.parent, kRootIno);
  EXPECT_TRUE(RawKeys(keys::ParentPrefix(outer)).empty());
  EXPECT_EQ(A(keep).nlink, 2u);
  EXPECT_EQ(Counter("totalInodes"), 2u);  // outer, keep
  EXPECT_EQ(Counter("usedSpace"), 1000u);
  // The data of the removed files waits for CleanupDeleted.
  EXPECT_TRUE(RawGet(keys::DelFile(f1, 5000)).has_value());
  EXPECT_TRUE(RawGet(keys::DelFile(inner, 300)).has_value());
  EXPECT_TRUE(RawKeys(keys::InodePrefix(t)).empty());
  EXPECT_TRUE(RawKeys(keys::InodePrefix(d2)).empty());
  ExpectClean();
}

TEST_P(MetaRmrTest, OpenFileStaysReadableUntilClose) {
  Ino t = Mk(kRootIno, "t", FileType::kDir);
  Ino sub = Mk(t, "sub", FileType::kDir);
  Ino f = Mk(sub, "open");
  Write(f, 4096);
  Mk(sub, "closed");
  ASSERT_OK(meta_->Open(root_, f, O_RDONLY));
  EXPECT_EQ(Remove(root_, kRootIno, "t"), 4u);
  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "t"), ENOENT);
  const Attr a = A(f);
  EXPECT_EQ(a.nlink, 0u);
  EXPECT_EQ(a.length, 4096u);
  auto chunk = meta_->ReadChunk(f, 0);
  ASSERT_TRUE(chunk.has_value()) << chunk.error().ToString();
  EXPECT_EQ(chunk->size(), 1u);
  EXPECT_TRUE(RawKeys("D").empty());  // nothing released while open
  ExpectClean();
  ASSERT_OK(meta_->Close(f));
  EXPECT_ERRNO(meta_->GetAttr(f), ENOENT);
  EXPECT_TRUE(RawGet(keys::DelFile(f, 4096)).has_value());
  EXPECT_EQ(Counter("totalInodes"), 0u);
  EXPECT_EQ(Counter("usedSpace"), 0u);
  ExpectClean();
}

TEST_P(MetaRmrTest, PermissionAndStickyRefusals) {
  const Context user = User(1000, 1000);
  Ino pub = Mk(kRootIno, "pub", FileType::kDir);
  Chmod(pub, 0777);
  // A root-owned directory the user may not write: refused when listing it, nothing removed.
  Ino t = Mk(pub, "t", FileType::kDir);
  Mk(t, "f");
  EXPECT_ERRNO(meta_->RemoveTree(user, pub, "t"), EACCES);
  EXPECT_TRUE(meta_->Lookup(root_, t, "f").has_value());
  // Not writable at the top: refused before anything is touched.
  EXPECT_ERRNO(meta_->RemoveTree(user, kRootIno, "pub"), EACCES);
  // Sticky parent, entry owned by someone else.
  Ino sticky = Mk(kRootIno, "sticky", FileType::kDir);
  Chmod(sticky, 01777);
  Ino theirs = Mk(sticky, "theirs", FileType::kDir);
  Chmod(theirs, 0777);
  Mk(theirs, "x");
  EXPECT_ERRNO(meta_->RemoveTree(user, sticky, "theirs"), EPERM);
  EXPECT_TRUE(meta_->Lookup(root_, theirs, "x").has_value());
  // Sticky directory inside the user's own tree: refused at the other owner's entry.
  Ino mine = Mk(pub, "mine", FileType::kDir, user);
  Mk(mine, "a", FileType::kFile, user);
  Ino s = Mk(mine, "s", FileType::kDir);  // root's
  Chmod(s, 01777);
  Mk(s, "rootfile");
  auto r = meta_->RemoveTree(user, pub, "mine");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EPERM) << r.error().ToString();
  EXPECT_TRUE(meta_->Lookup(root_, s, "rootfile").has_value());
  EXPECT_ERRNO(meta_->Lookup(root_, mine, "a"), ENOENT);  // removed before the refusal, as rm -r
  // Root removes the rest; so does the user once the entry is theirs.
  EXPECT_EQ(Remove(root_, pub, "mine"), 3u);
  ASSERT_OK(meta_->Unlink(root_, theirs, "x"));
  Mk(theirs, "y", FileType::kFile, user);
  SetAttrRequest own;
  own.mask = kSetUid;
  own.uid = 1000;
  ASSERT_OK(meta_->SetAttr(root_, theirs, own));
  EXPECT_EQ(Remove(user, sticky, "theirs"), 2u);
  ExpectClean();
}

TEST_P(MetaRmrTest, PlainFileMissingNameAndBadNames) {
  Ino f = Mk(kRootIno, "f");
  Write(f, 10);
  EXPECT_EQ(Remove(root_, kRootIno, "f"), 1u);
  EXPECT_ERRNO(meta_->GetAttr(f), ENOENT);
  EXPECT_ERRNO(meta_->RemoveTree(root_, kRootIno, "f"), ENOENT);
  EXPECT_ERRNO(meta_->RemoveTree(root_, kRootIno, ".."), EINVAL);
  EXPECT_ERRNO(meta_->RemoveTree(root_, kRootIno, "a/b"), EINVAL);
  EXPECT_ERRNO(meta_->RemoveTree(root_, kRootIno, ""), EINVAL);
  EXPECT_ERRNO(meta_->RemoveTree(root_, 987654, "x"), ENOENT);
  EXPECT_EQ(Counter("totalInodes"), 0u);
  EXPECT_EQ(Counter("usedSpace"), 0u);
  ExpectClean();
}

// Another client adds entries while the walk is inside a subdirectory: the parent is listed
// again and they are removed too.
TEST_P(MetaRmrTest, EntriesAddedMeanwhileAreRemoved) {
  Ino t = Mk(kRootIno, "t", FileType::kDir);
  Ino a = Mk(t, "a", FileType::kDir);
  Mk(a, "x");
  Ino b = Mk(t, "b", FileType::kDir);
  Mk(b, "y");
  auto other = OpenClient();
  ASSERT_NE(other, nullptr);
  int calls = 0;
  auto n = meta_->RemoveTree(root_, kRootIno, "t", [&](uint64_t) {
    if (++calls != 1) return;  // after `a` went away, while `b` is still to do
    EXPECT_TRUE(other->Mknod(root_, t, "0-early", FileType::kFile, 0644, 0).has_value());
    EXPECT_TRUE(other->Mkdir(root_, b, "late", 0755).has_value());
  });
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 7u);  // t a x b y + 0-early late
  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "t"), ENOENT);
  EXPECT_EQ(A(kRootIno).nlink, 2u);
  EXPECT_EQ(Counter("totalInodes"), 0u);
  ExpectClean();
}

// Two clients remove the same tree at once: between them every entry is removed exactly once,
// and neither fails except with ENOENT when the whole tree was gone before it started.
TEST_P(MetaRmrTest, TwoClientsRemoveOneTree) {
  Ino t = Mk(kRootIno, "t", FileType::kDir);
  uint64_t entries = 1;
  for (int d = 0; d < 3; ++d) {
    Ino dir = Mk(t, "d" + std::to_string(d), FileType::kDir);
    ++entries;
    for (int i = 0; i < 200; ++i, ++entries) Mk(dir, "f" + std::to_string(i));
  }
  for (int i = 0; i < 100; ++i, ++entries) Mk(t, "top" + std::to_string(i));
  auto a = OpenClient();
  auto b = OpenClient();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Result<uint64_t> ra = 0, rb = 0;
  std::thread ta([&] { ra = a->RemoveTree(root_, kRootIno, "t"); });
  std::thread tb([&] { rb = b->RemoveTree(root_, kRootIno, "t"); });
  ta.join();
  tb.join();
  uint64_t sum = 0;
  for (auto* r : {&ra, &rb}) {
    if (r->has_value()) {
      sum += **r;
    } else {
      EXPECT_EQ(r->error().code(), ENOENT) << r->error().ToString();
    }
  }
  EXPECT_TRUE(ra.has_value() || rb.has_value());
  EXPECT_EQ(sum, entries);
  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "t"), ENOENT);
  EXPECT_EQ(A(kRootIno).nlink, 2u);
  EXPECT_EQ(Counter("totalInodes"), 0u);
  ExpectClean();
}

// Many entries: removed in many transactions, none of them large.
TEST_P(MetaRmrTest, LargeTreeInBoundedTransactions) {
  const bool big = GetParam().rfind("rocksdb", 0) == 0 || GetParam().rfind("mem", 0) == 0;
  const int kFiles = big ? 20000 : 1500;  // networked engines: fewer creates, same batching
  Ino t = Mk(kRootIno, "t", FileType::kDir);
  std::vector<Ino> dirs = {t};
  for (int i = 0; i < 4; ++i) {
    Ino d = Mk(t, "d" + std::to_string(i), FileType::kDir);
    dirs.push_back(d);
    dirs.push_back(Mk(d, "sub", FileType::kDir));
  }
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kFiles; ++i) {
    // Half in `t` itself, the rest spread over the subdirectories.
    const Ino dir = i % 2 ? t : dirs[1 + (i / 2) % (dirs.size() - 1)];
    ASSERT_TRUE(meta_->Mknod(root_, dir, "file-" + std::to_string(i), FileType::kFile, 0644, 0))
        << i;
  }
  const double create_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto owned = std::make_unique<CountingEngine>(meta_->engine());
  CountingEngine& counting = *owned;
  auto client = Meta::Create(std::move(owned));
  ASSERT_TRUE(client->Load().has_value());
  size_t calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto n = client->RemoveTree(root_, kRootIno, "t", [&](uint64_t) { ++calls; });
  const double rmr_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  const uint64_t entries = kFiles + dirs.size();
  EXPECT_EQ(*n, entries);
  EXPECT_GE(counting.txns, static_cast<size_t>(kFiles) / 512);
  EXPECT_GT(calls, 2u);
  // Each file costs a handful of writes; 512 entries per transaction at most.
  EXPECT_LT(counting.max_writes, 512u * 8u);
  std::printf(
      "[ rmr ] %s: %llu entries: created one by one in %.2f s, RemoveTree %.2f s "
      "(%zu transactions, at most %zu writes each)\n",
      GetParam().c_str(), static_cast<unsigned long long>(entries), create_s, rmr_s, counting.txns,
      counting.max_writes);
  EXPECT_ERRNO(meta_->Lookup(root_, kRootIno, "t"), ENOENT);
  EXPECT_EQ(A(kRootIno).nlink, 2u);
  EXPECT_EQ(Counter("totalInodes"), 0u);
  ExpectClean();
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaRmrTest, testing::ValuesIn(EngineUrls()), EngineTestName);

// An etcd left at its default --max-txn-ops (128) refuses a transaction of 512 removals with
// E2BIG: RemoveTree shrinks its batches until they fit, and still removes everything.
TEST(MetaRmrEtcdLimit, ShrinksBatchesToTheServerLimit) {
  if (test::EtcdServer::Binary().empty()) GTEST_SKIP() << "etcd is not installed (etcd-server)";
  test::EtcdServer server;
  server.extra_flags = {"--max-txn-ops=128"};
  ASSERT_OK(server.Start());
  auto engine = kv::Engine::Open("etcd://" + server.endpoint() + "/rmr-limit");
  ASSERT_TRUE(engine.has_value()) << engine.error().ToString();
  auto meta = Meta::Create(std::move(*engine));
  meta::Format f;
  f.name = "limit";
  f.uuid = "00000000-0000-0000-0000-000000000009";
  f.storage = "mem";
  ASSERT_OK(meta->Format(f, false));
  const Context root = Context::Root();
  auto t = meta->Mkdir(root, kRootIno, "t", 0755);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  auto sub = meta->Mkdir(root, t->ino, "sub", 0755);
  ASSERT_TRUE(sub.has_value()) << sub.error().ToString();
  for (int i = 0; i < 150; ++i) {
    const Ino dir = i % 3 ? t->ino : sub->ino;
    ASSERT_TRUE(meta->Mknod(root, dir, "f" + std::to_string(i), FileType::kFile, 0644, 0)) << i;
  }
  // The limit is real: one transaction of 200 writes is refused (and changes nothing).
  Status whole = meta->engine()->Update([&](kv::Txn& txn) -> Status {
    for (int i = 0; i < 200; ++i) NX_TRY(txn.Put("probe" + std::to_string(i), "x"));
    return Status::OK();
  });
  ASSERT_EQ(whole.code(), E2BIG) << whole.ToString();
  auto n = meta->RemoveTree(root, kRootIno, "t");
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 152u);
  EXPECT_ERRNO(meta->Lookup(root, kRootIno, "t"), ENOENT);
  auto st = meta->GetStatFs(kRootIno);
  ASSERT_TRUE(st.has_value()) << st.error().ToString();
  EXPECT_EQ(st->used_inodes, 0u);
}

}  // namespace
}  // namespace nexus::meta
