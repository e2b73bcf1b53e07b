// An adapter's scope: the probe fitted on the base model's hidden states
// separates the texts it was fitted on, and a scoped adapter answers only
// what is in its scope, the base model the rest.
#include "attune/runtime/scope.h"

#include <gtest/gtest.h>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/lean_engine.h"
#include "tests/runtime/random_adapter.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

const std::vector<std::string> kInside = {"What is my dog's name?", "Where do I live?", "When is my birthday?",
                                          "What is my sister called?", "Which car do I drive?"};
const std::vector<std::string> kOutside = {
    "What is the capital of France?", "How many legs does a spider have?", "What colour is grass?",
    "Who wrote Hamlet?",              "What is two plus two?",             "How many days are in a week?",
    "What is the boiling point of water?", "Which planet is the largest?"};

std::unique_ptr<Engine> OpenTiny() {
  EngineOptions o;
  o.model_path = testing::Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

GenerateOptions Greedy() {
  GenerateOptions o;
  o.max_tokens = 8;
  o.stop_at_eos = false;
  return o;
}

TEST(ScopeTest, TheProbeSeparatesTheTextsItWasFittedOn) {
  auto engine = OpenTiny();
  ASSERT_TRUE(engine);
  const Model& model = *engine->model();
  auto scope = FitScope(model, kInside, kOutside);
  ASSERT_TRUE(scope.ok()) << scope.status().ToString();
  EXPECT_EQ(scope->layer, std::max<int64_t>(1, int64_t(model.layers().size()) / 2));
  EXPECT_EQ(int64_t(scope->weight.size()), model.config().hidden);
  EXPECT_EQ(scope->fitted_in, int64_t(kInside.size()));
  EXPECT_EQ(scope->fitted_out, int64_t(kOutside.size()));
  EXPECT_EQ(scope->misplaced, 0);
  for (const auto& t : kInside) {
    auto s = ScopeScore(model, *scope, t);
    ASSERT_TRUE(s.ok());
    EXPECT_GT(*s, 0) << t;
    EXPECT_TRUE(InScope(model, *scope, t)) << t;
  }
  for (const auto& t : kOutside) {
    auto s = ScopeScore(model, *scope, t);
    ASSERT_TRUE(s.ok());
    EXPECT_LT(*s, 0) << t;
    EXPECT_FALSE(InScope(model, *scope, t)) << t;
  }
  // Deterministic: the same texts give the same probe.
  auto again = FitScope(model, kInside, kOutside);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *scope);
  // An empty scope takes everything in.
  EXPECT_TRUE(InScope(model, adapters::Scope{}, kOutside[0]));
}

TEST(ScopeTest, FittingNeedsBothSides) {
  auto engine = OpenTiny();
  ASSERT_TRUE(engine);
  EXPECT_EQ(FitScope(*engine->model(), kInside, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FitScope(*engine->model(), {}, kOutside).status().code(), StatusCode::kInvalidArgument);
}

TEST(ScopeTest, AScopedAdapterAnswersItsScopeAndTheBaseTheRest) {
  auto engine = OpenTiny();
  ASSERT_TRUE(engine);
  const Model& model = *engine->model();
  adapters::Adapter adapter = testing::RandomAdapter(BaseInfo(model), 5);
  auto chat = [&](const std::string& q) {
    auto r = engine->Chat({{"user", q}}, Greedy());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : GenerateResult{};
  };
  const std::string in = kInside[1], out = kOutside[2];
  const GenerateResult base_in = chat(in), base_out = chat(out);
  ASSERT_TRUE(engine->SetAdapter(adapter, "v1").ok());
  const GenerateResult adapted_in = chat(in), adapted_out = chat(out);
  // The random adapter changes both replies.
  ASSERT_NE(adapted_in.tokens, base_in.tokens);
  ASSERT_NE(adapted_out.tokens, base_out.tokens);

  auto scope = FitScope(model, kInside, kOutside);
  ASSERT_TRUE(scope.ok()) << scope.status().ToString();
  adapter.scope = *scope;
  ASSERT_TRUE(engine->SetAdapter(adapter, "v2").ok());
  const GenerateResult scoped_in = chat(in), scoped_out = chat(out);
  EXPECT_EQ(scoped_in.tokens, adapted_in.tokens);
  EXPECT_EQ(scoped_in.adapter_version, "v2");
  EXPECT_EQ(scoped_in.out_of_scope_version, "");
  EXPECT_EQ(scoped_out.tokens, base_out.tokens);
  EXPECT_EQ(scoped_out.adapter_version, "");
  EXPECT_EQ(scoped_out.out_of_scope_version, "v2");
  // Raw ids carry no message to judge: the adapter answers.
  auto ids = engine->GenerateIds({1, 2, 3}, Greedy());
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->adapter_version, "v2");
}

// The LibTorch-free engine reads the same hidden states through its own
// forward pass: a probe fitted on the Engine's judges every request the same
// way there, and the two engines give the same replies.
TEST(ScopeTest, TheLeanEngineJudgesAScopeAsTheEngineDoes) {
  auto engine = OpenTiny();
  ASSERT_TRUE(engine);
  LeanEngineOptions lo;
  lo.model_path = testing::Fixture("models/tiny_llama.gguf");
  lo.chat_template = "chatml";
  auto lean = LeanEngine::Open(lo);
  ASSERT_TRUE(lean.ok()) << lean.status().ToString();
  const Model& model = *engine->model();
  adapters::Adapter adapter = testing::RandomAdapter(BaseInfo(model), 5);
  auto scope = FitScope(model, kInside, kOutside);
  ASSERT_TRUE(scope.ok()) << scope.status().ToString();
  adapter.scope = *scope;
  ASSERT_TRUE(engine->SetAdapter(adapter, "v1").ok());
  ASSERT_TRUE((*lean)->SetAdapter(adapter, "v1").ok());
  std::vector<std::string> texts = kInside;
  texts.insert(texts.end(), kOutside.begin(), kOutside.end());
  // Texts it was not fitted on, either side.
  for (const char* t : {"What is my cat's name?", "Where does my brother work?", "What is the capital of Spain?",
                        "How many wheels does a bicycle have?"}) {
    texts.push_back(t);
  }
  int in = 0;
  for (const auto& t : texts) {
    const bool judged_in = InScope(model, *scope, t);
    in += judged_in;
    auto a = engine->Chat({{"user", t}}, Greedy());
    auto b = (*lean)->Chat({{"user", t}}, Greedy());
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(b->adapter_version, judged_in ? "v1" : "") << t;
    EXPECT_EQ(b->out_of_scope_version, judged_in ? "" : "v1") << t;
    EXPECT_EQ(b->adapter_version, a->adapter_version) << t;
    EXPECT_EQ(b->tokens, a->tokens) << t;
    auto c = (*lean)->Complete(t, Greedy());
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->adapter_version, judged_in ? "v1" : "") << t;
  }
  EXPECT_GE(in, int(kInside.size()));
  EXPECT_LT(in, int(texts.size()));
}

TEST(ScopeTest, AScopeOfAnotherWidthIsRefusedWhenInstalled) {
  auto engine = OpenTiny();
  ASSERT_TRUE(engine);
  adapters::Adapter adapter = testing::RandomAdapter(BaseInfo(*engine->model()), 5);
  const size_t wrong = size_t(engine->model()->config().hidden) + 1;
  adapter.scope.layer = 1;
  adapter.scope.mean.assign(wrong, 0.0f);
  adapter.scope.scale.assign(wrong, 1.0f);
  adapter.scope.weight.assign(wrong, 1.0f);
  Status s = engine->SetAdapter(adapter, "wide");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("scope"), std::string::npos) << s.message();
  EXPECT_EQ(engine->adapter_version(), "");
}

}  // namespace
}  // namespace attune::runtime
