// Unmerged vs merged adapters on the default model: swap (prepare) cost,
// decode speed and memory.
//
//   build/bench/runtime/merge_bench [--model PATH] [--tokens N]
//
// Rank 16 on all seven targets, random values. Prints one table.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "attune/core/file.h"
#include "attune/core/process.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model_store.h"

using namespace attune;
using namespace attune::runtime;
using Clock = std::chrono::steady_clock;

static double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

static adapters::Adapter RandomAdapter(const Model& m, int64_t rank) {
  adapters::BaseModelInfo base = BaseInfo(m);
  adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * double(rank);
  a.layers.resize(size_t(base.n_layers));
  for (int t = 0; t < kNumLoraTargets; ++t) {
    a.targets.push_back(static_cast<adapters::LoraTarget>(t));
    a.base_dims[size_t(t)] = base.dims[size_t(t)];
    for (auto& layer : a.layers) {
      const auto& d = base.dims[size_t(t)];
      at::Tensor A = at::randn({rank, d.in}) * 0.01, B = at::randn({d.out, rank}) * 0.01;
      layer[size_t(t)].a = {{rank, d.in}, std::vector<float>(A.data_ptr<float>(), A.data_ptr<float>() + A.numel())};
      layer[size_t(t)].b = {{d.out, rank}, std::vector<float>(B.data_ptr<float>(), B.data_ptr<float>() + B.numel())};
    }
  }
  return a;
}

int main(int argc, char** argv) {
  std::string model = DefaultModelPath();
  int tokens = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
  }
  EngineOptions eo;
  eo.model_path = model;
  auto unmerged = Engine::Open(eo);
  if (!unmerged.ok()) {
    std::fprintf(stderr, "%s\n", unmerged.status().ToString().c_str());
    return 1;
  }
  const double rss_base = PeakRssMb();
  adapters::Adapter a = RandomAdapter(*(*unmerged)->model(), 16);
  GenerateOptions go;
  go.max_tokens = tokens;
  go.stop_at_eos = false;
  auto decode = [&](const Engine& e, bool use) {
    GenerateOptions g = go;
    g.use_active_adapter = use;
    double best = 0;
    for (int rep = 0; rep < 2; ++rep) {
      auto r = e.Complete("Once upon a time", g);
      if (r.ok()) best = std::max(best, double(r->tokens.size()) / r->decode_seconds);
    }
    return best;
  };
  auto t = Clock::now();
  if (!(*unmerged)->SetAdapter(a, "u").ok()) return 1;
  const double swap_unmerged = Since(t);
  const double tps_none = decode(**unmerged, false);
  const double tps_unmerged = decode(**unmerged, true);
  // A second engine in merged mode (it loads its own copy of the base).
  eo.merged_adapters = true;
  auto merged = Engine::Open(eo);
  if (!merged.ok()) return 1;
  const double rss_before_merge = PeakRssMb();
  t = Clock::now();
  if (!(*merged)->SetAdapter(a, "m").ok()) return 1;
  const double swap_merged = Since(t);
  const double tps_merged = decode(**merged, true);
  const double rss_after_merge = PeakRssMb();
  std::printf("OPENBLAS_CORETYPE=%s tokens=%d rank=16 targets=all\n", std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)", tokens);
  std::printf("%-22s %12s %14s\n", "mode", "swap (ms)", "decode tok/s");
  std::printf("%-22s %12s %14.1f\n", "no adapter", "-", tps_none);
  std::printf("%-22s %12.1f %14.1f\n", "unmerged (default)", swap_unmerged * 1e3, tps_unmerged);
  std::printf("%-22s %12.1f %14.1f\n", "merged", swap_merged * 1e3, tps_merged);
  std::printf("peak RSS: %.0f MB after one load, %.0f MB with a second engine, %.0f MB after a merge (+%.0f MB)\n", rss_base,
              rss_before_merge, rss_after_merge, rss_after_merge - rss_before_merge);
  return 0;
}
