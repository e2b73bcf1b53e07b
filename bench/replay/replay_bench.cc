// Replay store benchmarks (not tests). See docs/replay.md "Performance".
//
//   BM_Ingest/ours|raw/threads:T   durable appends of ~1 KB events from T
//                                  threads: ours = Store::Append in sync
//                                  mode; raw = rocksdb::DB::Put of the same
//                                  bytes with WriteOptions::sync (RocksDB
//                                  group-commits concurrent writers, one
//                                  fsync per group, as we do).
//   BM_SampleBatch                 Store::Sample of a 64-event batch (32 new
//                                  + 32 replayed) from a large store.
//
// After the runs it prints ours/raw for throughput and p50/p99 latency.
// Environment: ATTUNE_BENCH_DIR (scratch directory, default /tmp),
// ATTUNE_BENCH_SAMPLE_EVENTS (events in the sampling store, default 1M),
// ATTUNE_BENCH_INGEST_OPS (appends per ingest run, default 2000).
#include <benchmark/benchmark.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#include "attune/feedback/codec.h"
#include "attune/replay/store.h"

namespace {

using attune::feedback::Event;
namespace replay = attune::replay;
namespace fs = std::filesystem;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string BenchDir(const std::string& name) {
  const char* base = std::getenv("ATTUNE_BENCH_DIR");
  fs::path p = fs::path(base ? base : "/tmp") / ("attune_bench_" + name);
  fs::remove_all(p);
  return p.string();
}

// A ~1 KB event: the serialised payload is about 1,000 bytes.
Event Template() {
  Event e;
  e.user_id = "user-0001";
  e.conversation_id = "conv-0001";
  e.time = {1790000000, 0};
  std::string text;
  while (text.size() < 800) text += "How do I keep my sourdough starter alive on holiday? ";
  e.context = {{attune::feedback::Role::kSystem, "You are a helpful assistant."},
               {attune::feedback::Role::kUser, text.substr(0, 800)}};
  e.response = "Feed it, then refrigerate it; it keeps for about two weeks.";
  e.signal = attune::feedback::Correction{"Feed it and refrigerate: two weeks is fine."};
  return e;
}

// Per-run shared state: the store under test and every append's latency.
struct IngestRun {
  std::unique_ptr<replay::Store> ours;
  std::unique_ptr<rocksdb::DB> raw;
  std::string raw_value;
  std::vector<double> latencies_us;
  std::atomic<size_t> next{0};
  std::string dir;
};
IngestRun* g_run = nullptr;

// Per "ours/4"-style key, one entry per round.
struct Samples {
  std::vector<double> events_per_s, p50_us, p99_us;
};
std::map<std::string, Samples> g_samples;
std::mutex g_samples_mu;

std::string Key(bool ours, int threads) { return std::string(ours ? "ours/" : "raw/") + std::to_string(threads); }

void SetupIngest(const benchmark::State& state, bool ours) {
  g_run = new IngestRun;
  g_run->dir = BenchDir(ours ? "ingest_ours" : "ingest_raw");
  g_run->latencies_us.resize(EnvOr("ATTUNE_BENCH_INGEST_OPS", 2000) + 1024);
  if (ours) {
    replay::Options o;
    o.durability = replay::Durability::kSync;
    o.retention.max_age_seconds = 0;
    g_run->ours = std::move(replay::Store::Open(o, g_run->dir)).value();
  } else {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db;
    if (!rocksdb::DB::Open(o, g_run->dir, &db).ok()) std::abort();
    g_run->raw.reset(db);
    g_run->raw_value = attune::feedback::SerializeEvent(Template());
  }
}
void SetupOurs(const benchmark::State& s) { SetupIngest(s, true); }
void SetupRaw(const benchmark::State& s) { SetupIngest(s, false); }
void TeardownIngest(const benchmark::State&) {
  std::string dir = g_run->dir;
  delete g_run;
  g_run = nullptr;
  fs::remove_all(dir);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

void BM_Ingest(benchmark::State& state, bool ours) {
  Event event = Template();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  int t = state.thread_index();
  uint64_t i = 0;
  for (auto _ : state) {
    std::string id = "t" + std::to_string(t) + "-" + std::to_string(i++);
    auto start = std::chrono::steady_clock::now();
    if (ours) {
      event.id = id;
      auto r = g_run->ours->Append(event);
      if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    } else {
      auto s = g_run->raw->Put(wo, id, g_run->raw_value);
      if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    }
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    size_t slot = g_run->next++;
    if (slot < g_run->latencies_us.size()) g_run->latencies_us[slot] = us;
  }
  state.SetItemsProcessed(state.iterations());
  if (t == 0) {
    // The loop's end is a barrier: every thread's latencies are in.
    std::vector<double> lat(g_run->latencies_us.begin(),
                            g_run->latencies_us.begin() + std::min(g_run->next.load(), g_run->latencies_us.size()));
    double p50 = Percentile(lat, 0.50), p99 = Percentile(lat, 0.99);
    state.counters["p50_us"] = p50;
    state.counters["p99_us"] = p99;
    std::lock_guard<std::mutex> lock(g_samples_mu);
    Samples& s = g_samples[Key(ours, state.threads())];
    s.p50_us.push_back(p50);
    s.p99_us.push_back(p99);
  }
}

// Rounds interleave ours and raw (alternating which goes first) so that
// drift in the machine's load or disk affects both alike.
void RegisterIngest() {
  uint64_t ops = EnvOr("ATTUNE_BENCH_INGEST_OPS", 2000);
  uint64_t rounds = EnvOr("ATTUNE_BENCH_ROUNDS", 3);
  for (uint64_t round = 0; round < rounds; ++round) {
    for (int threads : {1, 4, 16}) {
      for (bool ours : {round % 2 == 0, round % 2 != 0}) {
        benchmark::RegisterBenchmark(ours ? "BM_Ingest/ours" : "BM_Ingest/raw", BM_Ingest, ours)
            ->Setup(ours ? SetupOurs : SetupRaw)
            ->Teardown(TeardownIngest)
            ->Threads(threads)
            ->Iterations(static_cast<int64_t>(ops / threads))
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

// The sampling store is built once (relaxed mode, batches of 1,000) and
// reused by every BM_SampleBatch run.
std::unique_ptr<replay::Store> g_sample_store;
std::string g_sample_dir;

void BuildSampleStore() {
  uint64_t n = EnvOr("ATTUNE_BENCH_SAMPLE_EVENTS", 1000000);
  g_sample_dir = BenchDir("sample");
  replay::Options o;
  o.durability = replay::Durability::kRelaxed;
  o.retention.max_events = n + 1;
  o.retention.recent_window = 10000;
  o.retention.max_bytes = 0;
  o.retention.max_age_seconds = 0;
  o.retention.reservoir_seed = 1;
  g_sample_store = std::move(replay::Store::Open(o, g_sample_dir)).value();
  Event e = Template();
  auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < n;) {
    std::vector<Event> batch;
    for (int j = 0; j < 1000 && i < n; ++j, ++i) {
      e.id = "s" + std::to_string(i);
      e.user_id = "user-" + std::to_string(i % 97);
      batch.push_back(e);
    }
    for (auto& r : g_sample_store->AppendMany(std::move(batch))) {
      if (!r.ok()) std::abort();
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "built sampling store: %llu events in %.1f s (%.0f events/s, relaxed)\n",
               static_cast<unsigned long long>(n), secs, n / secs);
  // Leave 10,000 events "new" so the batch mixes new and replayed ones.
  auto st = g_sample_store->GetStats();
  auto r = g_sample_store->RecordTraining({"bench", 0, st->last_seq - 10000, {}});
  if (!r.ok()) std::abort();
}

void BM_SampleBatch(benchmark::State& state) {
  uint64_t seed = 0;
  std::vector<double> lat;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    auto b = g_sample_store->Sample({.max_new = 32, .replay_ratio = 1.0, .seed = seed++});
    lat.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    if (!b.ok() || b->new_events.size() + b->replay_events.size() != 64) {
      state.SkipWithError("short batch");
    }
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.counters["p50_us"] = Percentile(lat, 0.50);
  state.counters["p99_us"] = Percentile(lat, 0.99);
}

class CapturingReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      std::string name = r.benchmark_name();
      auto ips = r.counters.find("items_per_second");
      if (name.rfind("BM_Ingest/", 0) == 0 && ips != r.counters.end()) {
        std::lock_guard<std::mutex> lock(g_samples_mu);
        g_samples[Key(name.rfind("BM_Ingest/ours", 0) == 0, static_cast<int>(r.threads))].events_per_s.push_back(
            ips->second.value);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

double Median(std::vector<double> v) { return v.empty() ? 0 : Percentile(std::move(v), 0.5); }

void PrintRatios() {
  std::printf("\nDurable ingest, ~1 KB events, sync (fsync per group): ours vs raw RocksDB\n");
  std::printf("(medians over rounds; ratio = median ours / median raw, and per-round range)\n");
  std::printf("%-8s %11s %11s %6s %13s %9s %9s %9s %9s\n", "threads", "ours ev/s", "raw ev/s", "ratio", "round ratios",
              "ours p50", "raw p50", "ours p99", "raw p99");
  for (int t : {1, 4, 16}) {
    const Samples& o = g_samples[Key(true, t)];
    const Samples& r = g_samples[Key(false, t)];
    double lo = 1e9, hi = 0;
    for (size_t i = 0; i < std::min(o.events_per_s.size(), r.events_per_s.size()); ++i) {
      double ratio = o.events_per_s[i] / r.events_per_s[i];
      lo = std::min(lo, ratio), hi = std::max(hi, ratio);
    }
    double ours = Median(o.events_per_s), raw = Median(r.events_per_s);
    std::printf("%-8d %11.0f %11.0f %6.2f %6.2f-%-6.2f %7.0fus %7.0fus %7.0fus %7.0fus\n", t, ours, raw,
                raw > 0 ? ours / raw : 0, lo, hi, Median(o.p50_us), Median(r.p50_us), Median(o.p99_us),
                Median(r.p99_us));
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RegisterIngest();
  bool sample = EnvOr("ATTUNE_BENCH_SAMPLE_EVENTS", 1000000) > 0;
  if (sample) {
    benchmark::RegisterBenchmark("BM_SampleBatch", BM_SampleBatch)->Unit(benchmark::kMicrosecond)->MinTime(2.0);
  }
  if (sample) BuildSampleStore();
  CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  PrintRatios();
  g_sample_store.reset();
  if (!g_sample_dir.empty()) fs::remove_all(g_sample_dir);
  benchmark::Shutdown();
  return 0;
}
