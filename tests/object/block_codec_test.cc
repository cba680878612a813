// The framed block format: ranged reads, compression, corruption and tampering, keys, and the
// fault-injection layer.
#include "object/block_codec.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "common/encoding.h"
#include "object/stores.h"
#include "object/volume_key.h"

namespace nexus::object {
namespace {

std::string Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Text-like data that compresses well, with a random stretch that does not.
std::string Mixed(size_t n, uint64_t seed) {
  std::string s;
  std::mt19937_64 rng(seed);
  while (s.size() < n) s += "line " + std::to_string(rng() % 1000) + " of some log text\n";
  s.resize(n);
  if (n > 3 * 4096) s.replace(n / 3, 4096, Random(4096, seed + 1));
  return s;
}

FrameOptions Stack(const std::string& name, uint32_t frame_size = 64 << 10) {
  FrameOptions o;
  o.frame_size = frame_size;
  if (name.find("lz4") != std::string::npos) o.compression = Compression::kLz4;
  if (name.find("zstd") != std::string::npos) o.compression = Compression::kZstd;
  if (name.find("aes") != std::string::npos) o.data_key = DataKey{7, 7, 7, 42};
  return o;
}

// A FrameStore over a mem:// store that the test can also reach directly.
struct Stacked {
  ObjectStore* raw;
  std::unique_ptr<ObjectStore> framed;
  explicit Stacked(const FrameOptions& o) {
    auto inner = NewMemStore();
    raw = inner.get();
    framed = NewFrameStore(std::move(inner), o);
  }
  // A second FrameStore over the same objects with an empty header cache (another client).
  std::unique_ptr<ObjectStore> Fresh(const FrameOptions& o) {
    struct Borrowed final : ObjectStore {
      ObjectStore* s;
      explicit Borrowed(ObjectStore* s) : s(s) {}
      Status Put(std::string_view k, std::string_view d) override { return s->Put(k, d); }
      Result<std::string> Get(std::string_view k, uint64_t o, uint64_t l) override {
        return s->Get(k, o, l);
      }
      Result<ObjectInfo> Head(std::string_view k) override { return s->Head(k); }
      Status Delete(std::string_view k) override { return s->Delete(k); }
      Result<ListResult> List(std::string_view p, std::string_view m, size_t l) override {
        return s->List(p, m, l);
      }
      std::string Name() const override { return s->Name(); }
    };
    return NewFrameStore(std::make_unique<Borrowed>(raw), o);
  }
};

class CodecTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CodecTest, RangedReadsAtFrameBoundaries) {
  const uint32_t fs = 4096;
  FrameOptions o = Stack(GetParam(), fs);
  Stacked st(o);
  const std::string data = Mixed(7 * fs + 123, 3);
  ASSERT_TRUE(st.framed->Put("k", data).ok());
  auto fresh = st.Fresh(o);
  for (ObjectStore* s : {st.framed.get(), fresh.get()}) {
    for (uint64_t frame = 0; frame <= 8; ++frame) {
      for (int64_t delta : {-1, 0, 1}) {
        int64_t off = int64_t(frame * fs) + delta;
        if (off < 0) continue;
        for (uint64_t len : {uint64_t(1), uint64_t(2), uint64_t(fs), uint64_t(fs + 1),
                             uint64_t(3 * fs), uint64_t(UINT64_MAX)}) {
          auto got = s->Get("k", off, len);
          ASSERT_TRUE(got) << got.error().ToString();
          std::string want = uint64_t(off) >= data.size() ? "" : data.substr(off, len);
          ASSERT_EQ(*got, want) << "off " << off << " len " << len;
        }
      }
    }
    EXPECT_EQ(s->Head("k")->size, data.size());
  }
}

TEST_P(CodecTest, EmptyObject) {
  FrameOptions o = Stack(GetParam());
  Stacked st(o);
  ASSERT_TRUE(st.framed->Put("e", "").ok());
  EXPECT_EQ(st.raw->Head("e")->size, kFrameHeaderSize);
  EXPECT_EQ(*st.Fresh(o)->Get("e", 0, UINT64_MAX), "");
  EXPECT_EQ(*st.Fresh(o)->Get("e", 10, 10), "");
  EXPECT_EQ(st.Fresh(o)->Head("e")->size, 0u);
}

TEST_P(CodecTest, IncompressibleFramesAreStoredRawAndCompressibleOnesShrink) {
  FrameOptions o = Stack(GetParam());
  Stacked st(o);
  const std::string noise = Random(300000, 9);
  ASSERT_TRUE(st.framed->Put("noise", noise).ok());
  const size_t frames = (noise.size() + o.frame_size - 1) / o.frame_size;
  const size_t tag = o.data_key ? 16 : 0;
  EXPECT_EQ(st.raw->Head("noise")->size,
            kFrameHeaderSize + frames * (kFrameEntrySize + tag) + noise.size());
  auto raw = st.raw->Get("noise", 0, UINT64_MAX);
  BlockCodec codec(Stack(GetParam()));
  auto h = codec.ParseHeader("noise", *raw);
  ASSERT_TRUE(h) << h.error().ToString();
  for (const auto& e : h->frames) EXPECT_EQ(e.flags & kFrameCompressed, 0u);
  EXPECT_EQ(*st.Fresh(o)->Get("noise", 0, UINT64_MAX), noise);

  const std::string text = Mixed(1 << 20, 4);
  ASSERT_TRUE(st.framed->Put("text", text).ok());
  const uint64_t stored = st.raw->Head("text")->size;
  if (o.compression == Compression::kNone) {
    EXPECT_GT(stored, text.size());
  } else {
    EXPECT_LT(stored, text.size() / 3) << "compressible data did not shrink";
  }
  EXPECT_EQ(*st.Fresh(o)->Get("text", 0, UINT64_MAX), text);
  EXPECT_EQ(*st.Fresh(o)->Get("text", 500000, 4096), text.substr(500000, 4096));
}

// Every single flipped byte, in the header, the table or any frame, gives EIO, for a whole
// read and for a ranged read through a store that has not cached the header.
TEST_P(CodecTest, AnyFlippedByteIsAnError) {
  const uint32_t fs = 1024;
  FrameOptions o = Stack(GetParam(), fs);
  Stacked st(o);
  const std::string data = Mixed(3 * fs + 100, 5);
  ASSERT_TRUE(st.framed->Put("v/k", data).ok());
  const std::string good = *st.raw->Get("v/k", 0, UINT64_MAX);
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= static_cast<char>(1 + i % 255);
    ASSERT_TRUE(st.raw->Put("v/k", bad).ok());
    auto fresh = st.Fresh(o);
    auto whole = fresh->Get("v/k", 0, UINT64_MAX);
    ASSERT_FALSE(whole) << "flipped byte " << i << " of " << good.size() << " went unnoticed";
    EXPECT_EQ(whole.error().code(), EIO);
    EXPECT_NE(whole.error().message().find("v/k"), std::string::npos);
    // A ranged read of the frame holding byte i (or of frame 0 for the header and table).
    BlockCodec codec(o);
    auto h = codec.ParseHeader("v/k", good);
    ASSERT_TRUE(h);
    uint64_t off = 0;
    for (size_t f = 0; f < h->frames.size(); ++f) {
      if (i >= h->frames[f].offset) off = uint64_t(f) * fs;
    }
    auto ranged = st.Fresh(o)->Get("v/k", off, 100);
    ASSERT_FALSE(ranged) << "flipped byte " << i << " went unnoticed by a ranged read";
    EXPECT_EQ(ranged.error().code(), EIO);
  }
}

// The same through the store that wrote the object, whose header cache still holds the good
// header: frames stored as they are verify in place (no decode copy) and must still be checked.
TEST_P(CodecTest, FlippedFrameByteIsAnErrorWithTheHeaderCached) {
  const uint32_t fs = 1024;
  FrameOptions o = Stack(GetParam(), fs);
  Stacked st(o);
  const std::string data = Mixed(4 * fs, 9);
  ASSERT_TRUE(st.framed->Put("c/k", data).ok());
  const std::string good = *st.raw->Get("c/k", 0, UINT64_MAX);
  BlockCodec codec(o);
  auto h = codec.ParseHeader("c/k", good);
  ASSERT_TRUE(h);
  for (size_t f = 0; f < h->frames.size(); ++f) {
    std::string bad = good;
    bad[h->frames[f].offset + h->frames[f].stored_size / 2] ^= 0x5a;
    ASSERT_TRUE(st.raw->Put("c/k", bad).ok());
    auto whole = st.framed->Get("c/k", 0, UINT64_MAX);
    ASSERT_FALSE(whole) << "frame " << f << " flipped, whole read";
    EXPECT_EQ(whole.error().code(), EIO);
    ASSERT_TRUE(st.framed->Put("c/k", data).ok());  // caches the header again
    ASSERT_TRUE(st.raw->Put("c/k", bad).ok());
    auto ranged = st.framed->Get("c/k", uint64_t(f) * fs + 10, 100);
    ASSERT_FALSE(ranged) << "frame " << f << " flipped, ranged read";
    EXPECT_EQ(ranged.error().code(), EIO);
    ASSERT_TRUE(st.framed->Put("c/k", data).ok());
    EXPECT_EQ(*st.framed->Get("c/k", uint64_t(f) * fs + 10, 100), data.substr(f * fs + 10, 100));
  }
}

TEST_P(CodecTest, TruncatedObjectIsAnError) {
  FrameOptions o = Stack(GetParam(), 1024);
  Stacked st(o);
  const std::string data = Mixed(5000, 6);
  ASSERT_TRUE(st.framed->Put("t", data).ok());
  const std::string good = *st.raw->Get("t", 0, UINT64_MAX);
  for (size_t cut : {size_t(0), size_t(10), kFrameHeaderSize, good.size() - 1}) {
    ASSERT_TRUE(st.raw->Put("t", good.substr(0, cut)).ok());
    EXPECT_EQ(st.Fresh(o)->Get("t", 0, UINT64_MAX).error().code(), EIO) << cut;
    EXPECT_EQ(st.Fresh(o)->Get("t", 4500, 100).error().code(), EIO) << cut;
  }
}

// Frame 1 of object A replaced by frame 1 of object B, table entry included, and the header
// checksum recomputed as an attacker could: an encrypted volume still refuses it (the frame
// key and the AAD bind it to its object); a plain one catches the unadjusted swap.
TEST_P(CodecTest, FramesSwappedBetweenObjectsAreErrors) {
  const uint32_t fs = 1024;
  FrameOptions o = Stack(GetParam(), fs);
  Stacked st(o);
  const std::string a = Mixed(3 * fs, 7), b = Mixed(3 * fs, 8);
  ASSERT_TRUE(st.framed->Put("obj/a", a).ok());
  ASSERT_TRUE(st.framed->Put("obj/b", b).ok());
  std::string sa = *st.raw->Get("obj/a", 0, UINT64_MAX), sb = *st.raw->Get("obj/b", 0, UINT64_MAX);
  BlockCodec codec(o);
  auto ha = codec.ParseHeader("obj/a", sa), hb = codec.ParseHeader("obj/b", sb);
  ASSERT_TRUE(ha && hb);
  auto splice = [&](bool fix_checksums) {
    std::string out = sa.substr(0, ha->frames[1].offset);
    std::string_view fb(sb.data() + hb->frames[1].offset, hb->frames[1].stored_size);
    out.replace(kFrameHeaderSize + kFrameEntrySize, kFrameEntrySize,
                sb.substr(kFrameHeaderSize + kFrameEntrySize, kFrameEntrySize));
    out += fb;
    out += sa.substr(ha->frames[2].offset);
    if (fix_checksums) {
      // Recompute the frame checksum for its new place and the header checksum (docs/formats.md).
      const uint64_t seed = XXH3_64bits("obj/a", 5);
      std::string entry;
      PutBE64(&entry,
              XXH3_64bits_withSeed(fb.data(), fb.size(), seed ^ (2 * 0x9E3779B97F4A7C15ULL)));
      out.replace(kFrameHeaderSize + kFrameEntrySize + 8, 8, entry);
      XXH3_state_t* x = XXH3_createState();
      XXH3_64bits_reset_withSeed(x, seed);
      XXH3_64bits_update(x, out.data(), kFrameHeaderSize - 8);
      XXH3_64bits_update(x, out.data() + kFrameHeaderSize, 3 * kFrameEntrySize);
      std::string sum;
      PutBE64(&sum, XXH3_64bits_digest(x));
      XXH3_freeState(x);
      out.replace(kFrameHeaderSize - 8, 8, sum);
    }
    return out;
  };
  ASSERT_TRUE(st.raw->Put("obj/a", splice(false)).ok());
  EXPECT_EQ(st.Fresh(o)->Get("obj/a", 0, UINT64_MAX).error().code(), EIO);
  EXPECT_EQ(st.Fresh(o)->Get("obj/a", fs, 10).error().code(), EIO);
  ASSERT_TRUE(st.raw->Put("obj/a", splice(true)).ok());
  auto got = st.Fresh(o)->Get("obj/a", fs, fs);
  if (o.data_key) {
    ASSERT_FALSE(got) << "a frame moved from another object decrypted";
    EXPECT_EQ(got.error().code(), EIO);
  } else {
    // Without a key nothing secret binds a frame; the checksums only catch accidents.
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, b.substr(fs, fs));
  }
  // A whole object under another key: refused by key-seeded checksums.
  ASSERT_TRUE(st.raw->Put("obj/c", sb).ok());
  EXPECT_EQ(st.Fresh(o)->Get("obj/c", 0, UINT64_MAX).error().code(), EIO);
}

INSTANTIATE_TEST_SUITE_P(Stacks, CodecTest,
                         ::testing::Values("frames", "lz4", "zstd", "aes", "lz4_aes", "zstd_aes"),
                         [](const auto& info) { return info.param; });

TEST(CodecKeyTest, WrongKeyOrMissingKeyIsAnError) {
  FrameOptions k1 = Stack("zstd_aes"), k2 = k1, none = Stack("zstd");
  k2.data_key = DataKey{9, 9, 9};
  Stacked st(k1);
  const std::string data = Mixed(200000, 11);
  ASSERT_TRUE(st.framed->Put("x", data).ok());
  EXPECT_EQ(*st.Fresh(k1)->Get("x", 0, UINT64_MAX), data);
  for (const FrameOptions& o : {k2, none}) {
    EXPECT_EQ(st.Fresh(o)->Get("x", 0, UINT64_MAX).error().code(), EIO);
    EXPECT_EQ(st.Fresh(o)->Get("x", 70000, 10).error().code(), EIO);
  }
  // An unencrypted object on an encrypted volume is refused too.
  ASSERT_TRUE(st.Fresh(none)->Put("plain", data).ok());
  EXPECT_EQ(st.Fresh(k1)->Get("plain", 0, UINT64_MAX).error().code(), EIO);
  // Encrypting twice gives different bytes (a fresh salt per object).
  ASSERT_TRUE(st.framed->Put("y", data).ok());
  EXPECT_NE(*st.raw->Get("x", 0, UINT64_MAX), *st.raw->Get("y", 0, UINT64_MAX));
}

// The bytes of an unencrypted, uncompressed framed object, built from docs/formats.md alone: a
// change to how blocks are encoded must keep existing volumes readable.
std::string PlainObjectPerTheSpec(std::string_view key, std::string_view data, uint32_t fs) {
  const uint64_t seed = XXH3_64bits(key.data(), key.size());
  const uint32_t count = static_cast<uint32_t>((data.size() + fs - 1) / fs);
  std::string fixed = "NXFB";
  PutU8(&fixed, 1);
  PutU8(&fixed, 0);
  PutBE16(&fixed, 0);
  PutBE32(&fixed, fs);
  PutBE32(&fixed, count);
  PutBE64(&fixed, data.size());
  fixed.append(16, '\0');
  std::string table;
  for (uint32_t i = 0; i < count; ++i) {
    std::string_view f = data.substr(size_t(i) * fs, fs);
    PutBE32(&table, static_cast<uint32_t>(f.size()));
    PutBE32(&table, 0);
    PutBE64(&table,
            XXH3_64bits_withSeed(f.data(), f.size(), seed ^ ((i + 1) * 0x9E3779B97F4A7C15ULL)));
  }
  std::string both = fixed + table;
  // XXH3 streaming over bytes 0-39 then the table = one-shot over their concatenation.
  std::string obj = fixed;
  PutBE64(&obj, XXH3_64bits_withSeed(both.data(), both.size(), seed));
  return obj + table + std::string(data);
}

TEST(CodecFormatTest, PlainFramesAreTheSpecsBytesAndTheHeaderThenTheData) {
  for (size_t n : {size_t(0), size_t(1), size_t(4096), size_t(4097), size_t(100000)}) {
    BlockCodec codec(Stack("frames", 4096));
    ASSERT_TRUE(codec.stores_frames_verbatim());
    const std::string data = Random(n, n + 1);
    const std::string want = PlainObjectPerTheSpec("k/1_0_" + std::to_string(n), data, 4096);
    auto obj = codec.Encode("k/1_0_" + std::to_string(n), data);
    ASSERT_TRUE(obj) << obj.error().ToString();
    EXPECT_EQ(*obj, want) << n;
    auto head = codec.EncodeHeader("k/1_0_" + std::to_string(n), data);
    ASSERT_TRUE(head) << head.error().ToString();
    EXPECT_EQ(*head + data, want) << n;
    EXPECT_EQ(*codec.Decode("k/1_0_" + std::to_string(n), want), data);
  }
  for (std::string stack : {"lz4", "aes"}) {
    BlockCodec codec(Stack(stack));
    EXPECT_FALSE(codec.stores_frames_verbatim());
    EXPECT_EQ(codec.EncodeHeader("k", "data").error().code(), EINVAL) << stack;
  }
}

// FrameStore over file:// sends plain blocks as header + data parts (writev): the file holds
// exactly the encoded object, and a store with an empty header cache reads it back.
TEST(CodecFormatTest, FrameStoreOverFilesWritesTheEncodedObject) {
  char tmpl[] = "/tmp/nexus-codec-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto file = ObjectStore::Open("file://" + dir);
    ASSERT_TRUE(file);
    auto framed = NewFrameStore(std::move(*file), Stack("frames"));
    const std::string data = Random((4 << 20) - 5, 9);
    ASSERT_TRUE(framed->Put("c/7_0_4194299", data).ok());
    auto raw = ObjectStore::Open("file://" + dir);
    ASSERT_TRUE(raw);
    EXPECT_EQ(*(*raw)->Get("c/7_0_4194299"),
              PlainObjectPerTheSpec("c/7_0_4194299", data, 64 << 10));
    auto again = NewFrameStore(std::move(*raw), Stack("frames"));
    EXPECT_EQ(*again->Get("c/7_0_4194299", 70000, 5000), data.substr(70000, 5000));
    EXPECT_EQ(*again->Get("c/7_0_4194299"), data);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

TEST(CodecKeyTest, RawObjectsAreNotFramed) {
  Stacked st(Stack("frames"));
  ASSERT_TRUE(st.raw->Put("old", std::string(5000, 'x')).ok());
  auto got = st.framed->Get("old", 0, 100);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), EIO);
  EXPECT_EQ(st.framed->Get("missing", 0, 100).error().code(), ENOENT);
}

std::string NewRsaPem(int bits, const char* passphrase) {
  EVP_PKEY* key = EVP_RSA_gen(bits);
  BIO* bio = BIO_new(BIO_s_mem());
  if (passphrase) {
    PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), const_cast<char*>(passphrase),
                                  static_cast<int>(strlen(passphrase)), nullptr, nullptr);
  } else {
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  std::string pem(p, n);
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

TEST(VolumeKeyTest, WrapsAndUnwrapsWithThePassphraseOnly) {
  const std::string plain_pem = NewRsaPem(2048, nullptr);
  auto vk = NewVolumeKey(plain_pem, "s3cret");
  ASSERT_TRUE(vk) << vk.error().ToString();
  EXPECT_NE(vk->private_pem.find("ENCRYPTED PRIVATE KEY"), std::string::npos);
  auto dk = UnwrapVolumeKey(*vk, "s3cret");
  ASSERT_TRUE(dk) << dk.error().ToString();
  auto again = UnwrapVolumeKey(*vk, "s3cret");
  EXPECT_EQ(*dk, *again);
  EXPECT_EQ(UnwrapVolumeKey(*vk, "wrong").error().code(), EACCES);
  EXPECT_EQ(UnwrapVolumeKey(*vk, "").error().code(), EACCES);
  VolumeKey tampered = *vk;
  tampered.wrapped_key[10] = tampered.wrapped_key[10] == 'A' ? 'B' : 'A';
  EXPECT_EQ(UnwrapVolumeKey(tampered, "s3cret").error().code(), EACCES);
  // Two volumes get two data keys.
  auto vk2 = NewVolumeKey(plain_pem, "s3cret");
  EXPECT_NE(*UnwrapVolumeKey(*vk2, "s3cret"), *dk);
}

TEST(VolumeKeyTest, BadKeysAndPassphrases) {
  EXPECT_EQ(NewVolumeKey(NewRsaPem(2048, nullptr), "").error().code(), EINVAL);
  EXPECT_EQ(NewVolumeKey("not a key", "pw").error().code(), EACCES);
  EXPECT_EQ(NewVolumeKey(NewRsaPem(1024, nullptr), "pw").error().code(), EINVAL);
  const std::string enc = NewRsaPem(2048, "pw");
  EXPECT_EQ(NewVolumeKey(enc, "other").error().code(), EACCES);
  auto vk = NewVolumeKey(enc, "pw");
  ASSERT_TRUE(vk);
  EXPECT_TRUE(UnwrapVolumeKey(*vk, "pw"));
}

TEST(FaultyStoreTest, FailsTheConfiguredFractionDeterministically) {
  auto run = [](uint64_t seed) {
    auto s = NewFaultyStore(NewMemStore(), FaultOptions{0.1, 0, seed});
    std::string pattern;
    for (int i = 0; i < 2000; ++i) {
      Status st = s->Put("k" + std::to_string(i), "v");
      pattern += st.ok() ? '.' : 'x';
      if (!st.ok()) {
        EXPECT_EQ(st.code(), EIO);
      }
    }
    return pattern;
  };
  std::string a = run(5), b = run(5), c = run(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  size_t failed = std::count(a.begin(), a.end(), 'x');
  EXPECT_GT(failed, 140u);
  EXPECT_LT(failed, 260u);
  // A failed Put stored nothing.
  auto inner = NewMemStore();
  ObjectStore* raw = inner.get();
  auto s = NewFaultyStore(std::move(inner), FaultOptions{0.5, 0, 1});
  for (int i = 0; i < 100; ++i) {
    bool ok = s->Put("p" + std::to_string(i), "v").ok();
    EXPECT_EQ(ok, raw->Head("p" + std::to_string(i)).has_value()) << i;
  }
}

TEST(FaultyStoreTest, ParsesSpecs) {
  auto o = ParseFaultSpec("rate=0.25,delay=5ms,seed=9");
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_DOUBLE_EQ(o->fail_rate, 0.25);
  EXPECT_EQ(o->max_delay_us, 5000);
  EXPECT_EQ(o->seed, 9u);
  EXPECT_EQ(ParseFaultSpec("delay=200us")->max_delay_us, 200);
  EXPECT_EQ(ParseFaultSpec("min_delay=2s")->min_delay_us, 2000000);
  EXPECT_EQ(ParseFaultSpec("")->fail_rate, 0);
  for (const char* bad : {"rate=2", "rate=x", "delay=5h", "nope=1", "rate", "seed=-1"}) {
    EXPECT_EQ(ParseFaultSpec(bad).error().code(), EINVAL) << bad;
  }
}

}  // namespace
}  // namespace nexus::object
