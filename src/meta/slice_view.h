// Resolving a chunk's slice records into what a reader sees.
#pragma once

#include <vector>

#include "meta/types.h"

namespace nexus::meta {

// Resolves slice records in append order (a later record wins where it overlaps an earlier
// one) into non-overlapping pieces sorted by pos that cover [0, end of the furthest record).
// Gaps and holes come out as pieces with id 0 (read as zeros). Adjacent pieces are not merged.
std::vector<Slice> BuildSliceView(const std::vector<Slice>& records);

}  // namespace nexus::meta
