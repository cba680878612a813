// Vfs over the real Meta (mem:// engine) and ChunkStore (mem:// objects), without FUSE:
// streaming readdir with small batches, internal files, close-to-open between two clients,
// O_APPEND, SEEK_DATA/SEEK_HOLE, truncate of pending data, and lock waits.
#include "vfs/vfs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "../kv/borrowed_engine.h"
#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::vfs {
namespace {

#define ASSERT_OK(expr)                                       \
  do {                                                        \
    ::nexus::Status _s = ::nexus::internal::ToStatus((expr)); \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString();   \
  } while (0)

using kv::BorrowedEngine;

struct Client {
  std::unique_ptr<meta::Meta> meta;
  std::unique_ptr<chunk::ChunkStore> chunks;
  std::unique_ptr<Vfs> vfs;
};

class VfsTest : public testing::Test {
 protected:
  void SetUp() override {
    auto engine = kv::Engine::Open("mem://");
    ASSERT_TRUE(engine) << engine.error().ToString();
    engine_ = engine->get();
    auto store = object::ObjectStore::Open("mem://");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
    auto m = meta::Meta::Create(std::move(*engine));
    meta::Format f;
    f.name = "vfstest";
    f.uuid = "00000000-0000-0000-0000-000000000001";
    f.storage = "mem";
    f.block_size = 64 << 10;
    ASSERT_OK(m->Format(f, false));
    ASSERT_OK(m->Load());
    a_ = MakeClient(std::move(m));
  }

  Client MakeClient(std::unique_ptr<meta::Meta> m, size_t batch = 7) {
    Client c;
    c.meta = std::move(m);
    chunk::ChunkOptions co;
    co.block_size = 64 << 10;
    co.prefix = "vfstest/";
    co.background = false;
    auto chunks = chunk::ChunkStore::Open(c.meta.get(), store_.get(), co);
    EXPECT_TRUE(chunks) << chunks.error().ToString();
    if (chunks) c.chunks = std::move(*chunks);
    VfsOptions vo;
    vo.readdir_batch = batch;
    vo.mount_options_json = R"({"mountpoint":"/test"})";
    c.vfs = std::make_unique<Vfs>(c.meta.get(), c.chunks.get(), vo);
    return c;
  }

  Client SecondClient() {
    auto m = meta::Meta::Create(std::make_unique<BorrowedEngine>(engine_));
    EXPECT_TRUE(m->Load());
    return MakeClient(std::move(m));
  }

  // Creates, writes and releases `name` in the root; returns its inode.
  Ino WriteNew(Vfs& v, const std::string& name, const std::string& data) {
    auto c = v.Create(ctx_, meta::kRootIno, name, 0644, O_RDWR);
    EXPECT_TRUE(c) << c.error().ToString();
    if (!c) return 0;
    EXPECT_TRUE(v.Write(ctx_, c->entry.ino, c->open.fh, 0, data.data(), data.size()));
    EXPECT_TRUE(v.Release(c->entry.ino, c->open.fh, std::nullopt).ok());
    return c->entry.ino;
  }

  std::string ReadAll(Vfs& v, Ino ino) {
    auto o = v.Open(ctx_, ino, O_RDONLY);
    if (!o) return "<open: " + o.error().ToString() + ">";
    std::string out(o->attr.length + 100, '\0');
    auto n = v.Read(ctx_, ino, o->fh, 0, out.data(), out.size());
    (void)v.Release(ino, o->fh, std::nullopt);
    if (!n) return "<read: " + n.error().ToString() + ">";
    out.resize(*n);
    return out;
  }

  meta::Context ctx_;
  kv::Engine* engine_ = nullptr;
  std::unique_ptr<object::ObjectStore> store_;
  Client a_;
};

TEST_F(VfsTest, ReadDirStreamsInSmallBatchesAndRestartsOnSeek) {
  std::set<std::string> want;
  for (int i = 0; i < 100; ++i) {
    std::string name = "f" + std::to_string(i);
    ASSERT_TRUE(a_.vfs->Mknod(ctx_, meta::kRootIno, name, S_IFREG | 0644, 0));
    want.insert(name);
  }
  auto fh = a_.vfs->OpenDir(ctx_, meta::kRootIno, 0);
  ASSERT_TRUE(fh);
  std::vector<std::string> names;
  uint64_t off = 0;
  for (int calls = 0; calls < 1000; ++calls) {  // 10 entries per call, like a small buffer
    size_t taken = 0;
    ASSERT_OK(a_.vfs->ReadDir(ctx_, meta::kRootIno, *fh, off, calls % 2 == 1,
                              [&](const meta::DirEntry& e, uint64_t next) {
                                if (taken == 10) return false;
                                names.push_back(e.name);
                                off = next;
                                ++taken;
                                return true;
                              }));
    if (taken == 0) break;
  }
  ASSERT_EQ(names.size(), 102u);
  EXPECT_EQ(names[0], ".");
  EXPECT_EQ(names[1], "..");
  std::set<std::string> got(names.begin() + 2, names.end());
  EXPECT_EQ(got, want);
  // A seek back to entry index 50 (telldir/seekdir) restarts the scan and skips forward.
  std::vector<std::string> again;
  ASSERT_OK(
      a_.vfs->ReadDir(ctx_, meta::kRootIno, *fh, 50, false, [&](const meta::DirEntry& e, uint64_t) {
        again.push_back(e.name);
        return again.size() < 5;
      }));
  ASSERT_EQ(again.size(), 5u);
  EXPECT_EQ(again[0], names[50]);
  EXPECT_EQ(again[3], names[53]);
  ASSERT_OK(a_.vfs->ReleaseDir(meta::kRootIno, *fh));
}

TEST_F(VfsTest, InternalFilesAreFoundButNotListed) {
  auto e = a_.vfs->Lookup(ctx_, meta::kRootIno, ".stats");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ino, kStatsIno);
  EXPECT_GT(e->ino, meta::kMaxMetaIno);
  std::string stats = ReadAll(*a_.vfs, kStatsIno);
  EXPECT_NE(stats.find("nexusfs_vfs_ops_total{op=\"lookup\"} 1"), std::string::npos) << stats;
  std::string config = ReadAll(*a_.vfs, kConfigIno);
  EXPECT_NE(config.find("\"vfstest\""), std::string::npos) << config;
  EXPECT_NE(config.find("\"/test\""), std::string::npos) << config;
  EXPECT_EQ(a_.vfs->Open(ctx_, kStatsIno, O_WRONLY).error().code(), EACCES);
  EXPECT_EQ(a_.vfs->Create(ctx_, meta::kRootIno, ".config", 0644, O_RDWR).error().code(), EEXIST);
  EXPECT_EQ(a_.vfs->Unlink(ctx_, meta::kRootIno, ".stats").code(), EPERM);
  auto fh = a_.vfs->OpenDir(ctx_, meta::kRootIno, 0);
  ASSERT_TRUE(fh);
  std::vector<std::string> names;
  ASSERT_OK(
      a_.vfs->ReadDir(ctx_, meta::kRootIno, *fh, 0, false, [&](const meta::DirEntry& d, uint64_t) {
        names.push_back(d.name);
        return true;
      }));
  EXPECT_EQ(names, (std::vector<std::string>{".", ".."}));
}

// One request through .control: open, write, read to EOF, release.
std::string AskControl(Vfs& v, const meta::Context& ctx, const std::string& request) {
  auto o = v.Open(ctx, kControlIno, O_RDWR);
  if (!o) return "<open: " + o.error().ToString() + ">";
  auto w = v.Write(ctx, kControlIno, o->fh, 0, request.data(), request.size());
  if (!w) return "<write: " + w.error().ToString() + ">";
  std::string out;
  char buf[100];  // small reads: the answer arrives in pieces
  while (true) {
    auto n = v.Read(ctx, kControlIno, o->fh, request.size() + out.size(), buf, sizeof(buf));
    if (!n) return "<read: " + n.error().ToString() + ">";
    if (*n == 0) break;
    out.append(buf, *n);
  }
  (void)v.Release(kControlIno, o->fh, std::nullopt);
  return out;
}

TEST_F(VfsTest, ControlRunsRmrAndDropsTheKernelEntry) {
  std::vector<std::pair<Ino, std::string>> dropped;
  std::mutex mu;
  a_.vfs->SetEntryInvalidator([&](Ino parent, std::string_view name) {
    std::lock_guard<std::mutex> lock(mu);
    dropped.emplace_back(parent, std::string(name));
  });
  auto t = a_.vfs->Mkdir(ctx_, meta::kRootIno, "t", 0755);
  ASSERT_TRUE(t);
  auto sub = a_.vfs->Mkdir(ctx_, t->ino, "sub", 0755);
  ASSERT_TRUE(sub);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(
        a_.vfs->Mknod(ctx_, i % 2 ? t->ino : sub->ino, "f" + std::to_string(i), S_IFREG | 0644, 0));
  }
  std::string out = AskControl(*a_.vfs, ctx_, R"({"op":"rmr","parent":1,"name":"t"})");
  EXPECT_EQ(out, "{\"ok\":true,\"removed\":32}\n");
  EXPECT_EQ(a_.vfs->Lookup(ctx_, meta::kRootIno, "t").error().code(), ENOENT);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(dropped, (std::vector<std::pair<Ino, std::string>>{{meta::kRootIno, "t"}}));
  }
  // Info of a file: its slice and the key of its one block.
  Ino f = WriteNew(*a_.vfs, "f", "hello");
  out = AskControl(*a_.vfs, ctx_, R"({"op":"info","ino":)" + std::to_string(f) + "}");
  EXPECT_NE(out.find("\"ok\":true"), std::string::npos) << out;
  EXPECT_NE(out.find("\"objects\":[\"vfstest/chunks/0/0/"), std::string::npos) << out;
  EXPECT_NE(out.find("_0_5\"]"), std::string::npos) << out;
  // Errors are answers, not crashes.
  out = AskControl(*a_.vfs, ctx_, R"({"op":"rmr","parent":1})");
  EXPECT_NE(out.find("\"errno\":22"), std::string::npos) << out;
  out = AskControl(*a_.vfs, ctx_, R"({"op":"rmr","parent":1,"name":"t"})");
  EXPECT_NE(out.find("\"errno\":2,"), std::string::npos) << out;
  a_.vfs->SetEntryInvalidator({});
}

TEST_F(VfsTest, CloseToOpenBetweenTwoClients) {
  Client b = SecondClient();
  Ino ino = WriteNew(*a_.vfs, "shared", "version-1");
  EXPECT_EQ(ReadAll(*b.vfs, ino), "version-1");
  auto again = a_.vfs->Open(ctx_, ino, O_RDONLY);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->keep_cache) << "unchanged since this client wrote it";
  ASSERT_OK(a_.vfs->Release(ino, again->fh, std::nullopt));

  auto w = b.vfs->Open(ctx_, ino, O_WRONLY);
  ASSERT_TRUE(w);
  ASSERT_TRUE(b.vfs->Write(ctx_, ino, w->fh, 0, "VERSION-2!", 10));
  ASSERT_OK(b.vfs->Release(ino, w->fh, std::nullopt));  // commits before returning

  auto r = a_.vfs->Open(ctx_, ino, O_RDONLY);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->keep_cache) << "another client changed the file";
  EXPECT_EQ(r->attr.length, 10u);
  ASSERT_OK(a_.vfs->Release(ino, r->fh, std::nullopt));
  EXPECT_EQ(ReadAll(*a_.vfs, ino), "VERSION-2!");
}

TEST_F(VfsTest, PendingWritesShowInLengthAndTruncateDropsThem) {
  auto c = a_.vfs->Create(ctx_, meta::kRootIno, "f", 0644, O_RDWR);
  ASSERT_TRUE(c);
  std::string data(100000, 'x');
  ASSERT_TRUE(a_.vfs->Write(ctx_, c->entry.ino, c->open.fh, 0, data.data(), data.size()));
  auto attr = a_.vfs->GetAttr(c->entry.ino);
  ASSERT_TRUE(attr);
  EXPECT_EQ(attr->length, 100000u);
  meta::SetAttrRequest req;
  req.mask = meta::kSetSize;
  req.size = 10;
  auto t = a_.vfs->SetAttr(ctx_, c->entry.ino, req);
  ASSERT_TRUE(t) << t.error().ToString();
  EXPECT_EQ(t->length, 10u);
  ASSERT_OK(a_.vfs->Release(c->entry.ino, c->open.fh, std::nullopt));
  EXPECT_EQ(ReadAll(*a_.vfs, c->entry.ino), std::string(10, 'x'));
}

TEST_F(VfsTest, AppendHandlesWriteAtTheEnd) {
  Ino ino = WriteNew(*a_.vfs, "log", "first;");
  auto o = a_.vfs->Open(ctx_, ino, O_WRONLY | O_APPEND);
  ASSERT_TRUE(o);
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, o->fh, 0, "second;", 7));  // offset ignored
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, o->fh, 0, "third;", 6));
  ASSERT_OK(a_.vfs->Release(ino, o->fh, std::nullopt));
  EXPECT_EQ(ReadAll(*a_.vfs, ino), "first;second;third;");
}

// One handle keeps writing while another closes (flushes) the same file, as two processes
// writing one file do: every flush succeeds and no byte is lost.
TEST_F(VfsTest, FlushWhileAnotherHandleWrites) {
  Ino ino = WriteNew(*a_.vfs, "busy", "");
  auto w = a_.vfs->Open(ctx_, ino, O_WRONLY);
  ASSERT_TRUE(w);
  constexpr int kRecords = 3000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < kRecords; ++i) {
      char rec[64];
      std::snprintf(rec, sizeof(rec), "%063d", i);
      auto n = a_.vfs->Write(ctx_, ino, w->fh, uint64_t{64} * i, rec, 64);
      EXPECT_TRUE(n) << n.error().ToString();
    }
    done = true;
  });
  int flushes = 0;
  while (!done) {
    auto r = a_.vfs->Open(ctx_, ino, O_WRONLY);
    ASSERT_TRUE(r);
    a_.vfs->Write(ctx_, ino, r->fh, 0, "0", 1).value();  // makes this handle flush at release
    Status s = a_.vfs->Release(ino, r->fh, std::nullopt);
    EXPECT_TRUE(s.ok()) << "flush " << flushes << ": " << s.ToString();
    if (!s.ok()) break;
    ++flushes;
  }
  writer.join();
  ASSERT_OK(a_.vfs->Release(ino, w->fh, std::nullopt));
  std::string got = ReadAll(*a_.vfs, ino);
  ASSERT_EQ(got.size(), 64u * kRecords);
  for (int i = 0; i < kRecords; ++i) {
    char rec[64];
    std::snprintf(rec, sizeof(rec), "%063d", i);
    ASSERT_EQ(got.substr(64 * i, 63), std::string(rec, 63)) << "record " << i;
  }
}

// A file grows while another thread commits its writes (FUSE sends release asynchronously, and
// release flushes). A commit moves a write from the pending ones into Meta; the length getattr
// reports and the end a read stops at must include it whichever side the commit fell on.
TEST_F(VfsTest, LengthAndReadsStayWholeWhileAnotherThreadCommits) {
  Ino ino = WriteNew(*a_.vfs, "grow", "");
  auto h = a_.vfs->Open(ctx_, ino, O_RDWR);
  ASSERT_TRUE(h);
  std::atomic<bool> done{false};
  std::atomic<int> flushes{0};
  std::thread flusher([&] {
    while (!done) {
      if (a_.chunks->Flush(ino).ok()) flushes++;
      (void)a_.chunks->Compact(ino, 0);  // keeps the chunk from growing thousands of slices
    }
  });
  constexpr int kRecords = 100000;
  int bad = 0;
  for (int i = 0; i < kRecords && bad == 0; ++i) {
    char rec[64];
    std::snprintf(rec, sizeof(rec), "%063d", i);
    ASSERT_TRUE(a_.vfs->Write(ctx_, ino, h->fh, uint64_t{64} * i, rec, 64));
    auto attr = a_.vfs->GetAttr(ino);
    ASSERT_TRUE(attr);
    if (attr->length != uint64_t{64} * (i + 1)) {
      ADD_FAILURE() << "record " << i << ": length " << attr->length;
      ++bad;
    }
    char back[128];
    auto n = a_.vfs->Read(ctx_, ino, h->fh, uint64_t{64} * i, back, sizeof(back));
    ASSERT_TRUE(n);
    if (*n != 64 || std::string(back, 63) != std::string(rec, 63)) {
      ADD_FAILURE() << "record " << i << ": read " << *n << " bytes";
      ++bad;
    }
  }
  done = true;
  flusher.join();
  EXPECT_GT(flushes.load(), 0);
  ASSERT_OK(a_.vfs->Release(ino, h->fh, std::nullopt));
}

TEST_F(VfsTest, SeekDataAndHole) {
  auto c = a_.vfs->Create(ctx_, meta::kRootIno, "sparse", 0644, O_RDWR);
  ASSERT_TRUE(c);
  Ino ino = c->entry.ino;
  uint64_t fh = c->open.fh;
  const uint64_t far = 70ULL << 20;  // second chunk
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, fh, 4096, "data", 4));
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, fh, far, "tail", 4));
  EXPECT_EQ(*a_.vfs->Lseek(ino, fh, 0, SEEK_DATA), 4096u);
  EXPECT_EQ(*a_.vfs->Lseek(ino, fh, 0, SEEK_HOLE), 0u);
  EXPECT_EQ(*a_.vfs->Lseek(ino, fh, 4096, SEEK_HOLE), 4100u);
  EXPECT_EQ(*a_.vfs->Lseek(ino, fh, 4100, SEEK_DATA), far);
  EXPECT_EQ(*a_.vfs->Lseek(ino, fh, far + 1, SEEK_HOLE), far + 4);
  EXPECT_EQ(a_.vfs->Lseek(ino, fh, far + 4, SEEK_DATA).error().code(), ENXIO);
  EXPECT_EQ(a_.vfs->Lseek(ino, fh, 0, SEEK_END).error().code(), EINVAL);
  ASSERT_OK(a_.vfs->Release(ino, fh, std::nullopt));
}

TEST_F(VfsTest, BlockingLockWaitsAndGivesUpWhenInterrupted) {
  Ino ino = WriteNew(*a_.vfs, "lk", "x");
  meta::PosixLock w{meta::LockType::kWrite, 0, UINT64_MAX, 1};
  ASSERT_OK(a_.vfs->SetLk(ino, 1, w, false, nullptr));
  EXPECT_EQ(a_.vfs->SetLk(ino, 2, w, false, nullptr).code(), EAGAIN);
  int polls = 0;
  EXPECT_EQ(a_.vfs->SetLk(ino, 2, w, true, [&] { return ++polls > 2; }).code(), EINTR);
  std::thread unlocker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_OK(a_.vfs->SetLk(ino, 1, {meta::LockType::kUnlock, 0, UINT64_MAX, 1}, false, nullptr));
  });
  ASSERT_OK(a_.vfs->SetLk(ino, 2, w, true, [] { return false; }));
  unlocker.join();
  EXPECT_EQ(a_.vfs->GetLk(ino, 3, w)->type, meta::LockType::kWrite);
}

TEST_F(VfsTest, ReadOnlyMountRefusesChanges) {
  VfsOptions vo;
  vo.read_only = true;
  Vfs ro(a_.meta.get(), a_.chunks.get(), vo);
  EXPECT_EQ(ro.Mkdir(ctx_, meta::kRootIno, "d", 0755).error().code(), EROFS);
  EXPECT_EQ(ro.Create(ctx_, meta::kRootIno, "f", 0644, O_RDWR).error().code(), EROFS);
  Ino ino = WriteNew(*a_.vfs, "existing", "abc");
  EXPECT_EQ(ro.Open(ctx_, ino, O_WRONLY).error().code(), EROFS);
  EXPECT_EQ(ReadAll(ro, ino), "abc");
}

// Read with pieces (the FUSE reply's iovecs) gives the bytes Read copies: over a hole, committed
// blocks (referenced in the memory cache, not copied) and this client's unflushed writes.
TEST_F(VfsTest, ReadPiecesGiveTheSameBytesAsRead) {
  auto c = a_.vfs->Create(ctx_, meta::kRootIno, "pieces", 0644, O_RDWR);
  ASSERT_TRUE(c);
  const Ino ino = c->entry.ino;
  std::string model(300 << 10, '\0');
  for (size_t i = 0; i < model.size(); ++i) model[i] = static_cast<char>('a' + i % 23);
  std::fill(model.begin() + (70 << 10), model.begin() + (130 << 10), '\0');  // a hole
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, c->open.fh, 0, model.data(), 70 << 10));
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, c->open.fh, 130 << 10, model.data() + (130 << 10),
                            model.size() - (130 << 10)));
  ASSERT_OK(a_.vfs->Fsync(ino, c->open.fh, false));
  const std::string unflushed(5000, 'U');  // stays pending in this client
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, c->open.fh, 200 << 10, unflushed.data(), unflushed.size()));
  model.replace(200 << 10, unflushed.size(), unflushed);

  std::vector<chunk::ReadPiece> pieces;
  std::string buf(model.size() + 4096, '#');
  bool referenced = false;
  for (uint64_t off : {uint64_t{0}, uint64_t{1000}, uint64_t{65 << 10}, uint64_t{199 << 10}}) {
    SCOPED_TRACE("offset " + std::to_string(off));
    auto n = a_.vfs->Read(ctx_, ino, c->open.fh, off, buf.data(), buf.size(), &pieces);
    ASSERT_TRUE(n) << n.error().ToString();
    ASSERT_EQ(*n, model.size() - off);  // short at EOF
    std::string got;
    for (const chunk::ReadPiece& p : pieces) {
      got.append(p.data, p.len);
      if (p.keep) referenced = true;
    }
    EXPECT_TRUE(got == model.substr(off)) << "pieces differ from the file";
    std::string copied(buf.size(), '\0');
    auto m = a_.vfs->Read(ctx_, ino, c->open.fh, off, copied.data(), copied.size());
    ASSERT_TRUE(m);
    copied.resize(*m);
    EXPECT_TRUE(copied == model.substr(off)) << "Read differs from the file";
  }
  EXPECT_TRUE(referenced) << "no piece pointed into a cached block";
  ASSERT_OK(a_.vfs->Release(ino, c->open.fh, std::nullopt));
}

// Reads inside the length an open handle knows skip Meta; the changes that make that length
// wrong are seen anyway: a truncate by this client through another handle, a write through this
// client, and a file grown by another client (a read past the known length asks Meta).
TEST_F(VfsTest, OpenHandleReadsSeeTruncateAndGrowth) {
  const std::string data(100 << 10, 'd');
  Ino ino = WriteNew(*a_.vfs, "len", data);
  auto r = a_.vfs->Open(ctx_, ino, O_RDONLY);
  ASSERT_TRUE(r);
  char buf[4096];
  auto n = a_.vfs->Read(ctx_, ino, r->fh, 90 << 10, buf, sizeof(buf));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, sizeof(buf));

  meta::SetAttrRequest req;
  req.mask = meta::kSetSize;
  req.size = 10 << 10;
  ASSERT_TRUE(a_.vfs->SetAttr(ctx_, ino, req));
  n = a_.vfs->Read(ctx_, ino, r->fh, 90 << 10, buf, sizeof(buf));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 0u) << "read past a truncate by this client";
  n = a_.vfs->Read(ctx_, ino, r->fh, 8 << 10, buf, sizeof(buf));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u << 10);

  auto w = a_.vfs->Open(ctx_, ino, O_WRONLY);
  ASSERT_TRUE(w);
  ASSERT_TRUE(a_.vfs->Write(ctx_, ino, w->fh, 0, "XY", 2));
  n = a_.vfs->Read(ctx_, ino, r->fh, 0, buf, 4);
  ASSERT_TRUE(n);
  EXPECT_EQ(std::string(buf, *n), "XYdd");
  ASSERT_OK(a_.vfs->Release(ino, w->fh, std::nullopt));

  Client b = SecondClient();
  auto bw = b.vfs->Open(ctx_, ino, O_WRONLY);
  ASSERT_TRUE(bw);
  const std::string more(50 << 10, 'm');
  ASSERT_TRUE(b.vfs->Write(ctx_, ino, bw->fh, 10 << 10, more.data(), more.size()));
  ASSERT_OK(b.vfs->Release(ino, bw->fh, std::nullopt));
  n = a_.vfs->Read(ctx_, ino, r->fh, 20 << 10, buf, sizeof(buf));
  ASSERT_TRUE(n);
  // The length is fresh (a short read would make the kernel shrink the file); the bytes another
  // client wrote while this handle was open are promised only after an open (close-to-open).
  EXPECT_EQ(*n, sizeof(buf)) << "read past the known length of a file another client grew";
  ASSERT_OK(a_.vfs->Release(ino, r->fh, std::nullopt));
}

}  // namespace
}  // namespace nexus::vfs
