#include "attune/core/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

// A FIFO or device where a file is expected (a damaged data directory, a
// hostile path) used to hang the reader forever, or read /dev/zero until
// memory ran out; writing "atomically" replaced the device with a file.
TEST(FileTest, SpecialFilesAreRefusedNotWaitedOnOrReadEndlessly) {
  std::string dir = TempDir();
  const std::string fifo = dir + "/STATE", zero = dir + "/payload";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::create_symlink("/dev/zero", zero);
  for (const auto& path : {fifo, zero}) {
    auto r = ReadFile(path);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    auto m = MappedFile::Open(path);
    ASSERT_FALSE(m.ok()) << path;
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_NE(ReadFile(fifo).status().message().find("is a FIFO"), std::string::npos);
  EXPECT_NE(ReadFile(zero).status().message().find("is a character device"), std::string::npos);
  Status w = WriteFileAtomic(fifo, "data");
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.message().find("not replaced"), std::string::npos) << w.message();
  struct stat st;
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced by a file";
  std::filesystem::remove_all(dir);
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
