// Data operations of Meta over every engine: slices, truncate, fallocate, compaction swaps,
// copies by reference, slice reference counts and the release of removed data.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "meta/slice_view.h"
#include "meta_data_fixture.h"

namespace nexus::meta {
namespace {

class MetaDataTest : public MetaVolumeTest {
 protected:
  // Commits a new slice of `len` bytes at `pos` of chunk `index`; returns its record.
  Slice Write(Ino ino, uint32_t index, uint32_t pos, uint32_t len) {
    auto id = meta_->NewSliceId();
    EXPECT_TRUE(id.has_value());
    Slice s{pos, id.value_or(0), len, 0, len};
    Status st = meta_->WriteSlice(ino, index, s, 0);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  std::vector<Slice> View(Ino ino, uint32_t index) {
    auto recs = meta_->ReadChunk(ino, index);
    EXPECT_TRUE(recs.has_value()) << recs.error().ToString();
    return BuildSliceView(recs.value_or(std::vector<Slice>{}));
  }
  // The K count of a slice: 0 when it has no K record.
  uint32_t Refs(const Slice& s) {
    auto v = RawGet(keys::SliceRef(s.id, s.size));
    return v && v->size() == 4 ? GetBE32(v->data()) : 0;
  }
  bool Pending(const Slice& s) { return RawGet(keys::DelSlice(s.id, s.size)).has_value(); }
  // Runs CleanupDeleted with a remove that records what it is given.
  std::multiset<uint64_t> Cleanup(size_t max = 10000) {
    std::multiset<uint64_t> removed;
    auto n = meta_->CleanupDeleted(
        [&](const SliceRef& r) {
          removed.insert(r.id);
          return Status::OK();
        },
        max);
    EXPECT_TRUE(n.has_value()) << n.error().ToString();
    EXPECT_EQ(n.value_or(0), removed.size());
    return removed;
  }
};

TEST_P(MetaDataTest, SliceIdsAreUniqueAndNeverZero) {
  MetaOptions opts;
  opts.slice_batch = 3;
  auto meta = OpenVolume("small-batches", 0, opts);
  ASSERT_NE(meta, nullptr);
  std::set<uint64_t> seen;
  for (int i = 0; i < 50; ++i) {
    auto id = meta->NewSliceId();
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    EXPECT_NE(*id, 0u);
    EXPECT_TRUE(seen.insert(*id).second) << "id " << *id << " reused";
  }
}

TEST_P(MetaDataTest, WriteSliceAppendsInOrderAndGrowsLength) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 1000);
  Slice b = Write(ino, 0, 500, 100);
  Slice c = Write(ino, 2, 10, 20);
  auto recs = meta_->ReadChunk(ino, 0);
  ASSERT_TRUE(recs.has_value());
  EXPECT_EQ(*recs, (std::vector<Slice>{a, b}));
  EXPECT_EQ(meta_->ReadChunk(ino, 2).value(), std::vector<Slice>{c});
  EXPECT_TRUE(meta_->ReadChunk(ino, 1).value().empty());
  EXPECT_EQ(Length(ino), 2 * kChunkSize + 30);
  // A later, shorter write does not shrink the file.
  Write(ino, 0, 0, 10);
  EXPECT_EQ(Length(ino), 2 * kChunkSize + 30);
  // Explicit mtime is kept.
  auto id = meta_->NewSliceId().value();
  ASSERT_OK(meta_->WriteSlice(ino, 1, Slice{0, id, 5, 0, 5}, 12345));
  EXPECT_EQ(meta_->GetAttr(ino).value().mtime, 12345);
}

TEST_P(MetaDataTest, WriteSliceRetryIsIdempotentAndBadRecordsFail) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 100);
  ASSERT_OK(meta_->WriteSlice(ino, 0, a, 0));  // a retried commit
  EXPECT_EQ(meta_->ReadChunk(ino, 0).value().size(), 1u);
  Slice other = a;
  other.pos = 200;
  EXPECT_ERRNO(meta_->WriteSlice(ino, 0, other, 0), EINVAL);
  uint64_t id = meta_->NewSliceId().value();
  const auto chunk = static_cast<uint32_t>(kChunkSize);
  EXPECT_ERRNO(meta_->WriteSlice(ino, 0, Slice{chunk - 10, id, 20, 0, 20}, 0), EINVAL);
  EXPECT_ERRNO(meta_->WriteSlice(ino, 0, Slice{0, id, 20, 10, 20}, 0), EINVAL);
  EXPECT_ERRNO(meta_->WriteSlice(ino, 0, Slice{0, 0, 0, 0, 20}, 0), EINVAL);
  EXPECT_ERRNO(meta_->WriteSlice(ino, 0, Slice{0, id, 20, 0, 0}, 0), EINVAL);
  EXPECT_ERRNO(meta_->WriteSlice(987654, 0, Slice{0, id, 20, 0, 20}, 0), ENOENT);
  auto dir = meta_->Mkdir(Context::Root(), kRootIno, "d", 0755);
  ASSERT_TRUE(dir.has_value());
  EXPECT_ERRNO(meta_->WriteSlice(dir->ino, 0, Slice{0, id, 20, 0, 20}, 0), EISDIR);
  auto fifo = meta_->Mknod(Context::Root(), kRootIno, "p", FileType::kFifo, 0644, 0);
  ASSERT_TRUE(fifo.has_value());
  EXPECT_ERRNO(meta_->WriteSlice(fifo->ino, 0, Slice{0, id, 20, 0, 20}, 0), EINVAL);
}

TEST_P(MetaDataTest, TruncateShrinkThenGrowReadsZeros) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 4096);
  Slice b = Write(ino, 1, 0, 8192);
  Slice c = Write(ino, 2, 0, 100);
  ASSERT_EQ(Length(ino), 2 * kChunkSize + 100);
  auto attr = meta_->Truncate(Context::Root(), ino, kChunkSize + 1000);
  ASSERT_TRUE(attr.has_value()) << attr.error().ToString();
  EXPECT_EQ(attr->length, kChunkSize + 1000);
  EXPECT_TRUE(meta_->ReadChunk(ino, 2).value().empty());
  EXPECT_TRUE(Pending(c));
  EXPECT_FALSE(Pending(b));
  // Grow again: what was past the cut reads as zeros.
  ASSERT_TRUE(meta_->Truncate(Context::Root(), ino, 3 * kChunkSize).has_value());
  EXPECT_EQ(Length(ino), 3 * kChunkSize);
  std::vector<Slice> want = {{0, b.id, b.size, 0, 1000}, {1000, 0, 0, 0, 7192}};
  EXPECT_EQ(View(ino, 1), want);
  EXPECT_EQ(View(ino, 0), std::vector<Slice>{a});
  EXPECT_TRUE(View(ino, 2).empty());
  // Cut exactly at a chunk boundary: the whole chunk goes.
  ASSERT_TRUE(meta_->Truncate(Context::Root(), ino, kChunkSize).has_value());
  EXPECT_TRUE(meta_->ReadChunk(ino, 1).value().empty());
  EXPECT_TRUE(Pending(b));
  EXPECT_FALSE(Pending(a));
  ASSERT_TRUE(meta_->Truncate(Context::Root(), ino, 0).has_value());
  EXPECT_TRUE(Pending(a));
  EXPECT_EQ(Cleanup(), (std::multiset<uint64_t>{a.id, b.id, c.id}));
  EXPECT_TRUE(RawKeys("L").empty());
}

TEST_P(MetaDataTest, TruncateManyChunksAcrossTransactions) {
  Ino ino = NewFile("f");
  const uint32_t n = 600;  // more than one transaction's worth of chunks
  std::set<uint64_t> tail;
  Write(ino, 0, 0, 100);
  for (uint32_t i = 1; i < n; ++i) tail.insert(Write(ino, i, 0, 10).id);
  ASSERT_TRUE(meta_->Truncate(Context::Root(), ino, 50).has_value());
  EXPECT_EQ(Length(ino), 50u);
  for (uint32_t i : {1u, 255u, 256u, 257u, 599u}) {
    EXPECT_TRUE(meta_->ReadChunk(ino, i).value().empty()) << "chunk " << i;
  }
  auto removed = Cleanup();
  EXPECT_EQ(std::set<uint64_t>(removed.begin(), removed.end()), tail);
  EXPECT_EQ(removed.size(), tail.size());
}

TEST_P(MetaDataTest, TruncateChecks) {
  Ino ino = NewFile("f");
  Context user{1000, 1000, {}};
  EXPECT_ERRNO(meta_->Truncate(user, ino, 10), EACCES);
  EXPECT_ERRNO(meta_->Truncate(Context::Root(), ino, kChunkSize << 33), EFBIG);
  auto dir = meta_->Mkdir(Context::Root(), kRootIno, "d", 0755);
  ASSERT_TRUE(dir.has_value());
  EXPECT_ERRNO(meta_->Truncate(Context::Root(), dir->ino, 0), EISDIR);
  auto fifo = meta_->Mknod(Context::Root(), kRootIno, "p", FileType::kFifo, 0666, 0);
  ASSERT_TRUE(fifo.has_value());
  EXPECT_ERRNO(meta_->Truncate(Context::Root(), fifo->ino, 0), EINVAL);
  EXPECT_ERRNO(meta_->Truncate(Context::Root(), 987654, 0), ENOENT);
  auto before = meta_->GetAttr(ino).value();
  auto after = meta_->Truncate(Context::Root(), ino, 12345);
  ASSERT_TRUE(after.has_value());
  EXPECT_GE(after->mtime, before.mtime);
  EXPECT_EQ(meta_->GetAttr(ino).value().length, 12345u);
}

TEST_P(MetaDataTest, PunchHoleAndZeroRange) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 1 << 20);
  Slice b = Write(ino, 1, 0, 1 << 20);
  const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, punch, 100, 100));
  std::vector<Slice> want = {
      {0, a.id, a.size, 0, 100}, {100, 0, 0, 0, 100}, {200, a.id, a.size, 200, (1 << 20) - 200}};
  EXPECT_EQ(View(ino, 0), want);
  EXPECT_EQ(Length(ino), kChunkSize + (1 << 20));
  // Punching all of chunk 1 (and past the end) deletes it and releases its slice.
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, punch, kChunkSize, 2 * kChunkSize));
  EXPECT_TRUE(meta_->ReadChunk(ino, 1).value().empty());
  EXPECT_TRUE(Pending(b));
  EXPECT_EQ(Length(ino), kChunkSize + (1 << 20));
  // Zero range past the end extends the file; with KEEP_SIZE it does not.
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_ZERO_RANGE, 1000, 3 * kChunkSize));
  EXPECT_EQ(Length(ino), 3 * kChunkSize + 1000);
  want = {{0, a.id, a.size, 0, 100},
          {100, 0, 0, 0, 100},
          {200, a.id, a.size, 200, 800},
          {1000, 0, 0, 0, static_cast<uint32_t>(kChunkSize) - 1000}};
  EXPECT_EQ(View(ino, 0), want);
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0,
                             5 * kChunkSize));
  EXPECT_EQ(Length(ino), 3 * kChunkSize + 1000);
  EXPECT_TRUE(meta_->ReadChunk(ino, 0).value().empty());
  EXPECT_TRUE(Pending(a));
}

TEST_P(MetaDataTest, FallocateModesAndErrors) {
  Ino ino = NewFile("f");
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, 0, 0, 5000));
  EXPECT_EQ(Length(ino), 5000u);
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, 0, 0, 100));
  EXPECT_EQ(Length(ino), 5000u);
  ASSERT_OK(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_KEEP_SIZE, 0, 1 << 30));
  EXPECT_EQ(Length(ino), 5000u);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_PUNCH_HOLE, 0, 10), EOPNOTSUPP);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_COLLAPSE_RANGE, 0, 10), EOPNOTSUPP);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, FALLOC_FL_INSERT_RANGE, 0, 10), EOPNOTSUPP);
  EXPECT_ERRNO(
      meta_->Fallocate(Context::Root(), ino,
                       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 10),
      EINVAL);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, 0, 0, 0), EINVAL);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, 0, UINT64_MAX - 5, 10), EINVAL);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, 0, 0, UINT64_MAX), EINVAL);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, 0, kChunkSize << 32, 1), EFBIG);
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), ino, 0, 1, kChunkSize << 32), EFBIG);
  EXPECT_ERRNO(meta_->Fallocate(Context{1000, 1000, {}}, ino, 0, 0, 10), EACCES);
  auto dir = meta_->Mkdir(Context::Root(), kRootIno, "d", 0755);
  ASSERT_TRUE(dir.has_value());
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), dir->ino, 0, 0, 10), EISDIR);
  auto fifo = meta_->Mknod(Context::Root(), kRootIno, "p", FileType::kFifo, 0666, 0);
  ASSERT_TRUE(fifo.has_value());
  EXPECT_ERRNO(meta_->Fallocate(Context::Root(), fifo->ino, 0, 0, 10), ENODEV);
}

TEST_P(MetaDataTest, ReplaceChunkSwapsOrFailsWithEagain) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 100);
  Slice b = Write(ino, 0, 50, 10);
  auto expected = meta_->ReadChunk(ino, 0).value();
  uint64_t cid = meta_->NewSliceId().value();
  std::vector<Slice> merged = {{0, cid, 100, 0, 100}};
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, expected, merged));
  EXPECT_EQ(meta_->ReadChunk(ino, 0).value(), merged);
  EXPECT_TRUE(Pending(a));
  EXPECT_TRUE(Pending(b));
  EXPECT_EQ(Refs(merged[0]), 0u);  // a fresh slice has its implicit single reference
  // The chunk changes under a compaction: EAGAIN, nothing touched.
  Slice d = Write(ino, 0, 10, 10);
  std::vector<Slice> stale = {{0, meta_->NewSliceId().value(), 100, 0, 100}};
  EXPECT_ERRNO(meta_->ReplaceChunk(ino, 0, merged, stale), EAGAIN);
  EXPECT_EQ(meta_->ReadChunk(ino, 0).value(), (std::vector<Slice>{merged[0], d}));
  EXPECT_FALSE(Pending(merged[0]));
  EXPECT_FALSE(Pending(d));
  EXPECT_EQ(Cleanup(), (std::multiset<uint64_t>{a.id, b.id}));
}

TEST_P(MetaDataTest, ReplaceChunkCountsRepeatedSlicesPerRecord) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 100);
  Slice b = Write(ino, 0, 50, 10);
  // The resolved view names `a` twice: two records, so two references.
  auto view = View(ino, 0);
  ASSERT_EQ(view.size(), 3u);
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, {a, b}, view));
  EXPECT_EQ(Refs(a), 2u);
  EXPECT_EQ(Refs(b), 0u);
  EXPECT_FALSE(Pending(a));
  EXPECT_FALSE(Pending(b));
  // Dropping one of the two records leaves one reference (and no K record).
  std::vector<Slice> partial = {view[0], view[1]};
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, view, partial));
  EXPECT_EQ(Refs(a), 0u);
  EXPECT_FALSE(Pending(a));
  Slice fresh{0, meta_->NewSliceId().value(), 60, 0, 60};
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, partial, {fresh}));
  EXPECT_TRUE(Pending(a));
  EXPECT_TRUE(Pending(b));
  EXPECT_EQ(Cleanup(), (std::multiset<uint64_t>{a.id, b.id}));
  // A replacement that repeats a fresh slice counts its extra records.
  Slice f1 = fresh, f2 = fresh;
  f1.len = 30;
  f2.pos = f2.off = 30;
  f2.len = 30;
  Slice g{0, meta_->NewSliceId().value(), 60, 0, 60};
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, {fresh}, {f1, f2}));
  EXPECT_EQ(Refs(fresh), 2u);
  ASSERT_OK(meta_->ReplaceChunk(ino, 0, {f1, f2}, {g}));
  EXPECT_TRUE(Pending(fresh));
  EXPECT_EQ(Cleanup(), std::multiset<uint64_t>{fresh.id});
}

TEST_P(MetaDataTest, CopyRangeSharesSlicesAndSplitsAtChunkBoundaries) {
  Ino src = NewFile("src"), dst = NewFile("dst");
  Slice a = Write(src, 0, 0, 1000);
  Slice old = Write(dst, 0, 0, 100);
  Slice far = Write(dst, 1, 0, 2000);
  // Source bytes [0, 1500): 1000 of `a`, then 500 that read as zeros (src is 1000 long, so
  // extend it first).
  ASSERT_TRUE(meta_->Truncate(Context::Root(), src, 1500).has_value());
  const uint64_t at = kChunkSize - 300;
  auto n = meta_->CopyRange(Context::Root(), src, 0, dst, at, 10000);
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 1500u);  // clipped to the source's length
  EXPECT_EQ(Length(dst), kChunkSize + 2000);
  // `a` is now referenced by three records: src's, and two pieces in dst.
  EXPECT_EQ(Refs(a), 3u);
  auto v0 = View(dst, 0);
  ASSERT_FALSE(v0.empty());
  EXPECT_EQ(v0.front(), old);
  EXPECT_EQ(v0.back(), (Slice{static_cast<uint32_t>(at), a.id, a.size, 0, 300}));
  std::vector<Slice> want1 = {
      {0, a.id, a.size, 300, 700}, {700, 0, 0, 0, 500}, {1200, far.id, far.size, 1200, 800}};
  EXPECT_EQ(View(dst, 1), want1);
  // Copying beyond the source's end copies nothing.
  EXPECT_EQ(meta_->CopyRange(Context::Root(), src, 1500, dst, 0, 10).value(), 0u);
}

TEST_P(MetaDataTest, CopyRangeChecks) {
  Ino f = NewFile("f");
  Write(f, 0, 0, 1000);
  EXPECT_ERRNO(meta_->CopyRange(Context::Root(), f, 0, f, 500, 1000), EINVAL);
  EXPECT_ERRNO(meta_->CopyRange(Context::Root(), f, 400, f, 0, 1000), EINVAL);
  auto n = meta_->CopyRange(Context::Root(), f, 0, f, 1000, 1000);  // same file, disjoint
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 1000u);
  EXPECT_EQ(Length(f), 2000u);
  auto dir = meta_->Mkdir(Context::Root(), kRootIno, "d", 0755);
  ASSERT_TRUE(dir.has_value());
  EXPECT_ERRNO(meta_->CopyRange(Context::Root(), f, 0, dir->ino, 0, 10), EISDIR);
  EXPECT_ERRNO(meta_->CopyRange(Context::Root(), dir->ino, 0, f, 0, 10), EISDIR);
  Ino g = NewFile("g");
  Context user{1000, 1000, {}};
  EXPECT_ERRNO(meta_->CopyRange(user, f, 0, g, 0, 10), EACCES);
  EXPECT_ERRNO(meta_->CopyRange(Context::Root(), f, 0, g, UINT64_MAX - 5, 10), EFBIG);
}

// A copy of more than 1 GiB is short, as copy_file_range may be; the caller copies the rest.
TEST_P(MetaDataTest, LargeCopiesAreShort) {
  Ino src = NewFile("src"), dst = NewFile("dst");
  for (uint32_t i = 0; i < 20; ++i) Write(src, i, 0, 10);
  ASSERT_TRUE(meta_->Truncate(Context::Root(), src, 20 * kChunkSize).has_value());
  auto n = meta_->CopyRange(Context::Root(), src, 0, dst, 0, 20 * kChunkSize);
  ASSERT_TRUE(n.has_value()) << n.error().ToString();
  EXPECT_EQ(*n, 16 * kChunkSize);
  EXPECT_EQ(Length(dst), 16 * kChunkSize);
  auto rest = meta_->CopyRange(Context::Root(), src, *n, dst, *n, 20 * kChunkSize - *n);
  ASSERT_TRUE(rest.has_value()) << rest.error().ToString();
  EXPECT_EQ(*rest, 4 * kChunkSize);
  EXPECT_EQ(Length(dst), 20 * kChunkSize);
  // The copied records: the data piece, then the rest of the chunk as a hole.
  auto src19 = meta_->ReadChunk(src, 19).value();
  ASSERT_EQ(src19.size(), 1u);
  std::vector<Slice> want = {src19[0], Slice{10, 0, 0, 0, static_cast<uint32_t>(kChunkSize - 10)}};
  EXPECT_EQ(meta_->ReadChunk(dst, 19).value(), want);
}

TEST_P(MetaDataTest, CopiedSlicesAreReleasedOnceWhenBothFilesDrop) {
  Ino src = NewFile("src"), dst = NewFile("dst");
  Slice a = Write(src, 0, 0, 1000);
  Slice b = Write(src, 0, 200, 100);
  ASSERT_EQ(meta_->CopyRange(Context::Root(), src, 0, dst, 0, 1000).value(), 1000u);
  EXPECT_EQ(Refs(a), 3u);  // src record + two pieces of `a` around `b` in dst
  EXPECT_EQ(Refs(b), 2u);
  ASSERT_TRUE(meta_->Truncate(Context::Root(), src, 0).has_value());
  EXPECT_FALSE(Pending(a));
  EXPECT_FALSE(Pending(b));
  EXPECT_EQ(Refs(a), 2u);
  EXPECT_EQ(Refs(b), 0u);
  EXPECT_TRUE(Cleanup().empty());
  ASSERT_TRUE(meta_->Truncate(Context::Root(), dst, 0).has_value());
  EXPECT_EQ(Cleanup(), (std::multiset<uint64_t>{a.id, b.id}));
  EXPECT_TRUE(RawKeys("K").empty());
}

TEST_P(MetaDataTest, UnlinkedFilesReleaseSharedSlicesOnce) {
  Ino src = NewFile("src"), dst = NewFile("dst");
  Slice a = Write(src, 0, 0, 1000);
  Slice c = Write(src, 3, 0, 10);
  ASSERT_EQ(meta_->CopyRange(Context::Root(), src, 0, dst, 0, 1000).value(), 1000u);
  ASSERT_OK(meta_->Unlink(Context::Root(), kRootIno, "src"));
  EXPECT_EQ(Cleanup(), std::multiset<uint64_t>{c.id});
  EXPECT_TRUE(RawKeys("D").empty());
  EXPECT_TRUE(meta_->ReadChunk(src, 0).value().empty());
  EXPECT_FALSE(Pending(a));
  ASSERT_OK(meta_->Unlink(Context::Root(), kRootIno, "dst"));
  EXPECT_EQ(Cleanup(), std::multiset<uint64_t>{a.id});
  EXPECT_TRUE(RawKeys("K").empty());
  EXPECT_TRUE(RawKeys("L").empty());
}

TEST_P(MetaDataTest, CleanupKeepsSlicesWhoseRemovalFailed) {
  Ino ino = NewFile("f");
  std::set<uint64_t> ids;
  for (uint32_t i = 0; i < 5; ++i) ids.insert(Write(ino, i, 0, 10).id);
  ASSERT_TRUE(meta_->Truncate(Context::Root(), ino, 0).has_value());
  const uint64_t bad = *ids.begin();
  std::vector<uint64_t> tried;
  auto r = meta_->CleanupDeleted(
      [&](const SliceRef& s) {
        tried.push_back(s.id);
        return s.id == bad ? Status::IOError("object store down") : Status::OK();
      },
      100);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), EIO);
  EXPECT_NE(r.error().message().find("4 slices removed, 1 failed"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(tried.size(), 5u);
  // The failed one resumes on the next run; `max` bounds a run.
  EXPECT_EQ(RawKeys("L").size(), 1u);
  EXPECT_EQ(Cleanup(1), std::multiset<uint64_t>{bad});
  EXPECT_TRUE(Cleanup().empty());
}

TEST_P(MetaDataTest, CapacityIsEnforcedInTheWriteTransaction) {
  auto meta = OpenVolume("capacity", 1 << 20);
  ASSERT_NE(meta, nullptr);
  Ino ino = NewFile("f", meta.get());
  auto write = [&](uint32_t index, uint32_t pos, uint32_t len) {
    return meta->WriteSlice(ino, index, Slice{pos, meta->NewSliceId().value(), len, 0, len}, 0);
  };
  ASSERT_OK(write(0, 0, 512 << 10));
  ASSERT_OK(write(0, 0, 512 << 10));  // an overwrite does not grow the file
  EXPECT_ERRNO(write(0, 600 << 10, 512 << 10), ENOSPC);
  EXPECT_EQ(meta->ReadChunk(ino, 0).value().size(), 2u);
  EXPECT_ERRNO(meta->Truncate(Context::Root(), ino, 2 << 20), ENOSPC);
  EXPECT_ERRNO(meta->Fallocate(Context::Root(), ino, 0, 0, 2 << 20), ENOSPC);
  ASSERT_TRUE(meta->Truncate(Context::Root(), ino, 100).has_value());
  auto used = RawGet(keys::Counter("usedSpace"), meta.get());
  const uint64_t before = used ? keys::DecodeU64(*used) : 0;
  ASSERT_OK(write(0, 600 << 10, 256 << 10));
  used = RawGet(keys::Counter("usedSpace"), meta.get());
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(keys::DecodeU64(*used) - before, (856u << 10) - 100);
}

TEST_P(MetaDataTest, OpenUnlinkedFileKeepsItsDataUntilLastClose) {
  Ino ino = NewFile("f");
  Slice a = Write(ino, 0, 0, 100);
  ASSERT_TRUE(meta_->NewSession(SessionInfo{}).has_value());
  ASSERT_TRUE(meta_->Open(Context::Root(), ino, O_RDWR).has_value());
  ASSERT_OK(meta_->Unlink(Context::Root(), kRootIno, "f"));
  EXPECT_TRUE(Cleanup().empty());
  EXPECT_EQ(meta_->ReadChunk(ino, 0).value(), std::vector<Slice>{a});
  Slice b = Write(ino, 1, 0, 10);  // still writable through the open handle
  ASSERT_OK(meta_->Close(ino));
  EXPECT_EQ(Cleanup(), (std::multiset<uint64_t>{a.id, b.id}));
  EXPECT_TRUE(RawKeys("D").empty());
}

// Writers on several threads race for the last bytes of a small volume: the capacity holds
// exactly, and usedSpace equals the sum of the file lengths.
TEST_P(MetaDataTest, ConcurrentWritersNeverExceedTheCapacity) {
  const uint64_t capacity = 1 << 20;
  auto meta = OpenVolume("race", capacity);
  ASSERT_NE(meta, nullptr);
  std::vector<Ino> files;
  for (int i = 0; i < 4; ++i) files.push_back(NewFile("f" + std::to_string(i), meta.get()));
  std::atomic<int> nospc{0};
  std::vector<std::thread> threads;
  for (Ino ino : files) {
    threads.emplace_back([&, ino] {
      for (uint32_t i = 0; i < 40; ++i) {
        Slice s{i * 16384, meta->NewSliceId().value(), 16384, 0, 16384};
        Status st = meta->WriteSlice(ino, 0, s, 0);
        if (st.code() == ENOSPC) {
          nospc.fetch_add(1);
        } else {
          EXPECT_TRUE(st.ok()) << st.ToString();
        }
        if (!st.ok()) break;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(nospc.load(), 0);
  uint64_t total = 0;
  for (Ino ino : files) total += meta->GetAttr(ino).value().length;
  auto used = RawGet(keys::Counter("usedSpace"), meta.get());
  ASSERT_TRUE(used.has_value());
  EXPECT_EQ(keys::DecodeU64(*used), total);
  EXPECT_LE(total, capacity);
  EXPECT_GT(total, capacity - 16384 * 4);
}

// Counts the records of every slice in every chunk of the volume and checks the K and L records
// against them: K exists exactly for slices with 2+ records and holds that count; an L record
// names a slice no record references.
void CheckReferences(Meta* meta, const std::string& when) {
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> count;
  std::map<std::pair<uint64_t, uint32_t>, uint32_t> k;
  std::set<std::pair<uint64_t, uint32_t>> l;
  Status s = meta->engine()->View([&](kv::Txn& txn) -> Status {
    count.clear();
    k.clear();
    l.clear();
    NX_TRY(txn.ScanPrefix("A", 0, [&](std::string_view key, std::string_view v) {
      if (key.size() != 14 || key[9] != 'C') return true;
      std::vector<Slice> recs;
      EXPECT_TRUE(keys::DecodeSlices(v, &recs).ok());
      for (const Slice& r : recs) {
        if (r.id != 0) ++count[{r.id, r.size}];
      }
      return true;
    }));
    NX_TRY(txn.ScanPrefix("K", 0, [&](std::string_view key, std::string_view v) {
      k[{GetBE64(key.data() + 1), GetBE32(key.data() + 9)}] = GetBE32(v.data());
      return true;
    }));
    return txn.ScanPrefix("L", 0, [&](std::string_view key, std::string_view) {
      l.insert({GetBE64(key.data() + 1), GetBE32(key.data() + 9)});
      return true;
    });
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const auto& [slice, n] : count) {
    if (n >= 2) {
      EXPECT_EQ(k[slice], n) << when << ": slice " << slice.first;
    } else {
      EXPECT_EQ(k.count(slice), 0u) << when << ": slice " << slice.first << " has 1 record";
    }
    EXPECT_EQ(l.count(slice), 0u) << when << ": referenced slice " << slice.first << " in L";
  }
  for (const auto& [slice, n] : k) {
    EXPECT_GE(count[slice], 2u) << when << ": K of slice " << slice.first << " says " << n;
  }
}

// What each byte of a file is: (slice id, offset in the slice); absent bytes read as zeros.
struct FileModel {
  uint64_t length = 0;
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> bytes;

  void Erase(uint64_t from, uint64_t to) {
    bytes.erase(bytes.lower_bound(from), bytes.lower_bound(to));
  }
};

// The file's slice views must show exactly the model's bytes, and nothing past its length.
void CheckContent(Meta* meta, Ino ino, const FileModel& m, const std::string& when) {
  ASSERT_EQ(meta->GetAttr(ino).value().length, m.length) << when;
  size_t seen = 0;
  for (uint32_t index = 0; index < 4; ++index) {
    const uint64_t base = index * kChunkSize;
    for (const Slice& p : BuildSliceView(meta->ReadChunk(ino, index).value())) {
      if (p.id == 0) continue;
      for (uint32_t i = 0; i < p.len; ++i) {
        const uint64_t at = base + p.pos + i;
        auto it = m.bytes.find(at);
        ASSERT_TRUE(it != m.bytes.end() && it->second == std::make_pair(p.id, p.off + i))
            << when << ": inode " << ino << " byte " << at << " reads slice " << p.id << "+"
            << p.off + i;
        ++seen;
      }
    }
  }
  ASSERT_EQ(seen, m.bytes.size()) << when << ": inode " << ino << " lost data bytes";
}

// Random writes, copies, truncates, fallocates and compactions (keeping repeated pieces, or
// into a fresh slice) over three files, mirrored in a byte model of each file.
class MetaDataRandomTest : public MetaDataTest {
 protected:
  uint64_t Pick(uint64_t n) { return n ? rng_() % n : 0; }
  // Near the start of one of the first three chunks, or just before its end.
  uint64_t Offset() {
    const uint64_t chunk = Pick(3);
    return Pick(2) ? chunk * kChunkSize + Pick(6000) : (chunk + 1) * kChunkSize - 1 - Pick(6000);
  }

  void RandomWrite(Ino f) {
    const uint64_t at = Offset();
    const auto len =
        static_cast<uint32_t>(std::min<uint64_t>(1 + Pick(3000), kChunkSize - at % kChunkSize));
    Slice s = Write(f, static_cast<uint32_t>(at / kChunkSize),
                    static_cast<uint32_t>(at % kChunkSize), len);
    created_.insert(s.id);
    FileModel& m = model_[f];
    for (uint32_t i = 0; i < len; ++i) m.bytes[at + i] = {s.id, i};
    m.length = std::max<uint64_t>(m.length, at + len);
  }

  void RandomCopy(Ino f, Ino g) {
    const uint64_t in = Offset(), out = Offset(), len = 1 + Pick(9000);
    FileModel& mf = model_[f];
    const uint64_t n = in >= mf.length ? 0 : std::min(len, mf.length - in);
    auto r = meta_->CopyRange(Context::Root(), f, in, g, out, len);
    if (f == g && n > 0 && out < in + n && in < out + n) {
      EXPECT_ERRNO(r, EINVAL);
      return;
    }
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(*r, n);
    if (n == 0) return;
    ++copies_;
    std::vector<std::optional<std::pair<uint64_t, uint32_t>>> src(n);
    for (uint64_t i = 0; i < n; ++i) {
      auto it = mf.bytes.find(in + i);
      if (it != mf.bytes.end()) src[i] = it->second;
    }
    FileModel& mg = model_[g];
    mg.Erase(out, out + n);
    for (uint64_t i = 0; i < n; ++i) {
      if (src[i]) mg.bytes[out + i] = *src[i];
    }
    mg.length = std::max(mg.length, out + n);
  }

  void RandomTruncate(Ino f) {
    const uint64_t len = Pick(4) ? Offset() : 0;
    ASSERT_TRUE(meta_->Truncate(Context::Root(), f, len).has_value());
    model_[f].Erase(len, UINT64_MAX);
    model_[f].length = len;
  }

  void RandomFallocate(Ino f) {
    const uint64_t at = Offset(), len = 1 + Pick(4000);
    const int modes[] = {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE,
                         FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0};
    const int mode = modes[Pick(4)];
    ASSERT_OK(meta_->Fallocate(Context::Root(), f, mode, at, len));
    FileModel& m = model_[f];
    if (mode != 0) m.Erase(at, at + len);
    if (!(mode & FALLOC_FL_KEEP_SIZE)) m.length = std::max(m.length, at + len);
  }

  void RandomCompact(Ino f) {
    const auto index = static_cast<uint32_t>(Pick(3));
    const uint64_t base = index * kChunkSize;
    FileModel& m = model_[f];
    auto recs = meta_->ReadChunk(f, index).value();
    if (recs.empty() || m.length <= base) return;
    std::vector<Slice> repl;
    auto view = BuildSliceView(recs);
    const uint64_t view_end = view.back().pos + view.back().len;
    // Keep the visible pieces (one slice may stay in several records), or rewrite into one
    // fresh slice as compaction does (only where the data is short: the model is per byte).
    if (Pick(2) || view_end > 20000) {
      for (const Slice& p : view) {
        if (p.id != 0) repl.push_back(p);
      }
    } else {
      const auto end = static_cast<uint32_t>(std::min(view_end, m.length - base));
      Slice fresh{0, meta_->NewSliceId().value(), end, 0, end};
      created_.insert(fresh.id);
      repl.push_back(fresh);
      for (uint32_t i = 0; i < end; ++i) m.bytes[base + i] = {fresh.id, i};
    }
    ASSERT_OK(meta_->ReplaceChunk(f, index, recs, repl));
  }

  void CheckAndClean(const std::vector<Ino>& files, const std::string& when) {
    for (Ino ino : files) {
      CheckContent(meta_.get(), ino, model_[ino], when);
      checked_bytes_ += model_[ino].bytes.size();
    }
    CheckReferences(meta_.get(), when);
    auto r = Cleanup();
    removed_.insert(r.begin(), r.end());
  }

  std::mt19937_64 rng_{GetParam().size()};
  std::map<Ino, FileModel> model_;
  std::set<uint64_t> created_;
  std::multiset<uint64_t> removed_;
  size_t copies_ = 0, checked_bytes_ = 0;
};

// The content matches the model, every reference count stays exact, and removing the files
// hands every slice to `remove` exactly once.
TEST_P(MetaDataRandomTest, ContentAndReferenceCountsStayExact) {
  std::vector<Ino> files = {NewFile("a"), NewFile("b"), NewFile("c")};
  for (int op = 0; op < 300 && !HasFatalFailure(); ++op) {
    const Ino f = files[Pick(files.size())], g = files[Pick(files.size())];
    switch (Pick(6)) {
      case 0:
        RandomWrite(f);
        break;
      case 1:
        RandomCopy(f, g);
        break;
      case 2:
        RandomTruncate(f);
        break;
      case 3:
        RandomFallocate(f);
        break;
      default:
        RandomCompact(f);
    }
    if (op % 25 == 24) CheckAndClean(files, "after op " + std::to_string(op));
  }
  ASSERT_FALSE(HasFatalFailure());
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_OK(meta_->Unlink(Context::Root(), kRootIno, name));
  }
  EXPECT_GT(copies_, 10u);  // the mix really exercised copies and data
  EXPECT_GT(checked_bytes_, 10000u);
  auto r = Cleanup();
  removed_.insert(r.begin(), r.end());
  EXPECT_EQ(removed_, std::multiset<uint64_t>(created_.begin(), created_.end()));
  EXPECT_TRUE(RawKeys("K").empty());
  EXPECT_TRUE(RawKeys("L").empty());
  EXPECT_TRUE(RawKeys("D").empty());
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaDataTest, testing::ValuesIn(EngineUrls()), EngineTestName);
INSTANTIATE_TEST_SUITE_P(Engines, MetaDataRandomTest, testing::ValuesIn(EngineUrls()),
                         EngineTestName);

}  // namespace
}  // namespace nexus::meta
