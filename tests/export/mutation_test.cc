// Random mutations of a PEFT safetensors file, a GGUF-LoRA file and a bundle:
// the readers must fail cleanly (a message naming the file) or return a valid
// adapter; a bundle must fail unless its bytes are unchanged. Run under
// AddressSanitizer by scripts/test.sh (ATTUNE_FUZZ_ITERATIONS).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "attune/core/file.h"
#include "attune/export/bundle.h"
#include "attune/export/gguf_lora.h"
#include "attune/adapters/payload.h"
#include "attune/export/peft.h"
#include "tests/export/test_util.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;

int Iterations() {
  const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS");
  return n ? std::atoi(n) : 300;
}

std::string Mutate(const std::string& orig, int it, std::mt19937& rng) {
  std::string m = orig;
  const int kind = it % 4;
  if (kind == 0) {
    m.resize(rng() % m.size());
    return m;
  }
  // Mostly in the header, where the parsers decide offsets and sizes.
  const size_t header = std::min<size_t>(m.size(), 1024);
  const int flips = 1 + int(rng() % 8);
  for (int k = 0; k < flips; ++k) {
    size_t pos = kind == 3 ? rng() % m.size() : rng() % header;
    m[pos] = char(kind == 2 ? 0xFF : rng());
  }
  return m;
}

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

class MutationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("attune_mutation_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }
  BaseModel base_ = testing::TinyBase();
  adapters::Adapter adapter_ = testing::RandomAdapter(base_, 2, 77, {adapters::LoraTarget::kQ, adapters::LoraTarget::kDown});
  fs::path dir_;
};

TEST_F(MutationTest, PeftReaderSurvivesMutations) {
  ASSERT_TRUE(WritePeft(adapter_, base_, Path("peft")).ok());
  const std::string st = *ReadFile(Path("peft/adapter_model.safetensors"));
  std::mt19937 rng(1);
  for (int it = 0; it < Iterations(); ++it) {
    Write(Path("peft/adapter_model.safetensors"), Mutate(st, it, rng));
    auto a = ReadPeft(Path("peft"), base_);
    if (a.ok()) {
      EXPECT_TRUE(a->Validate().ok());
    } else {
      EXPECT_NE(a.status().message().find("adapter_model.safetensors"), std::string::npos) << a.status().message();
    }
  }
}

TEST_F(MutationTest, GgufLoraReaderSurvivesMutations) {
  ASSERT_TRUE(WriteGgufLora(adapter_, base_, Path("a.gguf")).ok());
  const std::string orig = *ReadFile(Path("a.gguf"));
  std::mt19937 rng(2);
  for (int it = 0; it < Iterations(); ++it) {
    Write(Path("m.gguf"), Mutate(orig, it, rng));
    auto a = ReadGgufLora(Path("m.gguf"), base_);
    if (a.ok()) {
      EXPECT_TRUE(a->Validate().ok());
    } else {
      EXPECT_NE(a.status().message().find("m.gguf"), std::string::npos) << a.status().message();
    }
  }
}

TEST_F(MutationTest, BundleReaderRefusesEveryChange) {
  auto keys = std::move(KeyStore::Open(Path("keys"))).value();
  const std::string orig = *SealBundle(*adapters::EncodePayload(adapter_), "v1", "", *keys);
  std::mt19937 rng(3);
  for (int it = 0; it < Iterations(); ++it) {
    std::string m = Mutate(orig, it, rng);
    auto b = OpenBundle(m, "m.bundle", *keys);
    if (m == orig) continue;
    EXPECT_FALSE(b.ok()) << "a changed bundle was accepted (iteration " << it << ")";
  }
}

}  // namespace
}  // namespace attune::export_
