#include "common/status.h"

#include <gtest/gtest.h>

namespace nexus {
namespace {

Result<int> Half(int v) {
  if (v % 2) return Err(EINVAL, "odd " + std::to_string(v));
  return v / 2;
}

Result<int> Quarter(int v) {
  NX_ASSIGN_OR_RETURN(int h, Half(v));
  NX_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckQuarter(int v) {
  NX_TRY(Quarter(v));
  return Status::OK();
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  Status s = Status::NotFound("lookup 'a' in inode 1");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.ToString(), "ENOENT: lookup 'a' in inode 1");
  EXPECT_EQ(s.With("stat").ToString(), "ENOENT: stat: lookup 'a' in inode 1");
  EXPECT_EQ(Status::Conflict().ToErrno(), EIO);
  EXPECT_TRUE(Status::Conflict().IsConflict());
}

TEST(StatusTest, TryPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).error().code(), EINVAL);
  EXPECT_EQ(Quarter(6).error().message(), "odd 3");
  EXPECT_TRUE(CheckQuarter(4).ok());
  EXPECT_EQ(CheckQuarter(5).code(), EINVAL);
}

}  // namespace
}  // namespace nexus
