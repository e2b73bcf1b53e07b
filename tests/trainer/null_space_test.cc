// The null-space constraint on LoRA A (trainer/src/null_space.h).
#include "trainer/src/null_space.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "attune/trainer/lora_params.h"
#include "tests/runtime/test_util.h"

namespace attune::trainer::internal {
namespace {

using runtime::kNumLoraTargets;

std::shared_ptr<const runtime::Model> Tiny() {
  auto m = runtime::Model::Load(attune::testing::Fixture("models/tiny_llama.gguf"));
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return *m;
}

// Sequences of different lengths, so Measure pads them in one batch.
std::vector<std::vector<int64_t>> Sequences() {
  std::vector<std::vector<int64_t>> s;
  for (int i = 0; i < 7; ++i) {
    std::vector<int64_t> ids;
    for (int t = 0; t < 5 + 3 * i; ++t) ids.push_back(int64_t((17 * i + 5 * t + 3) % 200 + 1));
    s.push_back(ids);
  }
  return s;
}

// Σ x xᵀ of every projection's input, each sequence run alone (no padding).
std::vector<std::array<at::Tensor, kNumLoraTargets>> Moments(const runtime::Model& m,
                                                             const std::vector<std::vector<int64_t>>& seqs) {
  at::NoGradGuard ng;
  std::vector<std::array<at::Tensor, kNumLoraTargets>> mom(m.layers().size());
  const std::function<void(size_t, int, const at::Tensor&)> observe = [&](size_t l, int t, const at::Tensor& x) {
    at::Tensor r = x.reshape({-1, x.size(-1)}).to(at::kDouble);
    at::Tensor& acc = mom[l][size_t(t)];
    acc = acc.defined() ? acc + r.t().mm(r) : r.t().mm(r);
  };
  runtime::LoraWeights probe;
  probe.layers.resize(m.layers().size());
  probe.observe = &observe;
  for (const auto& ids : seqs) {
    runtime::Forward(m, &probe, at::tensor(ids, at::kLong).view({1, -1}), nullptr);
  }
  return mom;
}

// The directions of `u` are those of the moments `c`: the largest
// eigenvectors holding `energy` of its trace (the same span).
void ExpectDirectionsOf(const at::Tensor& c, const at::Tensor& u, double energy, const std::string& where) {
  auto [values, vectors] = at::linalg_eigh(c);
  const at::Tensor desc = values.flip({0});
  const int64_t k = (desc.cumsum(0) < energy * c.trace().item<double>()).sum().item<int64_t>() + 1;
  ASSERT_EQ(u.size(1), k) << where;
  const at::Tensor v = vectors.flip({1}).narrow(1, 0, k);
  const at::Tensor ud = u.to(at::kDouble);
  EXPECT_LT((ud.mm(ud.t()) - v.mm(v.t())).abs().max().item<double>(), 1e-3) << where;
}

LoraConfig AllTargets(int64_t rank) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = 2.0 * double(rank);
  c.targets.fill(true);
  return c;
}

// What the constraint promises: A reads nothing of the preserved
// directions, so over the measured inputs |A x|² is at most |A|₂² times the
// energy left outside them, (1 - energy) of the total; unconstrained A
// reads far more. Padding is kept out of the statistics: the directions
// are those of the moments of unpadded single runs.
TEST(NullSpaceTest, ConstrainedAReadsAtMostTheEnergyLeftOnTheMeasuredInputs) {
  auto m = Tiny();
  const auto seqs = Sequences();
  const double energy = 0.9;
  const auto ns = NullSpace::Measure(*m, AllTargets(4).targets, seqs, energy);
  const auto free = LoraParams::Init(*m, AllTargets(4), 7);
  const auto held = LoraParams::Init(*m, AllTargets(4), 7);
  ns.Apply(held);
  const auto mom = Moments(*m, seqs);
  int checked = 0;
  for (size_t l = 0; l < m->layers().size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      const at::Tensor u = ns.directions(l, t);
      ASSERT_TRUE(u.defined()) << l << " " << t;
      EXPECT_GT(u.size(1), 0);
      EXPECT_LT(u.size(1), u.size(0)) << "not every direction holds 90 % of the energy";
      const at::Tensor a = held.pair(l, t).a.detach().to(at::kDouble);
      const at::Tensor a0 = free.pair(l, t).a.detach().to(at::kDouble);
      EXPECT_LT(a.mm(u.to(at::kDouble)).abs().max().item<double>(), 1e-5);
      const at::Tensor& c = mom[l][size_t(t)];
      const double total = c.trace().item<double>();
      const double read = (a.mm(c) * a).sum().item<double>();       // Σ |A x|²
      const double read_free = (a0.mm(c) * a0).sum().item<double>();
      const double norm2 = at::linalg_matrix_norm(a, 2).item<double>();
      EXPECT_LE(read, norm2 * norm2 * (1 - energy) * total * 1.01) << "layer " << l << " target " << t;
      EXPECT_LT(read, 0.5 * read_free) << "layer " << l << " target " << t;
      // The directions are those of the unpadded moments.
      ExpectDirectionsOf(c, u, energy, "layer " + std::to_string(l) + " target " + std::to_string(t));
      ++checked;
    }
  }
  EXPECT_EQ(checked, int(m->layers().size()) * kNumLoraTargets);
  // Idempotent: applying again changes nothing.
  const auto before = held.Snapshot();
  ns.Apply(held);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::allclose(before[i], held.parameters()[i], 1e-5, 1e-6));
}

// Sequences that begin alike (a chat template's system turn) share their
// first positions in a batch: those run once and count once per sequence
// they belong to, so the directions are still those of every sequence run
// alone. One sequence is the prefix alone and every other one goes on
// with the token the padding is made of, so the shared positions reach
// into the first one's padding (that position counts for the others only).
TEST(NullSpaceTest, ASharedPrefixCountsOncePerSequence) {
  auto m = Tiny();
  std::vector<int64_t> prefix;
  for (int t = 0; t < 12; ++t) prefix.push_back(int64_t((7 * t + 11) % 200 + 1));
  std::vector<std::vector<int64_t>> seqs = {prefix, prefix, prefix};
  seqs[1].push_back(0);
  seqs[2].insert(seqs[2].end(), {0, 9});
  for (const auto& s : Sequences()) {
    std::vector<int64_t> with = prefix;
    with.push_back(0);
    with.insert(with.end(), s.begin(), s.end());
    seqs.push_back(with);
  }
  ASSERT_GE(int64_t(prefix.size()), runtime::kMinSharedPrefix);
  const double energy = 0.9;
  const auto ns = NullSpace::Measure(*m, AllTargets(2).targets, seqs, energy);
  const auto mom = Moments(*m, seqs);
  for (size_t l = 0; l < m->layers().size(); ++l) {
    for (int t = 0; t < kNumLoraTargets; ++t) {
      ExpectDirectionsOf(mom[l][size_t(t)], ns.directions(l, t), energy,
                         "layer " + std::to_string(l) + " target " + std::to_string(t));
    }
  }
}

// Only the adapted projections get directions; q, k and v (and gate and up)
// read one tensor and share theirs, counted once in bytes().
TEST(NullSpaceTest, OnlyAdaptedTargetsAreMeasuredAndSharedInputsShareDirections) {
  auto m = Tiny();
  LoraConfig c = AllTargets(2);
  c.targets.fill(false);
  c.targets[size_t(runtime::kK)] = c.targets[size_t(runtime::kV)] = c.targets[size_t(runtime::kUp)] = true;
  const auto ns = NullSpace::Measure(*m, c.targets, Sequences(), 0.8);
  const auto all = NullSpace::Measure(*m, AllTargets(2).targets, Sequences(), 0.8);
  int64_t bytes = 0;  // k and v share one tensor: counted once
  for (size_t l = 0; l < m->layers().size(); ++l) {
    bytes += 4 * (ns.directions(l, runtime::kK).numel() + ns.directions(l, runtime::kUp).numel());
    EXPECT_FALSE(ns.directions(l, runtime::kQ).defined());
    EXPECT_FALSE(ns.directions(l, runtime::kDown).defined());
    EXPECT_TRUE(at::equal(ns.directions(l, runtime::kK), ns.directions(l, runtime::kV)));
    EXPECT_TRUE(at::equal(ns.directions(l, runtime::kK), all.directions(l, runtime::kQ)));
    EXPECT_TRUE(at::equal(ns.directions(l, runtime::kUp), all.directions(l, runtime::kGate)));
  }
  EXPECT_GT(bytes, 0);
  EXPECT_EQ(ns.bytes(), bytes);
}

}  // namespace
}  // namespace attune::trainer::internal
