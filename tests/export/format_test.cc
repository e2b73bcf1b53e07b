// PEFT and GGUF-LoRA writers and readers: round trips and refusals (no model
// needed; the interop tests compare against PEFT and llama.cpp themselves).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attune/core/file.h"
#include "attune/export/gguf_lora.h"
#include "attune/export/peft.h"
#include "tests/export/test_util.h"

namespace attune::export_ {
namespace {

namespace fs = std::filesystem;
using testing::RandomAdapter;
using testing::TinyBase;

class FormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("attune_format_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }

  // Copies the config from a PEFT export, lets `edit` change it, writes it back.
  void EditConfig(const std::string& peft_dir, const std::function<void(nlohmann::json&)>& edit) {
    auto text = ReadFile(peft_dir + "/adapter_config.json");
    ASSERT_TRUE(text.ok());
    nlohmann::json j = nlohmann::json::parse(*text);
    edit(j);
    ASSERT_TRUE(WriteFileAtomic(peft_dir + "/adapter_config.json", j.dump()).ok());
  }

  fs::path dir_;
};

// The fields the round trip must keep (provenance is not part of these formats).
void ExpectSameLora(const adapters::Adapter& got, const adapters::Adapter& want) {
  EXPECT_EQ(got.rank, want.rank);
  EXPECT_DOUBLE_EQ(got.alpha, want.alpha);
  EXPECT_EQ(got.rslora, want.rslora);
  EXPECT_EQ(got.targets, want.targets);
  EXPECT_EQ(got.base_dims, want.base_dims);
  EXPECT_EQ(got.layers, want.layers);
  EXPECT_EQ(got.base_fingerprint, want.base_fingerprint);
}

TEST_F(FormatTest, PeftRoundTripKeepsEveryTensor) {
  auto base = TinyBase();
  auto a = RandomAdapter(base, 4, 1);
  a.rslora = true;
  ASSERT_TRUE(WritePeft(a, base, Path("peft")).ok());
  auto back = ReadPeft(Path("peft"), base);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameLora(*back, a);
}

TEST_F(FormatTest, PeftUsesPeftKeyNamesAndShapes) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 2), base, Path("peft")).ok());
  auto cfg = nlohmann::json::parse(*ReadFile(Path("peft/adapter_config.json")));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  auto st = *ReadFile(Path("peft/adapter_model.safetensors"));
  EXPECT_NE(st.find("\"base_model.model.model.layers.1.mlp.down_proj.lora_B.weight\":{\"data_offsets\""), std::string::npos);
  EXPECT_NE(st.find("\"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight\""), std::string::npos);
}

TEST_F(FormatTest, PeftRefusesDora) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 3), base, Path("peft")).ok());
  EditConfig(Path("peft"), [](nlohmann::json& j) { j["use_dora"] = true; });
  auto r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("use_dora"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("adapter_config.json"), std::string::npos);
}

TEST_F(FormatTest, PeftRefusesRankPatternItCannotHonour) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 3), base, Path("peft")).ok());
  EditConfig(Path("peft"), [](nlohmann::json& j) { j["rank_pattern"] = {{"q_proj", 8}}; });
  auto r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rank_pattern"), std::string::npos) << r.status().message();
  // A pattern that repeats the global rank changes nothing and is accepted.
  EditConfig(Path("peft"), [](nlohmann::json& j) { j["rank_pattern"] = {{"q_proj", 4}}; });
  EXPECT_TRUE(ReadPeft(Path("peft"), base).ok());
}

TEST_F(FormatTest, PeftRefusesModulesToSaveAndEmbeddingLora) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 3), base, Path("peft")).ok());
  EditConfig(Path("peft"), [](nlohmann::json& j) { j["modules_to_save"] = {"lm_head"}; });
  auto r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("modules_to_save"), std::string::npos) << r.status().message();
  EditConfig(Path("peft"), [](nlohmann::json& j) {
    j["modules_to_save"] = nullptr;
    j["target_modules"].push_back("embed_tokens");
  });
  r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("embed_tokens"), std::string::npos) << r.status().message();
}

TEST_F(FormatTest, PeftRefusesConfigThatClaimsAnotherRank) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 3), base, Path("peft")).ok());
  EditConfig(Path("peft"), [](nlohmann::json& j) { j["r"] = 8; });
  auto r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("'r' says 8"), std::string::npos) << r.status().message();
}

TEST_F(FormatTest, PeftRefusesOtherBaseModelShapes) {
  auto base = TinyBase();
  ASSERT_TRUE(WritePeft(RandomAdapter(base, 4, 3), base, Path("peft")).ok());
  auto other = base;
  other.info.dims[4].out = 96;  // another intermediate size
  auto r = ReadPeft(Path("peft"), other);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("gate_proj.lora_B"), std::string::npos) << r.status().message();
}

TEST_F(FormatTest, GgufRoundTripUndoesTheQkPermutation) {
  auto base = TinyBase();
  auto a = RandomAdapter(base, 4, 5);
  ASSERT_TRUE(WriteGgufLora(a, base, Path("a.gguf")).ok());
  auto back = ReadGgufLora(Path("a.gguf"), base);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameLora(*back, a);
}

TEST_F(FormatTest, GgufStoresQAndKRowsInLlamaCppOrder) {
  auto base = TinyBase();
  auto a = RandomAdapter(base, 4, 6, {adapters::LoraTarget::kQ, adapters::LoraTarget::kV});
  ASSERT_TRUE(WriteGgufLora(a, base, Path("a.gguf")).ok());
  // Read as a qwen2 base (no permutation): q's rows come out permuted, v's not.
  auto qwen = base;
  qwen.info.arch = "qwen2";
  auto raw = *ReadFile(Path("a.gguf"));
  size_t at = raw.find("llama");
  ASSERT_NE(at, std::string::npos);
  raw.replace(at, 5, "qwen2");
  ASSERT_TRUE(WriteFileAtomic(Path("b.gguf"), raw).ok());
  auto back = ReadGgufLora(Path("b.gguf"), qwen);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  const auto& q = a.layers[0][0].b;
  const auto& got = back->layers[0][0].b;
  // Row 1 of head 0 in llama.cpp order is row half (= 16 / 2) of the original.
  for (int c = 0; c < 4; ++c) EXPECT_EQ(got.data[size_t(1 * 4 + c)], q.data[size_t(8 * 4 + c)]);
  EXPECT_EQ(back->layers[0][2].b, a.layers[0][2].b);
}

TEST_F(FormatTest, GgufRsloraFoldsTheScaleIntoAlpha) {
  auto base = TinyBase();
  auto a = RandomAdapter(base, 4, 7);
  a.rslora = true;
  a.alpha = 3;
  ASSERT_TRUE(WriteGgufLora(a, base, Path("a.gguf")).ok());
  auto back = ReadGgufLora(Path("a.gguf"), base);
  ASSERT_TRUE(back.ok());
  EXPECT_FALSE(back->rslora);
  EXPECT_NEAR(back->alpha / double(back->rank), 3.0 / 2.0, 1e-6);  // alpha / sqrt(4)
}

TEST_F(FormatTest, GgufRefusesOtherArchitecture) {
  auto base = TinyBase();
  ASSERT_TRUE(WriteGgufLora(RandomAdapter(base, 4, 8), base, Path("a.gguf")).ok());
  auto other = base;
  other.info.arch = "qwen2";
  auto r = ReadGgufLora(Path("a.gguf"), other);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("general.architecture"), std::string::npos);
}

TEST_F(FormatTest, GgufRefusesEveryTruncation) {
  auto base = TinyBase();
  ASSERT_TRUE(WriteGgufLora(RandomAdapter(base, 2, 9, {adapters::LoraTarget::kV}), base, Path("a.gguf")).ok());
  std::string full = *ReadFile(Path("a.gguf"));
  // Every cut point inside the file is refused with a message naming the file.
  for (size_t cut = 0; cut < full.size(); cut += 13) {
    std::ofstream(Path("t.gguf"), std::ios::binary | std::ios::trunc) << full.substr(0, cut);
    auto r = ReadGgufLora(Path("t.gguf"), base);
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_NE(r.status().message().find("t.gguf"), std::string::npos) << r.status().message();
  }
}

TEST_F(FormatTest, PeftRefusesNanAndTruncation) {
  auto base = TinyBase();
  auto a = RandomAdapter(base, 2, 10, {adapters::LoraTarget::kV});
  ASSERT_TRUE(WritePeft(a, base, Path("peft")).ok());
  std::string st = *ReadFile(Path("peft/adapter_model.safetensors"));
  for (size_t cut : {size_t(0), size_t(5), size_t(40), st.size() - 1}) {
    ASSERT_TRUE(WriteFileAtomic(Path("peft/adapter_model.safetensors"), st.substr(0, cut)).ok());
    auto r = ReadPeft(Path("peft"), base);
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  }
  a.layers[1][2].a.data[3] = std::numeric_limits<float>::quiet_NaN();
  // WritePeft refuses it, so poke the NaN into the file by hand.
  std::string bad = st;
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bad.data() + bad.size() - 4, &nan, 4);
  ASSERT_TRUE(WriteFileAtomic(Path("peft/adapter_model.safetensors"), bad).ok());
  auto r = ReadPeft(Path("peft"), base);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("non-finite"), std::string::npos) << r.status().message();
  EXPECT_FALSE(WritePeft(a, base, Path("peft2")).ok());
  EXPECT_FALSE(PathExists(Path("peft2/adapter_config.json")));
}

}  // namespace
}  // namespace attune::export_
