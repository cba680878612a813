// The framed block format: encoding, verification and decoding (docs/formats.md).
#include "object/block_codec.h"

#include <lz4.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <zstd.h>

#include <cstring>

#include "common/encoding.h"
#include "common/logging.h"
#include "common/xxh.h"

namespace nexus::object {
namespace {

constexpr char kMagic[4] = {'N', 'X', 'F', 'B'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kEncryptedFlag = 0x80;
constexpr size_t kTagSize = 16;
constexpr uint32_t kMinFrameSize = 1 << 10, kMaxFrameSize = 64 << 20;
constexpr uint64_t kMaxOriginalSize = uint64_t(1) << 40;
constexpr int kZstdLevel = 1;

uint64_t KeySeed(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }

uint64_t FrameChecksum(uint64_t key_seed, size_t index, std::string_view stored) {
  return XXH3_64bits_withSeed(stored.data(), stored.size(),
                              key_seed ^ ((index + 1) * 0x9E3779B97F4A7C15ULL));
}

uint64_t HeaderChecksum(uint64_t key_seed, std::string_view fixed, std::string_view table) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset_withSeed(st, key_seed);
  XXH3_64bits_update(st, fixed.data(), fixed.size());
  XXH3_64bits_update(st, table.data(), table.size());
  uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return h;
}

Status Corrupt(std::string_view key, const std::string& what) {
  std::string msg = "object " + std::string(key) + ": " + what;
  NX_LOG_ERROR("{}", msg);
  return Status::IOError(msg);
}

// The associated data of a frame: the object key, the frame index, the object's original size
// and the frame's flags, so that a frame decrypts only in its own place.
std::string FrameAad(std::string_view key, size_t index, uint64_t original_size, uint32_t flags) {
  std::string aad(key);
  PutBE32(&aad, static_cast<uint32_t>(index));
  PutBE64(&aad, original_size);
  PutBE32(&aad, flags);
  return aad;
}

std::array<uint8_t, 12> FrameNonce(size_t index) {
  std::array<uint8_t, 12> n{};
  uint64_t v = index;
  for (int i = 0; i < 8; ++i) n[11 - i] = static_cast<uint8_t>(v >> (8 * i));
  return n;
}

struct CipherCtx {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
};

}  // namespace

Result<Compression> ParseCompression(std::string_view name) {
  if (name.empty() || name == "none") return Compression::kNone;
  if (name == "lz4") return Compression::kLz4;
  if (name == "zstd") return Compression::kZstd;
  return Err(EINVAL, "compression '" + std::string(name) + "' is not one of none, lz4, zstd");
}

std::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kLz4:
      return "lz4";
    case Compression::kZstd:
      return "zstd";
    default:
      return "none";
  }
}

uint32_t FrameHeader::frame_length(size_t i) const {
  uint64_t start = uint64_t(i) * frame_size;
  return static_cast<uint32_t>(std::min<uint64_t>(frame_size, original_size - start));
}

// The per-object key: HMAC-SHA256(data key, "nexusfs frame v1" || salt). Each object has a
// random 128-bit salt, so each object has its own key and the frame index is a unique nonce.
struct BlockCodec::Crypto {
  DataKey key;
  std::array<uint8_t, 32> ObjectKey(const std::array<uint8_t, 16>& salt) const {
    std::string msg = "nexusfs frame v1";
    msg.append(reinterpret_cast<const char*>(salt.data()), salt.size());
    std::array<uint8_t, 32> out{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &len);
    return out;
  }
};

BlockCodec::BlockCodec(FrameOptions options) : opts_(std::move(options)) {
  if (opts_.frame_size < kMinFrameSize) opts_.frame_size = kMinFrameSize;
  if (opts_.frame_size > kMaxFrameSize) opts_.frame_size = kMaxFrameSize;
  if (opts_.data_key) {
    crypto_ = std::make_unique<Crypto>();
    crypto_->key = *opts_.data_key;
    opts_.data_key.reset();  // one copy of the key in memory is enough
  }
}

BlockCodec::~BlockCodec() {
  if (crypto_) OPENSSL_cleanse(crypto_->key.data(), crypto_->key.size());
}

namespace {

// Compresses `in` with `c` into `out`; false when the result would not be smaller.
bool CompressFrame(Compression c, std::string_view in, std::string* out) {
  if (c == Compression::kLz4) {
    out->resize(LZ4_compressBound(static_cast<int>(in.size())));
    int n = LZ4_compress_default(in.data(), out->data(), static_cast<int>(in.size()),
                                 static_cast<int>(out->size()));
    if (n <= 0 || static_cast<size_t>(n) >= in.size()) return false;
    out->resize(n);
    return true;
  }
  if (c == Compression::kZstd) {
    thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(),
                                                                         ZSTD_freeCCtx);
    out->resize(ZSTD_compressBound(in.size()));
    size_t n =
        ZSTD_compressCCtx(cctx.get(), out->data(), out->size(), in.data(), in.size(), kZstdLevel);
    if (ZSTD_isError(n) || n >= in.size()) return false;
    out->resize(n);
    return true;
  }
  return false;
}

bool DecompressFrame(Compression c, std::string_view in, char* out, size_t raw_len) {
  if (c == Compression::kLz4) {
    int n =
        LZ4_decompress_safe(in.data(), out, static_cast<int>(in.size()), static_cast<int>(raw_len));
    return n >= 0 && static_cast<size_t>(n) == raw_len;
  }
  if (c == Compression::kZstd) {
    thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                                         ZSTD_freeDCtx);
    size_t n = ZSTD_decompressDCtx(dctx.get(), out, raw_len, in.data(), in.size());
    return !ZSTD_isError(n) && n == raw_len;
  }
  return false;
}

}  // namespace

namespace {

// The first 40 bytes of the header: magic, version, flags, frame size, frame count, original
// size, salt (the header checksum follows them).
std::string FixedHeader(uint8_t flags, uint32_t frame_size, size_t count, uint64_t original_size,
                        const std::array<uint8_t, 16>& salt) {
  std::string fixed;
  fixed.append(kMagic, 4);
  PutU8(&fixed, kVersion);
  PutU8(&fixed, flags);
  PutBE16(&fixed, 0);
  PutBE32(&fixed, frame_size);
  PutBE32(&fixed, static_cast<uint32_t>(count));
  PutBE64(&fixed, original_size);
  fixed.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  return fixed;
}

// The header (fixed part and its checksum) followed by the frame table.
std::string JoinHeader(uint64_t seed, const std::string& fixed, const std::string& table) {
  std::string head;
  head.reserve(kFrameHeaderSize + table.size());
  head = fixed;
  PutBE64(&head, HeaderChecksum(seed, fixed, table));
  head += table;
  return head;
}

}  // namespace

bool BlockCodec::stores_frames_verbatim() const {
  return opts_.compression == Compression::kNone && !crypto_;
}

Result<std::string> BlockCodec::EncodeHeader(std::string_view key, std::string_view data) const {
  if (!stores_frames_verbatim()) {
    return Err(EINVAL, "object " + std::string(key) +
                           ": frames are compressed or encrypted, the data is not stored as is");
  }
  if (data.size() >= kMaxOriginalSize) return Err(EFBIG, "object " + std::string(key) + " too big");
  const uint32_t fs = opts_.frame_size;
  const size_t count = (data.size() + fs - 1) / fs;
  const uint64_t seed = KeySeed(key);
  std::string table;
  table.reserve(count * kFrameEntrySize);
  for (size_t i = 0; i < count; ++i) {
    std::string_view raw = data.substr(i * fs, fs);
    PutBE32(&table, static_cast<uint32_t>(raw.size()));
    PutBE32(&table, 0);
    PutBE64(&table, FrameChecksum(seed, i, raw));
  }
  return JoinHeader(seed,
                    FixedHeader(static_cast<uint8_t>(Compression::kNone), fs, count, data.size(),
                                std::array<uint8_t, 16>{}),
                    table);
}

uint64_t BlockCodec::HeaderSize(uint64_t size) const {
  const uint64_t fs = opts_.frame_size;
  return kFrameHeaderSize + kFrameEntrySize * ((size + fs - 1) / fs);
}

Result<std::string> BlockCodec::EncodeHeaderFromSums(std::string_view key, uint64_t size,
                                                     const std::vector<uint64_t>& sums) const {
  if (!stores_frames_verbatim()) {
    return Err(EINVAL, "object " + std::string(key) +
                           ": frames are compressed or encrypted, the data is not stored as is");
  }
  if (size >= kMaxOriginalSize) return Err(EFBIG, "object " + std::string(key) + " too big");
  const uint32_t fs = opts_.frame_size;
  const size_t count = static_cast<size_t>((size + fs - 1) / fs);
  if (sums.size() != count) {
    return Err(EINVAL, "object " + std::string(key) + ": " + std::to_string(sums.size()) +
                           " frame checksums for " + std::to_string(count) + " frames");
  }
  std::string table;
  table.reserve(count * kFrameEntrySize);
  for (size_t i = 0; i < count; ++i) {
    PutBE32(&table, static_cast<uint32_t>(std::min<uint64_t>(fs, size - uint64_t(i) * fs)));
    PutBE32(&table, 0);
    PutBE64(&table, sums[i]);
  }
  return JoinHeader(KeySeed(key),
                    FixedHeader(static_cast<uint8_t>(Compression::kNone), fs, count, size,
                                std::array<uint8_t, 16>{}),
                    table);
}

FrameSummer::FrameSummer(std::string_view key, uint32_t frame_size)
    : seed_(KeySeed(key)), frame_size_(frame_size), state_(XXH3_createState()) {}

FrameSummer::~FrameSummer() { XXH3_freeState(state_); }

void FrameSummer::StartFrame() {
  XXH3_64bits_reset_withSeed(state_, seed_ ^ ((sums_.size() + 1) * 0x9E3779B97F4A7C15ULL));
}

void FrameSummer::Update(std::string_view data) {
  while (!data.empty()) {
    if (in_frame_ == 0) StartFrame();
    const size_t n = std::min<size_t>(data.size(), frame_size_ - in_frame_);
    XXH3_64bits_update(state_, data.data(), n);
    in_frame_ += static_cast<uint32_t>(n);
    data.remove_prefix(n);
    if (in_frame_ == frame_size_) {
      sums_.push_back(XXH3_64bits_digest(state_));
      in_frame_ = 0;
    }
  }
}

std::vector<uint64_t> FrameSummer::Finish() {
  if (in_frame_ > 0) {
    sums_.push_back(XXH3_64bits_digest(state_));
    in_frame_ = 0;
  }
  return std::move(sums_);
}

Result<std::string> BlockCodec::Encode(std::string_view key, std::string_view data) const {
  if (data.size() >= kMaxOriginalSize) return Err(EFBIG, "object " + std::string(key) + " too big");
  if (stores_frames_verbatim()) {
    NX_ASSIGN_OR_RETURN(std::string obj, EncodeHeader(key, data));
    obj.reserve(obj.size() + data.size());
    obj.append(data);
    return obj;
  }
  const uint32_t fs = opts_.frame_size;
  const size_t count = (data.size() + fs - 1) / fs;
  const uint64_t seed = KeySeed(key);
  std::string table, obj;
  uint8_t flags = static_cast<uint8_t>(opts_.compression) | (crypto_ ? kEncryptedFlag : 0);
  std::array<uint8_t, 16> salt{};
  std::array<uint8_t, 32> object_key{};
  if (crypto_) {
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
      return Err(EIO, "object " + std::string(key) + ": no random bytes for the salt");
    }
    object_key = crypto_->ObjectKey(salt);
  }
  const std::string fixed = FixedHeader(flags, fs, count, data.size(), salt);
  // The frames go straight after room for the header and table, filled in at the end: one
  // buffer, one copy of the data.
  const size_t frames_at = kFrameHeaderSize + count * kFrameEntrySize;
  obj.reserve(frames_at + data.size() + count * kTagSize);
  obj.resize(frames_at);
  CipherCtx cipher;
  std::string packed;
  for (size_t i = 0; i < count; ++i) {
    std::string_view raw = data.substr(i * fs, fs);
    uint32_t fflags = 0;
    std::string_view payload = raw;
    if (opts_.compression != Compression::kNone && CompressFrame(opts_.compression, raw, &packed)) {
      fflags |= kFrameCompressed;
      payload = packed;
    }
    const size_t start = obj.size();
    if (crypto_) {
      auto nonce = FrameNonce(i);
      std::string aad = FrameAad(key, i, data.size(), fflags);
      int n = 0;
      obj.resize(start + payload.size() + kTagSize);
      auto* dst = reinterpret_cast<unsigned char*>(obj.data() + start);
      bool ok = EVP_EncryptInit_ex(cipher.ctx, EVP_aes_256_gcm(), nullptr, object_key.data(),
                                   nonce.data()) == 1 &&
                EVP_EncryptUpdate(cipher.ctx, nullptr, &n,
                                  reinterpret_cast<const unsigned char*>(aad.data()),
                                  static_cast<int>(aad.size())) == 1 &&
                EVP_EncryptUpdate(cipher.ctx, dst, &n,
                                  reinterpret_cast<const unsigned char*>(payload.data()),
                                  static_cast<int>(payload.size())) == 1 &&
                EVP_EncryptFinal_ex(cipher.ctx, dst + n, &n) == 1 &&
                EVP_CIPHER_CTX_ctrl(cipher.ctx, EVP_CTRL_GCM_GET_TAG, kTagSize,
                                    dst + payload.size()) == 1;
      if (!ok) return Err(EIO, "object " + std::string(key) + ": encryption failed");
    } else {
      obj.append(payload);
    }
    std::string_view stored(obj.data() + start, obj.size() - start);
    PutBE32(&table, static_cast<uint32_t>(stored.size()));
    PutBE32(&table, fflags);
    PutBE64(&table, FrameChecksum(seed, i, stored));
  }
  OPENSSL_cleanse(object_key.data(), object_key.size());
  const std::string head = JoinHeader(seed, fixed, table);
  obj.replace(0, head.size(), head);
  return obj;
}

Result<uint64_t> BlockCodec::HeaderLength(std::string_view key, std::string_view prefix) const {
  if (prefix.size() < kFrameHeaderSize || std::memcmp(prefix.data(), kMagic, 4) != 0) {
    return Err(Corrupt(key, "is not a framed block object (bad magic or too short: " +
                                std::to_string(prefix.size()) + " bytes)"));
  }
  uint32_t count = GetBE32(prefix.data() + 12);
  return kFrameHeaderSize + uint64_t(count) * kFrameEntrySize;
}

Result<FrameHeader> BlockCodec::ParseHeader(std::string_view key, std::string_view prefix) const {
  NX_ASSIGN_OR_RETURN(uint64_t need, HeaderLength(key, prefix));
  if (prefix.size() < need) {
    return Err(Corrupt(key, "header and frame table are truncated"));
  }
  const uint64_t seed = KeySeed(key);
  std::string_view fixed = prefix.substr(0, kFrameHeaderSize - 8);
  std::string_view table = prefix.substr(kFrameHeaderSize, need - kFrameHeaderSize);
  if (HeaderChecksum(seed, fixed, table) != GetBE64(prefix.data() + kFrameHeaderSize - 8)) {
    return Err(Corrupt(key, "header checksum mismatch (header or frame table is corrupt)"));
  }
  FrameHeader h;
  const uint8_t version = static_cast<uint8_t>(prefix[4]);
  h.flags = static_cast<uint8_t>(prefix[5]);
  h.frame_size = GetBE32(prefix.data() + 8);
  const uint32_t count = GetBE32(prefix.data() + 12);
  h.original_size = GetBE64(prefix.data() + 16);
  std::memcpy(h.salt.data(), prefix.data() + 24, h.salt.size());
  if (version != kVersion) {
    return Err(Corrupt(key, "block format version " + std::to_string(version) + " is unknown"));
  }
  if ((h.flags & 3) == 3 || (h.flags & 0x7c) || h.frame_size < kMinFrameSize ||
      h.frame_size > kMaxFrameSize || h.original_size >= kMaxOriginalSize ||
      count != (h.original_size + h.frame_size - 1) / h.frame_size) {
    return Err(Corrupt(key, "header fields are inconsistent"));
  }
  if (h.encrypted() && !crypto_) {
    return Err(Corrupt(key, "is encrypted but this volume has no data key"));
  }
  if (!h.encrypted() && crypto_) {
    return Err(Corrupt(key, "is not encrypted but this volume encrypts every block"));
  }
  h.frames.resize(count);
  uint64_t off = need;
  const uint32_t overhead = h.encrypted() ? kTagSize : 0;
  for (uint32_t i = 0; i < count; ++i) {
    auto& e = h.frames[i];
    const char* p = table.data() + i * kFrameEntrySize;
    e.stored_size = GetBE32(p);
    e.flags = GetBE32(p + 4);
    e.checksum = GetBE64(p + 8);
    e.offset = off;
    const uint32_t raw = h.frame_length(i);
    bool compressed = e.flags & kFrameCompressed;
    if ((e.flags & ~kFrameCompressed) ||
        (compressed && (h.compression() == Compression::kNone || e.stored_size >= raw + overhead ||
                        e.stored_size < overhead)) ||
        (!compressed && e.stored_size != raw + overhead)) {
      return Err(Corrupt(key, "frame table entry " + std::to_string(i) + " is inconsistent"));
    }
    off += e.stored_size;
  }
  return h;
}

Status BlockCodec::DecodeFrames(std::string_view key, const FrameHeader& h, size_t first,
                                size_t last, std::string_view stored, std::string* out) const {
  const uint64_t seed = KeySeed(key);
  const uint64_t base = h.frames[first].offset;
  const uint64_t end = h.frames[last].offset + h.frames[last].stored_size;
  if (stored.size() < end - base) {
    return Corrupt(key, "is truncated: frames " + std::to_string(first) + "-" +
                            std::to_string(last) + " need " + std::to_string(end - base) +
                            " bytes, got " + std::to_string(stored.size()));
  }
  std::array<uint8_t, 32> object_key{};
  if (h.encrypted()) object_key = crypto_->ObjectKey(h.salt);
  CipherCtx cipher;
  std::string plain;
  for (size_t i = first; i <= last; ++i) {
    const auto& e = h.frames[i];
    std::string_view s = stored.substr(e.offset - base, e.stored_size);
    if (FrameChecksum(seed, i, s) != e.checksum) {
      OPENSSL_cleanse(object_key.data(), object_key.size());
      return Corrupt(key, "frame " + std::to_string(i) + " checksum mismatch");
    }
    std::string_view payload = s;
    if (h.encrypted()) {
      auto nonce = FrameNonce(i);
      std::string aad = FrameAad(key, i, h.original_size, e.flags);
      const size_t n_ct = s.size() - kTagSize;
      plain.resize(n_ct);
      int n = 0;
      auto* dst = reinterpret_cast<unsigned char*>(plain.data());
      std::array<uint8_t, kTagSize> tag;
      std::memcpy(tag.data(), s.data() + n_ct, kTagSize);
      bool ok =
          EVP_DecryptInit_ex(cipher.ctx, EVP_aes_256_gcm(), nullptr, object_key.data(),
                             nonce.data()) == 1 &&
          EVP_DecryptUpdate(cipher.ctx, nullptr, &n,
                            reinterpret_cast<const unsigned char*>(aad.data()),
                            static_cast<int>(aad.size())) == 1 &&
          EVP_DecryptUpdate(cipher.ctx, dst, &n, reinterpret_cast<const unsigned char*>(s.data()),
                            static_cast<int>(n_ct)) == 1 &&
          EVP_CIPHER_CTX_ctrl(cipher.ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) == 1 &&
          EVP_DecryptFinal_ex(cipher.ctx, dst + n, &n) == 1;
      if (!ok) {
        OPENSSL_cleanse(object_key.data(), object_key.size());
        return Corrupt(key, "frame " + std::to_string(i) +
                                " does not authenticate (wrong key, or moved from elsewhere)");
      }
      payload = plain;
    }
    const uint32_t raw = h.frame_length(i);
    if (e.flags & kFrameCompressed) {
      size_t at = out->size();
      out->resize(at + raw);
      if (!DecompressFrame(h.compression(), payload, out->data() + at, raw)) {
        out->resize(at);
        OPENSSL_cleanse(object_key.data(), object_key.size());
        return Corrupt(key, "frame " + std::to_string(i) + " does not decompress");
      }
    } else {
      out->append(payload);
    }
  }
  OPENSSL_cleanse(object_key.data(), object_key.size());
  return Status::OK();
}

Status BlockCodec::VerifyFrames(std::string_view key, const FrameHeader& h, size_t first,
                                size_t last, std::string_view stored) const {
  if (!h.verbatim()) {
    return Status::InvalidArgument("object " + std::string(key) +
                                   ": frames are compressed or encrypted, not stored as is");
  }
  const uint64_t seed = KeySeed(key);
  const uint64_t base = h.frames[first].offset;
  const uint64_t end = h.frames[last].offset + h.frames[last].stored_size;
  if (stored.size() != end - base) {
    return Corrupt(key, "frames " + std::to_string(first) + "-" + std::to_string(last) + " need " +
                            std::to_string(end - base) + " bytes, got " +
                            std::to_string(stored.size()));
  }
  for (size_t i = first; i <= last; ++i) {
    const auto& e = h.frames[i];
    if (FrameChecksum(seed, i, stored.substr(e.offset - base, e.stored_size)) != e.checksum) {
      return Corrupt(key, "frame " + std::to_string(i) + " checksum mismatch");
    }
  }
  return Status::OK();
}

Result<std::string> BlockCodec::Decode(std::string_view key, std::string_view object, uint64_t off,
                                       uint64_t len) const {
  NX_ASSIGN_OR_RETURN(FrameHeader h, ParseHeader(key, object));
  if (object.size() != h.stored_size()) {
    return Err(Corrupt(key, "has " + std::to_string(object.size()) + " bytes, its header says " +
                                std::to_string(h.stored_size())));
  }
  if (off >= h.original_size || len == 0) return std::string();
  len = std::min(len, h.original_size - off);
  const size_t first = off / h.frame_size, last = (off + len - 1) / h.frame_size;
  std::string out;
  out.reserve(uint64_t(last - first + 1) * h.frame_size);
  NX_TRY(DecodeFrames(key, h, first, last, object.substr(h.frames[first].offset), &out));
  const uint64_t skip = off - uint64_t(first) * h.frame_size;
  if (skip == 0 && out.size() == len) return out;
  return out.substr(skip, len);
}

}  // namespace nexus::object
