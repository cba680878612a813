// Volume data keys: RSA-OAEP wrapping, passphrase-encrypted private keys (OpenSSL 3).
#include "object/volume_key.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <cstring>
#include <memory>

namespace nexus::object {
namespace {

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using PKeyCtx = std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)>;
using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// PEM_read's password callback: hands over the passphrase (never prompts).
int PassphraseCb(char* buf, int size, int, void* u) {
  auto* p = static_cast<std::string_view*>(u);
  if (!p || p->empty() || static_cast<int>(p->size()) > size) return 0;
  std::memcpy(buf, p->data(), p->size());
  return static_cast<int>(p->size());
}

Result<PKey> ReadPrivateKey(std::string_view pem, std::string_view passphrase) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, PassphraseCb, &passphrase), EVP_PKEY_free);
  if (!key) {
    std::string why = OpenSslError();
    return Err(EACCES,
               "cannot read the RSA private key (wrong passphrase, or not a PEM private "
               "key): " +
                   why);
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    return Err(EINVAL, "the private key is not an RSA key");
  }
  if (EVP_PKEY_get_bits(key.get()) < 2048) {
    return Err(EINVAL, "the RSA key has " + std::to_string(EVP_PKEY_get_bits(key.get())) +
                           " bits; at least 2048 are needed");
  }
  return key;
}

Result<PKeyCtx> OaepCtx(EVP_PKEY* key, bool encrypt) {
  PKeyCtx ctx(EVP_PKEY_CTX_new(key, nullptr), EVP_PKEY_CTX_free);
  if (!ctx ||
      (encrypt ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1) {
    return Err(EIO, "RSA-OAEP setup failed: " + OpenSslError());
  }
  return ctx;
}

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n);
  return out;
}

Result<std::string> Unbase64(std::string_view in) {
  if (in.size() % 4) return Err(EINVAL, "wrapped data key is not base64");
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return Err(EINVAL, "wrapped data key is not base64");
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  out.resize(n - pad);
  return out;
}

}  // namespace

Result<VolumeKey> NewVolumeKey(std::string_view pem, std::string_view passphrase) {
  if (passphrase.empty()) {
    return Err(EINVAL,
               "an encrypted volume needs a passphrase for its RSA key: set "
               "NEXUS_RSA_PASSPHRASE");
  }
  NX_ASSIGN_OR_RETURN(PKey key, ReadPrivateKey(pem, passphrase));
  DataKey data_key;
  if (RAND_bytes(data_key.data(), static_cast<int>(data_key.size())) != 1) {
    return Err(EIO, "no random bytes for the data key: " + OpenSslError());
  }
  NX_ASSIGN_OR_RETURN(PKeyCtx ctx, OaepCtx(key.get(), true));
  size_t n = 0;
  std::string wrapped;
  bool ok = EVP_PKEY_encrypt(ctx.get(), nullptr, &n, data_key.data(), data_key.size()) == 1;
  if (ok) {
    wrapped.resize(n);
    ok = EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(wrapped.data()), &n,
                          data_key.data(), data_key.size()) == 1;
  }
  OPENSSL_cleanse(data_key.data(), data_key.size());
  if (!ok) return Err(EIO, "wrapping the data key failed: " + OpenSslError());
  wrapped.resize(n);
  Bio out(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PKCS8PrivateKey(out.get(), key.get(), EVP_aes_256_cbc(),
                                    const_cast<char*>(passphrase.data()),
                                    static_cast<int>(passphrase.size()), nullptr, nullptr) != 1) {
    return Err(EIO, "encrypting the private key failed: " + OpenSslError());
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return VolumeKey{std::string(data, len), Base64(wrapped)};
}

Result<DataKey> UnwrapVolumeKey(const VolumeKey& vk, std::string_view passphrase) {
  if (passphrase.empty()) {
    return Err(EACCES,
               "the volume is encrypted: set NEXUS_RSA_PASSPHRASE to the passphrase of "
               "its RSA key");
  }
  NX_ASSIGN_OR_RETURN(PKey key, ReadPrivateKey(vk.private_pem, passphrase));
  NX_ASSIGN_OR_RETURN(std::string wrapped, Unbase64(vk.wrapped_key));
  NX_ASSIGN_OR_RETURN(PKeyCtx ctx, OaepCtx(key.get(), false));
  std::string plain(EVP_PKEY_get_size(key.get()), '\0');
  size_t n = plain.size();
  if (EVP_PKEY_decrypt(ctx.get(), reinterpret_cast<unsigned char*>(plain.data()), &n,
                       reinterpret_cast<const unsigned char*>(wrapped.data()),
                       wrapped.size()) != 1 ||
      n != sizeof(DataKey)) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return Err(EACCES, "the volume's data key does not unwrap with its RSA key: " + OpenSslError());
  }
  DataKey dk;
  std::memcpy(dk.data(), plain.data(), dk.size());
  OPENSSL_cleanse(plain.data(), plain.size());
  return dk;
}

}  // namespace nexus::object
