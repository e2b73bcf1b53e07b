// LoRA gradients and one optimizer step against PEFT + PyTorch (SFT), TRL's
// DPO and KTO formulas (fixtures: tools/make_trainer_fixtures.py), and
// against finite differences.
#include "attune/trainer/objective.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>

#include "attune/trainer/adamw.h"
#include "attune/trainer/lora_params.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer {
namespace {

using attune::testing::Fixture;
using runtime::kNumLoraTargets;

const char* kPeftNames[kNumLoraTargets] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

class LoraStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime::LoadOptions lo;
    lo.allow_missing_tokenizer = true;
    auto m = runtime::Model::Load(Fixture("models/tiny_llama"), lo);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = *m;
    std::ifstream in(Fixture("trainer/lora_step.json"));
    fx_ = nlohmann::json::parse(in);
    LoraConfig c;
    c.rank = fx_["config"]["r"];
    c.alpha = fx_["config"]["alpha"];
    c.dropout = 0;
    params_ = LoraParams::Init(*model_, c, 1);
    ASSERT_TRUE(params_.Assign(FromJson(fx_["init"])).ok());
  }

  // Fixture layout [layer]{target: {a, b}} -> parameters() order.
  std::vector<at::Tensor> FromJson(const nlohmann::json& per_layer) {
    std::vector<at::Tensor> out;
    for (const auto& layer : per_layer) {
      for (int t = 0; t < kNumLoraTargets; ++t) {
        for (const char* ab : {"a", "b"}) {
          const auto& rows = layer[kPeftNames[t]][ab];
          std::vector<float> flat;
          for (const auto& r : rows) for (float v : r) flat.push_back(v);
          out.push_back(at::tensor(flat).view({int64_t(rows.size()), int64_t(rows[0].size())}));
        }
      }
    }
    return out;
  }

  void ExpectGradsAndStep(const nlohmann::json& section) {
    auto want_g = FromJson(section["grads"]);
    auto want_after = FromJson(section["after"]);
    const auto& ps = params_.parameters();
    for (size_t i = 0; i < ps.size(); ++i) {
      ASSERT_TRUE(ps[i].grad().defined()) << params_.names()[i];
      double scale = want_g[i].abs().max().item<double>() + 1e-6;
      EXPECT_LT((ps[i].grad() - want_g[i]).abs().max().item<double>() / scale, 2e-3) << params_.names()[i];
    }
    const auto& o = fx_["optimizer"];
    AdamWOptions ao;
    ao.beta1 = o["beta1"];
    ao.beta2 = o["beta2"];
    ao.eps = o["eps"];
    ao.weight_decay = o["weight_decay"];
    AdamW opt(ps, ao);
    opt.Step(o["lr"]);
    // At step 1 AdamW moves each element by about lr * sign(g): elements whose
    // reference gradient is tiny may flip, so allow 2 lr there.
    const double lr = o["lr"];
    for (size_t i = 0; i < ps.size(); ++i) {
      at::Tensor diff = (ps[i].detach() - want_after[i]).abs();
      at::Tensor tiny = want_g[i].abs() < 1e-5;
      EXPECT_LT(diff.masked_fill(tiny, 0).max().item<double>(), 1e-5) << params_.names()[i];
      EXPECT_LE(diff.max().item<double>(), 2 * lr + 1e-6) << params_.names()[i];
    }
  }

  Sequence Seq(const nlohmann::json& ids, const nlohmann::json& scored) {
    Sequence s;
    for (int64_t v : ids) s.ids.push_back(v);
    for (int v : scored) s.scored.push_back(uint8_t(v));
    return s;
  }

  // Three rows that share their first kPrefix.size() tokens.
  static inline const std::vector<int64_t> kPrefix = {1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41};
  static std::vector<Sequence> PrefixedSequences() {
    std::vector<Sequence> seqs(3);
    const std::vector<std::vector<int64_t>> own = {{3, 17, 42, 99, 5, 27}, {7, 8}, {64}};
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].ids = kPrefix;
      seqs[i].ids.insert(seqs[i].ids.end(), own[i].begin(), own[i].end());
      seqs[i].scored.assign(seqs[i].ids.size(), 1);
      seqs[i].scored[0] = 0;
    }
    return seqs;
  }

  std::shared_ptr<const runtime::Model> model_;
  nlohmann::json fx_;
  LoraParams params_;
};

TEST_F(LoraStepTest, SftLossGradientsAndAdamWStepMatchPeft) {
  const auto& s = fx_["sft"];
  std::vector<Sequence> seqs;
  for (size_t i = 0; i < s["input_ids"].size(); ++i) {
    nlohmann::json scored = nlohmann::json::array();
    for (int l : s["labels"][i]) scored.push_back(l != -100 ? 1 : 0);
    seqs.push_back(Seq(s["input_ids"][i], scored));
  }
  Batch b = MakeBatch({&seqs[0], &seqs[1]});
  for (bool checkpointing : {false, true}) {
    for (auto& p : params_.parameters()) p.mutable_grad() = at::Tensor();
    double loss = ForwardBackward(*model_, params_.Weights(true), b.ids, checkpointing, [&](const at::Tensor& h) {
      return SftLoss(*model_, h, b, at::ones({2}), s["n_loss_tokens"].get<double>());
    });
    EXPECT_NEAR(loss, s["loss"].get<double>(), 1e-4) << "checkpointing " << checkpointing;
  }
  ExpectGradsAndStep(s);
}

TEST_F(LoraStepTest, DpoLossGradientsAndStepMatchTrlFormula) {
  const auto& d = fx_["dpo"];
  Sequence c = Seq(d["chosen_ids"], d["chosen_response_mask"]);
  Sequence r = Seq(d["rejected_ids"], d["rejected_response_mask"]);
  Batch b = MakeBatch({&c, &r});
  at::Tensor ref = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, nullptr, b.ids), b);
  EXPECT_NEAR(ref[0].item<double>(), d["ref_chosen_logp"].get<double>(), 1e-3);
  EXPECT_NEAR(ref[1].item<double>(), d["ref_rejected_logp"].get<double>(), 1e-3);
  auto lora = params_.Weights(false);
  at::Tensor pol = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, &lora, b.ids), b);
  EXPECT_NEAR(pol[0].item<double>(), d["policy_chosen_logp"].get<double>(), 1e-3);
  double loss = ForwardBackward(*model_, params_.Weights(true), b.ids, true, [&](const at::Tensor& h) {
    return DpoLoss(*model_, h, b, ref, at::ones({1}), d["beta"].get<double>(), 1.0);
  });
  EXPECT_NEAR(loss, d["loss"].get<double>(), 1e-5);
  ExpectGradsAndStep(d);
}

TEST_F(LoraStepTest, KtoLossGradientsAndStepMatchTrlFormula) {
  std::ifstream in(Fixture("trainer/lora_kto_step.json"));
  nlohmann::json k = nlohmann::json::parse(in)["kto"];
  Sequence c = Seq(k["chosen_ids"], k["chosen_response_mask"]);
  Sequence r = Seq(k["rejected_ids"], k["rejected_response_mask"]);
  Batch b = MakeBatch({&c, &r});
  at::Tensor ref = SequenceLogProbs(*model_, runtime::HiddenStates(*model_, nullptr, b.ids), b);
  double loss = ForwardBackward(*model_, params_.Weights(true), b.ids, false, [&](const at::Tensor& h) {
    return KtoLoss(*model_, h, b, ref, at::tensor({1.0f, 0.0f}), at::ones({2}), k["beta"].get<double>(),
                   k["kl"].get<double>(), 2.0);
  });
  EXPECT_NEAR(loss, k["loss"].get<double>(), 1e-5);
  ExpectGradsAndStep(k);
}

// The output head runs a chunk of rows at a time (at most 1024 rows of
// logits at once): with more scored positions than one chunk, the SFT and
// distillation losses and their gradients equal those of the whole
// [positions, vocab] head computed at once, and the base's log-probabilities
// equal the whole head's log-softmax.
TEST_F(LoraStepTest, HeadInChunksEqualsTheWholeHead) {
  at::Generator gen = at::detail::createCPUGenerator(7);
  const int64_t B = 6, T = 200;  // 6 * 199 = 1194 scored positions: two chunks
  at::Tensor all = at::randint(model_->config().vocab_size, {B, T}, gen, at::kLong);
  std::vector<Sequence> seqs(static_cast<size_t>(B));
  std::vector<const Sequence*> ptrs;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t* p = all[i].contiguous().data_ptr<int64_t>();
    seqs[size_t(i)].ids.assign(p, p + T);
    seqs[size_t(i)].scored.assign(size_t(T), 1);
    seqs[size_t(i)].scored[0] = 0;
    ptrs.push_back(&seqs[size_t(i)]);
  }
  Batch b = MakeBatch(ptrs);
  at::Tensor idx = (b.scored.narrow(1, 1, T - 1) > 0).nonzero();
  at::Tensor rows = idx.select(1, 0), pos = idx.select(1, 1);
  ASSERT_GT(rows.size(0), 1024);
  at::Tensor targets = b.ids.index({rows, pos + 1});
  auto whole = [&](const at::Tensor& h) {
    return at::log_softmax(runtime::HeadForward(*model_, h.index({rows, pos})), -1);  // [N, V]
  };
  at::Tensor weights = at::rand({B}, gen) + 0.5;
  const double norm = double(rows.size(0));
  at::Tensor base = BaseLogProbsAtTargets(*model_, runtime::HiddenStates(*model_, nullptr, b.ids), b);
  {
    at::NoGradGuard ng;
    EXPECT_LT((base - whole(runtime::HiddenStates(*model_, nullptr, b.ids))).abs().max().item<double>(), 1e-5);
  }
  const at::Tensor margin = MarginWeights(base, 4.0);
  ASSERT_TRUE(margin.defined());
  EXPECT_GT(margin.max().item<double>() - margin.min().item<double>(), 0.01) << "the weights compared are all alike";
  using LossFn = std::function<at::Tensor(const at::Tensor&)>;
  auto grads = [&](const LossFn& fn, double* loss) {
    for (auto& p : params_.parameters()) p.mutable_grad() = at::Tensor();
    *loss = ForwardBackward(*model_, params_.Weights(true), b.ids, /*checkpointing=*/false, fn);
    std::vector<at::Tensor> g;
    for (const auto& p : params_.parameters()) g.push_back(p.grad().clone());
    return g;
  };
  struct Case {
    const char* name;
    LossFn chunked, reference;
  };
  const Case cases[] = {
      {"sft", [&](const at::Tensor& h) { return SftLoss(*model_, h, b, weights, norm); },
       [&](const at::Tensor& h) {
         at::Tensor lp = whole(h).gather(1, targets.unsqueeze(1)).squeeze(1);
         return -(lp * weights.index_select(0, rows)).sum() / norm;
       }},
      {"distill", [&](const at::Tensor& h) { return DistillLoss(*model_, h, b, base, weights, norm); },
       [&](const at::Tensor& h) {
         at::Tensor kl = (base.exp() * (base - whole(h))).sum(-1);
         return (kl * weights.index_select(0, rows)).sum() / norm;
       }},
      {"distill, positions weighed by the base's margin",
       [&](const at::Tensor& h) { return DistillLoss(*model_, h, b, base, weights, norm, margin); },
       [&](const at::Tensor& h) {
         at::Tensor kl = (base.exp() * (base - whole(h))).sum(-1);
         return (kl * weights.index_select(0, rows) * margin).sum() / norm;
       }},
  };
  for (const Case& c : cases) {
    double got_loss = 0, want_loss = 0;
    auto got = grads(c.chunked, &got_loss);
    auto want = grads(c.reference, &want_loss);
    EXPECT_NEAR(got_loss, want_loss, 1e-5 * std::max(1.0, std::abs(want_loss))) << c.name;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double scale = want[i].abs().max().item<double>() + 1e-6;
      worst = std::max(worst, (got[i] - want[i]).abs().max().item<double>() / scale);
    }
    EXPECT_LT(worst, 1e-4) << c.name;
    EXPECT_GT(want[1].abs().max().item<double>(), 0) << c.name << ": the gradients compared are not all zero";
  }
}

// TrainerOptions::anchor_margin_boost: a position's weight is 1 + boost *
// exp(-gap), the gap between the base's two likeliest tokens there; off at 0.
TEST(MarginWeightsTest, WeighThePositionsTheBaseDecidesByAThinMargin) {
  EXPECT_FALSE(MarginWeights(at::log_softmax(at::randn({3, 10}), -1), 0.0).defined());
  // Rows: a tie between the two likeliest, a gap of 1 nat, a gap of 20.
  const at::Tensor logits = at::tensor({5.f, 5.f, 0.f, 0.f, 4.f, 3.f, 0.f, 0.f, 20.f, 0.f, 0.f, 0.f}).view({3, 4});
  const at::Tensor w = MarginWeights(at::log_softmax(logits, -1), 8.0);
  ASSERT_EQ(w.sizes(), at::IntArrayRef({3}));
  EXPECT_NEAR(w[0].item<double>(), 9.0, 1e-5);
  EXPECT_NEAR(w[1].item<double>(), 1.0 + 8.0 * std::exp(-1.0), 1e-5);
  EXPECT_NEAR(w[2].item<double>(), 1.0, 1e-6);
  EXPECT_FALSE(w.requires_grad());
}

// What a window keeps of the base for a distillation example: its scored
// rows' normed final hidden states, computed for the sequence alone.
// Concatenated and run through the head, they give the base log-probabilities
// of a padded batch of those sequences (within rounding: another shape of
// products), and of the batch itself exactly.
TEST_F(LoraStepTest, BaseRowsOfEachSequenceAloneGiveTheBatchsBaseLogProbs) {
  at::Generator gen = at::detail::createCPUGenerator(11);
  std::vector<Sequence> seqs(3);
  std::vector<const Sequence*> ptrs;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t T = 5 + 4 * int64_t(i);  // unequal lengths: the batch pads
    at::Tensor ids = at::randint(model_->config().vocab_size, {T}, gen, at::kLong);
    seqs[i].ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
    seqs[i].scored.assign(size_t(T), 0);
    for (int64_t t = T / 2; t < T; ++t) seqs[i].scored[size_t(t)] = 1;  // the answer half
    ptrs.push_back(&seqs[i]);
  }
  const Batch b = MakeBatch(ptrs);
  const at::Tensor hidden = runtime::HiddenStates(*model_, nullptr, b.ids);
  const at::Tensor want = BaseLogProbsAtTargets(*model_, hidden, b);
  EXPECT_TRUE(at::equal(HeadLogProbs(*model_, BaseTargetRows(*model_, hidden, b)), want));
  std::vector<at::Tensor> rows;
  for (const Sequence* s : ptrs) {
    const Batch one = MakeBatch({s});
    rows.push_back(BaseTargetRows(*model_, runtime::HiddenStates(*model_, nullptr, one.ids), one));
    const int64_t T = int64_t(s->ids.size());
    EXPECT_EQ(rows.back().size(0), T - T / 2);  // the scored positions
  }
  const at::Tensor got = HeadLogProbs(*model_, at::cat(rows));
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-4);
}

// Checkpointing with the top layers keeping their graph (graph_layers)
// gives the loss and gradients of a pass without checkpointing, with
// dropout on: the recomputed layers replay their masks, the kept ones draw
// theirs once, in the same order.
TEST_F(LoraStepTest, TopLayersKeptOutOfCheckpointingGiveTheSameGradients) {
  LoraConfig c;
  c.rank = fx_["config"]["r"];
  c.alpha = fx_["config"]["alpha"];
  c.dropout = 0.1;
  LoraParams p = LoraParams::Init(*model_, c, 3);
  {
    at::NoGradGuard ng;
    for (auto& t : p.parameters()) t.detach().normal_(0, 0.05);  // B too: every path carries gradient
  }
  Sequence s1, s2;
  s1.ids = {3, 17, 42, 99, 5, 27, 64, 3, 88, 23};
  s1.scored = {0, 0, 0, 1, 1, 1, 1, 1, 1, 1};
  s2.ids = {7, 8, 9, 10, 11, 12};
  s2.scored = {0, 0, 1, 1, 1, 1};
  const Batch b = MakeBatch({&s1, &s2});
  auto run = [&](bool checkpointing, size_t graph_layers, double* loss) {
    for (auto& t : p.parameters()) t.mutable_grad() = at::Tensor();
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(1234);
    }
    *loss = ForwardBackward(
        *model_, p.Weights(true), b.ids, checkpointing,
        [&](const at::Tensor& h) { return SftLoss(*model_, h, b, at::ones({2}), 13.0); }, graph_layers);
    std::vector<at::Tensor> g;
    for (const auto& t : p.parameters()) g.push_back(t.grad().clone());
    return g;
  };
  double want_loss = 0;
  const auto want = run(false, 0, &want_loss);
  const size_t L = model_->layers().size();
  ASSERT_GE(L, 2u);
  for (size_t kept : {size_t(0), size_t(1), L - 1, L, L + 5}) {
    double loss = 0;
    const auto got = run(true, kept, &loss);
    EXPECT_NEAR(loss, want_loss, 1e-6 * std::max(1.0, std::abs(want_loss))) << kept << " layers kept";
    for (size_t i = 0; i < got.size(); ++i) {
      const double scale = want[i].abs().max().item<double>() + 1e-6;
      EXPECT_LT((got[i] - want[i]).abs().max().item<double>() / scale, 1e-4) << p.names()[i] << ", " << kept;
    }
  }
  // The dropout masks matter: another seed gives another loss.
  double other = 0;
  {
    for (auto& t : p.parameters()) t.mutable_grad() = at::Tensor();
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(99);
    }
    other = ForwardBackward(*model_, p.Weights(true), b.ids, true,
                            [&](const at::Tensor& h) { return SftLoss(*model_, h, b, at::ones({2}), 13.0); }, 1);
  }
  EXPECT_GT(std::abs(other - want_loss), 1e-6);
}

// A micro-batch whose rows begin with the same tokens (the chat template's
// system turn) runs them once: the loss and every LoRA gradient equal those
// of the rows run whole, without checkpointing and with any number of
// layers recomputed, in fp32 and under bf16 products (whose attention then
// starts its rows' keys after the prefix's). Scored positions inside the
// prefix too, so its gradient comes from both the loss and the rows' keys.
// Under bf16 the two orders of rounding differ by an amount that depends on
// the CPU's bf16 kernels (AVX512-BF16, AMX, emulation), so each gradient's
// difference is held to the error bf16 itself makes against fp32 there: a
// misplaced key or a lost prefix gradient is of the gradient's own size.
TEST_F(LoraStepTest, SharedPrefixRunOnceGivesTheSameLossAndGradients) {
  LoraConfig c;
  c.dropout = 0;  // dropout would give the shared rows one mask: not shared (below)
  LoraParams p = LoraParams::Init(*model_, c, 5);
  {
    at::NoGradGuard ng;
    for (auto& t : p.parameters()) t.detach().normal_(0, 0.05);  // B too: every path carries gradient
  }
  const std::vector<Sequence> seqs = PrefixedSequences();
  const Batch b = MakeBatch({&seqs[0], &seqs[1], &seqs[2]});
  const runtime::LoraWeights w = p.Weights(true);
  ASSERT_EQ(SharedPrefixLength(b.ids, w), int64_t(kPrefix.size()));
  const size_t L = model_->layers().size();
  std::vector<at::Tensor> fp32;  // the rows run whole in fp32
  for (bool bf16 : {false, true}) {
    std::optional<runtime::Bf16Products> scope;
    if (bf16) scope.emplace();
    auto run = [&](bool share, bool checkpointing, size_t graph_layers, double* loss) {
      for (auto& t : p.parameters()) t.mutable_grad() = at::Tensor();
      *loss = ForwardBackward(
          *model_, p.Weights(true), b.ids, checkpointing,
          [&](const at::Tensor& h) { return SftLoss(*model_, h, b, at::ones({3}), 20.0); }, graph_layers, share ? kFindSharedPrefix : 0);
      std::vector<at::Tensor> g;
      for (const auto& t : p.parameters()) g.push_back(t.grad().clone());
      return g;
    };
    double want_loss = 0;
    const auto want = run(false, false, 0, &want_loss);
    if (!bf16) fp32 = want;
    for (auto [checkpointing, kept] : {std::pair{false, size_t(0)}, std::pair{true, size_t(0)},
                                       std::pair{true, size_t(1)}, std::pair{true, L}}) {
      double loss = 0;
      const auto got = run(true, checkpointing, kept, &loss);
      const std::string where = std::string(bf16 ? "bf16" : "fp32") + ", checkpointing " +
                                std::to_string(checkpointing) + ", " + std::to_string(kept) + " kept";
      EXPECT_NEAR(loss, want_loss, (bf16 ? 1e-3 : 1e-6) * std::max(1.0, std::abs(want_loss))) << where;
      for (size_t i = 0; i < got.size(); ++i) {
        if (!bf16) {
          const double scale = want[i].abs().max().item<double>() + 1e-6;
          EXPECT_LT((got[i] - want[i]).abs().max().item<double>() / scale, 1e-4) << p.names()[i] << ", " << where;
          continue;
        }
        const double norm = fp32[i].norm().item<double>() + 1e-6;
        const double bf16_error = (want[i] - fp32[i]).norm().item<double>() / norm;
        EXPECT_GT(bf16_error, 1e-4) << p.names()[i] << ": bf16 products were not used";
        EXPECT_LT((got[i] - want[i]).norm().item<double>() / norm, bf16_error) << p.names()[i] << ", " << where;
      }
    }
  }
}

// NEFTune's noise (TrainerOptions::neftune_alpha) is uniform in [-a, a] with
// a = alpha / sqrt(positions * hidden), as transformers' hook draws it.
TEST(NeftuneNoiseTest, IsUniformWithinAlphaOverTheRootOfPositionsTimesHidden) {
  at::manual_seed(3);
  const at::Tensor zeros = at::zeros({4, 50, 64});
  for (int64_t positions : {50, 200}) {
    const double a = 5.0 / std::sqrt(double(positions) * 64.0);
    const at::Tensor noise = AddNeftuneNoise(zeros, positions, 5.0);
    ASSERT_EQ(noise.sizes(), zeros.sizes());
    const at::Tensor mag = noise.abs();
    EXPECT_LE(mag.max().item<double>(), a * (1 + 1e-6)) << positions;
    EXPECT_GT(mag.max().item<double>(), 0.99 * a) << positions;       // 12800 draws reach the edge
    EXPECT_NEAR(mag.mean().item<double>(), a / 2, 0.02 * a) << positions;  // |U(-a, a)| averages a / 2
    EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.02 * a) << positions;
  }
  const at::Tensor x = at::randn({2, 3, 8});
  EXPECT_TRUE(at::equal(AddNeftuneNoise(x, 3, 0.0), x)) << "alpha 0 adds nothing";
}

// The noise is drawn once per micro-batch, before the layers: checkpointing
// replays the noisy embeddings it kept (with or without a shared prefix, any
// number of layers kept out of it), so the loss and gradients are those of
// the straight pass with the same draw; and the noise does change the loss.
TEST_F(LoraStepTest, NeftuneNoiseIsDrawnOnceAndReplayedByCheckpointing) {
  LoraConfig c;
  c.dropout = 0;
  LoraParams p = LoraParams::Init(*model_, c, 5);
  {
    at::NoGradGuard ng;
    for (auto& t : p.parameters()) t.detach().normal_(0, 0.05);
  }
  const std::vector<Sequence> seqs = PrefixedSequences();
  const Batch b = MakeBatch({&seqs[0], &seqs[1], &seqs[2]});
  const size_t L = model_->layers().size();
  auto run = [&](double alpha, bool share, bool checkpointing, size_t graph_layers, double* loss) {
    for (auto& t : p.parameters()) t.mutable_grad() = at::Tensor();
    at::manual_seed(11);
    *loss = ForwardBackward(
        *model_, p.Weights(true), b.ids, checkpointing,
        [&](const at::Tensor& h) { return SftLoss(*model_, h, b, at::ones({3}), 20.0); }, graph_layers,
        share ? kFindSharedPrefix : 0, alpha);
    std::vector<at::Tensor> g;
    for (const auto& t : p.parameters()) g.push_back(t.grad().clone());
    return g;
  };
  for (bool share : {false, true}) {
    double clean = 0, want_loss = 0;
    run(0.0, share, false, 0, &clean);
    const auto want = run(15.0, share, false, 0, &want_loss);
    EXPECT_GT(std::abs(want_loss - clean), 1e-6 * std::abs(clean)) << "share " << share;
    for (auto [checkpointing, kept] : {std::pair{true, size_t(0)}, std::pair{true, size_t(1)}, std::pair{true, L}}) {
      double loss = 0;
      const auto got = run(15.0, share, checkpointing, kept, &loss);
      const std::string where = "share " + std::to_string(share) + ", " + std::to_string(kept) + " kept";
      EXPECT_NEAR(loss, want_loss, 1e-6 * std::max(1.0, std::abs(want_loss))) << where;
      for (size_t i = 0; i < got.size(); ++i) {
        const double scale = want[i].abs().max().item<double>() + 1e-6;
        EXPECT_LT((got[i] - want[i]).abs().max().item<double>() / scale, 1e-4) << p.names()[i] << ", " << where;
      }
    }
  }
}

// What is shared: the leading columns every row has in common, at most all
// but one; nothing for one row, a short prefix, or LoRA dropout in training.
TEST_F(LoraStepTest, SharedPrefixLengthIsTheCommonStartOfEveryRow) {
  runtime::LoraWeights w;
  auto ids = [](std::vector<std::vector<int64_t>> rows) {
    at::Tensor t = at::zeros({int64_t(rows.size()), int64_t(rows[0].size())}, at::kLong);
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t c = 0; c < rows[r].size(); ++c) t[int64_t(r)][int64_t(c)] = rows[r][c];
    }
    return t;
  };
  const std::vector<int64_t> ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  auto with = [&](std::vector<int64_t> tail) {
    std::vector<int64_t> r = ten;
    r.insert(r.end(), tail.begin(), tail.end());
    return r;
  };
  EXPECT_EQ(SharedPrefixLength(ids({with({11, 12}), with({11, 13})}), w), 11);
  EXPECT_EQ(SharedPrefixLength(ids({with({11, 12}), with({11, 12})}), w), 11);  // identical rows: T - 1
  EXPECT_EQ(SharedPrefixLength(ids({with({11, 12})}), w), 0);                   // one row
  EXPECT_EQ(SharedPrefixLength(ids({{1, 2, 3, 4, 5, 6, 7, 9, 9}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}), w), 0);  // 7 < 8
  EXPECT_EQ(SharedPrefixLength(ids({with({11}), {0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}), w), 0);
  w.training = true;
  EXPECT_EQ(SharedPrefixLength(ids({with({11, 12}), with({11, 13})}), w), 11);
  w.dropout = 0.1;
  EXPECT_EQ(SharedPrefixLength(ids({with({11, 12}), with({11, 13})}), w), 0);
}

// How many layers keep their graph: none without memory, all at most, and
// as many as the estimate fits in between.
TEST_F(LoraStepTest, GraphLayersFitTheMemoryGiven) {
  const auto& c = model_->config();
  const double one = GraphLayerBytes(c, 4, 32) / (1024.0 * 1024.0);
  EXPECT_GT(one, 0);
  EXPECT_EQ(GraphLayers(c, 4, 32, 0), 0u);
  EXPECT_EQ(GraphLayers(c, 4, 32, one * 0.99), 0u);
  EXPECT_EQ(GraphLayers(c, 4, 32, one * 1.01), 1u);
  EXPECT_EQ(GraphLayers(c, 4, 32, one * 1e6), size_t(c.n_layers));
  EXPECT_LT(GraphLayers(c, 8, 32, one * 1.01), 1u);  // twice the rows: twice the bytes
  EXPECT_GT(GraphLayerBytes(c, 4, 64), 2 * GraphLayerBytes(c, 4, 32));  // attention grows with seq^2
}

// With a shared prefix a layer holds the prefix's rows once: fewer bytes, a
// row more adds only its own positions, and more layers fit the same memory.
TEST_F(LoraStepTest, GraphLayersCountASharedPrefixOnce) {
  const auto& c = model_->config();
  const double whole = GraphLayerBytes(c, 8, 32), row = GraphLayerBytes(c, 1, 32);
  EXPECT_DOUBLE_EQ(GraphLayerBytes(c, 8, 32, 0), whole);
  EXPECT_NEAR(whole, 8 * row, 1e-9 * whole);  // nothing shared: every row whole
  const double shared = GraphLayerBytes(c, 8, 32, 16);
  EXPECT_LT(shared, 0.75 * whole);
  EXPECT_GT(shared, 0.5 * whole);  // each row's own half, and the prefix once
  const double per_row = GraphLayerBytes(c, 9, 32, 16) - shared;
  EXPECT_LT(per_row, 0.75 * row);
  EXPECT_NEAR(GraphLayerBytes(c, 10, 32, 16) - GraphLayerBytes(c, 9, 32, 16), per_row, 1e-9 * whole);
  const double mb = 1.5 * whole / (1024.0 * 1024.0);
  ASSERT_EQ(c.n_layers, 2);
  EXPECT_EQ(GraphLayers(c, 8, 32, mb), 1u);
  EXPECT_EQ(GraphLayers(c, 8, 32, mb, 16), 2u);
}

// d loss / d theta by central differences on a few elements of every kind of
// LoRA tensor, against autograd through the per-layer recomputation.
TEST_F(LoraStepTest, GradientsMatchFiniteDifferences) {
  Sequence s;
  s.ids = {3, 17, 42, 99, 5, 27, 64, 3, 88, 23};
  s.scored = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  Batch b = MakeBatch({&s});
  auto loss_at = [&]() {
    auto w = params_.Weights(false);
    return SftLoss(*model_, runtime::HiddenStates(*model_, &w, b.ids), b, at::ones({1}), 6.0).item<double>();
  };
  ForwardBackward(*model_, params_.Weights(true), b.ids, true,
                  [&](const at::Tensor& h) { return SftLoss(*model_, h, b, at::ones({1}), 6.0); });
  const auto& ps = params_.parameters();
  int checked = 0;
  for (size_t i = 0; i < ps.size(); i += 3) {
    at::Tensor flat = ps[i].detach().view({-1});
    at::Tensor g = ps[i].grad().view({-1});
    int64_t j = int64_t(i * 7919) % flat.numel();
    const double eps = 1e-2;
    float orig = flat[j].item<float>();
    flat[j].fill_(orig + eps);
    double up = loss_at();
    flat[j].fill_(orig - eps);
    double down = loss_at();
    flat[j].fill_(orig);
    double fd = (up - down) / (2 * eps);
    EXPECT_NEAR(g[j].item<double>(), fd, 2e-3 + 0.05 * std::abs(fd)) << params_.names()[i] << "[" << j << "]";
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

}  // namespace
}  // namespace attune::trainer
