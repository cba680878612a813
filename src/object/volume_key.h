// The data key of an encrypted volume: one random AES-256 key per volume, wrapped with
// RSA-OAEP (SHA-256) by the volume's RSA key. The RSA private key is kept in the volume's
// settings as PEM encrypted with a passphrase that only the user knows (NEXUS_RSA_PASSPHRASE),
// so a mount needs the passphrase and unwraps the data key once (docs/security.md).
#pragma once

#include <string>
#include <string_view>

#include "object/block_codec.h"

namespace nexus::object {

constexpr std::string_view kEncryptAlgo = "aes256gcm-rsa";

struct VolumeKey {
  std::string private_pem;  // PKCS#8 PEM, encrypted with the passphrase (AES-256-CBC)
  std::string wrapped_key;  // base64 of RSA-OAEP-SHA256(data key)
};

// Reads the RSA private key `pem` (itself encrypted with `passphrase` or not; at least 2048
// bits), makes a new random data key and wraps it. `passphrase` must not be empty.
Result<VolumeKey> NewVolumeKey(std::string_view pem, std::string_view passphrase);

// Decrypts the private key with `passphrase` and unwraps the data key. EACCES when the
// passphrase is wrong or the key does not unwrap.
Result<DataKey> UnwrapVolumeKey(const VolumeKey& key, std::string_view passphrase);

}  // namespace nexus::object
