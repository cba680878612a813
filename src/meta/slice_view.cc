#include "meta/slice_view.h"

#include <algorithm>

namespace nexus::meta {

std::vector<Slice> BuildSliceView(const std::vector<Slice>& records) {
  // Pieces stay sorted by pos and non-overlapping; each record cuts what it covers.
  std::vector<Slice> view;
  for (const Slice& r : records) {
    if (r.len == 0) continue;
    const uint64_t rs = r.pos, re = static_cast<uint64_t>(r.pos) + r.len;
    std::vector<Slice> next;
    next.reserve(view.size() + 2);
    bool inserted = false;
    for (const Slice& p : view) {
      const uint64_t ps = p.pos, pe = static_cast<uint64_t>(p.pos) + p.len;
      if (pe <= rs || ps >= re) {
        if (!inserted && ps >= re) {
          next.push_back(r);
          inserted = true;
        }
        next.push_back(p);
        continue;
      }
      if (ps < rs) {  // left remainder
        Slice left = p;
        left.len = static_cast<uint32_t>(rs - ps);
        next.push_back(left);
      }
      if (!inserted) {
        next.push_back(r);
        inserted = true;
      }
      if (pe > re) {  // right remainder
        Slice right = p;
        right.pos = static_cast<uint32_t>(re);
        right.len = static_cast<uint32_t>(pe - re);
        if (right.id != 0) right.off = p.off + static_cast<uint32_t>(re - ps);
        next.push_back(right);
      }
    }
    if (!inserted) next.push_back(r);
    view.swap(next);
  }
  // Fill gaps with holes so that the pieces tile [0, end).
  std::vector<Slice> out;
  out.reserve(view.size() * 2);
  uint64_t at = 0;
  for (const Slice& p : view) {
    if (p.pos > at)
      out.push_back(Slice{static_cast<uint32_t>(at), 0, 0, 0, static_cast<uint32_t>(p.pos - at)});
    out.push_back(p);
    at = static_cast<uint64_t>(p.pos) + p.len;
  }
  return out;
}

}  // namespace nexus::meta
