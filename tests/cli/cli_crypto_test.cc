// Encrypted and compressed volumes from the command line: format --encrypt-rsa-key with the
// passphrase from NEXUS_RSA_PASSPHRASE, and a mount with a wrong or missing passphrase that
// fails with one clear line and writes nothing.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Output {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// Runs nexusfs with NEXUS_RSA_PASSPHRASE set to `passphrase` (unset when null).
Output Nexusfs(const std::string& args, const char* passphrase = nullptr) {
  Output r;
  std::string env = passphrase ? "env NEXUS_RSA_PASSPHRASE='" + std::string(passphrase) + "' "
                               : "env -u NEXUS_RSA_PASSPHRASE ";
  std::string cmd = env + std::string(NEXUSFS_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Writes a new RSA private key as PEM, encrypted with `passphrase` when it is not null.
void WriteRsaKey(const fs::path& path, int bits, const char* passphrase) {
  EVP_PKEY* key = EVP_RSA_gen(bits);
  ASSERT_NE(key, nullptr);
  BIO* bio = BIO_new_file(path.c_str(), "w");
  ASSERT_NE(bio, nullptr);
  if (passphrase) {
    PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_256_cbc(), const_cast<char*>(passphrase),
                                  static_cast<int>(strlen(passphrase)), nullptr, nullptr);
  } else {
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  }
  BIO_free(bio);
  EVP_PKEY_free(key);
}

size_t CountFiles(const fs::path& dir) {
  size_t n = 0;
  if (!fs::exists(dir)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

class CliCryptoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-cli-crypto-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "mnt");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Meta() const { return dir_.string() + "/meta"; }
  std::string Bucket() const { return dir_.string() + "/data"; }
  fs::path dir_;
};

TEST_F(CliCryptoTest, FormatEncryptedThenMountWithAWrongPassphraseFailsCleanly) {
  const fs::path key = dir_ / "key.pem";
  ASSERT_NO_FATAL_FAILURE(WriteRsaKey(key, 2048, "right horse"));
  const std::string format = "format " + Meta() + " secret-vol --bucket " + Bucket() +
                             " --compress zstd --encrypt-rsa-key " + key.string();

  // Without the passphrase, or with a wrong one, format refuses and creates nothing.
  Output none = Nexusfs(format);
  EXPECT_NE(none.code, 0);
  EXPECT_NE(none.out.find("NEXUS_RSA_PASSPHRASE"), std::string::npos) << none.out;
  Output wrong = Nexusfs(format, "wrong");
  EXPECT_NE(wrong.code, 0);
  EXPECT_NE(wrong.out.find("passphrase"), std::string::npos) << wrong.out;
  EXPECT_FALSE(fs::exists(Meta()));

  Output ok = Nexusfs(format, "right horse");
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("framed, zstd, encrypted"), std::string::npos) << ok.out;
  Output st = Nexusfs("status " + Meta());
  ASSERT_EQ(st.code, 0) << st.out;
  auto j = nlohmann::json::parse(st.out);
  EXPECT_EQ(j["setting"]["block_format"], "frames-v1");
  EXPECT_EQ(j["setting"]["compression"], "zstd");
  EXPECT_EQ(j["setting"]["encrypt_algo"], "aes256gcm-rsa");
  EXPECT_EQ(j["setting"]["encrypt_key"], "removed");  // never printed
  EXPECT_EQ(st.out.find("PRIVATE KEY"), std::string::npos);

  const size_t objects = CountFiles(Bucket());
  const std::string mount = "mount " + Meta() + " " + (dir_ / "mnt").string();
  for (const char* pass : {"wrong", static_cast<const char*>(nullptr)}) {
    Output m = Nexusfs(mount, pass);
    EXPECT_EQ(m.code, 1) << m.out;
    // One line: what failed and what to do.
    EXPECT_EQ(std::count(m.out.begin(), m.out.end(), '\n'), 1) << m.out;
    EXPECT_NE(m.out.find("nexusfs mount: "), std::string::npos) << m.out;
    EXPECT_NE(m.out.find("secret-vol"), std::string::npos) << m.out;
    EXPECT_NE(m.out.find(pass ? "passphrase" : "NEXUS_RSA_PASSPHRASE"), std::string::npos) << m.out;
    // Nothing written: no session, no object.
    auto after = nlohmann::json::parse(Nexusfs("status " + Meta()).out);
    EXPECT_TRUE(after["sessions"].empty()) << after.dump();
    EXPECT_EQ(CountFiles(Bucket()), objects);
  }
}

// With the right passphrase the volume mounts; file data reads back and the stored objects do
// not contain it in the clear.
TEST_F(CliCryptoTest, MountsWithTheRightPassphraseAndStoresCiphertext) {
  if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "needs root and /dev/fuse to mount";
  }
  const fs::path key = dir_ / "key.pem";
  ASSERT_NO_FATAL_FAILURE(WriteRsaKey(key, 2048, nullptr));
  ASSERT_EQ(Nexusfs("format " + Meta() + " enc-vol --bucket " + Bucket() +
                        " --compress lz4 --encrypt-rsa-key " + key.string(),
                    "pw")
                .code,
            0);
  const std::string mnt = (dir_ / "mnt").string();
  Output m = Nexusfs("mount -d --log " + (dir_ / "log").string() + " " + Meta() + " " + mnt, "pw");
  ASSERT_EQ(m.code, 0) << m.out;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "plaintext line " + std::to_string(i) + "\n";
  {
    std::ofstream out(mnt + "/f.txt", std::ios::binary);
    out << text;
  }
  std::string back;
  {
    std::ifstream in(mnt + "/f.txt", std::ios::binary);
    back.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  Output u = Nexusfs("umount " + mnt);
  EXPECT_EQ(u.code, 0) << u.out;
  EXPECT_EQ(back, text);
  size_t blocks = 0;
  for (const auto& e : fs::recursive_directory_iterator(Bucket())) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string obj((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ++blocks;
    EXPECT_EQ(obj.find("plaintext line"), std::string::npos) << e.path();
    EXPECT_EQ(obj.substr(0, 4), "NXFB") << e.path();
  }
  EXPECT_GT(blocks, 0u);
}

TEST_F(CliCryptoTest, BadCompressionAndKeyFiles) {
  Output c = Nexusfs("format " + Meta() + " vol-1 --bucket " + Bucket() + " --compress gzip");
  EXPECT_NE(c.code, 0);
  EXPECT_NE(c.out.find("compression 'gzip'"), std::string::npos) << c.out;
  Output missing = Nexusfs("format " + Meta() + " vol-1 --bucket " + Bucket() +
                               " --encrypt-rsa-key " + (dir_ / "nope.pem").string(),
                           "pw");
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("nope.pem"), std::string::npos) << missing.out;
  const fs::path small = dir_ / "small.pem";
  ASSERT_NO_FATAL_FAILURE(WriteRsaKey(small, 1024, nullptr));
  Output weak = Nexusfs(
      "format " + Meta() + " vol-1 --bucket " + Bucket() + " --encrypt-rsa-key " + small.string(),
      "pw");
  EXPECT_NE(weak.code, 0);
  EXPECT_NE(weak.out.find("2048"), std::string::npos) << weak.out;
  EXPECT_FALSE(fs::exists(Meta()));

  // A plain volume gets framed blocks; its encryption cannot be added later.
  ASSERT_EQ(Nexusfs("format " + Meta() + " vol-1 --bucket " + Bucket()).code, 0);
  auto j = nlohmann::json::parse(Nexusfs("status " + Meta()).out);
  EXPECT_EQ(j["setting"]["block_format"], "frames-v1");
  const fs::path key = dir_ / "key.pem";
  ASSERT_NO_FATAL_FAILURE(WriteRsaKey(key, 2048, nullptr));
  Output later =
      Nexusfs("format " + Meta() + " vol-1 --force --encrypt-rsa-key " + key.string(), "pw");
  EXPECT_NE(later.code, 0);
  EXPECT_NE(later.out.find("cannot change"), std::string::npos) << later.out;
}

}  // namespace
