#!/usr/bin/env python3
"""Time to first token of multi-turn chats against `attune serve`, with the
prompt cache on (the default) and off (--prompt-cache-mb 0), in one run.

Each client holds conversations of --turns turns and resends the whole
history every turn, as chat clients do (serve_load --turns). Prints, per
turn, the prompt length, the tokens the server restored from its cache and
the TTFT p50 of both servers with their ratio (off / on: how many times
faster the first token comes with the cache); --json writes all numbers.

Usage:
  ninja -C build attune serve_load
  python3 bench/serve/prompt_cache_ttft.py --attune build/cli/attune --load build/bench/serve/serve_load \\
      [--model PATH] [--turns 6 --clients 1 --seconds 60 --max-tokens 48 --threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

DEFAULT_MODEL = os.path.join(os.environ.get("ATTUNE_MODEL_CACHE")
                             or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                             "attune"), "SmolLM2-135M-Instruct.Q4_1.gguf")

CONFIG = """
[server]
port = 0
max_concurrent = {clients}
[model]
path = "{model}"
prompt_cache_mb = {cache_mb}
[training]
background = false
"""

PROMPT = ("I am planning a week-long trip to Portugal in late spring with two friends who like hiking, old "
          "towns and seafood. We will land in Lisbon and leave from Porto. Suggest a plan.")


def run(args, tmp, cache_mb):
    name = f"cache{cache_mb}"
    with open(f"{tmp}/{name}.toml", "w") as f:
        f.write(CONFIG.format(clients=args.clients, model=args.model, cache_mb=cache_mb))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
    proc = subprocess.Popen([args.attune, "serve", "--config", f"{tmp}/{name}.toml", "--data-dir",
                             f"{tmp}/{name}-data", "--json"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = json.loads(proc.stdout.readline())["port"]
        out = subprocess.run([args.load, "--port", str(port), "--clients", str(args.clients), "--seconds",
                              str(args.seconds), "--max-tokens", str(args.max_tokens), "--turns", str(args.turns),
                              "--prompt", PROMPT], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"serve_load failed: {out.stderr or out.stdout}")
        return json.loads(out.stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attune", default="build/cli/attune")
    p.add_argument("--load", default="build/bench/serve/serve_load")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write all numbers to this file")
    args = p.parse_args()
    print(f"model {args.model}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        on = run(args, tmp, 64)
        off = run(args, tmp, 0)
    print(f"| turn | prompt tokens | restored from cache | TTFT p50 cache off (ms) | TTFT p50 cache on (ms) | off / on |")
    print("|---|---|---|---|---|---|")
    for a, b in zip(on["by_turn"], off["by_turn"]):
        ratio = b["ttft_ms_p50"] / a["ttft_ms_p50"] if a["ttft_ms_p50"] > 0 else float("nan")
        print(f"| {a['turn']} | {a['prompt_tokens_mean']:.0f} | {a['cached_tokens_mean']:.0f} | "
              f"{b['ttft_ms_p50']:.0f} | {a['ttft_ms_p50']:.0f} | {ratio:.2f} |")
    print(f"\nrequests: cache on {on['requests_ok']} ok / {on['requests_failed']} failed; "
          f"cache off {off['requests_ok']} ok / {off['requests_failed']} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cache_on": on, "cache_off": off, "args": vars(args)}, f, indent=1)
    return 0 if on["requests_failed"] == 0 and off["requests_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
