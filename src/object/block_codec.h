// The framed block format and the ObjectStore layers stacked on a backend: checksums,
// compression and encryption per frame (FrameStore), and fault injection (FaultyStore).
//
// A framed object is a 48-byte header, a table of 16 bytes per frame and the frames; each frame
// holds up to `frame_size` bytes of the original data and decodes on its own, so a ranged Get
// reads only the frames it needs. The byte layout is in docs/formats.md.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "object/object_store.h"

struct XXH3_state_s;  // xxhash.h

namespace nexus::object {

enum class Compression : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };
// "", "none", "lz4", "zstd".
Result<Compression> ParseCompression(std::string_view name);
std::string_view CompressionName(Compression c);

using DataKey = std::array<uint8_t, 32>;  // AES-256 key

struct FrameOptions {
  Compression compression = Compression::kNone;
  uint32_t frame_size = 64 << 10;  // bytes of original data per frame
  // Encrypt every frame with AES-256-GCM under a key derived from this one and a per-object
  // salt. A store with a key refuses to read unencrypted objects, and one without a key
  // refuses encrypted ones.
  std::optional<DataKey> data_key;
  size_t header_cache_entries = 4096;  // parsed headers kept (1.5 KiB for a 4 MiB block)
};

constexpr size_t kFrameHeaderSize = 48;
constexpr size_t kFrameEntrySize = 16;
constexpr uint32_t kFrameCompressed = 1;  // frame flag: the stored bytes are compressed

// The parsed and verified header and table of one framed object.
struct FrameHeader {
  uint8_t flags = 0;  // bits 0-1 compression algorithm, bit 7 encrypted
  uint32_t frame_size = 0;
  uint64_t original_size = 0;
  std::array<uint8_t, 16> salt{};
  struct Entry {
    uint32_t stored_size = 0;
    uint32_t flags = 0;
    uint64_t checksum = 0;
    uint64_t offset = 0;  // of the stored frame in the object (computed)
  };
  std::vector<Entry> frames;

  bool encrypted() const { return flags & 0x80; }
  Compression compression() const { return static_cast<Compression>(flags & 3); }
  // Every frame is stored as the original bytes (no compression, no encryption): the stored
  // bytes of frames [first, last] are the original bytes of those frames.
  bool verbatim() const { return compression() == Compression::kNone && !encrypted(); }
  uint64_t table_end() const { return kFrameHeaderSize + kFrameEntrySize * frames.size(); }
  uint64_t stored_size() const {
    return frames.empty() ? table_end() : frames.back().offset + frames.back().stored_size;
  }
  // Length of frame i of the original data.
  uint32_t frame_length(size_t i) const;
};

// Encodes and decodes framed objects. Thread-safe; every error names the object and is EIO
// (the stored bytes are not what was written, or cannot be read with this configuration).
class BlockCodec {
 public:
  explicit BlockCodec(FrameOptions options);
  ~BlockCodec();
  BlockCodec(const BlockCodec&) = delete;
  BlockCodec& operator=(const BlockCodec&) = delete;

  const FrameOptions& options() const { return opts_; }
  Result<std::string> Encode(std::string_view key, std::string_view data) const;
  // True when frames are stored as they are (no compression, no encryption): the framed object
  // of `data` is then EncodeHeader(key, data) followed by `data` itself.
  bool stores_frames_verbatim() const;
  // The header and frame table of the framed object of `data` (checksums computed over `data`
  // in place); EINVAL unless stores_frames_verbatim().
  Result<std::string> EncodeHeader(std::string_view key, std::string_view data) const;
  // The header and frame table of a verbatim framed object of `key` holding `size` bytes whose
  // frame checksums (FrameSummer) are `sums`; EINVAL unless stores_frames_verbatim() and there
  // is one checksum per frame.
  Result<std::string> EncodeHeaderFromSums(std::string_view key, uint64_t size,
                                           const std::vector<uint64_t>& sums) const;
  // Bytes of the header and table of a framed object of `size` original bytes.
  uint64_t HeaderSize(uint64_t size) const;
  // The number of bytes of the object's start that ParseHeader needs, knowing its first
  // kFrameHeaderSize bytes (EIO when they are not a framed header).
  Result<uint64_t> HeaderLength(std::string_view key, std::string_view prefix) const;
  // Parses and verifies the header and table from the object's first bytes (at least
  // HeaderLength of them).
  Result<FrameHeader> ParseHeader(std::string_view key, std::string_view prefix) const;
  // Verifies and decodes frames [first, last] whose stored bytes are `stored` (contiguous, as
  // in the object), appending the original bytes to `out`.
  Status DecodeFrames(std::string_view key, const FrameHeader& h, size_t first, size_t last,
                      std::string_view stored, std::string* out) const;
  // Verifies the checksums of frames [first, last] of a verbatim object (h.verbatim()) whose
  // stored bytes are `stored`, which then are the original bytes: no copy.
  Status VerifyFrames(std::string_view key, const FrameHeader& h, size_t first, size_t last,
                      std::string_view stored) const;
  // Decodes a whole object; `off`/`len` select the original bytes to return.
  Result<std::string> Decode(std::string_view key, std::string_view object, uint64_t off = 0,
                             uint64_t len = UINT64_MAX) const;

 private:
  struct Crypto;
  FrameOptions opts_;
  std::unique_ptr<Crypto> crypto_;
};

// The frame checksums of an object of `key`, computed from its bytes as they arrive (in order),
// equal to what BlockCodec::EncodeHeader computes over the whole.
class FrameSummer {
 public:
  FrameSummer(std::string_view key, uint32_t frame_size);
  ~FrameSummer();
  FrameSummer(const FrameSummer&) = delete;
  FrameSummer& operator=(const FrameSummer&) = delete;
  void Update(std::string_view data);
  // One checksum per frame, the last possibly short; the summer is done after it.
  std::vector<uint64_t> Finish();

 private:
  void StartFrame();
  const uint64_t seed_;
  const uint32_t frame_size_;
  uint32_t in_frame_ = 0;  // bytes of the current frame so far
  std::vector<uint64_t> sums_;
  ::XXH3_state_s* state_;
};

// FrameStore: stores every object in the framed format through `inner`. A ranged Get costs one
// GET of the needed frames when the object's header is cached (it is after a Put or Get through
// this store), two otherwise (the header and table, then the frames). Head reports the
// original size; List reports stored sizes (listing does not read objects).
std::unique_ptr<ObjectStore> NewFrameStore(std::unique_ptr<ObjectStore> inner,
                                           FrameOptions options);

struct FaultOptions {
  double fail_rate = 0;      // fraction of calls that fail with a transient EIO
  int64_t max_delay_us = 0;  // each call first sleeps a random time in [min, max_delay_us]
  uint64_t seed = 1;         // the same seed and call order give the same faults
  int64_t min_delay_us = 0;  // (a min above max makes every delay min)
};
// "rate=0.1,delay=5ms,min_delay=1ms,seed=7" (delays in us, ms or s; every part optional).
Result<FaultOptions> ParseFaultSpec(std::string_view spec);
// FaultyStore: fails a fraction of the calls to `inner` (before they reach it, so a failed
// Put stores nothing) and delays calls, for tests and for `nexusfs mount --inject-faults`.
std::unique_ptr<ObjectStore> NewFaultyStore(std::unique_ptr<ObjectStore> inner,
                                            FaultOptions options);

}  // namespace nexus::object
