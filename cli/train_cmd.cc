// attune train: one training window on the stored feedback.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <iostream>
#include <thread>

#include "attune/adapters/registry.h"
#include "attune/core/file.h"
#include "attune/replay/store.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"
#include "attune/trainer/forget.h"
#include "attune/trainer/training_run.h"
#include "attune/trainer/window.h"
#include "cli/cli_common.h"
#include "cli/progress.h"

namespace attune::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted.store(true); }

struct TrainFlags {
  std::string model;
  std::string targets = "q,k,v,o,gate,up,down";
  std::string window_policy;
  int64_t max_steps = 60;
  double max_minutes = 0;
  int64_t early_stopping = 0;
  int64_t eval_every = 5;
  double null_space = 0;
  bool scope = false;
  int64_t rank = 16;
  double alpha = 32;
  double lr = 1e-3;
  double max_memory_mb = 1024;
  int64_t micro_batch = 0;
  int64_t replay_eval = 128;
  uint64_t seed = 0;
  int threads = 0;
  bool wait = false;
  bool no_promote = false;
  bool force = false;
  bool no_checkpointing = false;
  double graph_memory_mb = 0;
  bool bf16_base = false;
  std::string base_products = "auto";
};

int Train(const GlobalOptions& g, const TrainFlags& f) {
  const std::string data = ResolveDataDir(g.data_dir);
  trainer::TrainingRunOptions o;
  auto targets = trainer::ParseTargets(f.targets);
  if (!targets.ok()) return PrintError(targets.status().WithContext("--targets"));
  o.trainer.lora.targets = *targets;
  o.trainer.lora.rank = f.rank;
  o.trainer.lora.alpha = f.alpha;
  o.trainer.adamw.lr = f.lr;
  o.trainer.max_steps = f.max_steps;
  o.trainer.max_minutes = f.max_minutes;
  o.trainer.early_stopping_patience = f.early_stopping;
  o.trainer.eval_every_steps = f.eval_every;
  o.trainer.null_space_energy = f.null_space;
  o.trainer.scope = f.scope;
  o.trainer.max_memory_mb = f.max_memory_mb;
  o.trainer.micro_batch_size = f.micro_batch;
  o.trainer.gradient_checkpointing = !f.no_checkpointing;
  o.trainer.graph_memory_mb = f.graph_memory_mb;
  o.trainer.base_products = f.bf16_base ? "bf16" : f.base_products;
  o.trainer.seed = f.seed;
  o.trainer.replay_eval_examples = f.replay_eval;
  o.sample.seed = f.seed;
  o.promote = !f.no_promote;
  o.force = f.force;

  std::unique_ptr<trainer::WindowPolicy> policy;
  if (!f.window_policy.empty()) {
    auto text = ReadFile(f.window_policy);
    if (!text.ok()) return PrintError(text.status().WithContext("--window-policy"));
    auto p = trainer::ParseWindowPolicy(*text, f.window_policy);
    if (!p.ok()) return PrintError(p.status());
    policy = std::make_unique<trainer::WindowPolicy>(*p);
  } else if (f.wait) {
    policy = std::make_unique<trainer::WindowPolicy>();
  }

  auto model_path = runtime::ResolveModelPath(f.model);
  if (!model_path.ok()) return PrintError(model_path.status());
  replay::Options so;
  so.create_if_missing = false;
  auto store = replay::Store::Open(so, data + "/replay");
  if (!store.ok()) {
    if (store.status().code() == StatusCode::kNotFound) {
      return PrintError(NotFoundError("no feedback store in " + data + " (add feedback first: attune feedback add|import)"));
    }
    return PrintError(store.status());
  }
  auto stats = (*store)->GetStats();
  if (!stats.ok()) return PrintError(stats.status());

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  trainer::LinuxDeviceStateSource device;
  auto window_open = [&](trainer::WindowDecision* d) {
    *d = trainer::EvaluateWindow(*policy, device.Read(),
                                 trainer::PolicyNewEvents(data + "/checkpoints/train.ck", stats->new_since_cursor, *policy));
    return d->open;
  };
  if (policy) {
    trainer::WindowDecision d;
    while (!window_open(&d)) {
      std::string why;
      for (const auto& c : d.closed_because) why += (why.empty() ? "" : "; ") + c;
      if (!f.wait) {
        if (g.json) PrintJson({{"trained", false}, {"reason", "training window closed: " + why}});
        else std::cerr << "attune: training window closed: " << why << " (use --wait-for-window to wait)\n";
        return kExitOk;
      }
      if (g_interrupted.load()) return kExitOk;
      std::cerr << "attune: waiting for a training window: " << why << "\n";
      for (int i = 0; i < 60 && !g_interrupted.load(); ++i) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  runtime::ConfigureThreads(1, f.threads);
  if (o.trainer.base_products == "bf16" && !runtime::CpuHasBf16()) {
    std::cerr << "attune: warning: this CPU has no AVX512-BF16 or AMX: bf16 base products are emulated and slower than fp32\n";
  }
  auto model = runtime::Model::Load(*model_path);
  if (!model.ok()) return PrintError(model.status());
  adapters::RegistryOptions ro;
  auto registry = adapters::Registry::Open(ro, data + "/adapters");
  if (!registry.ok()) return PrintError(registry.status());
  if (Status s = MakeDirs(data + "/checkpoints"); !s.ok()) return PrintError(s);

  std::string stop_reason;
  auto last_check = std::chrono::steady_clock::now();
  auto should_stop = [&]() {
    if (g_interrupted.load()) {
      stop_reason = "interrupted";
      return true;
    }
    if (policy && std::chrono::steady_clock::now() - last_check > std::chrono::seconds(5)) {
      last_check = std::chrono::steady_clock::now();
      trainer::WindowDecision d;
      if (!window_open(&d)) {
        stop_reason = "training window closed";
        return true;
      }
    }
    return false;
  };
  ProgressReporter reporter;
  auto progress = [&](const trainer::TrainProgress& p) {
    reporter.Update(p.step, p.max_steps, p.loss, p.tokens_per_second, p.eta_seconds);
  };
  auto res = trainer::RunTrainingWindow(*model, **store, **registry, data + "/checkpoints/train.ck", o, should_stop, progress);
  reporter.Finish();
  if (!res.ok()) return PrintError(res.status());
  nlohmann::json report = res->trained ? nlohmann::json::parse(res->report.ToJson()) : nlohmann::json::object();
  if (g.json) {
    PrintJson({{"trained", res->trained}, {"reason", res->trained ? stop_reason : res->skipped_reason},
               {"completed", res->completed}, {"version", res->label}, {"version_id", res->version},
               {"promoted", res->promoted}, {"gate", res->gate_summary}, {"report", report}});
    return kExitOk;
  }
  if (!res->trained) {
    std::cout << "nothing to train: " << res->skipped_reason << "\n";
    return kExitOk;
  }
  if (!res->completed) {
    std::cout << "stopped (" << (stop_reason.empty() ? "window closed" : stop_reason) << ") at step " << res->report.steps
              << "; the checkpoint resumes it next time\n";
    return kExitOk;
  }
  const auto& r = res->report;
  auto fmt = [](double x) { return std::isfinite(x) ? std::to_string(x).substr(0, 6) : std::string("-"); };
  std::cout << "candidate " << res->label << " (" << res->version.substr(0, 12) << ")"
            << (res->promoted ? " promoted" : " not promoted") << ": " << res->gate_summary << "\n"
            << "  loss on new feedback   " << fmt(r.new_loss_parent) << " -> " << fmt(r.new_loss_candidate) << "\n"
            << "  loss on replayed       " << fmt(r.replay_loss_parent) << " -> " << fmt(r.replay_loss_candidate) << "\n"
            << "  loss on held-out       " << fmt(r.heldout_loss_parent) << " -> " << fmt(r.heldout_loss_candidate) << "\n"
            << "  DPO reward accuracy    " << fmt(r.dpo_reward_accuracy) << "\n"
            << "  forgetting KL          " << fmt(r.forgetting_kl) << "\n"
            << "  steps " << r.steps << ", tokens " << r.tokens << ", " << fmt(r.wall_seconds) << " s, "
            << fmt(r.tokens_per_second) << " tokens/s, peak RSS " << fmt(r.peak_rss_mb) << " MB\n";
  for (const auto& n : r.notes) std::cout << "  note: " << n << "\n";
  return kExitOk;
}

}  // namespace

void AddTrainCommands(CLI::App& app, GlobalOptions& g, CommandResult& r) {
  static TrainFlags f;
  CLI::App* t = app.add_subcommand("train", "Train a LoRA adapter on the stored feedback (one window)");
  t->add_option("--model", f.model, "GGUF file or Hugging Face directory (default: the cached default model)")
      ->check(NonEmptyValue());
  t->add_option("--max-steps", f.max_steps, "Optimizer steps (default 60)")->check(CLI::Range(int64_t(1), int64_t(1000000)));
  t->add_option("--max-minutes", f.max_minutes, "Stop after this many minutes (default: no limit)")
      ->check(FiniteNumber())
      ->check(CLI::NonNegativeNumber);
  t->add_option("--early-stopping", f.early_stopping,
                 "Measure the held-out loss every --eval-every steps; stop after this many measurements without a "
                 "new lowest, and keep the lowest one's adapter (default 0: off)")
      ->check(CLI::Range(int64_t(0), int64_t(1000000)));
  t->add_option("--eval-every", f.eval_every, "Steps between held-out measurements for --early-stopping (default 5)")
      ->check(CLI::Range(int64_t(1), int64_t(1000000)));
  t->add_option("--null-space", f.null_space,
                 "Keep each LoRA A off the directions holding this fraction of the base model's inputs on general "
                 "prompts, in [0, 1) (default 0: off; docs/trainer.md)")
      ->check(FiniteNumber())
      ->check(CLI::Range(0.0, 0.999999));
  t->add_flag("--scope", f.scope,
              "Fit a scope: the adapter answers messages like the window's and the base model the rest "
              "(default: off, the adapter answers every request; docs/adapters.md, \"Scope\")");
  t->add_option("--rank", f.rank, "LoRA rank (default 16)")->check(CLI::Range(int64_t(1), int64_t(1024)));
  t->add_option("--alpha", f.alpha, "LoRA alpha (default 32)")->check(FiniteNumber())->check(CLI::PositiveNumber);
  t->add_option("--targets", f.targets, "Adapted maps, from q,k,v,o,gate,up,down (default: all)");
  t->add_option("--lr", f.lr, "AdamW learning rate (default 1e-3)")->check(FiniteNumber())->check(CLI::PositiveNumber);
  t->add_option("--max-memory-mb", f.max_memory_mb, "Training memory budget above the weights (default 1024)")
      ->check(FiniteNumber())
      ->check(CLI::PositiveNumber);
  t->add_option("--micro-batch", f.micro_batch,
                 "Sequences per micro-batch, 1..256 (default 0: the most that --max-memory-mb allows)")
      ->check(CLI::Range(int64_t(0), int64_t(256)));
  t->add_option("--replay-eval", f.replay_eval,
                "Replayed examples the replay loss is measured on, before and after (default 128; 0: all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  t->add_option("--seed", f.seed, "Seed for sampling, init, data order, 0..2^64-1 (default 0)")
      ->check(CountValue(UINT64_MAX));
  t->add_option("--threads", f.threads, "BLAS threads (default: all cores; with bf16 base products, LibTorch's)")->check(CLI::Range(0, 1024));
  t->add_option("--window-policy", f.window_policy, "JSON window policy; train only while it holds");
  t->add_flag("--wait-for-window", f.wait, "Wait until the window policy holds, then train");
  t->add_flag("--no-promote", f.no_promote, "Keep the candidate without running the gate");
  t->add_flag("--force", f.force, "Promote even if the gate rejects (recorded in the history)");
  t->add_flag("--no-checkpointing", f.no_checkpointing, "Keep all activations (faster, more memory)");
  t->add_option("--graph-memory-mb", f.graph_memory_mb,
                 "With checkpointing, MB for the activations of the top layers that are not recomputed "
                 "(faster, more memory; default 0: every layer recomputed)")
      ->check(FiniteNumber())
      ->check(CLI::NonNegativeNumber);
  t->add_option("--base-products", f.base_products,
                 "Frozen base products: bf16 (as PyTorch's bf16 autocast; about 2x faster on CPUs with AVX512-BF16 "
                 "or AMX), fp32, or auto: bf16 where the CPU has it (default auto)")
      ->check(CLI::Validator(
          [](std::string& s) {
            return trainer::KnownBaseProducts(s) ? std::string() : "'" + s + "' is not auto, fp32 or bf16";
          },
          "{auto,fp32,bf16}"));
  t->add_flag("--bf16-base", f.bf16_base, "Same as --base-products bf16");
  AddCommonFlags(t, g);
  t->callback(Run(r, [&] { return Train(g, f); }));
}

}  // namespace attune::cli
