// meta/dump.h: dump -> load round trips between engines (byte-identical dumps, JSON and
// binary), a volume with every kind of node, a dump taken under concurrent writes, and bad
// input (truncated or corrupted files are refused and leave the target empty).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "meta/dump.h"
#include "meta_data_fixture.h"

namespace nexus::meta {
namespace {

using dump::Encoding;

std::string ReadAll(std::FILE* f) {
  std::fflush(f);
  fseeko(f, 0, SEEK_SET);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) s.append(buf, n);
  return s;
}

std::FILE* FromString(const std::string& s) {
  std::FILE* f = std::tmpfile();
  std::fwrite(s.data(), 1, s.size(), f);
  std::fflush(f);
  fseeko(f, 0, SEEK_SET);
  return f;
}

class MetaDumpTest : public MetaVolumeTest {
 protected:
  // An engine of kind `url` (placeholders as in EngineUrls), not formatted.
  std::unique_ptr<kv::Engine> OpenEngine(std::string url, const std::string& sub) {
    if (const size_t at = url.find("<tmp>"); at != std::string::npos) {
      std::filesystem::create_directories(dir_ + "/" + sub);
      url.replace(at, 5, dir_ + "/" + sub);
    }
    if (const size_t e = url.find("<etcd>"); e != std::string::npos) {
      std::string why;
      test::EtcdServer* server = test::EtcdServer::Shared(&why);
      EXPECT_NE(server, nullptr) << why;
      if (!server) return nullptr;
      url.replace(e, 6, server->endpoint());
    }
    auto resolved = testsrv::ResolveServerUrl(url);
    EXPECT_TRUE(resolved.has_value()) << url;
    if (!resolved) return nullptr;
    auto engine = kv::Engine::Open(*resolved);
    EXPECT_TRUE(engine.has_value()) << *resolved << ": " << engine.error().ToString();
    return engine ? std::move(*engine) : nullptr;
  }

  std::string Dump(kv::Engine& e, Encoding enc, bool keep_secrets = false,
                   size_t max_held_bytes = 8 << 20) {
    std::FILE* f = std::tmpfile();
    dump::DumpOptions o;
    o.encoding = enc;
    o.keep_secrets = keep_secrets;
    o.scan_batch = 7;  // many pages, so paging is exercised
    o.max_held_bytes = max_held_bytes;
    auto st = dump::Dump(e, f, o);
    EXPECT_TRUE(st.has_value()) << st.error().ToString();
    std::string s = ReadAll(f);
    std::fclose(f);
    return s;
  }

  Status Load(kv::Engine& e, const std::string& data, int threads = 3) {
    std::FILE* f = FromString(data);
    dump::LoadOptions o;
    o.threads = threads;
    o.batch_keys = 5;  // many transactions
    auto st = dump::Load(e, f, o);
    std::fclose(f);
    return st ? Status::OK() : st.error();
  }

  size_t KeyCount(kv::Engine& e) {
    size_t n = 0;
    Status s = e.View([&](kv::Txn& txn) -> Status {
      n = 0;
      return txn.Scan("", "", 0, [&](std::string_view, std::string_view) {
        ++n;
        return true;
      });
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return n;
  }

  Slice NewSlice(uint32_t pos, uint32_t len) {
    auto id = meta_->NewSliceId();
    EXPECT_TRUE(id.has_value());
    return Slice{pos, id ? *id : 0, len, 0, len};
  }

  // A volume with every kind of node and every kind of record.
  void Populate() {
    Context root = Context::Root();
    Format f = meta_->format();
    f.secret_key = "s3cr3t";
    f.access_key = "AK";
    ASSERT_OK(meta_->UpdateFormat(f));
    auto d1 = meta_->Mkdir(root, kRootIno, "dir", 0755);
    ASSERT_OK(d1);
    auto d2 = meta_->Mkdir(root, d1->ino, "sub", 0700);
    ASSERT_OK(d2);
    // A file of three chunks, the last one partial.
    auto big = meta_->Mknod(root, d1->ino, "big", FileType::kFile, 0644, 0);
    ASSERT_OK(big);
    for (uint32_t i = 0; i < 3; ++i) {
      ASSERT_OK(meta_->WriteSlice(big->ino, i, NewSlice(0, i == 2 ? 1000 : 4 << 20), 1));
    }
    ASSERT_OK(meta_->WriteSlice(big->ino, 0, NewSlice(4096, 8192), 2));  // overlapping write
    // A sparse file: one slice in chunk 5, length past it.
    auto sparse = meta_->Mknod(root, kRootIno, "sparse", FileType::kFile, 0600, 0);
    ASSERT_OK(sparse);
    ASSERT_OK(meta_->WriteSlice(sparse->ino, 5, NewSlice(1 << 20, 4096), 3));
    SetAttrRequest grow;
    grow.mask = kSetSize;
    grow.size = 10 * kChunkSize;
    ASSERT_OK(meta_->SetAttr(root, sparse->ino, grow));
    // Hard links in two directories, twice in one.
    ASSERT_OK(meta_->Link(root, big->ino, kRootIno, "big-link"));
    ASSERT_OK(meta_->Link(root, big->ino, d2->ino, "l1"));
    ASSERT_OK(meta_->Link(root, big->ino, d2->ino, "l2"));
    // A shared slice: a copied range (K record).
    auto copy = meta_->Mknod(root, kRootIno, "copy", FileType::kFile, 0644, 0);
    ASSERT_OK(copy);
    ASSERT_OK(meta_->CopyRange(root, big->ino, 0, copy->ino, 0, 1 << 20));
    // Symlinks, special files, xattrs (binary value, non-UTF-8 name).
    ASSERT_OK(meta_->Symlink(root, kRootIno, "ln", "dir/big"));
    ASSERT_OK(meta_->Symlink(root, d2->ino, "ln2", std::string("\xff\xfe/x", 4)));
    ASSERT_OK(meta_->Mknod(root, kRootIno, "fifo", FileType::kFifo, 0644, 0));
    ASSERT_OK(meta_->Mknod(root, kRootIno, "blk", FileType::kBlockDev, 0600, makedev(8, 1)));
    ASSERT_OK(meta_->Mknod(root, kRootIno, "chr", FileType::kCharDev, 0600, makedev(1, 3)));
    ASSERT_OK(meta_->Mknod(root, kRootIno, "sock", FileType::kSocket, 0755, 0));
    ASSERT_OK(meta_->Mknod(root, kRootIno, std::string("bad\xc3\x28name\n\"q\""), FileType::kFile,
                           0644, 0));
    ASSERT_OK(meta_->SetXattr(root, big->ino, "user.text", "hello", 0));
    ASSERT_OK(meta_->SetXattr(root, big->ino, "user.bin", std::string("\0\x01\xff", 3), 0));
    ASSERT_OK(meta_->SetXattr(root, d1->ino, "user.dir", "", 0));
    // A file with data removed while nobody has it open: D record + chunks awaiting release.
    auto gone = meta_->Mknod(root, kRootIno, "gone", FileType::kFile, 0644, 0);
    ASSERT_OK(gone);
    ASSERT_OK(meta_->WriteSlice(gone->ino, 0, NewSlice(0, 5000), 4));
    ASSERT_OK(meta_->Unlink(root, kRootIno, "gone"));
    // A truncated file: its dropped slice awaits deletion (L record).
    auto cut = meta_->Mknod(root, kRootIno, "cut", FileType::kFile, 0644, 0);
    ASSERT_OK(cut);
    ASSERT_OK(meta_->WriteSlice(cut->ino, 1, NewSlice(0, 100), 5));
    ASSERT_OK(meta_->Truncate(root, cut->ino, 10));
    // Open, then unlinked: dumped as a removed file.
    ASSERT_OK(meta_->NewSession(SessionInfo{}));
    auto open = meta_->Create(root, kRootIno, "open-unlinked", 0644, O_RDWR);
    ASSERT_OK(open);
    ASSERT_OK(meta_->WriteSlice(open->ino, 0, NewSlice(0, 777), 6));
    ASSERT_OK(meta_->Unlink(root, kRootIno, "open-unlinked"));
    open_unlinked_ = open->ino;
    big_ = big->ino;
  }

  Ino open_unlinked_ = 0, big_ = 0;
};

TEST_P(MetaDumpTest, RoundTripsAreByteIdentical) {
  Populate();
  if (HasFatalFailure()) return;
  for (Encoding enc : {Encoding::kJson, Encoding::kBinary}) {
    const std::string a = Dump(*meta_->engine(), enc);
    ASSERT_FALSE(a.empty());
    // Attributes read ahead (as for a huge directory) instead of after the held records: the
    // same dump.
    EXPECT_TRUE(a == Dump(*meta_->engine(), enc, false, /*max_held_bytes=*/1));
    std::set<std::string> targets = {"mem://", "rocksdb://<tmp>/rocks", "sqlite3://<tmp>/m.db",
                                     GetParam()};
    int n = 0;
    for (const std::string& t : targets) {
      SCOPED_TRACE(t + (enc == Encoding::kJson ? " json" : " binary"));
      auto e = OpenEngine(t, "t" + std::to_string(n++) + (enc == Encoding::kJson ? "j" : "b"));
      ASSERT_NE(e, nullptr);
      ASSERT_OK(Load(*e, a));
      const std::string b = Dump(*e, enc);
      EXPECT_EQ(a.size(), b.size());
      EXPECT_TRUE(a == b) << "dump after load differs";
      // The loaded volume works: it mounts, the file is there, the open-unlinked file is a
      // pending deletion, and the counters add up.
      auto m = Meta::Create(std::move(e));
      ASSERT_OK(m->Load());
      auto got = m->ReadChunk(big_, 1);
      ASSERT_OK(got);
      EXPECT_EQ(got->size(), 1u);
      EXPECT_ERRNO(m->GetAttr(open_unlinked_), ENOENT);
      auto x = m->GetXattr(Context::Root(), big_, "user.bin");
      ASSERT_OK(x);
      EXPECT_EQ(*x, std::string("\0\x01\xff", 3));
      EXPECT_EQ(m->format().secret_key, "removed");
    }
  }
  // JSON is readable: the open-unlinked file is listed as a removed file and the secret is out.
  const std::string j = Dump(*meta_->engine(), Encoding::kJson);
  EXPECT_EQ(j.find("s3cr3t"), std::string::npos);
  const size_t del = j.find("\"deleted_files\":[");
  ASSERT_NE(del, std::string::npos);
  EXPECT_NE(j.find("[" + std::to_string(open_unlinked_) + ",777]", del), std::string::npos);
  EXPECT_NE(j.find("\"symlink\":\"dir/big\""), std::string::npos);
  EXPECT_NE(j.find("{\"base64\":"), std::string::npos);
  auto parsed = nlohmann::json::parse(j);
  EXPECT_EQ(parsed["format"], "nexusfs-dump");
  const std::string kept = Dump(*meta_->engine(), Encoding::kBinary, /*keep_secrets=*/true);
  EXPECT_NE(kept.find("s3cr3t"), std::string::npos);
}

TEST_P(MetaDumpTest, BadInputLeavesTargetEmpty) {
  Populate();
  if (HasFatalFailure()) return;
  const std::string j = Dump(*meta_->engine(), Encoding::kJson);
  const std::string b = Dump(*meta_->engine(), Encoding::kBinary);
  auto e = OpenEngine("mem://", "bad");
  ASSERT_NE(e, nullptr);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"garbage", "hello"},
      {"json cut in the tree", j.substr(0, j.size() / 2)},
      {"json cut at the end", j.substr(0, j.size() - 2)},
      {"json cut in the header", j.substr(0, 40)},
      {"binary cut", b.substr(0, b.size() - 3)},
      {"binary cut in a section", b.substr(0, b.size() / 2)},
      {"binary header only", b.substr(0, 16)},
  };
  std::string corrupt = b;
  corrupt[corrupt.size() / 2] ^= 0x20;
  cases.push_back({"binary corrupted", corrupt});
  // A JSON dump whose entry names an inode that is not there.
  std::string dangling = j;
  size_t at = dangling.find("[\"sock\",");
  ASSERT_NE(at, std::string::npos);
  dangling.replace(at, 8, "[\"sock\",999999");
  size_t comma = dangling.find(',', at + 14);
  dangling.erase(at + 14, comma - (at + 14));
  cases.push_back({"dangling entry", dangling});
  for (const auto& [what, data] : cases) {
    SCOPED_TRACE(what);
    Status s = Load(*e, data);
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(s.code() == EBADMSG) << s.ToString();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
    EXPECT_EQ(KeyCount(*e), 0u) << s.ToString();
  }
  // A formatted engine is refused and left as it was.
  Status s = Load(*meta_->engine(), j);
  EXPECT_EQ(s.code(), EEXIST) << s.ToString();
  EXPECT_NE(s.message().find("already holds volume"), std::string::npos) << s.message();
  EXPECT_OK(meta_->GetAttr(big_));
}

// A dump taken while another client creates, renames and unlinks loads into a volume whose
// every entry names a live inode and whose link counts match.
TEST_P(MetaDumpTest, DumpUnderWriteLoadIsConsistent) {
  if (GetParam().rfind("redis", 0) == 0 || GetParam().rfind("etcd", 0) == 0) {
    // Redis and etcd validate a whole-volume View at its end: under constant writes a long
    // dump re-runs (docs/dump.md); the snapshot engines are tested here.
    GTEST_SKIP() << "snapshot-under-load test runs on mem, rocksdb, sqlite3 and postgres";
  }
  auto client = OpenClient();
  ASSERT_NE(client, nullptr);
  Context root = Context::Root();
  auto d = meta_->Mkdir(root, kRootIno, "a", 0755);
  ASSERT_OK(d);
  auto d2 = meta_->Mkdir(root, kRootIno, "b", 0755);
  ASSERT_OK(d2);
  std::atomic<bool> stop{false};
  std::atomic<int> ops{0};
  std::thread writer([&] {
    std::mt19937 rng(7);
    int n = 0;
    while (!stop.load() && n < 20000) {
      std::string name = "f" + std::to_string(rng() % 200);
      Ino dir = rng() % 2 ? d->ino : d2->ino;
      switch (rng() % 4) {
        case 0:
        case 1:
          (void)client->Mknod(root, dir, name, FileType::kFile, 0644, 0);
          break;
        case 2:
          (void)client->Rename(root, dir, name, dir == d->ino ? d2->ino : d->ino,
                               "r" + std::to_string(rng() % 50), 0);
          break;
        case 3:
          (void)client->Unlink(root, dir, name);
          break;
      }
      ++n;
      ops.fetch_add(1);
    }
  });
  for (int i = 0; i < 4; ++i) {
    while (ops.load() < 200 * (i + 1)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Encoding enc = i % 2 ? Encoding::kBinary : Encoding::kJson;
    std::string data = Dump(*meta_->engine(), enc);
    auto e = OpenEngine("mem://", "w" + std::to_string(i));
    ASSERT_NE(e, nullptr);
    ASSERT_OK(Load(*e, data));
    // Consistency walk over the loaded volume through Meta.
    auto m = Meta::Create(std::move(e));
    ASSERT_OK(m->Load());
    std::map<Ino, int> links;
    std::vector<Ino> dirs = {kRootIno};
    size_t walked = 0;
    while (!dirs.empty()) {
      Ino dir = dirs.back();
      dirs.pop_back();
      std::vector<DirEntry> entries;
      ASSERT_OK(m->ReadDir(root, dir, "", 0, true, &entries));
      int subdirs = 0;
      for (const DirEntry& de : entries) {
        auto a = m->GetAttr(de.ino);
        ASSERT_OK(a);
        ASSERT_GT(a->nlink, 0u);
        ++links[de.ino];
        ++walked;
        if (a->type == FileType::kDir) {
          ++subdirs;
          dirs.push_back(de.ino);
        }
      }
      auto da = m->GetAttr(dir);
      ASSERT_OK(da);
      EXPECT_EQ(da->nlink, 2u + subdirs);
    }
    for (const auto& [ino, n] : links) {
      auto a = m->GetAttr(ino);
      ASSERT_OK(a);
      if (a->type != FileType::kDir) {
        EXPECT_EQ(a->nlink, static_cast<uint32_t>(n)) << ino;
      }
    }
    auto st = m->GetStatFs(kRootIno);
    ASSERT_OK(st);
    EXPECT_EQ(st->used_inodes, links.size());
    EXPECT_GE(walked, 2u);
  }
  stop = true;
  writer.join();
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaDumpTest, testing::ValuesIn(EngineUrls()), EngineTestName);

}  // namespace
}  // namespace nexus::meta
