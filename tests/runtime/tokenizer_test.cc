#include "attune/runtime/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "attune/runtime/chat_template.h"
#include "attune/runtime/gguf.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

using attune::testing::DefaultModel;
using attune::testing::Fixture;

class SmolTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string path = DefaultModel();
    ASSERT_FALSE(path.empty()) << "default model missing: run `attune model fetch` (the test script does)";
    auto g = GgufFile::Open(path);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    auto t = Tokenizer::FromGguf(**g);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tok_ = t->release();
    auto jt = (*g)->GetString("tokenizer.chat_template");
    ASSERT_TRUE(jt.ok());
    jinja_ = new std::string(*jt);
    std::ifstream in(Fixture("tokenizer/smollm2_tokens.json"));
    golden_ = new nlohmann::json(nlohmann::json::parse(in));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete golden_;
    delete jinja_;
  }
  static Tokenizer* tok_;
  static nlohmann::json* golden_;
  static std::string* jinja_;
};
Tokenizer* SmolTokenizerTest::tok_ = nullptr;
nlohmann::json* SmolTokenizerTest::golden_ = nullptr;
std::string* SmolTokenizerTest::jinja_ = nullptr;

TEST_F(SmolTokenizerTest, EncodesLikeTheReferenceTokenizer) {
  int n = 0;
  for (const auto& c : (*golden_)["cases"]) {
    std::string text = c["text"];
    auto ids = tok_->Encode(text);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << "text: " << nlohmann::json(text).dump();
    ++n;
  }
  EXPECT_GE(n, 60);
}

TEST_F(SmolTokenizerTest, DecodesLikeTheReferenceTokenizer) {
  for (const auto& c : (*golden_)["cases"]) {
    auto text = tok_->Decode(c["ids"].get<std::vector<int32_t>>());
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, c["decoded"].get<std::string>());
  }
}

TEST_F(SmolTokenizerTest, ChatTemplateMatchesTheReferenceRendering) {
  auto t = ChatTemplate::Detect(*jinja_, "");
  ASSERT_TRUE(t.ok());
  for (const auto& c : (*golden_)["chat"]) {
    std::vector<ChatMessage> msgs;
    for (const auto& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    std::string text = t->Render(msgs, true);
    EXPECT_EQ(text, c["text"].get<std::string>());
    EXPECT_EQ(*tok_->Encode(text), c["ids"].get<std::vector<int32_t>>());
  }
}

TEST_F(SmolTokenizerTest, SpecialTokensCanBeTreatedAsText) {
  auto special = tok_->Encode("<|im_start|>");
  auto plain = tok_->Encode("<|im_start|>", /*parse_special=*/false);
  ASSERT_EQ(special->size(), 1u);
  EXPECT_GT(plain->size(), 1u);
  EXPECT_EQ(*tok_->Decode(*plain), "<|im_start|>");
}

// Bytes that never occur in UTF-8 (0xFF, 0xFE) have no token in SmolLM2's
// byte-level vocabulary and become <unk>; every other byte, even in a broken
// sequence, round-trips.
TEST_F(SmolTokenizerTest, InvalidUtf8NeverFailsAndKeepsEveryEncodableByte) {
  std::string bad = "ok \xFF\xFE broken \xE2\x82 tail";
  auto ids = tok_->Encode(bad);
  ASSERT_TRUE(ids.ok());
  auto text = tok_->Decode(*ids);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->substr(0, 3), "ok ");
  EXPECT_NE(text->find(" broken \xE2\x82 tail"), std::string::npos);
  EXPECT_EQ(*tok_->Decode(*tok_->Encode("broken \xE2\x82 tail")), "broken \xE2\x82 tail");
}

TEST_F(SmolTokenizerTest, RejectsOutOfRangeIds) {
  auto r = tok_->Decode({1, 999999});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("999999"), std::string::npos);
}

// The same SmolLM2 tokenizer saved by transformers as tokenizer.json must
// give the same ids through the tokenizer.json reader.
TEST_F(SmolTokenizerTest, HfTokenizerJsonEncodesLikeTheGgufTokenizer) {
  auto t = Tokenizer::FromHfJson(Fixture("tokenizer/smollm2_hf/tokenizer.json"));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->vocab_size(), tok_->vocab_size());
  for (const auto& c : (*golden_)["cases"]) {
    std::string text = c["text"];
    EXPECT_EQ(*(*t)->Encode(text), c["ids"].get<std::vector<int32_t>>()) << nlohmann::json(text).dump();
    EXPECT_EQ(*(*t)->Decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>());
  }
}

// A SentencePiece BPE model (Llama-2 style, byte fallback) in GGUF form
// against the sentencepiece library's own encoding.
TEST(SpmTokenizerTest, EncodesLikeSentencePiece) {
  auto g = GgufFile::Open(Fixture("tokenizer/tiny_spm.gguf"));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto t = Tokenizer::FromGguf(**g);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::ifstream in(Fixture("tokenizer/tiny_spm_tokens.json"));
  nlohmann::json golden = nlohmann::json::parse(in);
  EXPECT_TRUE((*t)->add_bos());
  EXPECT_EQ((*t)->bos_id(), golden["bos_id"].get<int32_t>());
  int n = 0;
  for (const auto& c : golden["cases"]) {
    std::string text = c["text"];
    // sentencepiece never reads control tokens out of text.
    auto ids = (*t)->Encode(text, /*parse_special=*/false);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << nlohmann::json(text).dump();
    ++n;
  }
  EXPECT_GE(n, 30);
}

TEST(PreTokenizerTest, UnknownNameIsAnError) {
  auto r = PreTokenizerRegexes("mystery");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("mystery"), std::string::npos);
}

}  // namespace
}  // namespace attune::runtime
