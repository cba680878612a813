// One corrupted byte in a stored block object: reads of that range fail with EIO and a log line
// naming the object; every other byte of the file still reads back right.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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

TEST(ChunkCorruptionTest, OneBadByteFailsOnlyItsRange) {
  char tmpl[] = "/tmp/nexus-corrupt-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  spdlog::default_logger()->sinks().push_back(sink);

  auto e = kv::Engine::Open("mem://");
  ASSERT_TRUE(e);
  auto m = meta::Meta::Create(std::move(*e));
  meta::Format f;
  f.name = "corrupt";
  ASSERT_TRUE(m->Format(f, false).ok());
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
  std::string path;
  for (const auto& p : fs::recursive_directory_iterator(dir + "/data")) {
    if (p.path().filename().string().find("_1_" + std::to_string(bs)) != std::string::npos) {
      path = p.path().string();
    }
  }
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

}  // namespace
}  // namespace nexus::chunk
