#include "cli/volume_store.h"

#include <cstdlib>

#include "cli/cli_util.h"
#include "object/block_codec.h"
#include "object/volume_key.h"

namespace nexus::cli {

std::string RsaPassphrase() {
  const char* p = std::getenv("NEXUS_RSA_PASSPHRASE");
  return p ? p : "";
}

Result<std::unique_ptr<object::ObjectStore>> OpenVolumeStore(const meta::Format& f,
                                                             const std::string& inject_faults) {
  const bool framed = f.block_format == kFramedBlockFormat;
  if (!f.block_format.empty() && !framed) {
    return Err(ENOTSUP, "volume '" + f.name + "' has block format '" + f.block_format +
                            "', which this nexusfs does not know");
  }
  if (!framed && (!f.encrypt_algo.empty() || !f.compression.empty())) {
    return Err(EINVAL, "volume '" + f.name +
                           "' has raw blocks but asks for compression or "
                           "encryption");
  }
  object::FrameOptions fo;
  if (framed) {
    NX_ASSIGN_OR_RETURN(fo.compression, object::ParseCompression(f.compression));
    if (!f.encrypt_algo.empty()) {
      if (f.encrypt_algo != object::kEncryptAlgo) {
        return Err(ENOTSUP, "volume '" + f.name + "' is encrypted with '" + f.encrypt_algo +
                                "', which this nexusfs does not know");
      }
      auto key = object::UnwrapVolumeKey(object::VolumeKey{f.encrypt_key, f.encrypt_data_key},
                                         RsaPassphrase());
      if (!key) return Err(key.error().With("volume '" + f.name + "' is encrypted"));
      fo.data_key = *key;
    }
  }
  std::string url = StorageUrl(f.storage, f.bucket);
  auto store = object::ObjectStore::Open(url, StoreOptionsFor(f));
  if (!store) return Err(store.error().With("object store " + RedactedUrl(url)));
  std::unique_ptr<object::ObjectStore> s = std::move(*store);
  if (!inject_faults.empty()) {
    NX_ASSIGN_OR_RETURN(object::FaultOptions faults, object::ParseFaultSpec(inject_faults));
    s = object::NewFaultyStore(std::move(s), faults);
  }
  if (framed) s = object::NewFrameStore(std::move(s), std::move(fo));
  if (fo.data_key) fo.data_key->fill(0);  // FrameStore keeps its own copy
  return s;
}

}  // namespace nexus::cli
