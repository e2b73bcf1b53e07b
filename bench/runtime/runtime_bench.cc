// Prefill and decode throughput of the runtime on a real model.
//
//   build/bench/runtime/runtime_bench [--model PATH] [--threads N] [--torch-threads N] [--weights quantized|fp32]
//
// PATH defaults to the cached default model (SmolLM2-135M-Instruct Q4_1).
// Counters: tokens_per_second, and peak_rss_mb (VmHWM of the process, which
// includes loading the model). bench/runtime/compare_llamacpp.py runs this
// next to llama.cpp on the same file and prints ratios.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <string>

#include "attune/core/file.h"
#include "attune/core/process.h"
#include "attune/runtime/generate.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"

namespace {

using namespace attune::runtime;

std::string g_model;
int g_threads = 2, g_torch_threads = 1;
bool g_fp32 = false;
std::shared_ptr<const Model> g_m;

const Model& M() {
  if (!g_m) {
    ConfigureThreads(g_torch_threads, g_threads);
    LoadOptions lo;
    lo.weights = g_fp32 ? WeightStorage::kFp32 : WeightStorage::kQuantized;
    auto m = Model::Load(g_model, lo);
    if (!m.ok()) {
      std::fprintf(stderr, "%s\n", m.status().ToString().c_str());
      std::exit(1);
    }
    g_m = *m;
  }
  return *g_m;
}

at::Tensor PromptIds(int64_t n) {
  // A fixed, ordinary token sequence (ids cycle through common tokens).
  return (at::arange(0, n, at::kLong) * 37 % 20000 + 100).view({1, n});
}

// The serving path's prefill (Generate's: the lean pass where every
// projection has a many-row integer kernel, LibTorch's Forward otherwise).
void BM_Prefill128(benchmark::State& state) {
  const Model& m = M();
  at::Tensor ids = PromptIds(128);
  const std::vector<int32_t> prompt(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 128);
  GenerateOptions o;
  o.max_tokens = 0;
  for (auto _ : state) {
    auto r = Generate(m, nullptr, prompt, o);
    if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    state.SetIterationTime(r.ok() ? r->prefill_seconds : 1.0);
  }
  state.counters["tokens_per_second"] = benchmark::Counter(128.0 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak_rss_mb"] = attune::PeakRssMb();
}

void BM_Decode128(benchmark::State& state) {
  const Model& m = M();
  at::NoGradGuard ng;
  ForwardOptions fo;
  fo.last_logits_only = true;
  for (auto _ : state) {
    // The serving path: prefill 16 tokens, then 128 greedy decode steps.
    GenerateOptions o;
    o.max_tokens = 129;
    o.stop_at_eos = false;
    at::Tensor ids = PromptIds(16);
    auto r = Generate(m, nullptr, std::vector<int32_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + 16), o);
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
    else if (!std::strcmp(argv[i], "--torch-threads") && i + 1 < argc) g_torch_threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--weights") && i + 1 < argc) g_fp32 = !std::strcmp(argv[++i], "fp32");
    else rest.push_back(argv[i]);
  }
  if (g_model.empty()) g_model = DefaultModelPath();
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
