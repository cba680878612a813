// Extended attributes of Meta over every engine: flags, errnos and namespace rules.
#include <sys/xattr.h>

#include <algorithm>

#include "meta_data_fixture.h"

namespace nexus::meta {
namespace {

class MetaXattrTest : public MetaVolumeTest {
 protected:
  const Context root_ = Context::Root();
  const Context user_{1000, 1000, {}};
};

TEST_P(MetaXattrTest, SetGetListRemove) {
  Ino ino = NewFile("f");
  EXPECT_ERRNO(meta_->GetXattr(root_, ino, "user.a"), ENODATA);
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.a", "1", 0));
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.b", std::string("\0x\xff", 3), 0));
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.empty", "", 0));
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.a").value(), "1");
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.b").value(), std::string("\0x\xff", 3));
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.empty").value(), "");
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.a", "22", 0));  // plain set replaces
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.a").value(), "22");
  auto names = meta_->ListXattr(root_, ino);
  ASSERT_TRUE(names.has_value());
  std::sort(names->begin(), names->end());
  EXPECT_EQ(*names, (std::vector<std::string>{"user.a", "user.b", "user.empty"}));
  ASSERT_OK(meta_->RemoveXattr(root_, ino, "user.a"));
  EXPECT_ERRNO(meta_->GetXattr(root_, ino, "user.a"), ENODATA);
  EXPECT_ERRNO(meta_->RemoveXattr(root_, ino, "user.a"), ENODATA);
  EXPECT_EQ(meta_->ListXattr(root_, ino).value().size(), 2u);
  // Other inodes do not see them.
  Ino other = NewFile("g");
  EXPECT_TRUE(meta_->ListXattr(root_, other).value().empty());
  EXPECT_ERRNO(meta_->ListXattr(root_, 987654), ENOENT);
  EXPECT_ERRNO(meta_->SetXattr(root_, 987654, "user.a", "1", 0), ENOENT);
}

// Deleting an inode removes its xattrs and parent records, whatever path led there: a plain
// file, a file with xattrs, a hard-linked file with xattrs unlinked name by name, a file whose
// xattrs were all removed, and an open file unlinked then closed.
TEST_P(MetaXattrTest, DeletionLeavesNoXattrOrParentKeys) {
  auto dir = meta_->Mkdir(root_, kRootIno, "d", 0755);
  ASSERT_TRUE(dir.has_value());
  const Ino d = dir->ino;
  Ino plain = NewFile("plain");
  Ino with = NewFile("with");
  ASSERT_OK(meta_->SetXattr(root_, with, "user.a", "1", 0));
  Ino linked = NewFile("linked");
  ASSERT_OK(meta_->SetXattr(root_, linked, "user.b", "2", 0));
  ASSERT_TRUE(meta_->Link(root_, linked, d, "l1").has_value());
  ASSERT_TRUE(meta_->Link(root_, linked, kRootIno, "l2").has_value());
  Ino removed = NewFile("removed");
  ASSERT_OK(meta_->SetXattr(root_, removed, "user.c", "3", 0));
  ASSERT_OK(meta_->RemoveXattr(root_, removed, "user.c"));
  EXPECT_TRUE(meta_->ListXattr(root_, removed).value().empty());
  for (const char* name : {"plain", "with", "linked", "removed"}) {
    ASSERT_OK(meta_->Unlink(root_, kRootIno, name));
  }
  EXPECT_EQ(meta_->GetXattr(root_, linked, "user.b").value(), "2");  // two links left
  ASSERT_OK(meta_->Unlink(root_, d, "l1"));
  ASSERT_OK(meta_->Unlink(root_, kRootIno, "l2"));
  for (Ino ino : {plain, with, linked, removed}) {
    EXPECT_TRUE(RawKeys(keys::XattrPrefix(ino)).empty()) << "inode " << ino;
    EXPECT_TRUE(RawKeys(keys::ParentPrefix(ino)).empty()) << "inode " << ino;
    EXPECT_ERRNO(meta_->GetAttr(ino), ENOENT);
  }
}

TEST_P(MetaXattrTest, CreateAndReplaceFlags) {
  Ino ino = NewFile("f");
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "user.a", "1", XATTR_REPLACE), ENODATA);
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.a", "1", XATTR_CREATE));
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "user.a", "2", XATTR_CREATE), EEXIST);
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.a").value(), "1");
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.a", "3", XATTR_REPLACE));
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.a").value(), "3");
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "user.a", "4", 0x40), EINVAL);
}

TEST_P(MetaXattrTest, NameAndValueLimits) {
  Ino ino = NewFile("f");
  const std::string longest = "user." + std::string(kMaxXattrNameLen - 5, 'n');
  ASSERT_OK(meta_->SetXattr(root_, ino, longest, "v", 0));
  EXPECT_EQ(meta_->GetXattr(root_, ino, longest).value(), "v");
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, longest + "n", "v", 0), ERANGE);
  EXPECT_ERRNO(meta_->GetXattr(root_, ino, longest + "n"), ERANGE);
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "", "v", 0), ERANGE);
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.big", std::string(kMaxXattrValueLen, 'x'), 0));
  EXPECT_EQ(meta_->GetXattr(root_, ino, "user.big").value().size(), kMaxXattrValueLen);
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "user.big", std::string(kMaxXattrValueLen + 1, 'x'), 0),
               E2BIG);
}

TEST_P(MetaXattrTest, NamespaceRules) {
  Ino ino = NewFile("f", nullptr, 0666);
  // user.*: write permission needed to set, read permission to get.
  ASSERT_OK(meta_->SetXattr(user_, ino, "user.a", "1", 0));
  Ino ro = NewFile("ro", nullptr, 0644);
  EXPECT_ERRNO(meta_->SetXattr(user_, ro, "user.a", "1", 0), EACCES);
  ASSERT_OK(meta_->SetXattr(root_, ro, "user.a", "1", 0));
  EXPECT_EQ(meta_->GetXattr(user_, ro, "user.a").value(), "1");
  EXPECT_ERRNO(meta_->RemoveXattr(user_, ro, "user.a"), EACCES);
  Ino secret = NewFile("secret", nullptr, 0600);
  ASSERT_OK(meta_->SetXattr(root_, secret, "user.a", "1", 0));
  EXPECT_ERRNO(meta_->GetXattr(user_, secret, "user.a"), EACCES);
  // trusted.*: root only; invisible to others.
  EXPECT_ERRNO(meta_->SetXattr(user_, ino, "trusted.t", "1", 0), EPERM);
  ASSERT_OK(meta_->SetXattr(root_, ino, "trusted.t", "1", 0));
  EXPECT_ERRNO(meta_->GetXattr(user_, ino, "trusted.t"), ENODATA);
  EXPECT_EQ(meta_->GetXattr(root_, ino, "trusted.t").value(), "1");
  EXPECT_EQ(meta_->ListXattr(user_, ino).value(), std::vector<std::string>{"user.a"});
  EXPECT_EQ(meta_->ListXattr(root_, ino).value().size(), 2u);
  EXPECT_ERRNO(meta_->RemoveXattr(user_, ino, "trusted.t"), EPERM);
  // security.*: readable by all, writable by root.
  EXPECT_ERRNO(meta_->SetXattr(user_, ino, "security.s", "1", 0), EPERM);
  ASSERT_OK(meta_->SetXattr(root_, ino, "security.s", "1", 0));
  EXPECT_EQ(meta_->GetXattr(user_, ino, "security.s").value(), "1");
  // system.* (ACLs) and unknown namespaces are not supported.
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "system.posix_acl_access", "x", 0), EOPNOTSUPP);
  EXPECT_ERRNO(meta_->GetXattr(root_, ino, "system.posix_acl_default"), EOPNOTSUPP);
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "other.x", "1", 0), EOPNOTSUPP);
  EXPECT_ERRNO(meta_->SetXattr(root_, ino, "noprefix", "1", 0), EOPNOTSUPP);
}

TEST_P(MetaXattrTest, UserAttributesOnlyOnFilesAndDirectories) {
  auto link = meta_->Symlink(root_, kRootIno, "l", "target");
  ASSERT_TRUE(link.has_value()) << link.error().ToString();
  EXPECT_ERRNO(meta_->SetXattr(root_, link->ino, "user.a", "1", 0), EPERM);
  EXPECT_ERRNO(meta_->GetXattr(root_, link->ino, "user.a"), ENODATA);
  ASSERT_OK(meta_->SetXattr(root_, link->ino, "trusted.a", "1", 0));
  auto fifo = meta_->Mknod(root_, kRootIno, "p", FileType::kFifo, 0666, 0);
  ASSERT_TRUE(fifo.has_value());
  EXPECT_ERRNO(meta_->SetXattr(root_, fifo->ino, "user.a", "1", 0), EPERM);
  auto dir = meta_->Mkdir(root_, kRootIno, "d", 0777);
  ASSERT_TRUE(dir.has_value());
  ASSERT_OK(meta_->SetXattr(user_, dir->ino, "user.a", "1", 0));
  // On a sticky directory only the owner may write.
  auto sticky = meta_->Mkdir(root_, kRootIno, "s", 01777);
  ASSERT_TRUE(sticky.has_value());
  EXPECT_ERRNO(meta_->SetXattr(user_, sticky->ino, "user.a", "1", 0), EPERM);
  ASSERT_OK(meta_->SetXattr(root_, sticky->ino, "user.a", "1", 0));
}

TEST_P(MetaXattrTest, ChangesUpdateCtime) {
  Ino ino = NewFile("f");
  const int64_t before = meta_->GetAttr(ino).value().ctime;
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.a", "1", 0));
  const int64_t after_set = meta_->GetAttr(ino).value().ctime;
  EXPECT_GT(after_set, before);
  ASSERT_OK(meta_->RemoveXattr(root_, ino, "user.a"));
  EXPECT_GT(meta_->GetAttr(ino).value().ctime, after_set);
  const int64_t mtime = meta_->GetAttr(ino).value().mtime;
  ASSERT_OK(meta_->SetXattr(root_, ino, "user.b", "1", 0));
  EXPECT_EQ(meta_->GetAttr(ino).value().mtime, mtime);
}

INSTANTIATE_TEST_SUITE_P(Engines, MetaXattrTest, testing::ValuesIn(EngineUrls()), EngineTestName);

}  // namespace
}  // namespace nexus::meta
