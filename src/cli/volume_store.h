// The object-store stack of a volume, as its settings describe it: the backend, fault injection
// when asked, and the framed block format with the volume's compression and encryption.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "meta/types.h"
#include "object/object_store.h"

namespace nexus::cli {

// The block format of volumes formatted since framing (meta::Format::block_format); an empty
// block_format means raw blocks, one object per block as written.
inline constexpr const char* kFramedBlockFormat = "frames-v1";

// Opens the backend of `f` and stacks on it: FaultyStore when `inject_faults` is not empty
// ("rate=0.1,delay=5ms,seed=1"), then FrameStore for a framed volume. An encrypted volume's data
// key is unwrapped here, once, with the passphrase from NEXUS_RSA_PASSPHRASE; a wrong or missing
// passphrase is EACCES and nothing is written.
Result<std::unique_ptr<object::ObjectStore>> OpenVolumeStore(const meta::Format& f,
                                                             const std::string& inject_faults = {});

// NEXUS_RSA_PASSPHRASE, or "".
std::string RsaPassphrase();

}  // namespace nexus::cli
