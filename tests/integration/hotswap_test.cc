// Hot-swap of adapters into a running Engine, end to end: a real Registry on
// disk decides which version is active, a publisher copies each decision into
// the Engine's adapter slot, and many threads generate at the same time.
//
// What must hold (issue 5, "Tests: Concurrency"): no error, every response
// reports exactly one adapter version, and its tokens are exactly what that
// version alone produces for the same prompt and seed (references computed
// single-threaded beforehand, with the snapshot passed explicitly through
// GenerateOptions::adapter so that they never touch the slot).
//
// The model is the tiny GGUF fixture (2 layers, width 64, byte-level ASCII
// vocabulary), so a 16-token generation takes milliseconds and the whole
// file runs in seconds on two cores.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/adapters/health.h"
#include "attune/adapters/registry.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "tests/adapters/test_util.h"
#include "tests/runtime/test_util.h"

namespace attune {
namespace {

using adapters::Adapter;
using adapters::BaseModelInfo;
using adapters::LoraTarget;
using adapters::testing::ScratchDir;
using attune::testing::Fixture;
using runtime::Engine;
using runtime::GenerateOptions;
using runtime::GenerateResult;

constexpr int kGenTokens = 16;
constexpr int kGeneratorThreads = 8;
constexpr int kSwapCycles = 200;  // each cycle: one forced promotion and one rollback

std::unique_ptr<Engine> OpenTiny() {
  runtime::EngineOptions o;
  o.model_path = Fixture("models/tiny_llama.gguf");
  o.chat_template = "chatml";  // the tiny GGUF has a byte-level vocabulary and no template
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(*e) : nullptr;
}

// A rank-`rank` adapter on every target of `base`, A and B drawn from
// N(0, stddev) with `seed`. The tiny model's activations are O(1), so a
// stddev of 0.3 moves the logits enough that different seeds generate
// different tokens.
Adapter RandomAdapter(const BaseModelInfo& base, uint32_t seed, int64_t rank = 4, float stddev = 0.3f) {
  Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * double(rank);
  for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
    a.targets.push_back(LoraTarget(t));
    a.base_dims[size_t(t)] = base.dims[size_t(t)];
  }
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  a.layers.resize(size_t(base.n_layers));
  for (auto& layer : a.layers) {
    for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
      const adapters::TargetDims& d = base.dims[size_t(t)];
      adapters::LoraPair& p = layer[size_t(t)];
      p.a.shape = {rank, d.in};
      p.b.shape = {d.out, rank};
      p.a.data.resize(size_t(rank * d.in));
      p.b.data.resize(size_t(d.out * rank));
      for (float& x : p.a.data) x = dist(rng);
      for (float& x : p.b.data) x = dist(rng);
    }
  }
  a.training_config["seed"] = std::to_string(seed);
  a.created_unix_ms = 1'700'000'000'000 + seed;
  return a;
}

// One request shape: a prompt and a sampling mode.
struct Case {
  std::string prompt;
  runtime::SamplingOptions sampling;
};

std::vector<Case> Cases() {
  const char* prompts[] = {"Hello, my name is", "The weather today", "1 2 3 4", "<|im_start|>user\nhi<|im_end|>\n"};
  std::vector<Case> v;
  uint64_t seed = 11;
  for (const char* p : prompts) {
    Case greedy;
    greedy.prompt = p;
    v.push_back(greedy);
    Case sampled;
    sampled.prompt = p;
    sampled.sampling.temperature = 0.9f;
    sampled.sampling.top_p = 0.95f;
    sampled.sampling.seed = seed++;
    v.push_back(sampled);
  }
  return v;
}

GenerateOptions Options(const Case& c) {
  GenerateOptions o;
  o.max_tokens = kGenTokens;
  o.sampling = c.sampling;
  o.stop_at_eos = false;  // always kGenTokens tokens: more to compare
  return o;
}

// Tokens that `snapshot` alone (null: the base model) produces for each case.
std::vector<std::vector<int32_t>> References(const Engine& engine, const std::vector<Case>& cases,
                                             std::shared_ptr<const runtime::ActiveAdapter> snapshot) {
  std::vector<std::vector<int32_t>> out;
  for (const Case& c : cases) {
    GenerateOptions o = Options(c);
    o.adapter = snapshot;
    o.use_active_adapter = false;  // with no snapshot: the base model, never the slot
    auto r = engine.Complete(c.prompt, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    EXPECT_EQ(r->finish_reason, "length");
    EXPECT_EQ(r->adapter_version, snapshot ? snapshot->version : "");
    out.push_back(r->tokens);
  }
  return out;
}

// Copies the registry's decision into the engine's slot.
Status PublishActive(const adapters::Registry& registry, Engine& engine) {
  const std::string active = registry.Active();
  if (active.empty()) {
    engine.ClearAdapter();
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(Adapter a, registry.Load(active));
  return engine.SetAdapter(a, active);
}

class HotswapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = OpenTiny();
    ASSERT_NE(engine_, nullptr);
    base_ = runtime::BaseInfo(*engine_->model());
    cases_ = Cases();
  }

  std::unique_ptr<adapters::Registry> OpenRegistry() {
    adapters::RegistryOptions ro;
    ro.base_model = base_;
    auto r = adapters::Registry::Open(ro, dir_.path() + "/adapters");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  ScratchDir dir_;
  std::unique_ptr<Engine> engine_;
  BaseModelInfo base_;
  std::vector<Case> cases_;
};

TEST_F(HotswapTest, ConcurrentGenerationsSeeExactlyOneVersionWhilePromotingAndRollingBack) {
  auto registry = OpenRegistry();
  ASSERT_NE(registry, nullptr);

  // Three versions in the registry, and what each (and the base model)
  // produces alone.
  std::vector<std::string> ids;
  std::map<std::string, std::vector<std::vector<int32_t>>> refs;
  refs[""] = References(*engine_, cases_, nullptr);
  for (uint32_t seed : {101u, 202u, 303u}) {
    Adapter a = RandomAdapter(base_, seed);
    auto id = registry->Add(a);
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
    auto snap = engine_->PrepareAdapter(a, *id);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    refs[*id] = References(*engine_, cases_, *snap);
  }
  // The versions must be told apart by their tokens, or the comparison below
  // proves nothing.
  for (auto x = refs.begin(); x != refs.end(); ++x) {
    for (auto y = std::next(x); y != refs.end(); ++y) {
      int differ = 0;
      for (size_t i = 0; i < cases_.size(); ++i) differ += x->second[i] != y->second[i];
      ASSERT_GE(differ, int(cases_.size()) - 1)
          << "versions '" << x->first << "' and '" << y->first << "' generate the same tokens on too many cases";
    }
  }

  std::atomic<bool> stop{false};
  std::atomic<int64_t> generations{0}, failures{0}, spanned{0};
  std::mutex mu;
  std::string first_failure;
  std::map<std::string, int64_t> seen;  // responses per reported version
  auto fail = [&](const std::string& what) {
    if (failures.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu);
      first_failure = what;
    }
  };

  std::vector<std::thread> generators;
  for (int t = 0; t < kGeneratorThreads; ++t) {
    generators.emplace_back([&, t] {
      std::map<std::string, int64_t> local;
      for (size_t i = size_t(t); !stop.load(std::memory_order_relaxed); ++i) {
        const Case& c = cases_[i % cases_.size()];
        const std::string before = engine_->adapter_version();
        auto r = engine_->Complete(c.prompt, Options(c));
        generations.fetch_add(1);
        // (Approximate: the slot may also change between the reads.)
        if (r.ok() && r->adapter_version == before && engine_->adapter_version() != before) spanned.fetch_add(1);
        if (!r.ok()) {
          fail("generation failed: " + r.status().ToString());
          continue;
        }
        auto it = refs.find(r->adapter_version);
        if (it == refs.end()) {
          fail("response reports unknown adapter version '" + r->adapter_version + "'");
          continue;
        }
        if (r->finish_reason != "length") fail("finish_reason " + r->finish_reason);
        if (r->tokens != it->second[i % cases_.size()]) {
          fail("tokens of case " + std::to_string(i % cases_.size()) + " differ from what version '" +
               r->adapter_version + "' alone produces");
        }
        ++local[r->adapter_version];
      }
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& [v, n] : local) seen[v] += n;
    });
  }

  // The publisher: force-promote a version that is not active, publish,
  // roll back (to the previous retired version or to none), publish.
  int64_t publishes = 0;
  std::string publisher_error;
  for (int cycle = 0; cycle < kSwapCycles && publisher_error.empty(); ++cycle) {
    std::string target = ids[size_t(cycle) % ids.size()];
    if (target == registry->Active()) target = ids[size_t(cycle + 1) % ids.size()];
    auto p = registry->Promote(target, std::nullopt, /*force=*/true);
    if (!p.ok() || !p->promoted) {
      publisher_error = "promote: " + (p.ok() ? std::string("not promoted") : p.status().ToString());
      break;
    }
    if (Status s = PublishActive(*registry, *engine_); !s.ok()) publisher_error = "publish: " + s.ToString();
    if (engine_->adapter_version() != registry->Active()) publisher_error = "slot does not hold the active version";
    ++publishes;
    // Let some generations run on this version before rolling back.
    std::this_thread::sleep_for(std::chrono::microseconds(500));
    adapters::RollbackRequest rb;
    rb.note = "hotswap test cycle " + std::to_string(cycle);
    auto back = registry->Rollback(rb);
    if (!back.ok()) {
      publisher_error = "rollback: " + back.status().ToString();
      break;
    }
    if (Status s = PublishActive(*registry, *engine_); !s.ok()) publisher_error = "publish: " + s.ToString();
    if (engine_->adapter_version() != *back) publisher_error = "slot does not hold the rolled-back-to version";
    ++publishes;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  stop = true;
  for (auto& g : generators) g.join();

  EXPECT_EQ(publisher_error, "");
  EXPECT_EQ(publishes, 2 * kSwapCycles);
  EXPECT_EQ(failures.load(), 0) << "first failure: " << first_failure;
  EXPECT_GE(generations.load(), kGeneratorThreads);
  // The generations saw more than one version.
  EXPECT_GE(seen.size(), 2u);
  // Every promotion and rollback is in the history.
  EXPECT_GE(registry->History().size(), size_t(2 * kSwapCycles));
  std::string summary;
  for (const auto& [v, n] : seen)
    summary += (v.empty() ? std::string("base") : v.substr(0, 8)) + "=" + std::to_string(n) + " ";
  RecordProperty("responses_per_version", summary);
  std::printf("%lld generations during %lld publishes (%lld of them outlived a swap); responses per version: %s\n",
              (long long)generations.load(), (long long)publishes, (long long)spanned.load(), summary.c_str());
}

TEST_F(HotswapTest, AdapterForAnotherBaseModelIsRefusedAndSlotUnchanged) {
  Adapter good = RandomAdapter(base_, 7);
  ASSERT_TRUE(engine_->SetAdapter(good, "good").ok());

  BaseModelInfo other = base_;
  other.fingerprint = std::string(64, 'f');
  Status s = engine_->SetAdapter(RandomAdapter(other, 8), "other-base");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("base model"), std::string::npos) << s.ToString();
  EXPECT_EQ(engine_->adapter_version(), "good");

  // Same fingerprint, different shape: the message names the tensor.
  BaseModelInfo wide = base_;
  wide.dims[size_t(LoraTarget::kUp)].out *= 2;
  s = engine_->SetAdapter(RandomAdapter(wide, 9), "wrong-shape");
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("target up"), std::string::npos) << s.ToString();
  EXPECT_EQ(engine_->adapter_version(), "good");

  // Generations still use the installed adapter.
  auto snap = engine_->PrepareAdapter(good, "good");
  ASSERT_TRUE(snap.ok());
  auto want = References(*engine_, cases_, *snap);
  auto r = engine_->Complete(cases_[0].prompt, Options(cases_[0]));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->adapter_version, "good");
  EXPECT_EQ(r->tokens, want[0]);
}

TEST_F(HotswapTest, GenerationStartedBeforeSwapFinishesWithItsPinnedVersion) {
  Adapter a = RandomAdapter(base_, 21), b = RandomAdapter(base_, 22);
  auto sa = engine_->PrepareAdapter(a, "A");
  auto sb = engine_->PrepareAdapter(b, "B");
  ASSERT_TRUE(sa.ok() && sb.ok());
  const Case& c = cases_[0];
  auto ref_a = References(*engine_, {c}, *sa), ref_b = References(*engine_, {c}, *sb);
  ASSERT_NE(ref_a, ref_b);

  ASSERT_TRUE(engine_->SetAdapter(a, "A").ok());
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, swapped = false;
  int chunks = 0;
  Result<GenerateResult> running = InternalError("not run");
  std::thread gen([&] {
    running = engine_->Complete(c.prompt, Options(c), [&](std::string_view) {
      if (chunks++ == 0) {  // first text: the generation is under way; wait for the swap
        std::unique_lock<std::mutex> lock(mu);
        started = true;
        cv.notify_all();
        cv.wait(lock, [&] { return swapped; });
      }
      return true;
    });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return started; }));
  }
  ASSERT_TRUE(engine_->SetAdapter(b, "B").ok());  // never waits for the running generation
  EXPECT_EQ(engine_->adapter_version(), "B");
  // A generation that starts now uses B, while the first one is still paused.
  auto after = engine_->Complete(c.prompt, Options(c));
  {
    std::lock_guard<std::mutex> lock(mu);
    swapped = true;
  }
  cv.notify_all();
  gen.join();

  ASSERT_TRUE(running.ok()) << running.status().ToString();
  EXPECT_EQ(running->adapter_version, "A");
  EXPECT_EQ(running->tokens, ref_a[0]);
  EXPECT_GT(chunks, 1);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->adapter_version, "B");
  EXPECT_EQ(after->tokens, ref_b[0]);
}

TEST_F(HotswapTest, NanInAdapterEndsGenerationAsNonFiniteWithVersion) {
  Adapter bad = RandomAdapter(base_, 31);
  bad.layers[0][size_t(LoraTarget::kV)].b.data[3] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(engine_->SetAdapter(bad, "nan-version").ok());
  auto r = engine_->Complete(cases_[0].prompt, Options(cases_[0]));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->finish_reason, "non_finite");
  EXPECT_EQ(r->adapter_version, "nan-version");
  EXPECT_TRUE(r->tokens.empty());

  // Serving without the adapter is unaffected.
  GenerateOptions o = Options(cases_[0]);
  o.use_active_adapter = false;
  auto base = engine_->Complete(cases_[0].prompt, o);
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->finish_reason, "length");
  EXPECT_EQ(base->adapter_version, "");
}

// The runtime reports non-finite logits with the version; the health watch
// turns that into a rollback in the registry; the publisher puts the previous
// version back into the slot.
TEST_F(HotswapTest, NonFiniteLogitsRollBackThroughHealthMonitor) {
  auto registry = OpenRegistry();
  ASSERT_NE(registry, nullptr);
  Adapter good = RandomAdapter(base_, 41);
  // Finite (so the registry accepts it) but large enough that B (A x)
  // overflows float32: the logits become Inf/NaN.
  Adapter bad = RandomAdapter(base_, 42);
  for (float& x : bad.layers[0][size_t(LoraTarget::kQ)].a.data) x = 1e25f;
  for (float& x : bad.layers[0][size_t(LoraTarget::kQ)].b.data) x = 1e25f;
  auto good_id = registry->Add(good);
  auto bad_id = registry->Add(bad);
  ASSERT_TRUE(good_id.ok() && bad_id.ok()) << good_id.status().ToString() << bad_id.status().ToString();

  adapters::HealthMonitor monitor;
  ASSERT_TRUE(registry->Promote(*good_id, std::nullopt, /*force=*/true).ok());
  monitor.SetActive(*good_id, "");
  ASSERT_TRUE(PublishActive(*registry, *engine_).ok());
  ASSERT_TRUE(registry->Promote(*bad_id, std::nullopt, /*force=*/true).ok());
  monitor.SetActive(*bad_id, *good_id);
  ASSERT_TRUE(PublishActive(*registry, *engine_).ok());
  ASSERT_EQ(engine_->adapter_version(), *bad_id);

  auto r = engine_->Complete(cases_[0].prompt, Options(cases_[0]));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->finish_reason, "non_finite");
  EXPECT_EQ(r->adapter_version, *bad_id);

  adapters::HealthVerdict verdict = monitor.RecordNonFinite(r->adapter_version);
  ASSERT_TRUE(verdict.rollback) << verdict.reason;
  EXPECT_EQ(verdict.version, *bad_id);
  EXPECT_EQ(verdict.cause, adapters::ActivationCause::kRollbackNan);
  auto back = adapters::ApplyVerdict(*registry, verdict);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *good_id);
  ASSERT_TRUE(PublishActive(*registry, *engine_).ok());
  EXPECT_EQ(engine_->adapter_version(), *good_id);

  auto history = registry->History();
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back().cause, adapters::ActivationCause::kRollbackNan);
  EXPECT_EQ(history.back().from_version, *bad_id);
  auto info = registry->Get(*bad_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, adapters::VersionState::kRejected);

  // Serving is healthy again, with the good version's exact tokens.
  auto snap = engine_->PrepareAdapter(good, *good_id);
  ASSERT_TRUE(snap.ok());
  auto want = References(*engine_, {cases_[0]}, *snap);
  auto after = engine_->Complete(cases_[0].prompt, Options(cases_[0]));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->finish_reason, "length");
  EXPECT_EQ(after->adapter_version, *good_id);
  EXPECT_EQ(after->tokens, want[0]);
  // A second report about the rolled-back version changes nothing.
  EXPECT_FALSE(monitor.RecordNonFinite(*bad_id).rollback);
}

}  // namespace
}  // namespace attune
