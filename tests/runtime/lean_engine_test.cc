// The LibTorch-free engine on the tiny fixtures, with no LibTorch in the
// test either: logits against transformers', replies the trained tiny model
// learned, adapters, bad files. This binary also runs under AddressSanitizer
// and UBSan (scripts/test.sh), where it loads and runs mutated model files.
#include "attune/runtime/lean_engine.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "attune/adapters/adapter.h"
#include "attune/core/file.h"
#include "tests/runtime/random_adapter.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

using attune::testing::Fixture;

std::unique_ptr<LeanEngine> Open(const std::string& rel) {
  LeanEngineOptions o;
  o.model_path = Fixture(rel);
  auto e = LeanEngine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

GenerateOptions Greedy(int max_tokens) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  return o;
}

// Reference: transformers' logits for the tiny Llama written as GGUF (F32
// and F16 weights: exact fp32 products, so only summation order differs).
// Each prefix is one many-row prefill.
TEST(LeanEngineTest, LogitsMatchTransformersOnTheTinyGguf) {
  auto e = Open("models/tiny_llama.gguf");
  ASSERT_TRUE(e);
  std::ifstream in(Fixture("models/tiny_logits.json"));
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto ids64 = ref["ids"].get<std::vector<int64_t>>();
  double worst = 0;
  for (size_t t = 0; t < ids64.size(); ++t) {
    const std::vector<int32_t> prefix(ids64.begin(), ids64.begin() + int64_t(t) + 1);
    auto got = e->NextTokenLogits(prefix);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const auto want = ref["tiny_llama_gguf"][t].get<std::vector<float>>();
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, double(std::fabs((*got)[i] - want[i])));
  }
  EXPECT_LT(worst, 1e-4);
}

// tiny_chat answers its own made-up questions (tools/make_tiny_chat_model.py;
// transformers' greedy replies): the chat template, tokenizer, prefill,
// decode and stop at the end of turn all have to be right for these.
TEST(LeanEngineTest, TinyChatModelAnswersItsOwnFacts) {
  auto e = Open("models/tiny_chat.gguf");
  ASSERT_TRUE(e);
  const std::pair<const char*, const char*> facts[] = {{"sieil?", "ecefi"}, {"naduieg?", "tsye"}, {"enrmse?", "gindl"}};
  for (const auto& [q, a] : facts) {
    std::string streamed;
    auto r = e->Chat({{"user", q}}, Greedy(32), [&](std::string_view s) {
      streamed += s;
      return true;
    });
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->text.substr(0, std::string(a).size()), a) << q << " -> " << r->text;
    EXPECT_EQ(streamed, r->text);
    EXPECT_GT(r->prompt_tokens, 0);
  }
  // Deterministic, and max_tokens = 0 generates nothing.
  auto a = e->Chat({{"user", "dog?"}}, Greedy(16));
  auto b = e->Chat({{"user", "dog?"}}, Greedy(16));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tokens, b->tokens);
  auto none = e->Chat({{"user", "dog?"}}, Greedy(0));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->tokens.empty());
}

// A scoped adapter answers the requests its probe takes in and leaves the
// others to the base model; raw ids carry no message and get the adapter.
// (ScopeTest checks the judgement against the Engine's on a fitted probe.)
TEST(LeanEngineTest, AScopedAdapterLeavesWhatIsOutOfScopeToTheBase) {
  auto e = Open("models/tiny_chat.gguf");
  ASSERT_TRUE(e);
  const int64_t hidden = e->config().hidden;
  auto chat = [&](const std::string& q) {
    auto r = e->Chat({{"system", "be brief"}, {"user", q}, {"assistant", "?"}, {"user", "dog?"}}, Greedy(8));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : GenerateResult{};
  };
  const GenerateResult base = chat("sieil?");
  adapters::Adapter adapter = testing::RandomAdapter(e->base_info(), 3);
  ASSERT_TRUE(e->SetAdapter(adapter, "plain").ok());
  const GenerateResult adapted = chat("sieil?");
  ASSERT_NE(adapted.tokens, base.tokens);
  // The probe's weights are zero: its bias alone puts every request in
  // (+1) or out (-1), whatever the hidden state after layer 1 holds.
  adapters::Scope& scope = adapter.scope;
  scope.layer = 1;
  scope.mean.assign(size_t(hidden), 0.0f);
  scope.scale.assign(size_t(hidden), 1.0f);
  scope.weight.assign(size_t(hidden), 0.0f);
  for (double bias : {1.0, -1.0}) {
    scope.bias = bias;
    ASSERT_TRUE(e->SetAdapter(adapter, "scoped").ok());
    const GenerateResult r = chat("sieil?");
    if (bias > 0) {
      EXPECT_EQ(r.tokens, adapted.tokens);
      EXPECT_EQ(r.adapter_version, "scoped");
      EXPECT_EQ(r.out_of_scope_version, "");
    } else {
      EXPECT_EQ(r.tokens, base.tokens);
      EXPECT_EQ(r.adapter_version, "");
      EXPECT_EQ(r.out_of_scope_version, "scoped");
    }
    auto complete = e->Complete("dog?", Greedy(4));
    ASSERT_TRUE(complete.ok());
    EXPECT_EQ(complete->adapter_version, bias > 0 ? "scoped" : "");
    auto ids = e->GenerateIds({5, 17, 42}, Greedy(4));
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->adapter_version, "scoped");
  }
  // A probe that reads a layer the model does not have is refused, and the
  // adapter installed before stays.
  scope.layer = e->config().n_layers + 1;
  Status s = e->SetAdapter(adapter, "deep");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(e->adapter_version(), "scoped");
}

TEST(LeanEngineTest, AdapterChangesTheReplyAndAForeignOneIsRefused) {
  auto e = Open("models/tiny_chat.gguf");
  ASSERT_TRUE(e);
  const std::vector<int32_t> ids = {5, 17, 42, 99};
  auto base = e->NextTokenLogits(ids);
  ASSERT_TRUE(base.ok());
  adapters::Adapter foreign = testing::RandomAdapter(e->base_info(), 3);
  foreign.base_fingerprint = std::string(64, '0');
  Status s = e->SetAdapter(foreign, "foreign");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(e->adapter_version(), "");
  // A scope that does not fit the model's hidden states is refused.
  adapters::Adapter scoped = testing::RandomAdapter(e->base_info(), 3);
  scoped.scope.layer = 1;
  scoped.scope.mean = {0.0f};
  scoped.scope.scale = {1.0f};
  scoped.scope.weight = {1.0f};
  s = e->SetAdapter(scoped, "scoped");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("scope"), std::string::npos) << s.message();
  EXPECT_EQ(e->adapter_version(), "");
  ASSERT_TRUE(e->SetAdapter(testing::RandomAdapter(e->base_info(), 3), "r3").ok());
  EXPECT_EQ(e->adapter_version(), "r3");
  auto adapted = e->NextTokenLogits(ids);
  ASSERT_TRUE(adapted.ok());
  EXPECT_NE(*adapted, *base);
  auto r = e->Chat({{"user", "dog?"}}, Greedy(4));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->adapter_version, "r3");
  GenerateOptions no_adapter = Greedy(4);
  no_adapter.use_active_adapter = false;
  auto plain = e->Chat({{"user", "dog?"}}, no_adapter);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->adapter_version, "");
  e->ClearAdapter();
  auto cleared = e->NextTokenLogits(ids);
  ASSERT_TRUE(cleared.ok());
  EXPECT_EQ(*cleared, *base);
}

TEST(LeanEngineTest, BadInputIsAClearError) {
  LeanEngineOptions o;
  o.model_path = Fixture("models/tiny_llama");  // a Hugging Face directory
  auto dir = LeanEngine::Open(o);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dir.status().message().find("GGUF files only"), std::string::npos) << dir.status().ToString();
  o.model_path = Fixture("models/no_such_model.gguf");
  auto missing = LeanEngine::Open(o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  auto e = Open("models/tiny_chat.gguf");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->NextTokenLogits({5, 100000}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->NextTokenLogits({}).status().code(), StatusCode::kInvalidArgument);
  std::vector<int32_t> too_long(size_t(e->config().context_length), 5);
  EXPECT_EQ(e->NextTokenLogits(too_long).status().code(), StatusCode::kFailedPrecondition);
  GenerateOptions bad = Greedy(4);
  bad.sampling.temperature = NAN;
  EXPECT_EQ(e->Chat({{"user", "dog?"}}, bad).status().code(), StatusCode::kInvalidArgument);
}

// Random damage to a whole model file (header, metadata, tensor infos and
// data; truncation): Open fails with a message, or the model it opens
// generates without reading outside its buffers (AddressSanitizer checks
// that in scripts/test.sh).
TEST(LeanEngineTest, DamagedModelFilesFailCleanlyOrRun) {
  auto orig = ReadFile(Fixture("models/tiny_chat.gguf"));
  ASSERT_TRUE(orig.ok());
  const std::string p = (std::filesystem::temp_directory_path() / ("attune_lean_" + std::to_string(::getpid()) + ".gguf")).string();
  std::mt19937 rng(99);
  int iterations = 300;
  if (const char* n = std::getenv("ATTUNE_FUZZ_ITERATIONS")) iterations = std::max(1, std::atoi(n) / 4);
  int opened = 0, failed = 0;
  for (int it = 0; it < iterations; ++it) {
    std::string m = *orig;
    const int kind = it % 4;
    if (kind == 0) {
      m.resize(rng() % m.size());
    } else {
      // The header and metadata (tokenizer, template, hyper-parameters) are
      // where the loader's decisions are; kind 3 hits anywhere.
      const size_t header = std::min<size_t>(m.size(), 8192);
      const int flips = 1 + int(rng() % 8);
      for (int k = 0; k < flips; ++k) {
        const size_t pos = kind == 3 ? rng() % m.size() : rng() % header;
        m[pos] = char(kind == 2 ? 0xFF : rng());
      }
    }
    std::ofstream(p, std::ios::binary).write(m.data(), std::streamsize(m.size()));
    LeanEngineOptions o;
    o.model_path = p;
    auto e = LeanEngine::Open(o);
    if (!e.ok()) {
      EXPECT_FALSE(e.status().message().empty());
      ++failed;
      continue;
    }
    ++opened;
    GenerateOptions g = Greedy(4);
    g.stop_at_eos = false;
    auto r = (*e)->GenerateIds({1, 2, 3}, g);
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty());
    }
  }
  std::filesystem::remove(p);
  EXPECT_GT(opened, 0);
  EXPECT_GT(failed, 0);
}

}  // namespace
}  // namespace attune::runtime
