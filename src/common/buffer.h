// Large buffers: memory for whole blocks (MiB each) that is written once, soon after it is
// allocated.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace nexus {

// A fresh buffer of a few MiB costs a page fault per 4 KiB page on first touch (each one zeroes
// its page and maps it): on the data path that halved the speed of the copy into a new block.
// Asking for transparent huge pages over the buffer's 2 MiB-aligned interior makes that one
// fault per 2 MiB. Only a hint: without THP (or with THP "never") nothing changes.
inline void AdviseHugePages(void* data, size_t len) {
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t p = reinterpret_cast<uintptr_t>(data);
  const uintptr_t from = (p + kHuge - 1) & ~(kHuge - 1), to = (p + len) & ~(kHuge - 1);
  if (to > from) (void)madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
}

// s->reserve(n), with huge pages asked for when `n` is large and the buffer is fresh.
inline void ReserveLarge(std::string* s, size_t n) {
  if (s->capacity() >= n) return;
  s->reserve(n);
  if (n >= (size_t(2) << 20)) AdviseHugePages(s->data(), s->capacity());
}

}  // namespace nexus
