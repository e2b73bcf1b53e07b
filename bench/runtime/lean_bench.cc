// Prefill and decode throughput of the LibTorch-free engine (attune-run's),
// in a process that loads no LibTorch: its peak RSS is what a serving
// process of ours needs.
//
//   build/bench/runtime/lean_bench [--model PATH] [--threads N]
//
// The same measurements as runtime_bench (a 128-token prefill; 128 greedy
// decode steps after a 16-token prompt) and the same counters; and what a
// scoped adapter's judgement adds to a chat turn (BM_ChatTurn).
// bench/runtime/compare_llamacpp.py runs both next to llama.cpp.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/process.h"
#include "attune/runtime/lean_engine.h"
#include "attune/runtime/model_store.h"

namespace {

using namespace attune::runtime;

std::string g_model;
int g_threads = 2;
std::unique_ptr<LeanEngine> g_engine;

const LeanEngine& E() {
  if (!g_engine) {
    LeanEngineOptions o;
    o.model_path = g_model;
    o.threads = g_threads;
    auto e = LeanEngine::Open(o);
    if (!e.ok()) {
      std::fprintf(stderr, "%s\n", e.status().ToString().c_str());
      std::exit(1);
    }
    g_engine = std::move(*e);
  }
  return *g_engine;
}

// A fixed, ordinary token sequence (ids cycle through common tokens), as
// runtime_bench and compare_llamacpp.py use.
std::vector<int32_t> PromptIds(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(int32_t(int64_t(i) * 37 % 20000 + 100));
  return ids;
}

void BM_Prefill128(benchmark::State& state) {
  const LeanEngine& e = E();
  GenerateOptions o;
  o.max_tokens = 0;
  for (auto _ : state) {
    auto r = e.GenerateIds(PromptIds(128), o);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    state.SetIterationTime(r.ok() ? r->prefill_seconds : 1.0);
  }
  state.counters["tokens_per_second"] = benchmark::Counter(128.0 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = attune::PeakRssMb();
}

void BM_Decode128(benchmark::State& state) {
  const LeanEngine& e = E();
  for (auto _ : state) {
    GenerateOptions o;
    o.max_tokens = 129;
    o.stop_at_eos = false;
    auto r = e.GenerateIds(PromptIds(16), o);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    state.SetIterationTime(r.ok() ? r->decode_seconds : 1.0);
  }
  state.counters["tokens_per_second"] = benchmark::Counter(128.0 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = attune::PeakRssMb();
}

// An adapter on the query projections whose products add nothing (zero
// matrices), with or without a scope that takes every request in: both turns
// run the same products after the judgement, so the difference is its cost.
attune::adapters::Adapter ZeroAdapter(const LeanEngine& e, bool scoped) {
  const attune::adapters::BaseModelInfo base = e.base_info();
  attune::adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.base_dims = base.dims;
  a.rank = 1;
  a.alpha = 1;
  const auto q = attune::adapters::LoraTarget::kQ;
  const size_t qi = static_cast<size_t>(q);
  a.targets = {q};
  a.layers.resize(size_t(base.n_layers));
  const auto d = base.dims[qi];
  for (auto& l : a.layers) {
    l[qi].a = {{1, d.in}, std::vector<float>(size_t(d.in), 0.0f)};
    l[qi].b = {{d.out, 1}, std::vector<float>(size_t(d.out), 0.0f)};
  }
  if (scoped) {
    const size_t h = size_t(e.config().hidden);
    a.scope.layer = std::max<int64_t>(1, base.n_layers / 2);  // where the trainer fits it
    a.scope.mean.assign(h, 0.0f);
    a.scope.scale.assign(h, 1.0f);
    a.scope.weight.assign(h, 0.0f);
    a.scope.bias = 1.0;
  }
  return a;
}

// One chat turn's prefill (a 14-word question in the model's chat template,
// no generated token), wall time of the whole call.
void BM_ChatTurn(benchmark::State& state) {
  LeanEngine& e = *g_engine;
  const bool scoped = state.range(0) != 0;
  if (auto s = e.SetAdapter(ZeroAdapter(e, scoped), scoped ? "scoped" : "plain"); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  GenerateOptions o;
  o.max_tokens = 0;
  const std::vector<ChatMessage> turn = {{"user", "Could you remind me what my sister's name is and where she lives now?"}};
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = e.Chat(turn, o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok() || r->adapter_version.empty()) state.SkipWithError(r.ok() ? "the adapter did not answer" : r.status().ToString().c_str());
    state.SetIterationTime(seconds);
  }
  e.ClearAdapter();
  state.SetLabel(scoped ? "scoped" : "unscoped");
}

BENCHMARK(BM_Prefill128)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseManualTime();
BENCHMARK(BM_Decode128)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseManualTime();
BENCHMARK(BM_ChatTurn)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--model") && i + 1 < argc) g_model = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) g_threads = std::atoi(argv[++i]);
    else rest.push_back(argv[i]);
  }
  if (g_model.empty()) g_model = DefaultModelPath();
  E();
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
