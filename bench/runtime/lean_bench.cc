// Prefill and decode throughput of the LibTorch-free engine (attune-run's),
// in a process that loads no LibTorch: its peak RSS is what a serving
// process of ours needs.
//
//   build/bench/runtime/lean_bench [--model PATH] [--threads N]
//
// The same measurements as runtime_bench (a 128-token prefill; 128 greedy
// decode steps after a 16-token prompt) and the same counters.
// bench/runtime/compare_llamacpp.py runs both next to llama.cpp.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

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

BENCHMARK(BM_Prefill128)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseManualTime();
BENCHMARK(BM_Decode128)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseManualTime();

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--model") && i + 1 < argc) g_model = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) g_threads = std::atoi(argv[++i]);
    else rest.push_back(argv[i]);
  }
  if (g_model.empty()) g_model = DefaultModelPath();
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
