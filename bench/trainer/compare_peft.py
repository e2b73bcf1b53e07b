#!/usr/bin/env python3
"""LoRA training throughput and peak memory: Attune's trainer vs PEFT + PyTorch.

Runs, in one invocation and each configuration in its own process (so peak
RSS belongs to that configuration alone):

  * build/bench/trainer/trainer_bench (Attune, LibTorch) with and without
    gradient checkpointing, fp32 products with LibTorch intra-op threads 1
    (OpenBLAS on 2 threads; the default where the CPU has no AVX512-BF16 or
    AMX), and intra-op 2 without checkpointing (to show oversubscription);
    and with the frozen base's products in bf16 (TrainerOptions::base_products
    "bf16", the default "auto" where the CPU has them; intra-op 2 + OpenBLAS 1;
    --ours-bf16);
  * PEFT + PyTorch on the same GGUF file, which transformers dequantizes to
    fp32, with the same data shape (micro-batch of 4 random sequences of 256
    tokens, every position scored except the first), the same LoRA settings
    (r 16, alpha 32, dropout 0, q,k,v,o,gate,up,down) and AdamW (lr 1e-4) on
    the LoRA parameters, torch.set_num_threads(2), with and without
    gradient checkpointing, in fp32 and under torch.autocast("cpu",
    dtype=torch.bfloat16) (--peft-dtypes);
  * the fp32 GEMM rate at 256x576x1536 in both stacks;

and prints a table with the ours/PEFT ratios for tokens/s and peak RSS, and
our fraction of the compute floor (FLOPs per token / measured GEMM rate).

Each measurement process is started under `flock LOCK` so that it never
overlaps other measurements on a shared machine (--lock '' turns that off).

Usage:
  python3 bench/trainer/compare_peft.py \
      --bench build/bench/trainer/trainer_bench [--steps 3] [--warmup 1]

Needs torch, transformers, peft and gguf in the Python environment, and
HF_HUB_OFFLINE=1 is set for the PEFT runs (nothing is downloaded).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def default_model():
    """The default model where `attune model fetch` puts it (runtime/src/model_store.cc)."""
    cache = os.environ.get("ATTUNE_MODEL_CACHE")
    if not cache:
        xdg = os.environ.get("XDG_CACHE_HOME")
        cache = os.path.join(xdg, "attune") if xdg else os.path.expanduser("~/.cache/attune")
    return os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")


def label_of(r):
    """Threads and compute of one result row."""
    if r["impl"] == "attune":
        return f"torch {r['torch_threads']} + BLAS {r['blas_threads']} {'bf16' if r.get('bf16') else 'fp32'}"
    return f"torch {r['torch_threads']} {r.get('dtype', 'fp32')}"


# ---------------------------------------------------------------- workers


def reset_hwm():
    """Resets VmHWM (Linux >= 4.0) so that the training phase's own peak is seen."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def vm_hwm_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def peft_worker(args):
    """One PEFT configuration; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(args.model)),
        gguf_file=os.path.basename(args.model),
        dtype=torch.float32,
    )
    model.config.use_cache = False
    if args.checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"),
    )
    model.train()
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    reset_hwm()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(vocab, (args.batch, args.seq), generator=g)
    labels = ids.clone()  # transformers shifts: every position but the first is a target

    fb_s = opt_s = 0.0
    loss = None
    bf16 = args.peft_dtype == "bf16"
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        # bf16 autocast: the matmuls run in bf16 (AMX or AVX512-BF16 where the CPU has them),
        # weights and optimizer state stay fp32, as PEFT's CPU users would run it.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        t1 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        loss = out.loss.item()
        del out
        if i >= args.warmup:
            fb_s += t1 - t0
            opt_s += t2 - t1
    total = fb_s + opt_s
    print(json.dumps({
        "impl": "peft",
        "dtype": args.peft_dtype,
        "checkpointing": int(args.checkpointing),
        "torch_threads": args.threads,
        "seq": args.seq,
        "batch": args.batch,
        "warmup": args.warmup,
        "steps": args.steps,
        "tokens_per_second": args.batch * args.seq * args.steps / total,
        "step_seconds": total / args.steps,
        "forward_backward_seconds": fb_s / args.steps,
        "optimizer_seconds": opt_s / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "train_peak_rss_mb": vm_hwm_mb(),
        "rss_after_load_mb": rss_after_load,
        "load_seconds": load_s,
        "loss": loss,
        "lora_params": len(params),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "torch": torch.__version__,
    }))


def gemm_worker(args):
    """fp32 GEMM rate of PyTorch (its own BLAS) at 256x576x1536."""
    import torch

    torch.set_num_threads(args.threads)
    m, k, n = 256, 576, 1536
    a, b, w = torch.randn(m, k), torch.randn(k, n), torch.randn(n, k)

    def rate(fn):
        for _ in range(5):
            fn()
        it, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            fn()
            it += 1
        return 2.0 * m * k * n * it / (time.perf_counter() - t0) / 1e9

    with torch.no_grad():
        mm = rate(lambda: torch.mm(a, b))
        lin = rate(lambda: torch.nn.functional.linear(a, w))
    print(json.dumps({"gemm_gflops_mm": mm, "gemm_gflops_linear": lin, "torch_threads": args.threads}))


# ---------------------------------------------------------------- driver


def run_json(cmd, lock, env=None):
    full = (["flock", lock] if lock else []) + cmd
    print("+ " + " ".join(full), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"compare_peft: {' '.join(cmd)} exited with {p.returncode}")
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    out = json.loads(line)
    out["process_wall_seconds"] = wall
    return out


def flops_per_token(model_path, seq, rank, checkpointing):
    """Forward + backward FLOPs per token with a frozen base (see docs/trainer_performance.md)."""
    from gguf import GGUFReader

    r = GGUFReader(model_path)

    def field(name):
        f = r.fields[name]
        return int(f.parts[f.data[0]][0])

    arch = bytes(r.fields["general.architecture"].parts[r.fields["general.architecture"].data[0]]).decode()
    L = field(f"{arch}.block_count")
    d = field(f"{arch}.embedding_length")
    ff = field(f"{arch}.feed_forward_length")
    h = field(f"{arch}.attention.head_count")
    hkv = field(f"{arch}.attention.head_count_kv")
    vocab = field(f"{arch}.vocab_size")
    hd = d // h
    shapes = [(d, h * hd), (d, hkv * hd), (d, hkv * hd), (h * hd, d), (d, ff), (d, ff), (ff, d)]  # (in, out)
    n_layer = sum(i * o for i, o in shapes)
    n_matmul = L * n_layer + vocab * d * (seq - 1) / seq  # the head runs on the scored positions only
    lora_in_out = L * sum(i + o for i, o in shapes) * rank
    attn_fwd = L * 2 * 2 * seq * hd * h  # QK^T and PV over the full (masked) T x T
    fwd = 2 * n_matmul + 2 * lora_in_out + attn_fwd
    # backward: input grads of every matmul (2N), LoRA input + weight grads (4 r (in+out)), attention 2x fwd
    bwd = 2 * n_matmul + 4 * lora_in_out + 2 * attn_fwd
    total = fwd + bwd + (fwd if checkpointing else 0)
    return {
        "n_matmul_params": n_matmul,
        "frozen_matmul_flops": 4 * n_matmul,
        "lora_flops": 6 * lora_in_out,
        "attention_flops": 3 * attn_fwd,
        "total": total,
    }


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Results: docs/trainer_performance.md")
    ap.add_argument("--bench", default="build/bench/trainer/trainer_bench", help="trainer_bench binary")
    ap.add_argument("--model", default=default_model(), help="GGUF file (default: the cached SmolLM2-135M Q4_1)")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4, help="sequences per micro-batch (default 4)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration (default 1)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (default 3)")
    ap.add_argument("--ours-torch-threads", default="1,2",
                    help="LibTorch intra-op threads to run ours with; OpenBLAS stays at 2 (default 1,2)")
    ap.add_argument("--ours-bf16", default="0,1",
                    help="ours in fp32 (0, torch threads as above + BLAS 2) and/or with the frozen base's products"
                         " in bf16 (1, TrainerOptions::base_products \"bf16\": torch 2 + BLAS 1) (default 0,1)")
    ap.add_argument("--extra-threads-checkpointing", default="0",
                    help="checkpointing settings (0,1) on which ours also runs with torch threads != 1 (default 0)")
    ap.add_argument("--peft-threads", default="2", help="torch.set_num_threads values for PEFT (default 2)")
    ap.add_argument("--checkpointing", default="0,1", help="which of 0 (off), 1 (on) to run (default 0,1)")
    ap.add_argument("--peft-dtypes", default="fp32,bf16",
                    help="PEFT compute: fp32 and/or bf16 (torch.autocast on the CPU) (default fp32,bf16)")
    ap.add_argument("--lock", default="/tmp/attune-bench.lock", help="flock file ('' = no lock)")
    ap.add_argument("--json-out", default="", help="also write all results to this file")
    ap.add_argument("--worker", choices=["peft", "gemm"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--peft-dtype", choices=["fp32", "bf16"], default="fp32", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        args.checkpointing = int(args.checkpointing.split(",")[0])
        return peft_worker(args) if args.worker == "peft" else gemm_worker(args)

    if not os.path.isfile(args.bench):
        ap.error(f"--bench {args.bench}: no such file (build it: ninja -C build trainer_bench)")
    if not os.path.isfile(args.model):
        ap.error(f"--model {args.model}: no such file (fetch it: attune model fetch)")
    ckpts = [int(c) for c in args.checkpointing.split(",") if c != ""]
    ours_threads = [int(t) for t in args.ours_torch_threads.split(",") if t != ""]
    ours_bf16 = [int(b) for b in args.ours_bf16.split(",") if b != ""]
    peft_threads = [int(t) for t in args.peft_threads.split(",") if t != ""]
    peft_dtypes = [d for d in args.peft_dtypes.split(",") if d != ""]
    for d in peft_dtypes:
        if d not in ("fp32", "bf16"):
            ap.error(f"--peft-dtypes: '{d}' is neither fp32 nor bf16")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    me = [sys.executable, os.path.abspath(__file__)]
    shape = ["--seq", str(args.seq), "--batch", str(args.batch), "--warmup", str(args.warmup),
             "--steps", str(args.steps)]

    t_start = time.perf_counter()
    results = {"ours": [], "peft": []}
    results["gemm_ours"] = run_json([args.bench, "--gemm", "--torch-threads", "1", "--blas-threads", "2", "--json"],
                                    args.lock)
    results["gemm_torch"] = run_json(me + ["--worker", "gemm", "--threads", "2"], args.lock, env)
    for c in ckpts:
        for t in ours_threads if 0 in ours_bf16 else []:
            if t != 1 and str(c) not in args.extra_threads_checkpointing.split(","):
                continue
            results["ours"].append(run_json(
                [args.bench, "--model", args.model, "--checkpointing", str(c), "--torch-threads", str(t),
                 "--blas-threads", "2", "--json"] + shape, args.lock))
        if 1 in ours_bf16:
            results["ours"].append(run_json(
                [args.bench, "--model", args.model, "--checkpointing", str(c), "--bf16", "1", "--torch-threads", "2",
                 "--blas-threads", "1", "--json"] + shape, args.lock))
        for t in peft_threads:
            for d in peft_dtypes:
                results["peft"].append(run_json(
                    me + ["--worker", "peft", "--model", args.model, "--checkpointing", str(c), "--threads", str(t),
                          "--peft-dtype", d] + shape, args.lock, env))
    results["total_seconds"] = time.perf_counter() - t_start
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(results, fh, indent=2)

    # ---- table
    print(f"\nSmolLM2-135M ({os.path.basename(args.model)}), micro-batch {args.batch} x {args.seq} "
          f"tokens, LoRA r16 a32 all 7 targets, AdamW; {args.warmup} warm-up + {args.steps} timed steps\n")
    hdr = f"| {'impl':<6} | {'ckpt':>4} | {'threads, compute':<23} | {'tokens/s':>8} | {'step s':>6} | " \
          f"{'opt s':>6} | {'peak RSS MiB':>12} | {'load peak MiB':>13} | {'train-phase peak MiB':>20} |"
    print(hdr)
    print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
    for r in results["ours"] + results["peft"]:
        print(f"| {r['impl']:<6} | {r['checkpointing']:>4} | {label_of(r):<23} | {r['tokens_per_second']:>8.1f} | "
              f"{r['step_seconds']:>6.2f} | {r['optimizer_seconds']:>6.3f} | {r['peak_rss_mb']:>12.0f} | "
              f"{r['rss_after_load_mb']:>13.0f} | {r['train_peak_rss_mb']:>20.0f} |")

    print("\nRatios (ours fp32 = torch 1 + BLAS 2, the default without AVX512-BF16 or AMX; ours bf16 ="
          " TrainerOptions::base_products \"bf16\", the default with them,"
          " torch 2 + BLAS 1; PEFT = torch.set_num_threads(2), each dtype, and PEFT's best = its fastest dtype at"
          " that checkpointing setting):\n")
    print("| ckpt | ours | PEFT dtype | tokens/s ours/PEFT (target >= 1.5) | peak RSS ours/PEFT (target <= 0.35) | train-phase peak ours/PEFT |")
    print("|------|------|------------|------------------------------------|-------------------------------------|----------------------------|")
    ratios = []
    for c in ckpts:
        peers = [r for r in results["peft"] if r["checkpointing"] == c and r["torch_threads"] == 2]
        if not peers:
            continue
        best = max(peers, key=lambda r: r["tokens_per_second"])
        for o in results["ours"]:
            if o["checkpointing"] != c or (not o.get("bf16") and o["torch_threads"] != 1):
                continue
            mine = "bf16" if o.get("bf16") else "fp32"
            for p in peers:
                tr, mr = o["tokens_per_second"] / p["tokens_per_second"], o["peak_rss_mb"] / p["peak_rss_mb"]
                hr = o["train_peak_rss_mb"] / p["train_peak_rss_mb"]
                label = p.get("dtype", "fp32") + (" (best)" if p is best and len(peers) > 1 else "")
                ratios.append({"checkpointing": c, "ours": mine, "peft_dtype": p.get("dtype", "fp32"),
                               "peft_best": p is best, "tokens_per_second": tr, "peak_rss": mr, "train_peak_rss": hr})
                print(f"| {c:>4} | {mine} | {label:<10} | {tr:>34.2f} | {mr:>35.2f} | {hr:>26.2f} |")
    results["ratios"] = ratios

    g_ours, g_torch = results["gemm_ours"], results["gemm_torch"]
    print(f"\nfp32 GEMM 256x576x1536: ours (LibTorch + OpenBLAS, torch 1 + BLAS 2) "
          f"mm {g_ours['gemm_gflops_mm']:.1f} / linear {g_ours['gemm_gflops_linear']:.1f} GFLOP/s; "
          f"PyTorch (MKL, 2 threads) mm {g_torch['gemm_gflops_mm']:.1f} / linear "
          f"{g_torch['gemm_gflops_linear']:.1f} GFLOP/s")
    gemm = max(g_ours["gemm_gflops_mm"], g_ours["gemm_gflops_linear"]) * 1e9
    floors = []
    for c in ckpts:
        f = flops_per_token(args.model, args.seq, 16, c)
        o = next((r for r in results["ours"] if r["checkpointing"] == c and r["torch_threads"] == 1
                  and not r.get("bf16")), None)
        floor_tps = gemm / f["total"]
        frac = o["tokens_per_second"] / floor_tps if o else None
        floors.append({"checkpointing": c, "flops_per_token": f, "floor_tokens_per_second": floor_tps,
                       "fraction": frac})
        print(f"compute floor, ckpt {c}: {f['total'] / 1e6:.0f} MFLOP/token "
              f"(frozen matmuls 4N = {f['frozen_matmul_flops'] / 1e6:.0f}, LoRA {f['lora_flops'] / 1e6:.0f}, "
              f"attention {f['attention_flops'] / 1e6:.0f}{', + one recomputed forward' if c else ''}) "
              f"-> {floor_tps:.0f} tokens/s at {gemm / 1e9:.1f} GFLOP/s; ours {fmt(frac and frac * 100)}% of it")
    results["floor"] = floors
    print(f"\ntotal benchmark time {results['total_seconds']:.0f} s")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
