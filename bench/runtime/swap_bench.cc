// Adapter hot-swap on a real model: swap latency, per-token decode latency
// with and without swaps, and the decode cost of an unmerged adapter.
//
//   flock /tmp/attune-bench.lock build/bench/runtime/swap_bench [--model PATH] [--rank R] [--swap-trials N] [--gens N]
//   [--tokens N]
//       [--swap-period-ms MS] [--blas-threads N]
//
// PATH defaults to the cached default model (SmolLM2-135M-Instruct Q4_1).
// The adapter is random (seeded), rank R (default 16) on all seven targets:
// its values do not change the cost of applying it.
//
// Prints three tables (see docs/hotswap.md for what each number means):
//   (a) swap latency: PrepareAdapter (float buffers -> runtime tensors),
//       AdapterSlot::Publish of a prepared snapshot, Engine::SetAdapter
//       (both), and SetAdapter -> first token of a generation that starts
//       right after and reports the new version, next to the same
//       generation's time to first token without a swap;
//   (b) per-token decode latency p50/p99 of --tokens-token generations with
//       a swap every --swap-period-ms from another thread vs without (swaps
//       by Engine::SetAdapter, and by publishing snapshots prepared once);
//   (c) decode throughput with no adapter vs the unmerged adapter.
// The modes of (b) and (c) run interleaved (one generation of each in turn)
// so that drift of a shared machine hits them alike.
#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "attune/adapters/adapter.h"
#include "attune/core/file.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/engine.h"
#include "attune/runtime/model_store.h"

namespace {

using namespace attune;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "swap_bench: %s\n", what.c_str());
  std::exit(1);
}

adapters::Adapter RandomAdapter(const adapters::BaseModelInfo& base, uint32_t seed, int64_t rank) {
  adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * double(rank);
  std::mt19937 rng(seed);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  a.layers.resize(size_t(base.n_layers));
  for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
    a.targets.push_back(adapters::LoraTarget(t));
    a.base_dims[size_t(t)] = base.dims[size_t(t)];
  }
  for (auto& layer : a.layers) {
    for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
      const adapters::TargetDims& d = base.dims[size_t(t)];
      adapters::LoraPair& p = layer[size_t(t)];
      p.a.shape = {rank, d.in};
      p.b.shape = {d.out, rank};
      p.a.data.resize(size_t(rank * d.in));
      p.b.data.resize(size_t(d.out * rank));
      const float sa = 1.0f / std::sqrt(float(d.in));  // Kaiming-like A, small B: a plausible trained adapter
      for (float& x : p.a.data) x = sa * unit(rng);
      for (float& x : p.b.data) x = 0.01f * unit(rng);
    }
  }
  return a;
}

struct Stats {
  double p50 = 0, p99 = 0, max = 0, mean = 0;
  size_t n = 0;
};

// Nearest-rank percentiles.
Stats Summarize(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto rank = [&](double q) {  // the smallest value with at least q of the values <= it
    size_t i = size_t(std::ceil(q * double(v.size())));
    return v[std::min(v.size(), std::max<size_t>(i, 1)) - 1];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / double(v.size());
  return s;
}

void Row(const char* name, const Stats& s, const char* unit) {
  std::printf("| %-44s | %9.3f | %9.3f | %9.3f | %9.3f | %6zu |  %s\n", name, s.p50, s.p99, s.max, s.mean, s.n, unit);
}

void Header(const char* title) {
  std::printf("\n%s\n", title);
  std::printf("| %-44s | %9s | %9s | %9s | %9s | %6s |\n", "", "p50", "p99", "max", "mean", "n");
  std::printf("|%s|-----------|-----------|-----------|-----------|--------|\n", std::string(46, '-').c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  int rank = 16, swap_trials = 30, gens = 6, tokens = 128, swap_period_ms = 100, blas_threads = 0;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) Die(std::string("missing value after ") + argv[i]);
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--model"))
      model = next();
    else if (!std::strcmp(argv[i], "--rank"))
      rank = std::atoi(next());
    else if (!std::strcmp(argv[i], "--swap-trials"))
      swap_trials = std::atoi(next());
    else if (!std::strcmp(argv[i], "--gens"))
      gens = std::atoi(next());
    else if (!std::strcmp(argv[i], "--tokens"))
      tokens = std::atoi(next());
    else if (!std::strcmp(argv[i], "--swap-period-ms"))
      swap_period_ms = std::atoi(next());
    else if (!std::strcmp(argv[i], "--blas-threads"))
      blas_threads = std::atoi(next());
    else
      Die(std::string("unknown argument ") + argv[i] + " (see the comment at the top of swap_bench.cc)");
  }
  if (model.empty()) model = runtime::DefaultModelPath();

  runtime::EngineOptions eo;
  eo.model_path = model;
  eo.blas_threads = blas_threads;
  auto opened = runtime::Engine::Open(eo);
  if (!opened.ok()) Die(opened.status().ToString());
  runtime::Engine& engine = **opened;
  const adapters::BaseModelInfo base = runtime::BaseInfo(*engine.model());
  const adapters::Adapter x = RandomAdapter(base, 1, rank), y = RandomAdapter(base, 2, rank);
  const char* env_core = std::getenv("OPENBLAS_CORETYPE");
  std::printf("model %s (%s, %lld layers); adapter rank %d on all 7 targets, %zu parameters (%.1f MB fp32)\n",
              model.c_str(), base.arch.c_str(), (long long)base.n_layers, rank, x.ParameterCount(),
              double(x.ParameterCount()) * 4 / 1e6);
  std::printf("hardware threads %u, OPENBLAS_CORETYPE=%s, blas threads %d (0 = OpenBLAS default), torch threads 1\n",
              std::thread::hardware_concurrency(), env_core ? env_core : "(unset)", blas_threads);

  const auto* tmpl = engine.chat_template();
  const std::string prompt = tmpl ? tmpl->Render({{"user", "Write a short story about a lighthouse keeper."}}, true)
                                  : std::string("Write a short story about a lighthouse keeper.");

  // ---- (a) swap latency
  std::vector<double> prepare, publish, set, swap_first, first_no_swap;
  {
    runtime::AdapterSlot slot;  // the engine's slot type, for the bare publish
    runtime::GenerateOptions one;
    one.max_tokens = 1;
    one.stop_at_eos = false;
    // Warm-up: first conversion and first generation pay one-off costs.
    if (!engine.SetAdapter(y, "y").ok() || !engine.Complete(prompt, one).ok()) Die("warm-up failed");
    for (int i = 0; i < swap_trials; ++i) {
      const adapters::Adapter& a = (i % 2) ? y : x;
      const std::string version = std::string((i % 2) ? "y" : "x") + std::to_string(i);

      auto t0 = Clock::now();
      auto snap = engine.PrepareAdapter(a, version);
      auto t1 = Clock::now();
      if (!snap.ok()) Die(snap.status().ToString());
      auto old = slot.Publish(*snap);
      auto t2 = Clock::now();
      old.reset();
      prepare.push_back(Ms(t0, t1));
      publish.push_back(Ms(t1, t2) * 1000.0);  // microseconds

      // Same prompt, adapter already in place: the time to first token
      // that a swap adds to.
      auto t3 = Clock::now();
      auto base_run = engine.Complete(prompt, one);
      auto t4 = Clock::now();
      if (!base_run.ok()) Die(base_run.status().ToString());
      first_no_swap.push_back(Ms(t3, t4));

      auto s0 = Clock::now();
      Status st = engine.SetAdapter(a, version);
      auto s1 = Clock::now();
      if (!st.ok()) Die(st.ToString());
      auto r = engine.Complete(prompt, one);
      auto s2 = Clock::now();
      if (!r.ok()) Die(r.status().ToString());
      if (r->adapter_version != version || r->tokens.size() != 1) Die("first generation after the swap did not use it");
      set.push_back(Ms(s0, s1));
      swap_first.push_back(Ms(s0, s2));
    }
  }
  Header("(a) swap latency, ms (publish in us)");
  Row("PrepareAdapter (convert to runtime tensors)", Summarize(prepare), "ms");
  Row("AdapterSlot::Publish of a prepared snapshot", Summarize(publish), "us");
  Row("Engine::SetAdapter (prepare + publish)", Summarize(set), "ms");
  Row("SetAdapter -> first token with new version", Summarize(swap_first), "ms");
  Row("first token, no swap (same prompt)", Summarize(first_no_swap), "ms");

  // ---- (b) + (c) per-token decode latency
  // kPreparedSwaps: the application keeps its own AdapterSlot of snapshots
  // prepared once and passes the pinned one in GenerateOptions::adapter, so a
  // swap is only the pointer publish (what the engine's slot would cost if it
  // accepted prepared snapshots).
  enum Mode { kNone, kAdapter, kAdapterSwaps, kPreparedSwaps, kModes };
  const char* names[kModes] = {"no adapter", "unmerged adapter, no swaps", "unmerged adapter, SetAdapter every period",
                               "unmerged adapter, prepared publish every period"};
  std::vector<double> per_token[kModes];
  double decode_s[kModes] = {};
  int64_t decoded[kModes] = {}, callbacks[kModes] = {}, swaps[kModes] = {};
  auto px = engine.PrepareAdapter(x, "x"), py = engine.PrepareAdapter(y, "y");
  if (!px.ok() || !py.ok()) Die("PrepareAdapter failed");
  runtime::AdapterSlot app_slot;
  for (int g = 0; g < gens; ++g) {
    for (int mode = 0; mode < kModes; ++mode) {
      if (!engine.SetAdapter(x, "x").ok()) Die("SetAdapter failed");
      runtime::GenerateOptions o;
      o.max_tokens = tokens;
      o.stop_at_eos = false;
      o.use_active_adapter = mode != kNone;
      if (mode == kPreparedSwaps) {
        app_slot.Publish(*px);
        o.adapter = app_slot.Pin();
      }
      std::vector<Clock::time_point> stamps;
      stamps.reserve(size_t(tokens) + 1);
      std::atomic<bool> done{false};
      std::thread swapper;
      if (mode == kAdapterSwaps || mode == kPreparedSwaps) {
        swapper = std::thread([&] {
          int k = 0;
          auto next = Clock::now() + std::chrono::milliseconds(swap_period_ms);
          while (!done.load()) {
            std::this_thread::sleep_until(next);
            next += std::chrono::milliseconds(swap_period_ms);
            if (done.load()) break;
            const bool odd = (k++ % 2) != 0;
            if (mode == kPreparedSwaps) {
              app_slot.Publish(odd ? *px : *py);  // the previous snapshot stays alive in px/py
            } else if (!engine.SetAdapter(odd ? x : y, odd ? "x" : "y").ok()) {
              Die("SetAdapter failed in the swapper");
            }
            ++swaps[mode];
          }
        });
      }
      auto r = engine.Complete(prompt, o, [&](std::string_view) {
        stamps.push_back(Clock::now());
        return true;
      });
      done = true;
      if (swapper.joinable()) swapper.join();
      if (!r.ok()) Die(r.status().ToString());
      if (r->adapter_version != (mode == kNone ? "" : "x"))
        Die("generation reported version '" + r->adapter_version + "'");
      // The first callback follows prefill; the rest are one decode step each
      // (a token that ends inside a UTF-8 character is reported with the next).
      for (size_t i = 1; i < stamps.size(); ++i) per_token[mode].push_back(Ms(stamps[i - 1], stamps[i]));
      decode_s[mode] += r->decode_seconds;
      decoded[mode] += int64_t(r->tokens.size()) - 1;
      callbacks[mode] += int64_t(stamps.size());
    }
  }
  char title[160];
  std::snprintf(
      title, sizeof title,
      "(b) per-token decode latency, ms (%d generations x %d tokens per mode, swap period %d ms, %lld + %lld swaps)",
      gens, tokens, swap_period_ms, (long long)swaps[kAdapterSwaps], (long long)swaps[kPreparedSwaps]);
  Header(title);
  Stats st[kModes];
  for (int m = 0; m < kModes; ++m) {
    st[m] = Summarize(per_token[m]);
    Row(names[m], st[m], "ms");
  }
  std::printf("with SetAdapter swaps / without: p99 %.3f, p50 %.3f\n", st[kAdapterSwaps].p99 / st[kAdapter].p99,
              st[kAdapterSwaps].p50 / st[kAdapter].p50);
  std::printf("with prepared publishes / without: p99 %.3f, p50 %.3f\n", st[kPreparedSwaps].p99 / st[kAdapter].p99,
              st[kPreparedSwaps].p50 / st[kAdapter].p50);

  std::printf("\n(c) decode cost\n| %-44s | %10s | %10s |\n|%s|------------|------------|\n", "", "tokens/s",
              "ms/token", std::string(46, '-').c_str());
  for (int m = 0; m < kModes; ++m) {
    const double tps = decode_s[m] > 0 ? double(decoded[m]) / decode_s[m] : 0;
    std::printf("| %-44s | %10.1f | %10.3f |\n", names[m], tps, tps > 0 ? 1000.0 / tps : 0);
  }
  std::printf("unmerged adapter / no adapter, ms per token: mean %.3f, p50 %.3f\n",
              (decode_s[kAdapter] / double(decoded[kAdapter])) / (decode_s[kNone] / double(decoded[kNone])),
              st[kAdapter].p50 / st[kNone].p50);

  // The fold at the heart of merged mode, W[out, in] + scale * B A into an
  // fp32 buffer of W's shape, for every adapted weight (merge_bench times a
  // whole merged swap: fold into new tensors, allocation, publish).
  std::vector<double> fold;
  {
    at::NoGradGuard no_grad;
    const auto& w = (*px)->weights;
    for (int trial = 0; trial < 3; ++trial) {
      auto f0 = Clock::now();
      for (const auto& layer : w.layers) {
        for (const auto& p : layer) {
          if (!p.a.defined()) continue;
          at::Tensor dst = at::empty({p.b.size(0), p.a.size(1)}, at::kFloat);
          at::matmul_out(dst, p.b, p.a);  // B A
          dst.mul_(w.scale);              // the add into W has the same memory traffic as this pass
        }
      }
      fold.push_back(Ms(f0, Clock::now()));
    }
  }
  std::printf(
      "fold of one adapter into fp32 weights (merged mode; merge_bench times a whole merged swap): p50 %.1f ms (3 runs, "
      "min %.1f); a merged swap = unmerge + merge\n",
      Summarize(fold).p50, *std::min_element(fold.begin(), fold.end()));
  int64_t all_callbacks = 0;
  for (int64_t c : callbacks) all_callbacks += c;
  std::printf("text callbacks per generated token: %.3f\n", double(all_callbacks) / double(gens * kModes * tokens));
  return 0;
}
