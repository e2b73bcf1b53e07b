// Interop checked by the reference implementations themselves, through the
// committed fixtures of tools/make_export_fixtures.py:
//  - PEFT: an adapter PEFT created and trained is imported and gives PEFT's
//    logits; our PEFT export is byte-for-byte what PEFT was run on, and PEFT's
//    logits with it are ours.
//  - llama.cpp: our GGUF-LoRA export is what llama.cpp was run on, and
//    llama.cpp's logits and greedy tokens with it are ours (exported and
//    imported again).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "attune/core/file.h"
#include "attune/export/gguf_lora.h"
#include "attune/export/peft.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"
#include "tests/export/fixture_adapter.h"

namespace attune::export_ {
namespace {

using nlohmann::json;

std::string Fixture(const std::string& rel) { return std::string(ATTUNE_FIXTURES_DIR) + "/" + rel; }

std::shared_ptr<const runtime::Model> LoadModel(const std::string& rel) {
  runtime::LoadOptions lo;
  lo.allow_missing_tokenizer = true;
  auto m = runtime::Model::Load(Fixture(rel), lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? *m : nullptr;
}

BaseModel BaseOf(const runtime::Model& m) {
  BaseModel b;
  b.info = runtime::BaseInfo(m);
  b.n_heads = m.config().n_heads;
  b.n_kv_heads = m.config().n_kv_heads;
  b.name_or_path = "tests/fixtures/models/tiny_llama";
  return b;
}

json LoadJson(const std::string& rel) {
  auto text = ReadFile(Fixture(rel));
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return json::parse(text.ok() ? *text : "{}");
}

// Logits [T, vocab] of a full-sequence forward pass, and 12 greedy tokens.
struct AdapterRun {
  at::Tensor logits;
  std::vector<int64_t> greedy;
};

AdapterRun RunAdapter(const runtime::Model& m, const adapters::Adapter& a, const std::vector<int64_t>& ids, size_t n_greedy) {
  auto active = runtime::MakeActiveAdapter(m, a, "fixture");
  EXPECT_TRUE(active.ok()) << active.status().ToString();
  at::NoGradGuard ng;
  AdapterRun r;
  r.logits = runtime::Forward(m, &(*active)->weights, at::tensor(ids, at::kLong).view({1, -1}), nullptr)[0];
  std::vector<int64_t> seq = ids;
  for (size_t i = 0; i < n_greedy; ++i) {
    at::Tensor l = runtime::Forward(m, &(*active)->weights, at::tensor(seq, at::kLong).view({1, -1}), nullptr);
    seq.push_back(l[0][-1].argmax().item<int64_t>());
  }
  r.greedy.assign(seq.begin() + int64_t(ids.size()), seq.end());
  return r;
}

// Compares every case of a reference (logits within `tol`, greedy tokens equal).
void ExpectMatches(const runtime::Model& m, const adapters::Adapter& a, const json& ref, double tol) {
  ASSERT_TRUE(ref.contains("cases"));
  for (const auto& c : ref["cases"]) {
    auto ids = c["ids"].get<std::vector<int64_t>>();
    auto greedy = c["greedy_ids"].get<std::vector<int64_t>>();
    AdapterRun r = RunAdapter(m, a, ids, greedy.size());
    auto want = c["logits"].get<std::vector<std::vector<float>>>();
    ASSERT_EQ(r.logits.size(0), int64_t(want.size()));
    double max_diff = 0;
    for (size_t t = 0; t < want.size(); ++t) {
      for (size_t v = 0; v < want[t].size(); ++v) {
        max_diff = std::max(max_diff, std::abs(double(r.logits[int64_t(t)][int64_t(v)].item<float>()) - want[t][v]));
      }
    }
    EXPECT_LT(max_diff, tol) << "prompt of " << ids.size() << " tokens";
    EXPECT_EQ(r.greedy, greedy) << "prompt of " << ids.size() << " tokens";
  }
}

TEST(InteropTest, PeftTrainedAdapterImportsAndGivesPeftsLogits) {
  auto m = LoadModel("models/tiny_llama");
  ASSERT_NE(m, nullptr);
  auto a = ReadPeft(Fixture("export/peft_trained"), BaseOf(*m));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->rank, 4);
  EXPECT_EQ(a->alpha, 8);
  EXPECT_EQ(a->targets.size(), 7u);
  // Measured: at most 3.7e-6.
  ExpectMatches(*m, *a, LoadJson("export/peft_logits.json")["peft_trained"], 1e-4);
}

TEST(InteropTest, OurPeftExportIsWhatPeftRanAndGivesOurLogits) {
  auto m = LoadModel("models/tiny_llama");
  ASSERT_NE(m, nullptr);
  BaseModel base = BaseOf(*m);
  adapters::Adapter a = testing::FixtureAdapter(base);
  const std::string dir = ::testing::TempDir() + "/attune_interop_peft";
  ASSERT_TRUE(WritePeft(a, base, dir).ok());
  for (const char* f : {kPeftConfigFile, kPeftWeightsFile}) {
    EXPECT_EQ(*ReadFile(dir + "/" + f), *ReadFile(Fixture("export/attune_peft/") + f)) << f << " changed";
  }
  ExpectMatches(*m, a, LoadJson("export/peft_logits.json")["attune_peft"], 1e-4);
}

TEST(InteropTest, OurGgufExportIsWhatLlamaCppRanAndGivesItsLogits) {
  auto m = LoadModel("models/tiny_llama.gguf");
  ASSERT_NE(m, nullptr);
  BaseModel base = BaseOf(*m);
  adapters::Adapter a = testing::FixtureAdapter(base);
  const std::string path = ::testing::TempDir() + "/attune_interop.gguf";
  ASSERT_TRUE(WriteGgufLora(a, base, path).ok());
  EXPECT_EQ(*ReadFile(path), *ReadFile(Fixture("export/attune_lora.gguf"))) << "the GGUF export changed";
  // llama.cpp computes with f16 weights in ggml and rounds activations to f16
  // for them; ours dequantizes to fp32. Measured: at most 9.3e-3, while the
  // adapter moves llama.cpp's logits by up to 4.95.
  json ref = LoadJson("export/llamacpp_logits.json");
  ExpectMatches(*m, a, ref["attune_lora_gguf"], 2e-2);
  // Imported back (q/k rows un-permuted), it gives the same numbers.
  auto back = ReadGgufLora(Fixture("export/attune_lora.gguf"), base);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectMatches(*m, *back, ref["attune_lora_gguf"], 2e-2);
}

TEST(InteropTest, LlamaCppLogitsShowTheAdapterMatters) {
  // Guards the fixture: with the adapter, llama.cpp's logits differ from the
  // base's by far more than the tolerance above.
  json ref = LoadJson("export/llamacpp_logits.json");
  auto with = ref["attune_lora_gguf"]["cases"][0]["logits"].get<std::vector<std::vector<float>>>();
  auto without = ref["base_gguf"]["logits"].get<std::vector<std::vector<float>>>();
  double max_diff = 0;
  for (size_t t = 0; t < with.size(); ++t)
    for (size_t v = 0; v < with[t].size(); ++v) max_diff = std::max(max_diff, double(std::abs(with[t][v] - without[t][v])));
  EXPECT_GT(max_diff, 0.5);
}

// SmolLM2-135M (the cached default model, Q4_1): an adapter made by PEFT on
// transformers' dequantization of the same GGUF, imported here, gives PEFT's
// logits. Both sides compute in fp32 from identical weights, so only the
// summation order differs (2e-3 on the bare model, see runtime's model_test).
TEST(InteropTest, PeftAdapterOnSmolLm2GivesPeftsLogits) {
  auto path = runtime::ResolveModelPath("");
  ASSERT_TRUE(path.ok()) << "default model missing: run `attune model fetch` (the test script does)";
  runtime::LoadOptions lo;
  lo.allow_missing_tokenizer = true;
  auto m = runtime::Model::Load(*path, lo);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto a = ReadPeft(Fixture("export/smollm2_peft"), BaseOf(**m));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  json ref = LoadJson("export/smollm2_peft_logits.json");
  auto ids = ref["ids"].get<std::vector<int64_t>>();
  auto greedy = ref["greedy_ids"].get<std::vector<int64_t>>();
  runtime::ExactProducts exact;  // fp32 products, as PEFT computes them
  AdapterRun r = RunAdapter(**m, *a, ids, greedy.size());
  at::Tensor probe = at::tensor(ref["probe_ids"].get<std::vector<int64_t>>(), at::kLong);
  double worst = 0;
  for (size_t t = 0; t < ref["positions"].size(); ++t) {
    const auto& pos = ref["positions"][t];
    at::Tensor row = r.logits[int64_t(t)];
    at::Tensor top = at::tensor(pos["top_ids"].get<std::vector<int64_t>>(), at::kLong);
    worst = std::max(worst, (row.index_select(0, top) - at::tensor(pos["top_logits"].get<std::vector<float>>())).abs().max().item<double>());
    worst = std::max(worst, (row.index_select(0, probe) - at::tensor(pos["probe_logits"].get<std::vector<float>>())).abs().max().item<double>());
  }
  EXPECT_LT(worst, 5e-3);
  EXPECT_EQ(r.greedy, greedy);
}

}  // namespace
}  // namespace attune::export_
