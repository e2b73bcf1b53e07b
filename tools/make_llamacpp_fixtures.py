#!/usr/bin/env python3
"""Golden fixtures from llama.cpp itself (through llama-cpp-python).

For each golden prompt of tests/fixtures/logits/smollm2_logits.json (token ids
written by transformers' tokenizer), llama.cpp loads the same GGUF and decodes
greedily; its tokens, and the logits of its first decode step, go into
tests/fixtures/logits/smollm2_llamacpp.json. The C++ test
(SmolModelTest.GreedyTokensMatchLlamaCpp) decodes the same prompts with the
quantized weights and must produce the same tokens up to the first step where
llama.cpp's own top two logits are nearly tied (the fixture records each
step's margin): there, summation order and llama.cpp's fp16 KV cache decide.

Usage (llama-cpp-python in a virtual environment outside the repository):
  python tools/make_llamacpp_fixtures.py --model PATH/SmolLM2-135M-Instruct.Q4_1.gguf [--tokens 40]
"""
import argparse
import json
import os

import numpy as np
from llama_cpp import Llama
import llama_cpp


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "logits", "smollm2_llamacpp.json"))
    a = ap.parse_args()
    src = json.load(open(os.path.join(here, "..", "tests", "fixtures", "logits", "smollm2_logits.json")))
    llm = Llama(model_path=a.model, n_threads=2, n_threads_batch=2, n_ctx=512, n_batch=512, logits_all=True,
                verbose=False, seed=0)
    out = {"source": {"model": os.path.basename(a.model), "llama_cpp_python": llama_cpp.__version__,
                      "threads": 2, "note": "greedy argmax over llama.cpp's logits, one token per eval"},
           "prompts": []}
    for p in src["prompts"]:
        ids = p["ids"]
        llm.reset()
        llm.eval(ids)
        prefill_logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        toks, margins = [], []
        for _ in range(a.tokens):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.partition(row, -2)[-2:]
            margins.append(float(abs(top2[1] - top2[0])))
            nxt = int(np.argmax(row))
            toks.append(nxt)
            llm.eval([nxt])
        top = np.argsort(-prefill_logits)[:8]
        out["prompts"].append({"text": p["text"], "ids": ids, "greedy_ids": toks, "top2_margins": margins,
                               "first_top_ids": [int(i) for i in top],
                               "first_top_logits": [float(prefill_logits[i]) for i in top]})
        print(p["text"][:40].replace("\n", " "), "->", llm.detokenize(toks).decode("utf-8", "replace")[:60].replace("\n", " "))
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
