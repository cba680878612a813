// nexusfs fsck and gc as a user runs them, on volumes damaged on purpose: a client killed in the
// middle of writes (leaked block objects), and metadata broken through the raw engine.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "chunk/chunk_store.h"
#include "common/encoding.h"
#include "list_recorder.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"
#include "object/stores.h"
#include "ops/fsck.h"

namespace {

namespace fs = std::filesystem;
using namespace nexus;
namespace keys = meta::keys;

constexpr uint32_t kBlock = 64 << 10;
constexpr const char* kVol = "vol";

struct Output {
  int code = -1;
  std::string out;  // stdout only (stderr goes to the test's log)
};

Output Nexusfs(const std::string& args) {
  Output r;
  std::string cmd = std::string(NEXUSFS_BIN) + " " + args;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string Pattern(uint64_t seed, size_t len) {
  std::string s(len, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

// One client of the volume, in this process: engine, Meta, framed file store, ChunkStore.
struct Client {
  std::unique_ptr<meta::Meta> meta;
  std::unique_ptr<object::ObjectStore> store;
  std::unique_ptr<chunk::ChunkStore> chunks;

  static std::unique_ptr<Client> Open(const std::string& meta_path, const std::string& bucket,
                                      bool background = false) {
    auto c = std::make_unique<Client>();
    auto e = kv::Engine::Open(meta_path);
    if (!e) return nullptr;
    c->meta = meta::Meta::Create(std::move(*e));
    if (!c->meta->Load()) return nullptr;
    auto fsr = object::NewFileStore(bucket, {});
    if (!fsr) return nullptr;
    c->store = object::NewFrameStore(std::move(*fsr), object::FrameOptions{});
    chunk::ChunkOptions co;
    co.block_size = kBlock;
    co.prefix = std::string(kVol) + "/";
    co.background = background;
    co.flush_idle_ns = 3600LL * 1000000000LL;
    co.mem_cache_size = 0;
    auto cs = chunk::ChunkStore::Open(c->meta.get(), c->store.get(), co);
    if (!cs) return nullptr;
    c->chunks = std::move(*cs);
    return c;
  }
  ~Client() {
    if (chunks) (void)chunks->Shutdown();
  }

  meta::Ino Write(meta::Ino dir, const std::string& name, const std::string& data) {
    auto e = meta->Create(meta::Context::Root(), dir, name, 0644, O_RDWR);
    if (!e) return 0;
    if (!data.empty() && !chunks->Write(e->ino, 0, data.data(), data.size()).ok()) return 0;
    if (!chunks->Flush(e->ino).ok()) return 0;
    (void)meta->Close(e->ino);
    return e->ino;
  }

  std::string Read(meta::Ino ino) {
    auto a = meta->GetAttr(ino);
    if (!a) return "<no attr>";
    std::string buf(a->length, '\0');
    auto n = chunks->Read(ino, 0, buf.data(), buf.size(), a->length);
    if (!n) return "<read error: " + n.error().ToString() + ">";
    buf.resize(*n);
    return buf;
  }
};

class OpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-ops-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Output f = Nexusfs("format " + Meta() + " " + kVol + " --bucket " + Bucket() +
                       " --block-size 64K > /dev/null");
    ASSERT_EQ(f.code, 0) << f.out;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Meta() const { return dir_.string() + "/meta"; }
  std::string Bucket() const { return dir_.string() + "/data"; }

  // Every block object of the volume, as keys relative to the bucket.
  std::set<std::string> Objects() const {
    std::set<std::string> out;
    const fs::path root = fs::path(Bucket()) / kVol / "chunks";
    if (!fs::exists(root)) return out;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      // A Put cut by the kill leaves the file store's temporary file: not an object (List
      // skips it).
      if (e.path().filename().string().rfind(".nxtmp-", 0) == 0) continue;
      if (e.is_regular_file()) out.insert(fs::relative(e.path(), Bucket()).string());
    }
    return out;
  }
  // Slice ids named by chunk records (read straight from the engine).
  std::set<uint64_t> ReferencedSlices() const {
    std::set<uint64_t> ids;
    auto e = kv::Engine::Open(Meta());
    EXPECT_TRUE(e.has_value());
    if (!e) return ids;
    Status s = (*e)->View([&](kv::Txn& txn) -> Status {
      ids.clear();
      return txn.ScanPrefix("A", 0, [&](std::string_view k, std::string_view v) {
        if (k.size() != 14 || k[9] != 'C') return true;
        std::vector<meta::Slice> recs;
        EXPECT_TRUE(keys::DecodeSlices(v, &recs).ok());
        for (const auto& r : recs) {
          if (r.id) ids.insert(r.id);
        }
        return true;
      });
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ids;
  }
  std::set<std::string> Unreferenced() const {
    std::set<uint64_t> ids = ReferencedSlices();
    std::set<std::string> out;
    for (const auto& key : Objects()) {
      uint64_t id;
      uint32_t blk, size;
      EXPECT_TRUE(ops::ParseBlockKey(key, std::string(kVol) + "/", &id, &blk, &size)) << key;
      if (!ids.count(id)) out.insert(key);
    }
    return out;
  }
  // Runs `fn` on the raw engine (the client must be closed).
  void Damage(const std::function<Status(kv::Txn&)>& fn) {
    auto e = kv::Engine::Open(Meta());
    ASSERT_TRUE(e.has_value()) << e.error().ToString();
    Status s = (*e)->Update(fn);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  fs::path dir_;
};

std::set<std::string> Kinds(const nlohmann::json& list) {
  std::set<std::string> out;
  for (const auto& p : list) out.insert(p["kind"].get<std::string>());
  return out;
}

// A client writes files (each flushed: "fsync returned"), then keeps writing without flushing
// and is killed with SIGKILL: full blocks were uploaded but never committed.
TEST_F(OpsTest, GcFindsExactlyTheObjectsLeakedByAKilledClient) {
  constexpr int kSynced = 4;
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipefd[0]);
    auto c = Client::Open(Meta(), Bucket(), /*background=*/true);
    if (!c) _exit(2);
    (void)c->meta->NewSession(meta::SessionInfo{});
    for (int i = 0; i < kSynced; ++i) {
      if (!c->Write(meta::kRootIno, "synced" + std::to_string(i), Pattern(i, 150000 + i * 7000))) {
        _exit(3);
      }
    }
    // Unflushed writes: 5 files of 5.5 blocks each.
    for (int i = 0; i < 5; ++i) {
      auto e = c->meta->Create(meta::Context::Root(), meta::kRootIno, "torn" + std::to_string(i),
                               0644, O_RDWR);
      if (!e) _exit(4);
      std::string d = Pattern(100 + i, kBlock * 5 + kBlock / 2);
      if (!c->chunks->Write(e->ino, 0, d.data(), d.size()).ok()) _exit(5);
    }
    usleep(300 * 1000);  // the full blocks' uploads finish
    if (write(pipefd[1], "R", 1) != 1) _exit(6);
    auto e = c->meta->Create(meta::Context::Root(), meta::kRootIno, "busy", 0644, O_RDWR);
    if (!e) _exit(7);
    for (uint64_t off = 0;; off += 4096) {  // still writing when the kill comes
      std::string d = Pattern(off, 4096);
      if (!c->chunks->Write(e->ino, off, d.data(), d.size()).ok()) _exit(8);
    }
  }
  close(pipefd[1]);
  char ch = 0;
  ASSERT_EQ(read(pipefd[0], &ch, 1), 1) << "the writer died before it was ready";
  close(pipefd[0]);
  usleep(50 * 1000);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));

  const std::set<std::string> leaked = Unreferenced();
  ASSERT_GE(leaked.size(), 25u);  // 5 files x 5 full blocks at least
  const std::set<std::string> before = Objects();

  // Inside the default safety window nothing is leaked yet: all young.
  Output young = Nexusfs("gc " + Meta() + " --json");
  ASSERT_EQ(young.code, 0) << young.out;
  auto jy = nlohmann::json::parse(young.out);
  EXPECT_EQ(jy["leaked"], 0);
  EXPECT_EQ(jy["young"].get<size_t>(), leaked.size());

  // With no window: exactly the unreferenced objects, and a dry run deletes nothing. The
  // default mode finds them from the recorded slice id batches, with a few narrow Lists.
  Output dry = Nexusfs("gc " + Meta() + " --min-age 0 --json");
  ASSERT_EQ(dry.code, 0) << dry.out;
  auto jd = nlohmann::json::parse(dry.out);
  std::set<std::string> found;
  for (const auto& k : jd["leaked_keys"]) found.insert(k.get<std::string>());
  EXPECT_EQ(found, leaked);
  EXPECT_EQ(jd["objects"].get<size_t>(), leaked.size());  // only uncommitted ids are looked up
  EXPECT_EQ(jd["unrecorded_below"].get<size_t>(), 0u);
  EXPECT_LE(jd["list_calls"].get<size_t>(), 10u);
  EXPECT_EQ(Objects(), before);

  // The full listing agrees.
  Output full = Nexusfs("gc " + Meta() + " --full --min-age 0 --json");
  ASSERT_EQ(full.code, 0) << full.out;
  auto jf = nlohmann::json::parse(full.out);
  std::set<std::string> found_full;
  for (const auto& k : jf["leaked_keys"]) found_full.insert(k.get<std::string>());
  EXPECT_EQ(found_full, leaked);
  EXPECT_EQ(jf["objects"].get<size_t>(), before.size());
  EXPECT_EQ(jf["referenced"].get<size_t>(), before.size() - leaked.size());

  // In-process, every List the default mode sends is one block directory or narrower.
  {
    auto c = Client::Open(Meta(), Bucket());
    ASSERT_NE(c, nullptr);
    test::ListRecorder rec(c->store.get());
    ops::GcOptions o;
    o.min_age_ns = 0;
    o.session_timeout_ns = 0;
    o.block_prefix = std::string(kVol) + "/";
    o.block_size = kBlock;
    auto r = ops::Gc(c->meta.get(), &rec, o);
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    EXPECT_EQ(std::set<std::string>(r->leaked_keys.begin(), r->leaked_keys.end()), leaked);
    const auto lists = rec.Take();
    EXPECT_FALSE(lists.empty());
    for (const auto& p : lists) EXPECT_TRUE(test::NarrowBlockPrefix(p)) << p;
  }
  EXPECT_EQ(Objects(), before);

  Output del = Nexusfs("gc " + Meta() + " --min-age 0 --delete --json");
  ASSERT_EQ(del.code, 0) << del.out;
  auto jx = nlohmann::json::parse(del.out);
  EXPECT_EQ(jx["deleted"].get<size_t>(), leaked.size());
  std::set<std::string> left;
  for (const auto& k : before) {
    if (!leaked.count(k)) left.insert(k);
  }
  EXPECT_EQ(Objects(), left);
  EXPECT_TRUE(Unreferenced().empty());

  Output ck = Nexusfs("fsck " + Meta());
  EXPECT_EQ(ck.code, 0) << ck.out;
  EXPECT_NE(ck.out.find(": clean"), std::string::npos) << ck.out;

  auto c = Client::Open(Meta(), Bucket());
  ASSERT_NE(c, nullptr);
  for (int i = 0; i < kSynced; ++i) {
    auto e = c->meta->Lookup(meta::Context::Root(), meta::kRootIno, "synced" + std::to_string(i));
    ASSERT_TRUE(e.has_value()) << i;
    EXPECT_TRUE(c->Read(e->ino) == Pattern(i, 150000 + i * 7000)) << "synced" << i;
  }
}

// A client killed between writing an upload's temporary file and renaming it leaves the file
// behind: gc counts those older than --min-age, removes them with --delete, and leaves younger
// ones (a Put may be under way), objects and other volumes' files alone.
TEST_F(OpsTest, GcRemovesOldTemporaryFilesOfUnfinishedUploads) {
  {
    auto c = Client::Open(Meta(), Bucket());
    ASSERT_NE(c, nullptr);
    ASSERT_NE(c->Write(meta::kRootIno, "kept", Pattern(5, 3 * kBlock)), 0u);
  }
  const std::set<std::string> objects = Objects();
  ASSERT_FALSE(objects.empty());
  const fs::path blocks = fs::path(Bucket()) / kVol / "chunks" / "0" / "0";
  ASSERT_TRUE(fs::is_directory(blocks));
  auto make = [](const fs::path& p, size_t size, int age_s) {
    std::ofstream(p) << std::string(size, 't');
    timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    ASSERT_EQ(utimensat(AT_FDCWD, p.c_str(), ts, 0), 0) << p;
  };
  const fs::path old1 = blocks / ".nxtmp-4242-1",
                 old2 = fs::path(Bucket()) / kVol / ".nxtmp-4242-2";
  const fs::path young = blocks / ".nxtmp-4242-3";
  const fs::path other = fs::path(Bucket()) / "othervol" / "chunks" / ".nxtmp-77-1";
  fs::create_directories(other.parent_path());
  make(old1, 5000, 7200);
  make(old2, 300, 7200);
  make(young, 100, 60);
  make(other, 100, 7200);

  Output dry = Nexusfs("gc " + Meta() + " --json");
  ASSERT_EQ(dry.code, 0) << dry.out;
  auto jd = nlohmann::json::parse(dry.out);
  EXPECT_EQ(jd["leftovers"].get<uint64_t>(), 2u) << dry.out;
  EXPECT_EQ(jd["leftover_bytes"].get<uint64_t>(), 5300u);
  EXPECT_EQ(jd["leftovers_removed"].get<uint64_t>(), 0u);
  EXPECT_TRUE(fs::exists(old1) && fs::exists(old2));

  Output del = Nexusfs("gc " + Meta() + " --delete");
  ASSERT_EQ(del.code, 0) << del.out;
  EXPECT_NE(del.out.find("leftovers:  2"), std::string::npos) << del.out;
  EXPECT_FALSE(fs::exists(old1));
  EXPECT_FALSE(fs::exists(old2));
  EXPECT_TRUE(fs::exists(young));  // inside --min-age
  EXPECT_TRUE(fs::exists(other));  // another volume's
  EXPECT_EQ(Objects(), objects);
  auto c = Client::Open(Meta(), Bucket());
  ASSERT_NE(c, nullptr);
  auto e = c->meta->Lookup(meta::Context::Root(), meta::kRootIno, "kept");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(c->Read(e->ino), Pattern(5, 3 * kBlock));
}

// Metadata damaged through the raw engine: fsck names each problem and exits 2; --repair fixes
// all but the missing block; fsck then reports only that block and the file it damages.
TEST_F(OpsTest, FsckReportsAndRepairsDamage) {
  meta::Ino a = 0, b = 0, cfile = 0, d = 0, e = 0, copy = 0;
  uint64_t b_slice = 0, shared_slice = 0;
  uint32_t b_size = 0, shared_size = 0;
  {
    auto c = Client::Open(Meta(), Bucket());
    ASSERT_NE(c, nullptr);
    const auto root = meta::Context::Root();
    a = c->Write(meta::kRootIno, "a", Pattern(1, 100000));
    b = c->Write(meta::kRootIno, "b", Pattern(2, 3 * kBlock));
    cfile = c->Write(meta::kRootIno, "c", Pattern(3, 5000));
    auto dir = c->meta->Mkdir(root, meta::kRootIno, "d", 0755);
    ASSERT_TRUE(dir.has_value());
    d = dir->ino;
    e = c->Write(d, "e", "");
    ASSERT_TRUE(c->meta->Link(root, b, d, "b-link").has_value());
    copy = c->Write(meta::kRootIno, "copy", "");
    ASSERT_TRUE(a && b && cfile && e && copy);
    auto n = c->meta->CopyRange(root, a, 0, copy, 0, 100000);  // slice of a: 2 references
    ASSERT_TRUE(n.has_value());
    auto rb = c->meta->ReadChunk(b, 0);
    ASSERT_TRUE(rb.has_value() && rb->size() == 1);
    b_slice = (*rb)[0].id;
    b_size = (*rb)[0].size;
    auto ra = c->meta->ReadChunk(a, 0);
    ASSERT_TRUE(ra.has_value() && ra->size() == 1);
    shared_slice = (*ra)[0].id;
    shared_size = (*ra)[0].size;
    ASSERT_EQ(c->Read(copy), Pattern(1, 100000));
  }
  Output clean = Nexusfs("fsck " + Meta());
  ASSERT_EQ(clean.code, 0) << clean.out;

  const meta::Ino ghost = 900000, lost = 5000, unlinked = 5001;
  Damage([&](kv::Txn& txn) -> Status {
    // An entry whose inode is gone.
    NX_TRY(txn.Put(keys::Dentry(meta::kRootIno, "ghost"),
                   keys::EncodeDentry(meta::FileType::kFile, ghost)));
    // A wrong nlink.
    NX_ASSIGN_OR_RETURN(auto v, txn.Get(keys::Attr(cfile)));
    meta::Attr at;
    NX_TRY(keys::DecodeAttr(*v, &at));
    at.nlink = 5;
    NX_TRY(txn.Put(keys::Attr(cfile), keys::EncodeAttr(at)));
    // A wrong reference count (2 in truth) and one for a slice referenced once.
    std::string refs;
    PutBE32(&refs, 7);
    NX_TRY(txn.Put(keys::SliceRef(shared_slice, shared_size), refs));
    // A wrong used-space counter.
    NX_TRY(txn.Add(keys::Counter("usedSpace"), 12345));
    // An inode no entry names, and an unlinked one open nowhere.
    meta::Attr o = at;
    o.nlink = 1;
    o.parent = meta::kRootIno;
    o.length = 0;
    NX_TRY(txn.Put(keys::Attr(lost), keys::EncodeAttr(o)));
    o.nlink = 0;
    NX_TRY(txn.Put(keys::Attr(unlinked), keys::EncodeAttr(o)));
    NX_TRY(txn.Add(keys::Counter("totalInodes"), 2));
    return Status::OK();
  });
  // A missing block object.
  const std::string missing = std::string(kVol) + "/chunks/" + std::to_string(b_slice / 1000000) +
                              "/" + std::to_string(b_slice / 1000) + "/" + std::to_string(b_slice) +
                              "_1_" + std::to_string(kBlock);
  ASSERT_TRUE(fs::remove(fs::path(Bucket()) / missing)) << missing;
  (void)b_size;

  Output bad = Nexusfs("fsck " + Meta());
  EXPECT_EQ(bad.code, 2) << bad.out;
  const std::string ghost_line = "dangling-entry entry 'ghost' in directory 1";
  for (const std::string& want : std::vector<std::string>{
           ghost_line, "nlink inode " + std::to_string(cfile) + ": nlink is 5 but 1 entry names it",
           "refcount slice " + std::to_string(shared_slice) + "_" + std::to_string(shared_size) +
               ": reference count is 7 but 2 chunk records reference it",
           "missing-block block " + missing, "damaged-file inode " + std::to_string(b),
           "counter counter usedSpace", "orphan inode " + std::to_string(lost),
           "orphan inode " + std::to_string(unlinked)}) {
    EXPECT_NE(bad.out.find(want), std::string::npos) << "missing '" << want << "' in\n" << bad.out;
  }
  // The damaged-file line names the bytes of b the lost block held.
  EXPECT_NE(bad.out.find("damaged-file inode " + std::to_string(b) + ": bytes [" +
                         std::to_string(kBlock) + ", " + std::to_string(2 * kBlock) + ")"),
            std::string::npos)
      << bad.out;

  // The same problems are found in many small windows (several passes).
  Output j1 = Nexusfs("fsck " + Meta() + " --json");
  Output j2 = Nexusfs("fsck " + Meta() + " --json --ino-window 3 --slice-window 2");
  ASSERT_EQ(j1.code, 2);
  ASSERT_EQ(j2.code, 2);
  auto p1 = nlohmann::json::parse(j1.out), p2 = nlohmann::json::parse(j2.out);
  EXPECT_GT(p2["stats"]["passes"].get<int>(), 3);
  std::set<std::string> l1, l2;
  for (const auto& p : p1["problems"])
    l1.insert(p["object"].get<std::string>() + p["message"].get<std::string>());
  for (const auto& p : p2["problems"])
    l2.insert(p["object"].get<std::string>() + p["message"].get<std::string>());
  EXPECT_EQ(l1, l2);

  Output rep = Nexusfs("fsck " + Meta() + " --repair");
  EXPECT_EQ(rep.code, 2) << rep.out;  // the missing block stays
  EXPECT_NE(rep.out.find("repair: removed entry 'ghost'"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("repair: moved inode 5000 to /lost+found/5000"), std::string::npos)
      << rep.out;
  EXPECT_NE(rep.out.find("repair: deleted inode 5001"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("unrepaired: missing-block"), std::string::npos) << rep.out;

  Output after = Nexusfs("fsck " + Meta() + " --json");
  EXPECT_EQ(after.code, 2) << after.out;
  auto ja = nlohmann::json::parse(after.out);
  EXPECT_EQ(Kinds(ja["problems"]), (std::set<std::string>{"missing-block", "damaged-file"}))
      << after.out;
  EXPECT_EQ(ja["problems"].size(), 2u) << after.out;

  auto c = Client::Open(Meta(), Bucket());
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->meta->GetAttr(cfile)->nlink, 1u);
  auto lf = c->meta->Lookup(meta::Context::Root(), meta::kRootIno, "lost+found");
  ASSERT_TRUE(lf.has_value());
  EXPECT_TRUE(c->meta->Lookup(meta::Context::Root(), lf->ino, "5000").has_value());
  EXPECT_FALSE(c->meta->GetAttr(unlinked).has_value());
  EXPECT_EQ(c->Read(copy), Pattern(1, 100000));
  EXPECT_EQ(c->Read(cfile), Pattern(3, 5000));
  auto st = c->meta->GetStatFs(meta::kRootIno);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->used_space, 100000u + 3 * kBlock + 5000u + 100000u);
}

TEST(ParseBlockKey, AcceptsOnlyCanonicalKeys) {
  uint64_t id;
  uint32_t b, s;
  EXPECT_TRUE(ops::ParseBlockKey("v/chunks/1/1234/1234567_3_65536", "v/", &id, &b, &s));
  EXPECT_EQ(id, 1234567u);
  EXPECT_EQ(b, 3u);
  EXPECT_EQ(s, 65536u);
  EXPECT_TRUE(ops::ParseBlockKey("v/chunks/0/0/7_0_10", "v/", &id, &b, &s));
  EXPECT_FALSE(ops::ParseBlockKey("v/chunks/0/1/7_0_10", "v/", &id, &b, &s));   // wrong dir
  EXPECT_FALSE(ops::ParseBlockKey("v/chunks/0/0/7_0_10x", "v/", &id, &b, &s));  // trailing
  EXPECT_FALSE(ops::ParseBlockKey("v/chunks/0/0/07_0_10", "v/", &id, &b, &s));  // zero-padded
  EXPECT_FALSE(ops::ParseBlockKey("w/chunks/0/0/7_0_10", "v/", &id, &b, &s));   // other volume
  EXPECT_FALSE(ops::ParseBlockKey("v/chunks/0/0/7_0_0", "v/", &id, &b, &s));    // empty block
}

}  // namespace
