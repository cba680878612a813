#include "vfs/access_log.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace nexus::vfs {
namespace {

TEST(AccessLogTest, LinesOnlyWhileAReaderIsOpen) {
  AccessLog log;
  EXPECT_FALSE(log.Active());
  log.Append("before\n");
  uint64_t r = log.OpenReader();
  EXPECT_TRUE(log.Active());
  log.Append("one\n");
  log.Append("two\n");
  EXPECT_EQ(log.Read(r, 4096, 1'000'000'000), "one\ntwo\n");
  EXPECT_EQ(log.Read(r, 4096, 1'000'000), "#\n");  // keep-alive after the timeout
  log.CloseReader(r);
  EXPECT_FALSE(log.Active());
}

TEST(AccessLogTest, ASlowReaderIsToldHowManyLinesWereDropped) {
  AccessLog log;
  uint64_t r = log.OpenReader();
  std::string line(1000, 'x');
  line += '\n';
  size_t fit = AccessLog::kMaxBufferedBytes / line.size();
  for (size_t i = 0; i < fit + 10; ++i) log.Append(line);
  std::string first = log.Read(r, 1 << 20, 1'000'000'000);
  EXPECT_EQ(first.rfind("#dropped 10 lines: reader too slow\n", 0), 0u) << first.substr(0, 80);
  size_t got = std::count(first.begin(), first.end(), '\n') - 1;
  while (got < fit) {
    std::string more = log.Read(r, 1 << 20, 1'000'000);
    ASSERT_NE(more, "#\n");
    got += std::count(more.begin(), more.end(), '\n');
  }
  EXPECT_EQ(got, fit);
}

TEST(AccessLogTest, ALineLongerThanTheReadIsSplit) {
  AccessLog log;
  uint64_t r = log.OpenReader();
  log.Append("abcdefghij\n");
  EXPECT_EQ(log.Read(r, 4, 1'000'000), "abcd");
  EXPECT_EQ(log.Read(r, 4, 1'000'000), "efgh");
  EXPECT_EQ(log.Read(r, 4, 1'000'000), "ij\n");
}

}  // namespace
}  // namespace nexus::vfs
