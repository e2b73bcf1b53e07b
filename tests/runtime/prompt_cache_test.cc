// The prompt cache: a conversation's next turn prefills only what is new,
// with the tokens an uncached generation gives, and a cache filled under one
// adapter never serves another (nor the base model).
#include "attune/runtime/prompt_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/generate.h"
#include "tests/runtime/random_adapter.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

std::unique_ptr<Engine> OpenTiny(size_t prompt_cache_bytes) {
  EngineOptions o;
  o.model_path = testing::Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";
  o.prompt_cache_bytes = prompt_cache_bytes;
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

// Every target in every layer, random, large enough to change the replies.
adapters::Adapter RandomAdapter(const Model& model, uint32_t seed) { return testing::RandomAdapter(BaseInfo(model), seed); }

GenerateOptions Greedy(int max_tokens) {
  GenerateOptions o;
  o.max_tokens = max_tokens;
  o.stop_at_eos = false;  // the tiny model's replies never end early
  return o;
}

const std::vector<ChatMessage> kFirstTurn = {{"system", "You are a helpful assistant."},
                                             {"user", "Tell me about the weather in Lisbon in spring."}};

TEST(PromptCacheTest, SecondTurnReusesTheFirstTurnAndGivesTheUncachedTokens) {
  auto cached = OpenTiny(size_t{8} << 20), uncached = OpenTiny(0);
  ASSERT_TRUE(cached && uncached);
  auto first = cached->Chat(kFirstTurn, Greedy(12));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->cached_prompt_tokens, 0);

  std::vector<ChatMessage> second = kFirstTurn;
  second.push_back({"assistant", first->text});
  second.push_back({"user", "And in autumn?"});
  auto warm = cached->Chat(second, Greedy(12));
  auto cold = uncached->Chat(second, Greedy(12));
  ASSERT_TRUE(warm.ok() && cold.ok());
  // At least the whole first prompt was restored, and only the new turn computed.
  EXPECT_GE(warm->cached_prompt_tokens, first->prompt_tokens);
  EXPECT_LT(warm->cached_prompt_tokens, warm->prompt_tokens);
  EXPECT_EQ(cold->cached_prompt_tokens, 0);
  EXPECT_EQ(warm->tokens, cold->tokens);
  const PromptCacheStats s = cached->prompt_cache_stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.reused_tokens, uint64_t(warm->cached_prompt_tokens));
  // The same prompt again restores all but its last token.
  auto again = cached->Chat(second, Greedy(12));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cached_prompt_tokens, again->prompt_tokens - 1);
  EXPECT_EQ(again->tokens, cold->tokens);
}

TEST(PromptCacheTest, ACacheFilledUnderOneAdapterNeverServesAnother) {
  auto engine = OpenTiny(size_t{8} << 20), reference = OpenTiny(0);
  ASSERT_TRUE(engine && reference);
  auto a = engine->PrepareAdapter(RandomAdapter(*engine->model(), 1), "a");
  auto b = engine->PrepareAdapter(RandomAdapter(*engine->model(), 2), "b");
  ASSERT_TRUE(a.ok() && b.ok());
  GenerateOptions with_a = Greedy(12), with_b = Greedy(12), base = Greedy(12);
  with_a.adapter = *a;
  with_b.adapter = *b;
  base.use_active_adapter = false;

  auto fill = engine->Chat(kFirstTurn, with_a);
  ASSERT_TRUE(fill.ok());
  auto under_b = engine->Chat(kFirstTurn, with_b);
  auto under_base = engine->Chat(kFirstTurn, base);
  ASSERT_TRUE(under_b.ok() && under_base.ok());
  EXPECT_EQ(under_b->cached_prompt_tokens, 0) << "adapter b was served keys and values computed under a";
  EXPECT_EQ(under_base->cached_prompt_tokens, 0) << "the base model was served an adapter's keys and values";
  auto ref_b = reference->Chat(kFirstTurn, with_b);
  auto ref_base = reference->Chat(kFirstTurn, base);
  ASSERT_TRUE(ref_b.ok() && ref_base.ok());
  EXPECT_EQ(under_b->tokens, ref_b->tokens);
  EXPECT_EQ(under_base->tokens, ref_base->tokens);
  EXPECT_NE(ref_b->tokens, fill->tokens) << "the two adapters must answer differently for this test to mean anything";

  // Each owner reuses its own entry.
  auto again_a = engine->Chat(kFirstTurn, with_a);
  ASSERT_TRUE(again_a.ok());
  EXPECT_GT(again_a->cached_prompt_tokens, 0);
  EXPECT_EQ(again_a->tokens, fill->tokens);

  // A new snapshot of the same version is another owner: a re-published
  // adapter starts afresh.
  auto a2 = engine->PrepareAdapter(RandomAdapter(*engine->model(), 1), "a");
  ASSERT_TRUE(a2.ok());
  GenerateOptions with_a2 = Greedy(12);
  with_a2.adapter = *a2;
  auto fresh = engine->Chat(kFirstTurn, with_a2);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->cached_prompt_tokens, 0);
}

TEST(PromptCacheTest, ThePublishedSlotIsKeyedByItsSnapshot) {
  auto engine = OpenTiny(size_t{8} << 20);
  ASSERT_TRUE(engine);
  ASSERT_TRUE(engine->Chat(kFirstTurn, Greedy(4)).ok());  // fills under the base model
  ASSERT_TRUE(engine->SetAdapter(RandomAdapter(*engine->model(), 3), "v1").ok());
  auto after_swap = engine->Chat(kFirstTurn, Greedy(4));
  ASSERT_TRUE(after_swap.ok());
  EXPECT_EQ(after_swap->adapter_version, "v1");
  EXPECT_EQ(after_swap->cached_prompt_tokens, 0);
  auto again = engine->Chat(kFirstTurn, Greedy(4));
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->cached_prompt_tokens, 0);
}

TEST(PromptCacheTest, StaysWithinItsBudgetDroppingTheLeastRecentlyUsed) {
  auto engine = OpenTiny(0);
  ASSERT_TRUE(engine);
  const Model& model = *engine->model();
  // One position of the tiny model: 2 layers x (k + v) x 2 heads x 16 x 4 bytes.
  const size_t per_token = 2 * 2 * 2 * 16 * 4;
  PromptCacheOptions o;
  o.max_bytes = 100 * per_token;
  PromptCache cache(o);
  auto fill = [&](int32_t first, int64_t n) {
    KvCache kv = model.NewCache(n + 1);
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < n; ++i) tokens.push_back(first + int32_t(i));
    kv.length = n;
    cache.Store(nullptr, tokens, kv);
    return tokens;
  };
  auto t1 = fill(10, 40), t2 = fill(20, 40);
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_EQ(cache.stats().bytes, 80 * per_token);
  // Using t1 makes t2 the least recently used, which the third entry evicts.
  KvCache kv = model.NewCache(41);
  t1.push_back(7);
  EXPECT_EQ(cache.Restore(nullptr, t1, &kv), 40);
  EXPECT_EQ(kv.length, 40);
  fill(30, 40);
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_LE(cache.stats().bytes, o.max_bytes);
  KvCache kv2 = model.NewCache(41);
  t2.push_back(7);
  EXPECT_EQ(cache.Restore(nullptr, t2, &kv2), 0);
  KvCache kv3 = model.NewCache(41);
  EXPECT_EQ(cache.Restore(nullptr, t1, &kv3), 40);
  // An entry larger than the whole budget is not kept.
  fill(50, 200);
  EXPECT_EQ(cache.stats().entries, 2u);
}

TEST(PromptCacheTest, EntriesOfASnapshotNobodyHoldsAreDropped) {
  auto engine = OpenTiny(0);
  ASSERT_TRUE(engine);
  std::shared_ptr<const ActiveAdapter> adapter;
  {
    auto snap = engine->PrepareAdapter(RandomAdapter(*engine->model(), 4), "gone");
    ASSERT_TRUE(snap.ok());
    adapter = *snap;
  }
  PromptCache cache;
  KvCache kv = engine->model()->NewCache(16);
  kv.length = 10;
  std::vector<int32_t> tokens(10, 5);
  cache.Store(adapter, tokens, kv);
  EXPECT_EQ(cache.stats().entries, 1u);
  adapter.reset();
  KvCache fresh = engine->model()->NewCache(16);
  tokens.push_back(6);
  EXPECT_EQ(cache.Restore(nullptr, tokens, &fresh), 0);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

}  // namespace
}  // namespace attune::runtime
