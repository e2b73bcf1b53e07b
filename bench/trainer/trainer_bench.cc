// LoRA training throughput and peak memory of the trainer on a real model.
//
//   build/bench/trainer/trainer_bench [--model PATH] [--checkpointing 0|1]
//       [--torch-threads N] [--blas-threads N] [--seq N] [--batch N]
//       [--warmup N] [--steps N] [--seed N] [--shared-prefix N] [--json]
//   build/bench/trainer/trainer_bench --gemm [--torch-threads N] [--blas-threads N]
//
// One configuration per process, so that peak RSS (VmHWM) belongs to it alone.
// A step is one micro-batch of `batch` sequences of `seq` random token ids
// with every position scored except the first (SFT loss), LoRA rank 16,
// alpha 32, dropout 0, all seven targets, then one AdamW step (lr 1e-4).
// --shared-prefix N: the first N ids of every row are row 0's (as a chat
// template's system turn is), which the trainer runs once per micro-batch.
// tokens_per_second = batch * seq * steps / (wall time of the timed steps:
// forward + backward + optimizer). peak_rss_mb is the VmHWM of the whole
// process (load included); train_peak_rss_mb the VmHWM of the training phase
// alone (reset through /proc/self/clear_refs after the load). --gemm measures the fp32 GEMM rate of
// at::mm at 256x576x1536 (the MLP up-projection of SmolLM2-135M at 256
// tokens) instead. bench/trainer/compare_peft.py runs this next to PEFT.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "attune/core/file.h"
#include "attune/core/process.h"
#include "attune/runtime/model.h"
#include "attune/runtime/model_store.h"
#include "attune/trainer/adamw.h"
#include "attune/trainer/lora_params.h"
#include "attune/trainer/objective.h"
#include "attune/trainer/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace attune;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Flags {
  std::string model;
  int checkpointing = 0, torch_threads = 1, blas_threads = 2, bf16 = 0;
  int64_t seq = 256, batch = 4, warmup = 1, steps = 3, shared_prefix = 0;
  uint64_t seed = 0;
  bool json = false, gemm = false;
};

[[noreturn]] void Usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: trainer_bench [--model PATH] [--checkpointing 0|1] [--bf16 0|1] [--torch-threads N]\n"
               "                     [--blas-threads N] [--seq N] [--batch N] [--warmup N]\n"
               "                     [--steps N] [--seed N] [--shared-prefix N] [--json]\n"
               "       trainer_bench --gemm [--torch-threads N] [--blas-threads N] [--json]\n"
               "Measures LoRA training tokens/s and peak RSS (VmHWM) on one configuration,\n"
               "or (--gemm) the fp32 GEMM rate at 256x576x1536. --bf16 1: the frozen base's\n"
               "products in bf16 (TrainerOptions::base_products \"bf16\"; LibTorch's intra-op threads run them).\n"
               "Defaults: the cached default model, checkpointing 0, torch threads 1,\n"
               "BLAS threads 2, seq 256, batch 4, warmup 1, steps 3, shared prefix 0.\n"
               "--shared-prefix N: every row's first N token ids are the same (as a chat template's\n"
               "system turn), which the trainer runs once per micro-batch.\n");
  std::exit(code);
}

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage(2);
      return argv[++i];
    };
    if (a == "--help" || a == "-h") Usage(0);
    else if (a == "--model") f.model = next();
    else if (a == "--checkpointing") f.checkpointing = std::stoi(next());
    else if (a == "--bf16") f.bf16 = std::stoi(next());
    else if (a == "--torch-threads") f.torch_threads = std::stoi(next());
    else if (a == "--blas-threads") f.blas_threads = std::stoi(next());
    else if (a == "--seq") f.seq = std::stoll(next());
    else if (a == "--batch") f.batch = std::stoll(next());
    else if (a == "--warmup") f.warmup = std::stoll(next());
    else if (a == "--steps") f.steps = std::stoll(next());
    else if (a == "--seed") f.seed = std::stoull(next());
    else if (a == "--shared-prefix") f.shared_prefix = std::stoll(next());
    else if (a == "--json") f.json = true;
    else if (a == "--gemm") f.gemm = true;
    else {
      std::fprintf(stderr, "trainer_bench: unknown flag %s\n", a.c_str());
      Usage(2);
    }
  }
  if (f.seq < 2 || f.batch < 1 || f.steps < 1 || f.warmup < 0 || f.shared_prefix < 0 || f.shared_prefix >= f.seq) Usage(2);
  return f;
}

int Gemm(const Flags& f) {
  runtime::ConfigureThreads(f.torch_threads, f.blas_threads);
  const int64_t M = 256, K = 576, N = 1536;
  at::Tensor a = at::randn({M, K}), b = at::randn({K, N});
  at::Tensor w = at::randn({N, K});  // the model's layout: y = x W^T
  auto rate = [&](auto&& fn) {
    for (int i = 0; i < 5; ++i) fn();
    int iters = 0;
    auto t0 = Clock::now();
    double s = 0;
    while ((s = Seconds(t0, Clock::now())) < 2.0) {
      fn();
      ++iters;
    }
    return 2.0 * M * K * N * iters / s / 1e9;
  };
  at::Tensor c;
  double mm = rate([&] { c = at::mm(a, b); });
  double linear = rate([&] { c = at::linear(a, w); });
  if (f.json) {
    std::printf("{\"gemm_gflops_mm\": %.2f, \"gemm_gflops_linear\": %.2f, \"torch_threads\": %d, \"blas_threads\": %d}\n",
                mm, linear, f.torch_threads, f.blas_threads);
  } else {
    std::printf("fp32 GEMM 256x576x1536: at::mm %.1f GFLOP/s, at::linear (x W^T) %.1f GFLOP/s\n", mm, linear);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = Parse(argc, argv);
  if (f.gemm) return Gemm(f);
  runtime::ConfigureThreads(f.torch_threads, f.blas_threads);
  std::string path = f.model.empty() ? runtime::DefaultModelPath() : f.model;
  auto t_load = Clock::now();
  auto loaded = runtime::Model::Load(path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "trainer_bench: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  std::shared_ptr<const runtime::Model> model = *loaded;
  const double load_s = Seconds(t_load, Clock::now());
  const double rss_after_load = attune::PeakRssMb();
  // Reset VmHWM (Linux >= 4.0) so that the training phase's own peak is seen too.
  { std::ofstream("/proc/self/clear_refs") << "5"; }

  trainer::LoraConfig lc;
  lc.rank = 16;
  lc.alpha = 32;
  lc.dropout = 0.0;
  trainer::LoraParams lora = trainer::LoraParams::Init(*model, lc, f.seed);
  trainer::AdamW opt(lora.parameters(), trainer::AdamWOptions{.lr = 1e-4});
  runtime::LoraWeights w = lora.Weights(/*training=*/true);

  // Random token ids, all positions scored except the first.
  const int64_t vocab = model->embedding().out_features();
  at::Generator gen = at::detail::createCPUGenerator(f.seed + 1);
  at::Tensor all = at::randint(vocab, {f.batch, f.seq}, gen, at::kLong);
  all.narrow(1, 0, f.shared_prefix).copy_(all.narrow(0, 0, 1).narrow(1, 0, f.shared_prefix).expand({f.batch, -1}));
  std::vector<trainer::Sequence> seqs(f.batch);
  for (int64_t i = 0; i < f.batch; ++i) {
    const int64_t* p = all[i].contiguous().data_ptr<int64_t>();
    seqs[i].ids.assign(p, p + f.seq);
    seqs[i].scored.assign(f.seq, 1);
    seqs[i].scored[0] = 0;
  }
  std::vector<const trainer::Sequence*> ptrs;
  for (auto& s : seqs) ptrs.push_back(&s);
  trainer::Batch b = trainer::MakeBatch(ptrs);
  const double norm = static_cast<double>(f.batch * (f.seq - 1));
  at::Tensor weights = at::ones({f.batch});

  double fb_s = 0, opt_s = 0, loss = 0;
  runtime::ExactProducts exact;  // as Trainer::Run holds one: every product the fp32 one backward differentiates
  std::optional<runtime::Bf16Products> bf16;
  if (f.bf16) bf16.emplace();
  auto step = [&](bool timed) {
    auto t0 = Clock::now();
    loss = trainer::ForwardBackward(*model, w, b.ids, f.checkpointing != 0,
                                    [&](const at::Tensor& h) { return trainer::SftLoss(*model, h, b, weights, norm); });
    auto t1 = Clock::now();
    opt.Step(1e-4);
    opt.ZeroGrad();
    auto t2 = Clock::now();
    if (timed) {
      fb_s += Seconds(t0, t1);
      opt_s += Seconds(t1, t2);
    }
  };
  for (int64_t i = 0; i < f.warmup; ++i) step(false);
  for (int64_t i = 0; i < f.steps; ++i) step(true);
  const double total = fb_s + opt_s;
  const double tokens = static_cast<double>(f.batch * f.seq * f.steps);
  const double tps = tokens / total;
  const double train_peak = attune::PeakRssMb();
  const double peak = std::max(train_peak, rss_after_load);
  if (f.json) {
    std::printf(
        "{\"impl\": \"attune\", \"checkpointing\": %d, \"bf16\": %d, \"torch_threads\": %d, \"blas_threads\": %d, "
        "\"seq\": %lld, \"batch\": %lld, \"warmup\": %lld, \"steps\": %lld, \"tokens_per_second\": %.3f, "
        "\"step_seconds\": %.4f, \"forward_backward_seconds\": %.4f, \"optimizer_seconds\": %.5f, "
        "\"peak_rss_mb\": %.1f, \"train_peak_rss_mb\": %.1f, \"rss_after_load_mb\": %.1f, \"load_seconds\": %.3f, \"loss\": %.5f, "
        "\"lora_params\": %zu, \"shared_prefix\": %lld}\n",
        f.checkpointing, f.bf16, f.torch_threads, f.blas_threads, static_cast<long long>(f.seq),
        static_cast<long long>(f.batch), static_cast<long long>(f.warmup), static_cast<long long>(f.steps), tps,
        total / f.steps, fb_s / f.steps, opt_s / f.steps, peak, train_peak, rss_after_load, load_s, loss, lora.parameters().size(),
        static_cast<long long>(trainer::SharedPrefixLength(b.ids, w)));
  } else {
    std::printf("checkpointing %d, torch threads %d, BLAS threads %d, batch %lld x seq %lld, %lld timed steps\n",
                f.checkpointing, f.torch_threads, f.blas_threads, static_cast<long long>(f.batch),
                static_cast<long long>(f.seq), static_cast<long long>(f.steps));
    std::printf("tokens/s %.1f  step %.3f s (forward+backward %.3f s, optimizer %.4f s)\n", tps, total / f.steps,
                fb_s / f.steps, opt_s / f.steps);
    std::printf("peak RSS %.1f MiB (training phase %.1f MiB, load %.1f MiB), load %.2f s, loss %.4f\n", peak, train_peak,
                rss_after_load, load_s, loss);
  }
  return 0;
}
