// The model cache is one place shared by every data directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "attune/core/file.h"
#include "attune/runtime/model_store.h"

namespace attune::runtime {
namespace {

struct Env {
  std::string name, old;
  bool had = false;
  Env(const std::string& n, const char* value) : name(n) {
    if (const char* v = std::getenv(n.c_str())) had = true, old = v;
    if (value) setenv(n.c_str(), value, 1);
    else unsetenv(n.c_str());
  }
  ~Env() {
    if (had) setenv(name.c_str(), old.c_str(), 1);
    else unsetenv(name.c_str());
  }
};

// The bug: with --data-dir D the default model was looked up in D/models/,
// so every new data directory needed a second 90 MB download.
TEST(ModelCacheTest, DefaultModelIsFoundWhateverTheDataDirectory) {
  const std::string root = (std::filesystem::temp_directory_path() / ("attune_cache_" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(root);
  Env cache("ATTUNE_MODEL_CACHE", (root + "/cache").c_str());
  ASSERT_TRUE(MakeDirs(root + "/cache").ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/cache/" + kDefaultModelFile, "gguf").ok());
  for (const char* home : {"/profile-a", "/profile-b"}) {
    Env data("ATTUNE_HOME", (root + home).c_str());
    auto p = ResolveModelPath("");
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(*p, root + "/cache/" + kDefaultModelFile);
    EXPECT_FALSE(PathExists(root + home)) << "nothing is written into a data directory";
  }
  std::filesystem::remove_all(root);
}

TEST(ModelCacheTest, CacheIsTheXdgCacheFolderWithoutTheVariable) {
  Env cache("ATTUNE_MODEL_CACHE", nullptr);
  {
    Env xdg("XDG_CACHE_HOME", "/xdg-cache");
    EXPECT_EQ(ModelCacheDir(), "/xdg-cache/attune");
  }
  Env xdg("XDG_CACHE_HOME", nullptr);
  Env home("HOME", "/home/someone");
  EXPECT_EQ(ModelCacheDir(), "/home/someone/.cache/attune");
  EXPECT_EQ(DefaultModelPath(), std::string("/home/someone/.cache/attune/") + kDefaultModelFile);
}

TEST(ModelCacheTest, MissingDefaultModelNamesTheCacheAndTheFetchCommand) {
  Env cache("ATTUNE_MODEL_CACHE", "/nonexistent-attune-cache");
  auto p = ResolveModelPath("");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kNotFound);
  EXPECT_NE(p.status().message().find("/nonexistent-attune-cache"), std::string::npos);
  EXPECT_NE(p.status().message().find("attune model fetch"), std::string::npos);
}

}  // namespace
}  // namespace attune::runtime
