// Rename over every engine: each combination of source and target types, the flags, link
// counts and parents, the subtree check, and concurrent directory renames that must never
// create a loop or orphan a directory.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/clock.h"
#include "meta_data_fixture.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace nexus::meta {
namespace {

class MetaRenameTest : public MetaVolumeTest {
 protected:
  Context root_ = Context::Root();

  Ino Dir(Ino parent, const std::string& name) {
    auto e = meta_->Mkdir(root_, parent, name, 0755);
    EXPECT_TRUE(e.has_value()) << "mkdir " << name << ": " << e.error().ToString();
    return e ? e->ino : 0;
  }
  Ino File(Ino parent, const std::string& name) {
    auto e = meta_->Mknod(root_, parent, name, FileType::kFile, 0644, 0);
    EXPECT_TRUE(e.has_value()) << "mknod " << name << ": " << e.error().ToString();
    return e ? e->ino : 0;
  }
  Attr A(Ino ino) {
    auto a = meta_->GetAttr(ino);
    EXPECT_TRUE(a.has_value()) << "getattr " << ino << ": " << a.error().ToString();
    return a.value_or(Attr{});
  }
  Ino At(Ino parent, const std::string& name) {
    auto e = meta_->Lookup(root_, parent, name);
    return e ? e->ino : 0;
  }
  Status Mv(Ino p, const std::string& n, Ino np, const std::string& nn, uint32_t flags = 0) {
    return meta_->Rename(root_, p, n, np, nn, flags);
  }

  // Every directory of `dirs` hangs off the root exactly once, and each one's Attr.parent and
  // nlink agree with the entries.
  void ExpectTree(const std::vector<Ino>& dirs) {
    std::map<Ino, int> seen;
    std::vector<Ino> queue = {kRootIno};
    while (!queue.empty()) {
      Ino dir = queue.back();
      queue.pop_back();
      std::vector<DirEntry> entries;
      ASSERT_OK(meta_->ReadDir(root_, dir, "", 0, true, &entries));
      uint32_t subdirs = 0;
      for (const DirEntry& e : entries) {
        ASSERT_EQ(e.type, FileType::kDir);
        EXPECT_EQ(e.attr.parent, dir) << "directory " << e.name;
        ++subdirs;
        if (++seen[e.ino] == 1) queue.push_back(e.ino);
      }
      EXPECT_EQ(A(dir).nlink, 2 + subdirs) << "directory " << dir;
    }
    EXPECT_EQ(seen.size(), dirs.size());
    for (Ino d : dirs) EXPECT_EQ(seen[d], 1) << "directory " << d;
  }
};

TEST_P(MetaRenameTest, FileToNewNameAndAcrossDirectories) {
  Ino d1 = Dir(kRootIno, "d1"), d2 = Dir(kRootIno, "d2");
  Ino f = File(d1, "f");
  const int64_t c0 = A(f).ctime;
  ASSERT_OK(Mv(d1, "f", d1, "g"));
  EXPECT_EQ(At(d1, "g"), f);
  EXPECT_EQ(At(d1, "f"), 0u);
  ASSERT_OK(Mv(d1, "g", d2, "h"));
  Attr a = A(f);
  EXPECT_EQ(a.parent, d2);
  EXPECT_GE(a.ctime, c0);
  EXPECT_EQ(At(d2, "h"), f);
  EXPECT_EQ(A(d1).nlink, 2u);
  EXPECT_EQ(A(d2).nlink, 2u);
  EXPECT_GE(A(d1).mtime, a.ctime);
  EXPECT_GE(A(d2).mtime, a.ctime);
  EXPECT_ERRNO(Mv(d1, "missing", d2, "x"), ENOENT);
  EXPECT_ERRNO(Mv(d1, "x", 424242, "x"), ENOENT);
  EXPECT_ERRNO(Mv(d2, "h", f, "x"), ENOTDIR);
  EXPECT_ERRNO(Mv(d2, "h", d2, "."), EINVAL);
  EXPECT_ERRNO(Mv(d2, "h", d2, std::string(256, 'n')), ENAMETOOLONG);
  EXPECT_ERRNO(Mv(d2, "h", d2, "y", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
}

TEST_P(MetaRenameTest, FileReplacesFileAndTheOldOneIsRemoved) {
  Ino a = File(kRootIno, "a"), b = File(kRootIno, "b");
  ASSERT_OK(meta_->Truncate(root_, b, 100));
  ASSERT_OK(Mv(kRootIno, "a", kRootIno, "b"));
  EXPECT_EQ(At(kRootIno, "b"), a);
  EXPECT_ERRNO(meta_->GetAttr(b), ENOENT);
  EXPECT_TRUE(RawGet(keys::DelFile(b, 100)).has_value());
  EXPECT_EQ(meta_->GetStatFs(kRootIno)->used_inodes, 1u);
  // A replaced file with another link only loses one.
  Ino d = Dir(kRootIno, "d");
  Ino c = File(kRootIno, "c");
  ASSERT_OK(meta_->Link(root_, c, d, "c2"));
  ASSERT_OK(Mv(kRootIno, "b", kRootIno, "c"));
  Attr ca = A(c);
  EXPECT_EQ(ca.nlink, 1u);
  EXPECT_EQ(ca.parent, d);
}

TEST_P(MetaRenameTest, TypeMismatchesAndNonEmptyTargets) {
  Ino d = Dir(kRootIno, "d");
  Ino full = Dir(kRootIno, "full");
  File(full, "x");
  File(kRootIno, "f");
  EXPECT_ERRNO(Mv(kRootIno, "f", kRootIno, "d"), EISDIR);
  EXPECT_ERRNO(Mv(kRootIno, "d", kRootIno, "f"), ENOTDIR);
  EXPECT_ERRNO(Mv(kRootIno, "d", kRootIno, "full"), ENOTEMPTY);
  EXPECT_EQ(At(kRootIno, "d"), d);
  EXPECT_EQ(At(kRootIno, "full"), full);
}

TEST_P(MetaRenameTest, DirectoryReplacesEmptyDirectoryAcrossParents) {
  Ino p1 = Dir(kRootIno, "p1"), p2 = Dir(kRootIno, "p2");
  Ino src = Dir(p1, "src");
  Dir(src, "child");
  Ino empty = Dir(p2, "empty");
  Dir(p2, "other");
  ASSERT_EQ(A(p1).nlink, 3u);
  ASSERT_EQ(A(p2).nlink, 4u);
  ASSERT_OK(Mv(p1, "src", p2, "empty"));
  EXPECT_ERRNO(meta_->GetAttr(empty), ENOENT);
  EXPECT_EQ(At(p2, "empty"), src);
  EXPECT_EQ(A(src).parent, p2);
  EXPECT_EQ(A(src).nlink, 3u);
  EXPECT_EQ(A(p1).nlink, 2u);
  EXPECT_EQ(A(p2).nlink, 4u);  // lost "empty", gained "src"
  EXPECT_EQ(meta_->Lookup(root_, src, "..")->ino, p2);
  // Within one directory.
  Dir(p2, "e2");
  ASSERT_OK(Mv(p2, "other", p2, "e2"));
  EXPECT_EQ(A(p2).nlink, 4u);
}

TEST_P(MetaRenameTest, NoReplace) {
  Ino a = File(kRootIno, "a");
  Ino b = File(kRootIno, "b");
  EXPECT_ERRNO(Mv(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE), EEXIST);
  EXPECT_EQ(At(kRootIno, "b"), b);
  ASSERT_OK(Mv(kRootIno, "a", kRootIno, "c", RENAME_NOREPLACE));
  EXPECT_EQ(At(kRootIno, "c"), a);
}

TEST_P(MetaRenameTest, ExchangeFileAndDirectoryAcrossParents) {
  Ino p1 = Dir(kRootIno, "p1"), p2 = Dir(kRootIno, "p2");
  Ino f = File(p1, "f");
  Ino d = Dir(p2, "d");
  Dir(d, "inner");
  ASSERT_OK(Mv(p1, "f", p2, "d", RENAME_EXCHANGE));
  EXPECT_EQ(At(p1, "f"), d);
  EXPECT_EQ(At(p2, "d"), f);
  EXPECT_EQ(A(d).parent, p1);
  EXPECT_EQ(A(f).parent, p2);
  EXPECT_EQ(A(p1).nlink, 3u);
  EXPECT_EQ(A(p2).nlink, 2u);
  EXPECT_EQ(At(d, "inner") != 0, true);
  EXPECT_ERRNO(Mv(p1, "f", p2, "missing", RENAME_EXCHANGE), ENOENT);
  // Exchanging a directory with its own descendant would detach both.
  Ino deep = Dir(d, "deep");
  EXPECT_ERRNO(Mv(p1, "f", deep, "x", RENAME_EXCHANGE), ENOENT);
  File(deep, "x");
  EXPECT_ERRNO(Mv(p1, "f", deep, "x", RENAME_EXCHANGE), EINVAL);
  EXPECT_ERRNO(Mv(deep, "x", p1, "f", RENAME_EXCHANGE), EINVAL);
  // Two files with hard links: per-parent counts follow.
  Ino g = File(p1, "g");
  ASSERT_OK(meta_->Link(root_, g, kRootIno, "g2"));
  ASSERT_OK(Mv(p1, "g", p2, "d", RENAME_EXCHANGE));
  EXPECT_EQ(At(p2, "d"), g);
  EXPECT_TRUE(RawGet(keys::Parent(g, p2)).has_value());
  EXPECT_FALSE(RawGet(keys::Parent(g, p1)).has_value());
  EXPECT_EQ(A(f).parent, p1);
}

TEST_P(MetaRenameTest, OntoItselfIsANoOp) {
  Ino f = File(kRootIno, "f");
  Ino d = Dir(kRootIno, "d");
  const Attr before = A(kRootIno);
  ASSERT_OK(Mv(kRootIno, "f", kRootIno, "f"));
  ASSERT_OK(Mv(kRootIno, "d", kRootIno, "d"));
  ASSERT_OK(meta_->Link(root_, f, d, "hard"));
  ASSERT_OK(Mv(kRootIno, "f", d, "hard"));  // two names of one inode: both stay
  EXPECT_EQ(At(kRootIno, "f"), f);
  EXPECT_EQ(At(d, "hard"), f);
  EXPECT_EQ(A(f).nlink, 2u);
  EXPECT_EQ(A(kRootIno).nlink, before.nlink);
  EXPECT_ERRNO(Mv(kRootIno, "f", kRootIno, "f", RENAME_NOREPLACE), EEXIST);
}

TEST_P(MetaRenameTest, IntoOwnSubtreeIsRefused) {
  Ino a = Dir(kRootIno, "a");
  Ino b = Dir(a, "b");
  Ino c = Dir(b, "c");
  EXPECT_ERRNO(Mv(kRootIno, "a", c, "a"), EINVAL);
  EXPECT_ERRNO(Mv(kRootIno, "a", a, "self"), EINVAL);
  EXPECT_ERRNO(Mv(a, "b", c, "b"), EINVAL);
  ASSERT_OK(Mv(b, "c", kRootIno, "c"));  // moving up is fine
  ASSERT_OK(Mv(kRootIno, "a", c, "a"));  // and now a is no longer above c
  EXPECT_EQ(A(a).parent, c);
  EXPECT_EQ(A(c).parent, kRootIno);
}

TEST_P(MetaRenameTest, PermissionsOfRename) {
  Ino src = Dir(kRootIno, "src"), dst = Dir(kRootIno, "dst");
  Ino sub = Dir(src, "sub");
  Context u;
  u.uid = 1000;
  u.gid = 1000;
  SetAttrRequest r;
  r.mask = kSetUid | kSetGid | kSetMode;
  r.uid = 1000;
  r.gid = 1000;
  r.mode = 0755;
  ASSERT_OK(meta_->SetAttr(root_, src, r));
  EXPECT_ERRNO(meta_->Rename(u, src, "sub", dst, "sub", 0), EACCES);  // dst not writable
  ASSERT_OK(meta_->SetAttr(root_, dst, r));
  // sub (root's, 0755) changes its ".." when it moves: needs write permission on it.
  EXPECT_ERRNO(meta_->Rename(u, src, "sub", dst, "sub", 0), EACCES);
  ASSERT_OK(meta_->SetAttr(root_, sub, r));
  ASSERT_OK(meta_->Rename(u, src, "sub", dst, "sub", 0));
}

// Four threads move ~50 directories under random others; many moves would create loops and
// must fail with EINVAL. Afterwards every directory hangs off the root exactly once and each
// Attr.parent and nlink agrees with the entries.
TEST_P(MetaRenameTest, ConcurrentRandomDirectoryRenamesKeepATree) {
  constexpr int kDirs = 50;
  constexpr int kThreads = 4;
  // Networked engines pay round trips per operation: fewer renames, still at least 20,000.
  const bool networked = GetParam().rfind("redis", 0) == 0 || GetParam().rfind("postgres", 0) == 0;
  // etcd commits each transaction through raft with an fsync (milliseconds): 2,000 renames.
  const bool etcd = GetParam().rfind("etcd", 0) == 0;
  const int total_ops = etcd ? 2000 : networked ? 20000 : 100000;
  std::vector<Ino> dirs;
  std::mt19937 rng(42);
  for (int i = 0; i < kDirs; ++i) {
    Ino parent = dirs.empty() || rng() % 4 == 0 ? kRootIno : dirs[rng() % dirs.size()];
    dirs.push_back(Dir(parent, "d" + std::to_string(i)));
  }
  std::atomic<int> ok{0}, loops{0}, stale{0}, busy{0}, bad{0};
  std::atomic<int> ops{0};
  std::string first_bad;
  std::mutex bad_mu;
  const int64_t deadline = MonoNanos() + 55'000'000'000LL;
  auto worker = [&](int seed) {
    std::mt19937 r(seed);
    while (ops.fetch_add(1) < total_ops && MonoNanos() < deadline) {
      const int i = r() % kDirs;
      const Ino target = r() % 8 == 0 ? kRootIno : dirs[r() % kDirs];
      auto a = meta_->GetAttr(dirs[i]);
      if (!a) {
        bad++;
        continue;
      }
      const std::string name = "d" + std::to_string(i);
      Status s = meta_->Rename(root_, a->parent, name, target, name, 0);
      const int code = s.code();
      if (code == 0) {
        ok++;
      } else if (code == EINVAL) {
        loops++;
      } else if (code == ENOENT) {
        stale++;  // the directory moved between GetAttr and Rename
      } else if (code == EBUSY) {
        busy++;
      } else {
        std::lock_guard<std::mutex> lock(bad_mu);
        if (bad++ == 0) first_bad = s.ToString();
      }
    }
  };
  const int64_t start = MonoNanos();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, 1000 + t);
  for (auto& th : threads) th.join();
  const double secs = (MonoNanos() - start) / 1e9;
  const int done = ok + loops + stale + busy + bad;
  std::printf("[ %s ] %d renames in %.1f s: %d ok, %d refused as loops, %d stale, %d busy\n",
              GetParam().c_str(), done, secs, ok.load(), loops.load(), stale.load(), busy.load());
  EXPECT_EQ(bad.load(), 0) << first_bad;
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(loops.load(), 0);
  EXPECT_LT(busy.load(), done / 100 + 1);
  EXPECT_GE(done, std::min(total_ops, 20000)) << "too few renames finished before the time bound";

  ExpectTree(dirs);
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaRenameTest, testing::ValuesIn(EngineUrls()), EngineTestName);

}  // namespace
}  // namespace nexus::meta
