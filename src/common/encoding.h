// Fixed-width big-endian and little-endian encodings for keys and records.
// Big-endian integers inside keys keep ordered scans in numeric order.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace nexus {

inline void PutBE64(std::string* dst, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i, v >>= 8) b[i] = static_cast<char>(v & 0xff);
  dst->append(b, 8);
}
inline void PutBE32(std::string* dst, uint32_t v) {
  char b[4];
  for (int i = 3; i >= 0; --i, v >>= 8) b[i] = static_cast<char>(v & 0xff);
  dst->append(b, 4);
}
inline void PutBE16(std::string* dst, uint16_t v) {
  dst->push_back(static_cast<char>(v >> 8));
  dst->push_back(static_cast<char>(v & 0xff));
}
inline void PutU8(std::string* dst, uint8_t v) { dst->push_back(static_cast<char>(v)); }

inline uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint32_t GetBE32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint16_t GetBE16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

// The smallest key greater than every key starting with `prefix`, for [prefix, end) scans;
// "" (no upper bound) when the prefix is empty or all 0xff bytes.
inline std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c != 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return end;
}

// A bounds-checked cursor over a record; every Get returns false once the input is exhausted,
// so decoders of damaged records fail cleanly instead of reading past the end.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool GetU8(uint8_t* v) {
    if (in_.size() < 1) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool GetBE16(uint16_t* v) {
    if (in_.size() < 2) return false;
    *v = nexus::GetBE16(in_.data());
    in_.remove_prefix(2);
    return true;
  }
  bool GetBE32(uint32_t* v) {
    if (in_.size() < 4) return false;
    *v = nexus::GetBE32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool GetBE64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = nexus::GetBE64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  bool GetBytes(size_t n, std::string_view* v) {
    if (in_.size() < n) return false;
    *v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return in_; }
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace nexus
