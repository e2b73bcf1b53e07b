#include "attune/runtime/gguf.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

using attune::testing::Fixture;

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attune_gguf_" + std::to_string(::getpid()) + "_" + name)).string();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// A minimal GGUF writer for hand-made bad files.
struct GgufBuilder {
  std::string out;
  template <typename T>
  void Put(T v) { out.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
  void Str(const std::string& s) { Put<uint64_t>(s.size()); out += s; }
};

TEST(GgufTest, DequantizesEveryTypeExactlyAsTheReference) {
  auto f = GgufFile::Open(Fixture("gguf/quants.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::ifstream in(Fixture("gguf/quants_ref.json"));
  nlohmann::json ref = nlohmann::json::parse(in);
  int checked = 0;
  for (auto& [name, t] : ref["tensors"].items()) {
    const GgufTensorInfo* info = (*f)->FindTensor(name);
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(GetGgmlTypeTraits(uint32_t(info->type))->name, t["type"].get<std::string>());
    std::vector<float> got(info->n_elements);
    DequantizeRow(info->type, info->data, got.data(), got.size());
    auto want = t["values"].get<std::vector<double>>();
    ASSERT_EQ(want.size(), got.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], float(want[i])) << name << " element " << i;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

TEST(GgufTest, ReadsEveryMetadataValueType) {
  auto f = GgufFile::Open(Fixture("gguf/quants.gguf"));
  ASSERT_TRUE(f.ok());
  std::ifstream in(Fixture("gguf/quants_ref.json"));
  nlohmann::json ref = nlohmann::json::parse(in);
  EXPECT_EQ((*f)->alignment(), ref["alignment"].get<uint64_t>());
  int checked = 0;
  for (auto& [key, want] : ref["metadata"].items()) {
    const GgufValue* v = (*f)->Find(key);
    ASSERT_NE(v, nullptr) << key;
    if (want.is_boolean()) EXPECT_EQ(std::get<bool>(v->v), want.get<bool>()) << key;
    else if (want.is_number_unsigned()) EXPECT_EQ(v->as_double(), want.get<double>()) << key;
    else if (want.is_number_integer()) EXPECT_EQ(v->as_int(), want.get<int64_t>()) << key;
    else if (want.is_number_float()) EXPECT_DOUBLE_EQ(v->as_double(), want.get<double>()) << key;
    else if (want.is_string()) EXPECT_EQ(*v->as_string(), want.get<std::string>()) << key;
    else if (want.is_array()) {
      ASSERT_NE(v->as_array(), nullptr) << key;
      EXPECT_EQ(v->as_array()->size(), want.size()) << key;
    }
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

TEST(GgufTest, RejectsBadMagicNamingTheFile) {
  std::string p = TempPath("magic");
  WriteBytes(p, "GGML0000000000000000000000");
  auto f = GgufFile::Open(p);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find(p), std::string::npos);
  EXPECT_NE(f.status().message().find("magic"), std::string::npos);
  std::filesystem::remove(p);
}

TEST(GgufTest, RejectsNewerVersion) {
  GgufBuilder b;
  b.Put<uint32_t>(0x46554747);
  b.Put<uint32_t>(4);
  b.Put<uint64_t>(0);
  b.Put<uint64_t>(0);
  std::string p = TempPath("version");
  WriteBytes(p, b.out);
  auto f = GgufFile::Open(p);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("version 4"), std::string::npos);
  std::filesystem::remove(p);
}

TEST(GgufTest, RejectsTensorDataPastEndOfFile) {
  GgufBuilder b;
  b.Put<uint32_t>(0x46554747);
  b.Put<uint32_t>(3);
  b.Put<uint64_t>(1);  // one tensor
  b.Put<uint64_t>(0);
  b.Str("w");
  b.Put<uint32_t>(2);
  b.Put<uint64_t>(64);
  b.Put<uint64_t>(64);
  b.Put<uint32_t>(0);  // F32
  b.Put<uint64_t>(0);
  std::string p = TempPath("trunc");
  WriteBytes(p, b.out + std::string(100, '\0'));
  auto f = GgufFile::Open(p);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(f.status().message().find("'w'"), std::string::npos);
  EXPECT_NE(f.status().message().find("truncated"), std::string::npos);
  std::filesystem::remove(p);
}

TEST(GgufTest, RejectsAbsurdCountsAndShapesAndUnknownTypes) {
  auto header = [](uint64_t n_tensors, uint64_t n_kv) {
    GgufBuilder b;
    b.Put<uint32_t>(0x46554747);
    b.Put<uint32_t>(3);
    b.Put<uint64_t>(n_tensors);
    b.Put<uint64_t>(n_kv);
    return b;
  };
  std::string p = TempPath("absurd");
  {
    GgufBuilder b = header(0, uint64_t(1) << 60);
    WriteBytes(p, b.out);
    EXPECT_FALSE(GgufFile::Open(p).ok());
  }
  {
    GgufBuilder b = header(0, 1);
    b.Str("k");
    b.Put<uint32_t>(9);  // array
    b.Put<uint32_t>(5);  // of int32
    b.Put<uint64_t>(uint64_t(1) << 50);
    WriteBytes(p, b.out);
    auto f = GgufFile::Open(p);
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("'k'"), std::string::npos);
  }
  {
    GgufBuilder b = header(1, 0);
    b.Str("w");
    b.Put<uint32_t>(2);
    b.Put<uint64_t>(uint64_t(1) << 39);
    b.Put<uint64_t>(uint64_t(1) << 39);
    b.Put<uint32_t>(0);
    b.Put<uint64_t>(0);
    WriteBytes(p, b.out);
    auto f = GgufFile::Open(p);
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find("absurd shape"), std::string::npos);
  }
  {
    GgufBuilder b = header(1, 0);
    b.Str("w");
    b.Put<uint32_t>(1);
    b.Put<uint64_t>(32);
    b.Put<uint32_t>(23);  // IQ-type: valid in ggml, unsupported here
    b.Put<uint64_t>(0);
    WriteBytes(p, b.out + std::string(64, '\0'));
    auto f = GgufFile::Open(p);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(f.status().message().find("type 23"), std::string::npos);
  }
  std::filesystem::remove(p);
}

// Random mutations of a real GGUF: Open must fail cleanly or succeed with every
// tensor inside the file; run under AddressSanitizer in CI (the asan job).
TEST(GgufTest, SurvivesRandomMutations) {
  auto orig = ReadFile(Fixture("gguf/quants.gguf"));
  ASSERT_TRUE(orig.ok());
  std::mt19937 rng(1234);
  std::string p = TempPath("fuzz");
  int iterations = 1500;
  if (const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS")) iterations = std::atoi(n);
  int opened = 0;
  for (int it = 0; it < iterations; ++it) {
    std::string m = *orig;
    int kind = it % 4;
    if (kind == 0) {
      m.resize(rng() % m.size());
    } else {
      // Mutations concentrate on the header, where the parser's decisions are.
      size_t header = std::min<size_t>(m.size(), 2048);
      int flips = 1 + int(rng() % 8);
      for (int k = 0; k < flips; ++k) {
        size_t pos = (kind == 3) ? rng() % m.size() : rng() % header;
        m[pos] = char(kind == 2 ? 0xFF : rng());
      }
    }
    WriteBytes(p, m);
    auto f = GgufFile::Open(p);
    if (!f.ok()) {
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    ++opened;
    for (const auto& t : (*f)->tensors()) {
      ASSERT_GE(t.data, reinterpret_cast<const uint8_t*>(0));
      std::vector<float> buf(t.n_elements);
      DequantizeRow(t.type, t.data, buf.data(), buf.size());  // ASan checks the reads
    }
  }
  std::filesystem::remove(p);
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace attune::runtime
