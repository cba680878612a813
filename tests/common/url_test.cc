#include "common/url.h"

#include <gtest/gtest.h>

namespace nexus {
namespace {

TEST(UrlTest, FullUrl) {
  auto u = Url::Parse("redis://user:p%40ss@127.0.0.1:6379/2?timeout=5");
  ASSERT_TRUE(u) << u.error().ToString();
  EXPECT_EQ(u->scheme, "redis");
  EXPECT_EQ(u->user, "user");
  EXPECT_EQ(u->password, "p@ss");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->path, "/2");
  EXPECT_EQ(u->query.at("timeout"), "5");
  EXPECT_EQ(u->Redacted(), "redis://user:****@127.0.0.1:6379/2?timeout=5");
}

TEST(UrlTest, PlainPathAndFileUrl) {
  auto p = Url::Parse("/var/lib/nexusfs/meta");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->scheme, "");
  EXPECT_EQ(p->path, "/var/lib/nexusfs/meta");
  auto f = Url::Parse("rocksdb:///var/lib/meta");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->scheme, "rocksdb");
  EXPECT_EQ(f->host, "");
  EXPECT_EQ(f->path, "/var/lib/meta");
}

TEST(UrlTest, EtcdHostList) {
  auto u = Url::Parse("etcd://127.0.0.1:2379,127.0.0.1:2380/vol1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1:2379,127.0.0.1:2380");
  EXPECT_EQ(u->port, 0);
  EXPECT_EQ(u->path, "/vol1");
}

TEST(UrlTest, BadInput) {
  EXPECT_FALSE(Url::Parse(""));
  EXPECT_FALSE(Url::Parse("://x"));
  EXPECT_FALSE(Url::Parse("redis://h:notaport/"));
  EXPECT_FALSE(Url::Parse("redis://h:99999/"));
  EXPECT_FALSE(Url::Parse("x://h/%zz"));
}

}  // namespace
}  // namespace nexus
