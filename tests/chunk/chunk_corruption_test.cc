// One corrupted byte in a stored block object: reads of that range fail with EIO and a log line
// naming the object; every other byte of the file still reads back right.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "chunk/chunk_store.h"
#include "common/logging.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

namespace fs = std::filesystem;

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  uint64_t x = 12345;
  for (auto& c : s) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    c = static_cast<char>(x >> 56);
  }
  return s;
}

// Metadata of a volume "corrupt" formatted in memory.
std::unique_ptr<meta::Meta> FormattedMeta() {
  auto e = kv::Engine::Open("mem://");
  EXPECT_TRUE(e);
  if (!e) return nullptr;
  auto m = meta::Meta::Create(std::move(*e));
  meta::Format f;
  f.name = "corrupt";
  EXPECT_TRUE(m->Format(f, false).ok());
  return m;
}

// The file of block `index` (of `bs` bytes) of the only slice under `dir`/data, or "".
std::string BlockFile(const std::string& dir, uint32_t index, uint32_t bs) {
  const std::string tag = "_" + std::to_string(index) + "_" + std::to_string(bs);
  std::string path;
  for (const auto& p : fs::recursive_directory_iterator(dir + "/data")) {
    if (p.path().filename().string().find(tag) != std::string::npos) path = p.path().string();
  }
  return path;
}

TEST(ChunkCorruptionTest, OneBadByteFailsOnlyItsRange) {
  char tmpl[] = "/tmp/nexus-corrupt-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  spdlog::default_logger()->sinks().push_back(sink);

  auto m = FormattedMeta();
  ASSERT_NE(m, nullptr);
  object::FrameOptions frames;
  frames.compression = object::Compression::kZstd;
  auto open_store = [&] {
    auto s = object::ObjectStore::Open("file://" + dir + "/data");
    EXPECT_TRUE(s);
    return object::NewFrameStore(std::move(*s), frames);
  };
  ChunkOptions o;
  o.block_size = 1 << 20;
  o.prefix = "corrupt/";
  o.background = false;
  const uint32_t bs = o.block_size;
  const std::string data = Pattern(3 * bs);
  meta::Context ctx;
  auto ent = m->Create(ctx, meta::kRootIno, "f", 0644, O_RDWR);
  ASSERT_TRUE(ent);
  {
    auto store = open_store();
    auto chunks = ChunkStore::Open(m.get(), store.get(), o);
    ASSERT_TRUE(chunks);
    ASSERT_TRUE((*chunks)->Write(ent->ino, 0, data.data(), data.size()).ok());
    ASSERT_TRUE((*chunks)->Flush(ent->ino).ok());
    ASSERT_TRUE((*chunks)->Shutdown().ok());
  }
  // Flip one byte inside frame 3 of block 1 (original bytes [bs + 192 KiB, bs + 256 KiB)).
  const std::string path = BlockFile(dir, 1, bs);
  ASSERT_FALSE(path.empty());
  std::string object;
  {
    std::ifstream in(path, std::ios::binary);
    object.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  object::BlockCodec codec(frames);
  const std::string key = path.substr(dir.size() + 6);  // after "<dir>/data/"
  auto h = codec.ParseHeader(key, object);
  ASSERT_TRUE(h) << h.error().ToString();
  object[h->frames[3].offset + h->frames[3].stored_size / 2] ^= 0x40;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << object;
  }

  auto store = open_store();
  auto chunks = ChunkStore::Open(m.get(), store.get(), o);
  ASSERT_TRUE(chunks);
  auto read = [&](uint64_t off, size_t len) -> Result<std::string> {
    std::string buf(len, '\0');
    NX_ASSIGN_OR_RETURN(size_t n, (*chunks)->Read(ent->ino, off, buf.data(), len, data.size()));
    buf.resize(n);
    return buf;
  };
  const uint64_t bad = bs + 3 * (64 << 10);
  // A small read of the bad frame fails, and the log names the object.
  auto r = read(bad + 100, 4096);
  ASSERT_FALSE(r) << "corrupted data was returned";
  EXPECT_EQ(r.error().code(), EIO);
  bool logged = false;
  for (const auto& line : sink->last_formatted()) {
    if (line.find(key) != std::string::npos && line.find("checksum") != std::string::npos) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << "no log line names " << key;
  // A large read over the bad block fails too.
  EXPECT_EQ(read(bs, bs).error().code(), EIO);
  // Small reads of the other frames of the same block, and the other blocks, read right.
  for (uint64_t off : {uint64_t(bs), bad - 4096, bad + (64 << 10), uint64_t(2 * bs) - 4096}) {
    auto ok = read(off, 4096);
    ASSERT_TRUE(ok) << "read at " << off << ": " << ok.error().ToString();
    EXPECT_EQ(*ok, data.substr(off, 4096)) << off;
  }
  for (uint64_t blk : {0u, 2u}) {
    auto ok = read(blk * bs, bs);
    ASSERT_TRUE(ok) << ok.error().ToString();
    EXPECT_EQ(*ok, data.substr(blk * bs, bs));
  }
  ASSERT_TRUE((*chunks)->Shutdown().ok());
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  fs::remove_all(dir);
}

// Frames stored as they are on file://: reads go to the objects in place, and reads handed on in
// pieces (a FUSE reply) take the bytes from the object's mapping. Both verify what they serve.
// Reads of a local store in place, by pread into the caller's buffer or (map) from the object's
// mapping, verify the frames they return as every other read does.
void CheckLocalReadsVerify(bool map) {
  char tmpl[] = "/tmp/nexus-corrupt-local-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto m = FormattedMeta();
  ASSERT_NE(m, nullptr);
  auto s = object::ObjectStore::Open("file://" + dir + "/data");
  ASSERT_TRUE(s);
  auto store = object::NewFrameStore(std::move(*s), {});
  ASSERT_TRUE(store->ReadsLocally());
  ChunkOptions o;
  o.block_size = 1 << 20;
  o.prefix = "corrupt/";
  o.background = false;
  o.mem_cache_size = 0;  // every read goes to the objects
  o.map_local_reads = map;
  const uint32_t bs = o.block_size;
  const std::string data = Pattern(3 * bs);
  meta::Context ctx;
  auto ent = m->Create(ctx, meta::kRootIno, "f", 0644, O_RDWR);
  ASSERT_TRUE(ent);
  auto chunks = ChunkStore::Open(m.get(), store.get(), o);
  ASSERT_TRUE(chunks);
  ASSERT_TRUE((*chunks)->Write(ent->ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE((*chunks)->Flush(ent->ino).ok());

  std::vector<ReadPiece> pieces;
  auto read = [&](uint64_t off, size_t len, bool in_pieces) -> Result<std::string> {
    std::string buf(len, '\0');
    if (!in_pieces) {
      NX_ASSIGN_OR_RETURN(size_t n, (*chunks)->Read(ent->ino, off, buf.data(), len, data.size()));
      buf.resize(n);
      return buf;
    }
    NX_ASSIGN_OR_RETURN(
        size_t n, (*chunks)->ReadPieces(ent->ino, off, buf.data(), len, data.size(), &pieces));
    std::string out;
    for (const ReadPiece& p : pieces) out.append(p.data, p.len);
    if (pieces.empty()) out = buf.substr(0, n);
    return out;
  };
  // Before: pieces of a large read point into the mapped objects, or it was read into the
  // caller's buffer.
  auto before = read(bs, bs, true);
  ASSERT_TRUE(before) << before.error().ToString();
  EXPECT_TRUE(*before == data.substr(bs, bs));
  if (map) {
    ASSERT_FALSE(pieces.empty());
    EXPECT_TRUE(pieces[0].keep != nullptr) << "the bytes were copied, not mapped";
  } else {
    for (const ReadPiece& p : pieces) EXPECT_TRUE(p.keep == nullptr) << "a piece was mapped";
  }

  // Flip one byte of frame 3 of block 1 in place (the object stays mapped: the same pages).
  const std::string path = BlockFile(dir, 1, bs);
  ASSERT_FALSE(path.empty());
  const auto size = fs::file_size(path);
  const uint64_t at = size - bs + 3 * (64 << 10) + 1000;  // the frames follow the header
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    io.seekp(static_cast<std::streamoff>(at));
    io.write(&c, 1);
  }
  const uint64_t bad = bs + 3 * (64 << 10);
  for (bool in_pieces : {false, true}) {
    auto r = read(bad, 64 << 10, in_pieces);
    ASSERT_FALSE(r) << "corrupted data was returned, pieces " << in_pieces;
    EXPECT_EQ(r.error().code(), EIO);
    EXPECT_EQ(read(bs, bs, in_pieces).error().code(), EIO);
    for (uint64_t off : {uint64_t(bs), bad + (64 << 10), uint64_t(2 * bs)}) {
      auto ok = read(off, 128 << 10, in_pieces);
      ASSERT_TRUE(ok) << "read at " << off << ": " << ok.error().ToString();
      EXPECT_TRUE(*ok == data.substr(off, 128 << 10)) << off;
    }
  }
  pieces.clear();
  ASSERT_TRUE((*chunks)->Shutdown().ok());
  fs::remove_all(dir);
}

TEST(ChunkCorruptionTest, OnALocalStoreReadsInPlaceVerifyToo) { CheckLocalReadsVerify(false); }

TEST(ChunkCorruptionTest, OnALocalStoreMappedReadsVerifyToo) { CheckLocalReadsVerify(true); }

}  // namespace
}  // namespace nexus::chunk
