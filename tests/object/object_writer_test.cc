// ObjectStore::NewWriter: objects written in place (file://, framed file:// with verbatim frames,
// and those under the metered layer) store exactly what a Put of the same bytes stores, leave
// nothing behind when abandoned or short, and are refused by stores that cannot write in place.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "object/block_codec.h"
#include "object/metered_store.h"
#include "object/object_store.h"

namespace nexus::object {
namespace {

namespace fs = std::filesystem;

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class ObjectWriterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-writer-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    raw_ = Open();
    store_ = Open();
  }
  void TearDown() override {
    store_.reset();  // a file store's spare-file thread goes with it
    raw_.reset();
    fs::remove_all(dir_);
  }
  // The stack named by the parameter over file://DIR.
  std::unique_ptr<ObjectStore> Open() {
    auto s = ObjectStore::Open("file://" + dir_);
    EXPECT_TRUE(s);
    std::unique_ptr<ObjectStore> out = std::move(*s);
    if (GetParam() != "file") out = NewFrameStore(std::move(out), FrameOptions{});
    if (GetParam() == "metered+framed") out = NewMeteredStore(std::move(out));
    return out;
  }
  // Regular files in the store's tree, not counting the spare files it creates ahead of need
  // (object/spare_files.h).
  size_t Files() {
    size_t n = 0;
    for (auto it = fs::recursive_directory_iterator(dir_); it != fs::end(it); ++it) {
      if (it->path().filename() == ".nxtmp-spare") {
        it.disable_recursion_pending();
        continue;
      }
      n += it->is_regular_file();
    }
    return n;
  }

  std::string dir_;
  std::unique_ptr<ObjectStore> raw_;  // unused by the framed cases except for listing
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(ObjectWriterTest, StoresWhatAPutStores) {
  const std::string data = Bytes((4 << 20) - 12345, 1);
  std::mt19937_64 rng(2);
  for (const char* key : {"v/chunks/0/0/7_0_x", "v/chunks/0/0/8_0_x"}) {
    auto w = store_->NewWriter(key, data.size());
    ASSERT_NE(w, nullptr);
    for (size_t off = 0; off < data.size();) {
      size_t n = std::min<size_t>(data.size() - off, 1 + rng() % (300 << 10));
      ASSERT_TRUE(w->Append(std::string_view(data).substr(off, n)).ok());
      off += n;
      // What was appended reads back, also before the commit.
      std::string back(std::min<size_t>(off, 5000), '\0');
      ASSERT_TRUE(w->ReadAt(off - back.size(), back.size(), back.data()).ok());
      ASSERT_EQ(back, data.substr(off - back.size(), back.size()));
    }
    EXPECT_EQ(w->size(), data.size());
    ASSERT_TRUE(w->Commit().ok());
  }
  ASSERT_TRUE(store_->Put("v/chunks/0/0/9_0_x", data).ok());
  // Through a fresh stack (no cached frame headers): the same bytes, whole and by range.
  auto fresh = Open();
  EXPECT_EQ(*fresh->Get("v/chunks/0/0/7_0_x"), data);
  EXPECT_EQ(*fresh->Get("v/chunks/0/0/8_0_x", 100000, 70000), data.substr(100000, 70000));
  // Byte for byte what a Put stores, header and frame table included.
  auto file = ObjectStore::Open("file://" + dir_);
  ASSERT_TRUE(file);
  std::string put_bytes = *(*file)->Get("v/chunks/0/0/9_0_x");
  std::string writer_bytes = *(*file)->Get("v/chunks/0/0/7_0_x");
  if (GetParam() == "file") {
    EXPECT_EQ(writer_bytes, put_bytes);
  } else {
    // The frame checksums are seeded by the key: compare with a Put under the same key.
    ASSERT_TRUE(store_->Put("v/chunks/0/0/7_0_x", data).ok());
    EXPECT_EQ(*(*file)->Get("v/chunks/0/0/7_0_x"), writer_bytes);
  }
  EXPECT_EQ(Files(), 3u);  // no temporary file left
}

TEST_P(ObjectWriterTest, AbandonedOrShortWritersLeaveNothing) {
  const std::string data = Bytes(200000, 3);
  {
    auto w = store_->NewWriter("v/a", data.size());
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Append(std::string_view(data).substr(0, 1000)).ok());
  }  // dropped without a commit
  {
    auto w = store_->NewWriter("v/b", data.size());
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Append(std::string_view(data).substr(0, 199999)).ok());
    Status s = w->Commit();
    EXPECT_EQ(s.code(), EINVAL) << s.ToString();
    EXPECT_FALSE(w->Append("x").ok()) << "a writer is done after Commit";
    std::string back(1000, '\0');
    ASSERT_TRUE(w->ReadAt(5000, back.size(), back.data()).ok()) << "readable after a failed commit";
    EXPECT_EQ(back, data.substr(5000, 1000));
  }
  {
    auto w = store_->NewWriter("v/c", 10);
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->Append(std::string(11, 'z')).code(), EINVAL) << "more bytes than announced";
  }
  EXPECT_EQ(Files(), 0u);
  EXPECT_EQ(store_->Get("v/a").error().code(), ENOENT);
  EXPECT_EQ(store_->Get("v/b").error().code(), ENOENT);
  // An empty object.
  auto w = store_->NewWriter("v/empty", 0);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Commit().ok());
  EXPECT_EQ(*store_->Get("v/empty"), "");
}

INSTANTIATE_TEST_SUITE_P(Stacks, ObjectWriterTest,
                         ::testing::Values("file", "framed", "metered+framed"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n) c = c == '+' ? '_' : c;
                           return n;
                         });

TEST(ObjectWriterSupportTest, StoresThatCannotWriteInPlaceSayNo) {
  auto mem = ObjectStore::Open("mem://");
  ASSERT_TRUE(mem);
  EXPECT_EQ((*mem)->NewWriter("k", 10), nullptr);
  char tmpl[] = "/tmp/nexus-writer-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  for (int kind = 0; kind < 2; ++kind) {
    auto file = ObjectStore::Open(std::string("file://") + tmpl);
    ASSERT_TRUE(file);
    FrameOptions o;
    if (kind == 0) o.compression = Compression::kLz4;
    if (kind == 1) o.data_key = DataKey{1, 2, 3};
    auto framed = NewFrameStore(std::move(*file), o);
    EXPECT_EQ(framed->NewWriter("k", 10), nullptr) << "compressed or encrypted frames";
  }
  auto file = ObjectStore::Open(std::string("file://") + tmpl);
  ASSERT_TRUE(file);
  EXPECT_EQ((*file)->NewWriter("a/.nxtmp-1-2", 10), nullptr) << "a reserved key";
  fs::remove_all(tmpl);
}

}  // namespace
}  // namespace nexus::object
