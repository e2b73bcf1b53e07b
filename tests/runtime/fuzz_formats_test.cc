// Mutated safetensors files and tokenizer.json files: opening fails with a
// message naming the file, or yields tensors inside the file and a tokenizer
// that encodes and decodes (AddressSanitizer and UBSan in CI).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "attune/core/file.h"
#include "attune/runtime/safetensors.h"
#include "attune/runtime/tokenizer.h"
#include "tests/core/mutate.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

using attune::testing::Fixture;
using attune::testing::FuzzIterations;
using attune::testing::Mutate;

std::string Temp(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("attune_fuzz_" + std::to_string(::getpid()) + "_" + name)).string();
}

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(FormatsFuzzTest, MutatedSafetensorsFailCleanlyOrStayInsideTheFile) {
  auto orig = ReadFile(Fixture("models/tiny_llama/model.safetensors"));
  ASSERT_TRUE(orig.ok());
  const std::string p = Temp("model.safetensors");
  std::mt19937 rng(31);
  const int n = FuzzIterations(1500);
  int opened = 0;
  for (int it = 0; it < n; ++it) {
    const std::string m = Mutate(*orig, rng, it);
    Write(p, m);
    auto ck = SafetensorsCheckpoint::Open(p);
    if (!ck.ok()) {
      EXPECT_NE(ck.status().message().find(p), std::string::npos) << ck.status().message();
      continue;
    }
    ++opened;
    uint64_t sum = 0;
    for (const auto& [name, t] : (*ck)->tensors()) {
      ASSERT_LE(t.n_bytes, m.size()) << name;
      for (uint64_t i = 0; i < t.n_bytes; i += 64) sum += t.data[i];  // every page of the tensor is mapped
      if (t.n_bytes) sum += t.data[t.n_bytes - 1];
    }
    (void)sum;
  }
  std::filesystem::remove(p);
  EXPECT_GT(opened, 0);
}

// A small byte-level BPE tokenizer.json with the fields the loader reads.
std::string TokenizerSeed() {
  return R"({"version": "1.0",
 "added_tokens": [{"id": 12, "content": "<|im_start|>", "special": true}, {"id": 13, "content": "<|im_end|>", "special": true}],
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
   {"type": "Digits", "individual_digits": true},
   {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]},
 "model": {"type": "BPE", "byte_fallback": false, "unk_token": null,
   "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7, "1": 8, "he": 9, "ll": 10, "hell": 11},
   "merges": ["h e", "l l", "he ll"]}})";
}

TEST(FormatsFuzzTest, MutatedTokenizerJsonFailsCleanlyOrTokenizes) {
  const std::string seed = TokenizerSeed();
  const std::string p = Temp("tokenizer.json");
  Write(p, seed);
  auto good = Tokenizer::FromHfJson(p);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  std::mt19937 rng(32);
  const int n = FuzzIterations(2000);
  int loaded = 0;
  for (int it = 0; it < n; ++it) {
    Write(p, Mutate(seed, rng, it));
    auto t = Tokenizer::FromHfJson(p);
    if (!t.ok()) {
      EXPECT_NE(t.status().message().find(p), std::string::npos) << t.status().message();
      continue;
    }
    ++loaded;
    auto ids = (*t)->Encode("hello world 1<|im_end|>");
    if (ids.ok()) (*t)->Decode(*ids).status().IgnoreError();
  }
  std::filesystem::remove(p);
  EXPECT_GT(loaded, 0);
}

}  // namespace
}  // namespace attune::runtime
