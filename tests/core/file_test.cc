#include "attune/core/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

namespace attune {
namespace {

std::string TempDir() {
  auto dir = std::filesystem::temp_directory_path() /
             ("attune_file_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(FileTest, AtomicWriteReplacesContentsAndLeavesNoTemporaries) {
  std::string dir = TempDir();
  std::string path = dir + "/state.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  EXPECT_EQ(*ReadFile(path), "second");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  std::filesystem::remove_all(dir);
}

TEST(FileTest, AtomicWriteIntoMissingDirectoryFailsWithPath) {
  Status s = WriteFileAtomic("/nonexistent-dir-attune/x", "data");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent-dir-attune/x"), std::string::npos);
}

TEST(FileTest, ReadMissingFileIsNotFound) {
  auto r = ReadFile("/nonexistent-attune-file");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(FileTest, MappedFileSeesBytes) {
  std::string dir = TempDir();
  std::string path = dir + "/m.bin";
  ASSERT_TRUE(WriteFileAtomic(path, "hello").ok());
  auto mf = MappedFile::Open(path);
  ASSERT_TRUE(mf.ok());
  ASSERT_EQ(mf->size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(mf->data()), 5), "hello");
  std::filesystem::remove_all(dir);
}

TEST(FileTest, DataDirPrefersFlagThenEnvironment) {
  EXPECT_EQ(ResolveDataDir("/x"), "/x");
  setenv("ATTUNE_HOME", "/env-home", 1);
  EXPECT_EQ(ResolveDataDir(""), "/env-home");
  unsetenv("ATTUNE_HOME");
  EXPECT_NE(ResolveDataDir("").find(".local/share/attune"), std::string::npos);
}

}  // namespace
}  // namespace attune
