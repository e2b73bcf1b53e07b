#!/usr/bin/env python3
"""Load benchmark of `attune serve` against llama.cpp's server (llama_cpp.server
from llama-cpp-python) on the same GGUF with the same threads, in one run.

Phases (same N streaming clients, same duration, greedy, loopback):
  attune-serving   : serving only;
  attune-training  : a training window is started (POST /v1/train) and the
                     active adapter is swapped every few seconds (rollback /
                     promote) while the clients run;
  llama.cpp        : llama_cpp.server under the same load.
Prints a Markdown table with the ratios; --json writes all numbers.

Usage:
  ninja -C build attune serve_load
  python3 bench/serve/run_serve_bench.py --attune build/cli/attune --load build/bench/serve/serve_load \
      --llama-python /path/to/venv/bin/python [--clients 4 --seconds 20 --max-tokens 32 --threads 2]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# The default model where `attune model fetch` puts it (runtime/src/model_store.cc).
DEFAULT_MODEL = os.path.join(
    os.environ.get("ATTUNE_MODEL_CACHE")
    or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attune"),
    "SmolLM2-135M-Instruct.Q4_1.gguf")


def http(url, body=None, method=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: {e.code} {e.read().decode()[:300]}") from None


def wait_ready(url, proc, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            http(url)
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError("server did not come up")


def run_load(args, port, model):
    out = subprocess.run([args.load, "--port", str(port), "--clients", str(args.clients), "--seconds",
                          str(args.seconds), "--max-tokens", str(args.max_tokens), "--model", model],
                         capture_output=True, text=True)
    result = json.loads(out.stdout)
    print(f"  {json.dumps(result)}", file=sys.stderr)
    return result


def feedback(base, prefix, n):
    for i in range(n):
        http(base + "/v1/feedback", {"id": f"{prefix}{i}", "user_id": "bench", "context": [
            {"role": "user", "content": f"What is my dog called? ({i})"}],
            "demonstration": {"text": "Your dog is called Pixel."}})


CONFIG = """
[server]
port = 0
max_concurrent = {clients}
[model]
path = "{model}"
[training]
background = false
quiet_seconds = 0.5
max_steps = {steps}
[trainer]
rank = 8
alpha = 16
micro_batch_size = 2
grad_accum_steps = 1
max_seq_len = 96
anchor_examples = 2
anchor_max_tokens = 16
forgetting_prompts = ["Hello!"]
[gate]
max_forgetting_kl = 100
min_new_loss_improvement = 0
max_replay_regression = 100
"""


def bench_attune(args, tmp):
    with open(f"{tmp}/serve.toml", "w") as f:
        f.write(CONFIG.format(clients=args.clients, model=args.model, steps=args.train_steps))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    proc = subprocess.Popen([args.attune, "serve", "--config", f"{tmp}/serve.toml", "--data-dir", f"{tmp}/data",
                             "--json"], stdout=subprocess.PIPE, text=True, env=env)
    port = json.loads(proc.stdout.readline())["port"]
    base = f"http://127.0.0.1:{port}"
    results = {}
    try:
        feedback(base, "a", 8)
        t0 = time.time()
        first = http(base + "/v1/train", {})
        print(f"attune: first window (no load) {time.time() - t0:.1f} s, {first['label']} promoted={first['promoted']}",
              file=sys.stderr)
        print("attune: serving only", file=sys.stderr)
        results["attune-serving"] = run_load(args, port, "attune")

        feedback(base, "b", 8)
        swaps = [0]
        stop = threading.Event()
        train_result = {}

        def train():
            t = time.time()
            try:
                train_result["run"] = http(base + "/v1/train", {})
            except RuntimeError as e:
                train_result["error"] = str(e)
                print(f"  window failed: {e}", file=sys.stderr)
            train_result["seconds"] = time.time() - t

        def swapper():
            while not stop.wait(3):
                try:
                    active = http(base + "/v1/adapters")["active_label"]
                    if active == "base":
                        http(base + "/v1/adapters/v1/promote", {"force": True})
                    else:
                        http(base + "/v1/adapters/rollback", {})
                    swaps[0] += 1
                except Exception as e:  # a refused swap is not a serving failure; report it
                    print(f"  swap failed: {e}", file=sys.stderr)

        print("attune: serving while a window is open and adapters swap", file=sys.stderr)
        trainer = threading.Thread(target=train)
        trainer.start()
        swap_thread = threading.Thread(target=swapper)
        swap_thread.start()
        results["attune-training"] = run_load(args, port, "attune")
        stop.set()
        swap_thread.join()
        status = http(base + "/v1/status")
        trainer.join()
        results["attune-training"]["swaps"] = swaps[0]
        results["attune-training"]["training_pauses"] = status["training"]["pauses"]
        results["attune-training"]["window_seconds"] = train_result.get("seconds")
        results["attune-training"]["window_steps"] = train_result.get("run", {}).get("report", {}).get("steps")
    finally:
        proc.send_signal(signal.SIGTERM)
        results["attune_exit"] = proc.wait(timeout=300)
    return results


def bench_llamacpp(args):
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen([args.llama_python, "-m", "llama_cpp.server", "--model", args.model, "--n_threads",
                             str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "2048",
                             # Its default lets a new request interrupt a running stream; queue them instead.
                             "--interrupt_requests", "False",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", proc)
        print("llama.cpp: serving", file=sys.stderr)
        return run_load(args, port, "attune")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attune", default="build/cli/attune")
    p.add_argument("--load", default="build/bench/serve/serve_load")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--llama-python", default="", help="a python with llama-cpp-python[server]; '' skips the peer")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--json", default="")
    p.add_argument("--peer-only", action="store_true", help="run only the llama.cpp phase")
    args = p.parse_args()
    if args.peer_only:  # re-measures the peer alone (for example after fixing its flags)
        result = bench_llamacpp(args)
        print(json.dumps(result))
        return 0 if result["requests_failed"] == 0 else 1
    with tempfile.TemporaryDirectory() as tmp:
        results = bench_attune(args, tmp)
    if args.llama_python:
        results["llama.cpp"] = bench_llamacpp(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    keys = [("requests_per_second", "requests/s", "{:.2f}"), ("ttft_ms_p50", "TTFT p50 ms", "{:.0f}"),
            ("ttft_ms_p99", "TTFT p99 ms", "{:.0f}"), ("itl_ms_p50", "ITL p50 ms", "{:.1f}"),
            ("itl_ms_p99", "ITL p99 ms", "{:.1f}"), ("requests_failed", "failed requests", "{}")]
    cols = [c for c in ("attune-serving", "attune-training", "llama.cpp") if c in results]
    print("| metric | " + " | ".join(cols) + (" | serving / llama.cpp | training / llama.cpp |" if "llama.cpp" in results else " |"))
    print("|---" * (len(cols) + 1 + (2 if "llama.cpp" in results else 0)) + "|")
    for key, name, fmt in keys:
        row = [fmt.format(results[c][key]) for c in cols]
        if "llama.cpp" in results:
            peer = results["llama.cpp"][key]
            for c in ("attune-serving", "attune-training"):
                row.append(f"{results[c][key] / peer:.2f}" if peer else "-")
        print(f"| {name} | " + " | ".join(row) + " |")
    t = results["attune-training"]
    print(f"\nswaps during the training phase: {t['swaps']}, streams with mixed versions: "
          f"{t['streams_with_mixed_versions']}, fingerprints seen: {t['fingerprints']}, training pauses: "
          f"{t['training_pauses']}, window: {t['window_steps']} steps in {t['window_seconds'] or 0:.1f} s; "
          f"attune exit code after SIGTERM: {results['attune_exit']}")
    failed = sum(results[c]["requests_failed"] for c in cols)
    return 0 if failed == 0 and results["attune_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
