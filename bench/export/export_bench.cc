// Export, import and merge times and file sizes for a SmolLM2 rank-16
// all-target adapter (docs/PERFORMANCE.md, "Export"). Plain timings, median
// of --reps runs each, printed as a table (and JSON with --json).
//
//   export_bench [--model PATH] [--reps N] [--json]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>

#include "attune/adapters/payload.h"
#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/export/files.h"
#include "attune/export/merge.h"
#include "attune/runtime/adapter_slot.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"

namespace {

namespace fs = std::filesystem;
using namespace attune;

adapters::Adapter RandomAdapter(const adapters::BaseModelInfo& base, int64_t rank, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.02f);
  adapters::Adapter a;
  a.base_fingerprint = base.fingerprint;
  a.arch = base.arch;
  a.n_layers = base.n_layers;
  a.rank = rank;
  a.alpha = 2.0 * double(rank);
  a.layers.resize(size_t(base.n_layers));
  for (int t = 0; t < adapters::kNumLoraTargets; ++t) {
    a.targets.push_back(adapters::LoraTarget(t));
    const auto& d = base.dims[size_t(t)];
    a.base_dims[size_t(t)] = d;
    for (auto& layer : a.layers) {
      layer[size_t(t)].a = {{rank, d.in}, std::vector<float>(size_t(rank * d.in))};
      layer[size_t(t)].b = {{d.out, rank}, std::vector<float>(size_t(rank * d.out))};
      for (float& v : layer[size_t(t)].a.data) v = n(rng);
      for (float& v : layer[size_t(t)].b.data) v = n(rng);
    }
  }
  a.created_unix_ms = 1;
  return a;
}

double MedianMs(int reps, const std::function<void()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

uint64_t SizeOf(const fs::path& p) {
  if (!fs::is_directory(p)) return fs::file_size(p);
  uint64_t s = 0;
  for (const auto& e : fs::directory_iterator(p)) s += e.file_size();
  return s;
}

template <typename T>
T OrDie(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::cerr << what << ": " << r.status().ToString() << "\n";
    std::exit(1);
  }
  return std::move(r).value();
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  int reps = 5;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) model = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--json") json = true;
    else {
      std::cerr << "usage: export_bench [--model PATH] [--reps N] [--json]\n";
      return 2;
    }
  }
  const std::string path = OrDie(runtime::ResolveModelPath(model), "model");
  runtime::LoadOptions lo;
  lo.allow_missing_tokenizer = true;
  auto m = OrDie(runtime::Model::Load(path, lo), "load");
  export_::BaseModel base;
  base.info = runtime::BaseInfo(*m);
  base.n_heads = m->config().n_heads;
  base.n_kv_heads = m->config().n_kv_heads;
  base.name_or_path = path;

  const fs::path dir = fs::temp_directory_path() / ("attune_export_bench_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  adapters::RegistryOptions ro;
  auto reg = OrDie(adapters::Registry::Open(ro, (dir / "adapters").string()), "registry");
  auto keys = OrDie(export_::KeyStore::Open((dir / "keys").string()), "keys");
  adapters::Adapter a1 = RandomAdapter(base.info, 16, 1), a2 = RandomAdapter(base.info, 16, 2);
  const std::string v1 = OrDie(reg->Add(a1), "add");

  struct Row {
    std::string what;
    double ms;
    uint64_t bytes;
  };
  std::vector<Row> rows;
  rows.push_back({"payload (registry)", 0, fs::file_size(reg->PayloadPath(v1))});
  using export_::AdapterFormat;
  for (AdapterFormat f : {AdapterFormat::kBundle, AdapterFormat::kPeft, AdapterFormat::kGguf}) {
    const std::string name(export_::AdapterFormatName(f));
    const std::string out = (dir / ("out_" + name)).string();
    double ms = MedianMs(reps, [&] { OrDie(export_::ExportVersion(*reg, v1, f, &base, keys.get(), out), "export"); });
    rows.push_back({"export " + name, ms, SizeOf(out)});
    // Import = read + verify (signature, checksums, shapes, finiteness) +
    // add to a registry + convert for the runtime.
    int n = 0;
    double ims = MedianMs(reps, [&] {
      auto in = OrDie(export_::ReadAdapter(out, &base, keys.get()), "read");
      auto r2 = OrDie(adapters::Registry::Open(ro, (dir / ("import" + std::to_string(n++))).string()), "registry");
      OrDie(export_::AddImported(*r2, in.adapter), "add");
      OrDie(runtime::MakeActiveAdapter(*m, in.adapter, "bench"), "load");
    });
    rows.push_back({"import " + name + " (verify + add + load)", ims, 0});
  }
  for (auto method : {export_::MergeMethod::kCat, export_::MergeMethod::kLinear, export_::MergeMethod::kSvd}) {
    export_::MergeOptions mo;
    mo.method = method;
    export_::MergeReport rep;
    adapters::Adapter merged;
    double ms = MedianMs(reps, [&] { merged = OrDie(export_::Merge({{&a1, v1}, {&a2, v1}}, mo, &rep), "merge"); });
    static const char* kNames[] = {"cat", "linear", "svd"};
    rows.push_back({std::string("merge 2 x r16, ") + kNames[int(method)] + " (rank " + std::to_string(merged.rank) + ")",
                    ms, OrDie(adapters::EncodePayload(merged), "encode").size()});
  }
  fs::remove_all(dir);

  if (json) {
    std::cout << "[";
    for (size_t i = 0; i < rows.size(); ++i) {
      std::cout << (i ? "," : "") << "{\"what\":\"" << rows[i].what << "\",\"ms\":" << rows[i].ms
                << ",\"bytes\":" << rows[i].bytes << "}";
    }
    std::cout << "]\n";
    return 0;
  }
  std::cout << "model " << path << ", rank 16, all seven targets, " << a1.ParameterCount() << " parameters, median of "
            << reps << "\n";
  for (const auto& r : rows) {
    std::printf("| %-48s | %9.1f ms | %12.2f MB |\n", r.what.c_str(), r.ms, double(r.bytes) / 1e6);
  }
  return 0;
}
