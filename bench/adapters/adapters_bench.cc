// Benchmarks for the LibTorch-free half of hot-swapping: the snapshot slot's
// pin/publish, payload encode/decode, and the registry's promote (which
// verifies the payload before switching) for an adapter the size of rank 16
// on all seven targets of SmolLM2-135M (30 layers, hidden 576, kv 192,
// intermediate 1536: 4.9 M parameters, 19.5 MB).
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/adapters/snapshot.h"

namespace attune::adapters {
namespace {

BaseModelInfo SmolLm2Base() {
  BaseModelInfo b;
  b.fingerprint = std::string(64, 'a');
  b.arch = "llama";
  b.n_layers = 30;
  const TargetDims dims[kNumLoraTargets] = {{576, 576},  {576, 192},  {576, 192}, {576, 576},
                                            {576, 1536}, {576, 1536}, {1536, 576}};
  for (int i = 0; i < kNumLoraTargets; ++i) b.dims[i] = dims[i];
  return b;
}

Adapter SmolLm2Adapter(uint32_t seed, int64_t rank = 16) {
  BaseModelInfo base = SmolLm2Base();
  Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 32;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-0.01f, 0.01f);
  a.layers.resize(static_cast<size_t>(a.n_layers));
  for (int t = 0; t < kNumLoraTargets; ++t) {
    a.targets.push_back(static_cast<LoraTarget>(t));
    a.base_dims[t] = base.dims[t];
    for (auto& layer : a.layers) {
      LoraPair& p = layer[t];
      p.a.shape = {rank, base.dims[t].in};
      p.b.shape = {base.dims[t].out, rank};
      p.a.data.resize(static_cast<size_t>(rank * base.dims[t].in));
      p.b.data.resize(static_cast<size_t>(base.dims[t].out * rank));
      for (float& x : p.a.data) x = dist(rng);
      for (float& x : p.b.data) x = dist(rng);
    }
  }
  a.created_unix_ms = 1;
  return a;
}

struct Payload {
  uint64_t version;
  std::vector<float> weights;
};

SnapshotSlot<Payload>& SharedSlot() {
  static SnapshotSlot<Payload> slot(std::make_shared<const Payload>(Payload{0, std::vector<float>(1024)}));
  return slot;
}

// Pin + release, the per-generation cost for a reader, with N readers at once.
void BM_SnapshotPin(benchmark::State& state) {
  auto& slot = SharedSlot();
  for (auto _ : state) {
    Snapshot<Payload> s = slot.Pin();
    benchmark::DoNotOptimize(s->version);
  }
}
BENCHMARK(BM_SnapshotPin)->ThreadRange(1, 8)->UseRealTime();

// Publish of a prebuilt snapshot (the swap itself), while 4 threads pin.
void BM_SnapshotPublishWithReaders(benchmark::State& state) {
  SnapshotSlot<Payload> slot(std::make_shared<const Payload>(Payload{0, {}}));
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) benchmark::DoNotOptimize(slot.Pin());
    });
  }
  auto a = std::make_shared<const Payload>(Payload{1, {}});
  auto b = std::make_shared<const Payload>(Payload{2, {}});
  bool flip = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(slot.Publish((flip = !flip) ? a : b));
  }
  stop = true;
  for (auto& t : readers) t.join();
}
BENCHMARK(BM_SnapshotPublishWithReaders)->UseRealTime();

void BM_EncodePayload(benchmark::State& state) {
  Adapter a = SmolLm2Adapter(1);
  for (auto _ : state) {
    auto bytes = EncodePayload(a);
    benchmark::DoNotOptimize(bytes->data());
    state.SetBytesProcessed(state.bytes_processed() + static_cast<int64_t>(bytes->size()));
  }
}
BENCHMARK(BM_EncodePayload)->Unit(benchmark::kMillisecond);

void BM_DecodePayload(benchmark::State& state) {
  std::string bytes = *EncodePayload(SmolLm2Adapter(1));
  for (auto _ : state) {
    auto a = DecodePayload(bytes, "bench");
    benchmark::DoNotOptimize(a->rank);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_DecodePayload)->Unit(benchmark::kMillisecond);

// A manual rollback and a forced promote per iteration: each verifies the
// payload it activates (file hash + tensor hashes) and replaces STATE durably.
void BM_RegistryActivate(benchmark::State& state) {
  const std::string dir = std::filesystem::temp_directory_path() / "attune_adapters_bench";
  std::filesystem::remove_all(dir);
  auto reg = std::move(Registry::Open(RegistryOptions{}, dir)).value();
  std::string v1 = *reg->Add(SmolLm2Adapter(1));
  std::string v2 = *reg->Add(SmolLm2Adapter(2));
  (void)reg->Promote(v1, std::nullopt, true);
  for (auto _ : state) {
    (void)reg->Promote(v2, std::nullopt, true);
    RollbackRequest req;
    req.target = v1;
    (void)reg->Rollback(req);
  }
  state.SetItemsProcessed(state.iterations() * 2);
  reg.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RegistryActivate)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace
}  // namespace attune::adapters

BENCHMARK_MAIN();
