#!/usr/bin/env python3
"""Runs Attune's runtime benchmarks and llama.cpp (llama-cpp-python) on the same
GGUF with the same thread count, in the same run, and prints ratios.

Usage (llama-cpp-python installed in a virtual environment outside the repo):
  python3 bench/runtime/compare_llamacpp.py [--model PATH] [--threads 2] [--bench build/bench/runtime/runtime_bench]
      [--lean-bench build/bench/runtime/lean_bench]

Ours is measured twice: `attune` is the LibTorch engine (runtime_bench; the
process loads LibTorch, as `attune generate` and the service do), `attune-run`
the LibTorch-free engine (lean_bench; the process of `attune-run`). Each side:
prefill = one forward pass over a 128-token prompt; decode = 128 greedy steps
of one token with a KV cache after a 16-token prompt. Peak RSS is each
process's own high-water mark (ru_maxrss / VmHWM), model load included.

--busy also measures both sides again while another process keeps one core
busy (a shell loop), and prints each side's busy / quiet decode ratio.
--weights fp32 runs ours with fp32 weights instead of quantized ones.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def prompt_ids(n):
    return [(i * 37) % 20000 + 100 for i in range(n)]


def run_llamacpp(model, threads, repeats):
    from llama_cpp import Llama  # imported here so --help works without it
    import numpy as np

    llm = Llama(model_path=model, n_threads=threads, n_threads_batch=threads, n_ctx=512, n_batch=512, verbose=False)
    prefill = []
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt_ids(128))
        prefill.append(time.perf_counter() - t)
    decode = []
    for _ in range(repeats):
        llm.reset()
        llm.eval(prompt_ids(16))
        t = time.perf_counter()
        for _ in range(128):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([nxt])
        decode.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"prefill_tps": 128 / min(prefill), "decode_tps": 128 / min(decode), "peak_rss_mb": rss}


def run_attune(bench, model, threads, weights=None):
    cmd = [bench, "--threads", str(threads), "--benchmark_format=json",
           "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=false"]
    if weights:
        cmd += ["--weights", weights]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {"prefill_tps": 0.0, "decode_tps": 0.0, "peak_rss_mb": 0.0}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        key = "prefill_tps" if "Prefill" in b["name"] else "decode_tps"
        res[key] = max(res[key], b["tokens_per_second"])
        res["peak_rss_mb"] = max(res["peak_rss_mb"], b["peak_rss_mb"])
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(os.environ.get("ATTUNE_MODEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attune"), "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bench", default="build/bench/runtime/runtime_bench")
    ap.add_argument("--lean-bench", default="build/bench/runtime/lean_bench",
                    help="the LibTorch-free engine's benchmark ('' to skip it)")
    ap.add_argument("--weights", choices=["quantized", "fp32"], default="quantized")
    ap.add_argument("--busy", action="store_true", help="also measure with one core kept busy by another process")
    ap.add_argument("--side", choices=["both", "llamacpp"], default="both", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side == "llamacpp":
        print(json.dumps(run_llamacpp(a.model, a.threads, a.repeats)))
        return

    lean = bool(a.lean_bench) and a.weights == "quantized"

    def measure():
        ours = run_attune(a.bench, a.model, a.threads, a.weights)
        ours_lean = run_attune(a.lean_bench, a.model, a.threads) if lean else None
        # llama.cpp in its own process so that its peak RSS is its own.
        peer = json.loads(subprocess.run([sys.executable, __file__, "--side", "llamacpp", "--model", a.model,
                                          "--threads", str(a.threads), "--repeats", str(a.repeats)],
                                         check=True, capture_output=True, text=True).stdout)
        return ours, peer, ours_lean

    ours, peer, ours_lean = measure()
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}  threads={a.threads}  weights={a.weights}")
    header = f"{'metric':<14}{'attune':>12}{'llama.cpp':>12}{'ratio':>9}"
    if lean:
        header += f"{'attune-run':>12}{'ratio':>9}"
    print(header)
    for k in ("prefill_tps", "decode_tps", "peak_rss_mb"):
        line = f"{k:<14}{ours[k]:>12.1f}{peer[k]:>12.1f}{ours[k] / peer[k]:>9.2f}"
        if lean:
            line += f"{ours_lean[k]:>12.1f}{ours_lean[k] / peer[k]:>9.2f}"
        print(line)
    if a.busy:
        hog = subprocess.Popen(["sh", "-c", "while :; do :; done"])
        try:
            ours_b, peer_b, lean_b = measure()
        finally:
            hog.kill()
        print("with one core busy (another process):")
        line = (f"{'decode_tps':<14}{ours_b['decode_tps']:>12.1f}{peer_b['decode_tps']:>12.1f}"
                f"{ours_b['decode_tps'] / peer_b['decode_tps']:>9.2f}")
        if lean:
            line += f"{lean_b['decode_tps']:>12.1f}{lean_b['decode_tps'] / peer_b['decode_tps']:>9.2f}"
        print(line)
        busy = (f"busy/quiet decode: attune {ours_b['decode_tps'] / ours['decode_tps']:.2f}, "
                f"llama.cpp {peer_b['decode_tps'] / peer['decode_tps']:.2f}")
        if lean:
            busy += f", attune-run {lean_b['decode_tps'] / ours_lean['decode_tps']:.2f}"
        print(busy)


if __name__ == "__main__":
    main()
