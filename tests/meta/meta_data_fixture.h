// A formatted volume on every metadata engine, for the data, xattr and lock tests of meta/.
// Parameterized by an engine URL in which "<tmp>" stands for a fresh temporary directory and
// "<redis>"/"<postgres>" for a fresh database of a server that the test binary starts once
// (tests/kv/servers.h); an engine that cannot open fails the test. Only a server binary that is
// not installed skips the test.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../kv/borrowed_engine.h"
#include "etcd_server.h"
#include "meta/keys.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "servers.h"

namespace nexus::meta {

#define ASSERT_OK(expr)                                       \
  do {                                                        \
    ::nexus::Status _s = ::nexus::internal::ToStatus((expr)); \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString();   \
  } while (0)
#define EXPECT_OK(expr)                                       \
  do {                                                        \
    ::nexus::Status _s = ::nexus::internal::ToStatus((expr)); \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s.ToString();   \
  } while (0)
// Expects a failed Status or Result with errno `code`.
#define EXPECT_ERRNO(expr, want)                                                           \
  do {                                                                                     \
    ::nexus::Status _s = ::nexus::internal::ToStatus((expr));                              \
    EXPECT_EQ(_s.code(), (want)) << #expr << " gave " << (_s.ok() ? "OK" : _s.ToString()); \
  } while (0)

using kv::BorrowedEngine;

inline const std::vector<std::string>& EngineUrls() {
  static const std::vector<std::string> urls = {
      "mem://",          "rocksdb://<tmp>/rocks", "sqlite3://<tmp>/m.db",
      "redis://<redis>", "postgres://<postgres>", "etcd://<etcd>/<tmp>"};
  return urls;
}

inline std::string EngineTestName(const testing::TestParamInfo<std::string>& info) {
  return info.param.substr(0, info.param.find(':'));
}

class MetaVolumeTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    for (const char* server : {"redis", "postgres"}) {
      if (GetParam().rfind(server, 0) != 0) continue;
      std::string missing =
          server[0] == 'r' ? testsrv::RedisServer::Missing() : testsrv::PostgresServer::Missing();
      if (!missing.empty()) GTEST_SKIP() << missing;
    }
    if (GetParam().rfind("etcd", 0) == 0 && test::EtcdServer::Binary().empty()) {
      GTEST_SKIP() << "etcd is not installed (etcd-server)";
    }
    char tmpl[] = "/tmp/nexus-meta-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    meta_ = OpenVolume("vol", 0);
    ASSERT_NE(meta_, nullptr);
  }
  void TearDown() override {
    meta_.reset();
    extra_.clear();
    std::filesystem::remove_all(dir_);
  }

  // A fresh engine (under its own subdirectory `sub`) formatted with `capacity` bytes.
  std::unique_ptr<Meta> OpenVolume(const std::string& sub, uint64_t capacity,
                                   MetaOptions options = {}) {
    std::string url = GetParam();
    const size_t at = url.find("<tmp>");
    if (at != std::string::npos) {
      std::filesystem::create_directories(dir_ + "/" + sub);
      url.replace(at, 5, dir_ + "/" + sub);
    }
    if (const size_t e = url.find("<etcd>"); e != std::string::npos) {
      std::string why;  // one etcd per test binary; "<tmp>" made the key prefix unique
      test::EtcdServer* server = test::EtcdServer::Shared(&why);
      EXPECT_NE(server, nullptr) << why;
      if (!server) return nullptr;
      url.replace(e, 6, server->endpoint());
    }
    auto resolved = testsrv::ResolveServerUrl(url);
    EXPECT_TRUE(resolved.has_value()) << url << ": " << resolved.error().ToString();
    if (!resolved) return nullptr;
    url = *resolved;
    auto engine = kv::Engine::Open(url);
    EXPECT_TRUE(engine.has_value()) << url << ": " << engine.error().ToString();
    if (!engine) return nullptr;
    auto meta = Meta::Create(std::move(*engine), options);
    meta::Format f;
    f.name = "test-" + sub;
    f.uuid = "00000000-0000-0000-0000-00000000000" + std::to_string(sub.size() % 10);
    f.storage = "mem";
    f.capacity = capacity;
    Status s = meta->Format(f, false);
    EXPECT_TRUE(s.ok()) << "format " << url << ": " << s.ToString();
    if (!s.ok()) return nullptr;
    return meta;
  }

  // Another client (its own Meta and session) of meta_'s volume.
  std::unique_ptr<Meta> OpenClient() {
    auto meta = Meta::Create(std::make_unique<BorrowedEngine>(meta_->engine()));
    auto f = meta->Load();
    EXPECT_TRUE(f.has_value()) << f.error().ToString();
    auto sid = meta->NewSession(SessionInfo{});
    EXPECT_TRUE(sid.has_value()) << sid.error().ToString();
    return meta;
  }

  // A regular file (mode 0644, owned by root) in the root directory.
  Ino NewFile(const std::string& name, Meta* meta = nullptr, uint32_t mode = 0644) {
    auto e = (meta ? meta : meta_.get())
                 ->Mknod(Context::Root(), kRootIno, name, FileType::kFile, mode, 0);
    EXPECT_TRUE(e.has_value()) << "mknod " << name << ": " << e.error().ToString();
    return e ? e->ino : 0;
  }

  uint64_t Length(Ino ino) {
    auto a = meta_->GetAttr(ino);
    EXPECT_TRUE(a.has_value()) << a.error().ToString();
    return a ? a->length : 0;
  }

  // Raw engine reads for checking the on-engine bookkeeping.
  std::optional<std::string> RawGet(const std::string& key, Meta* meta = nullptr) {
    std::optional<std::string> out;
    Status s = (meta ? meta : meta_.get())->engine()->View([&](kv::Txn& txn) -> Status {
      NX_ASSIGN_OR_RETURN(out, txn.Get(key));
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  std::vector<std::string> RawKeys(const std::string& prefix) {
    std::vector<std::string> keys;
    Status s = meta_->engine()->View([&](kv::Txn& txn) -> Status {
      keys.clear();
      return txn.ScanPrefix(prefix, 0, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
      });
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return keys;
  }

  std::string dir_;
  std::unique_ptr<Meta> meta_;
  std::vector<std::unique_ptr<Meta>> extra_;
};

}  // namespace nexus::meta
