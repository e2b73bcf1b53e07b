// Merged mode: an adapter folded into a copy of the weights gives the same
// logits and greedy tokens as the unmerged LoRA term, and leaves the base
// model untouched.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "tests/runtime/test_util.h"

namespace attune::runtime {
namespace {

using attune::testing::Fixture;

adapters::Adapter RandomAdapter(const Model& m) {
  adapters::BaseModelInfo base = BaseInfo(m);
  adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = 4;
  a.alpha = 8;
  a.layers.resize(size_t(base.n_layers));
  at::Generator gen = at::detail::createCPUGenerator(11);
  for (int t = 0; t < kNumLoraTargets; ++t) {
    a.targets.push_back(static_cast<adapters::LoraTarget>(t));
    a.base_dims[size_t(t)] = base.dims[size_t(t)];
    for (auto& layer : a.layers) {
      at::Tensor A = at::randn({4, base.dims[size_t(t)].in}, gen) * 0.2;
      at::Tensor B = at::randn({base.dims[size_t(t)].out, 4}, gen) * 0.2;
      layer[size_t(t)].a = {{4, base.dims[size_t(t)].in}, std::vector<float>(A.data_ptr<float>(), A.data_ptr<float>() + A.numel())};
      layer[size_t(t)].b = {{base.dims[size_t(t)].out, 4}, std::vector<float>(B.data_ptr<float>(), B.data_ptr<float>() + B.numel())};
    }
  }
  return a;
}

TEST(MergedModeTest, FoldedWeightsMatchTheLoraTermAndLeaveTheBaseAlone) {
  EngineOptions eo;
  eo.model_path = Fixture("models/tiny_llama.gguf");
  eo.chat_template = "chatml";
  auto unmerged = Engine::Open(eo);
  eo.merged_adapters = true;
  auto merged = Engine::Open(eo);
  ASSERT_TRUE(unmerged.ok() && merged.ok());
  adapters::Adapter a = RandomAdapter(*(*unmerged)->model());

  auto snap = (*unmerged)->PrepareAdapter(a, "v1");
  auto msnap = (*merged)->PrepareAdapter(a, "v1");
  ASSERT_TRUE(snap.ok() && msnap.ok());
  ASSERT_NE((*msnap)->merged, nullptr);
  EXPECT_EQ((*snap)->merged, nullptr);

  at::NoGradGuard ng;
  at::Tensor ids = at::tensor(std::vector<int64_t>{1, 17, 42, 99, 5, 100, 64, 3}, at::kLong).view({1, -1});
  const Model& base = *(*merged)->model();
  at::Tensor before = Forward(base, nullptr, ids, nullptr);
  at::Tensor lora = Forward(base, &(*snap)->weights, ids, nullptr);
  at::Tensor folded = Forward(*(*msnap)->merged, nullptr, ids, nullptr);
  EXPECT_LT((lora - folded).abs().max().item<double>(), 1e-4);
  EXPECT_GT((lora - before).abs().max().item<double>(), 1e-2);  // the adapter does something
  EXPECT_TRUE(at::equal(Forward(base, nullptr, ids, nullptr), before)) << "the base must stay untouched";

  ASSERT_TRUE((*unmerged)->SetAdapter(a, "v1").ok());
  ASSERT_TRUE((*merged)->SetAdapter(a, "v1").ok());
  GenerateOptions go;
  go.max_tokens = 12;
  go.stop_at_eos = false;
  auto r1 = (*unmerged)->Complete("hello there", go);
  auto r2 = (*merged)->Complete("hello there", go);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->tokens, r2->tokens);
  EXPECT_EQ(r2->adapter_version, "v1");
  (*merged)->ClearAdapter();
  auto r3 = (*merged)->Complete("hello there", go);
  go.use_active_adapter = false;
  auto r4 = (*unmerged)->Complete("hello there", go);
  EXPECT_EQ(r3->tokens, r4->tokens) << "unmerging = serving the untouched base again";
}

}  // namespace
}  // namespace attune::runtime
