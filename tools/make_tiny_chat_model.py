#!/usr/bin/env python3
"""Train the tiny chat model `tests/fixtures/models/tiny_chat.gguf`.

tiny_llama.gguf has random weights: its answer does not depend on the question, so a LoRA
adapter trained on it cannot learn several question -> answer facts (every question gets
the same answer). tiny_chat is a model of the same kind (llama architecture, the same
128-token byte-level vocabulary as tiny_llama, written the same way) whose weights are
trained from a random init on synthetic ChatML conversations:

  phase 1  (1500 steps) the assistant repeats the last user message verbatim. To do
           that, attention has to find and read the question, so the model's state at the
           answer depends on it.
  phase 2  (1200 steps) the same, with 48 made-up "base facts" mixed into a fifth of the
           turns: random words of 5 to 8 letters, asked as "word" or "word?", each
           answered with its own fixed word. The model learns to tell a question it knows
           from any other one, which a LoRA adapter builds on when it teaches new facts
           (without this phase, adapters learn fewer facts and change more untaught answers).

The conversations are exactly the bytes our ChatML renderer writes
(runtime/src/chat_template.cc, no default system prompt):

    [<|im_start|>system\\n{system}<|im_end|>\\n]
    (<|im_start|>user\\n{message}<|im_end|>\\n<|im_start|>assistant\\n{reply}<|im_end|>\\n){1,3}
    <|endoftext|>

with every `<|...|>` marker spelled out in single bytes. Each reply is tokenized the way the
trainer joins an example (rendered prompt, completion and turn suffix encoded one by one;
trainer/src/objective.cc). The replies, their `<|im_end|>\\n` and the final `<|endoftext|>`
(id 127, the GGUF's EOS, on which generation stops) are scored; nothing else is. The GGUF
also carries a plain ChatML `tokenizer.chat_template`, so our loader detects ChatML without
--chat-template (which `attune train` does not have).

Everything is seeded and runs on one CPU thread: a second run with the same library
versions writes a byte-identical file.

Usage:
  python tools/make_tiny_chat_model.py [--out tests/fixtures/models/tiny_chat.gguf]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import copy
import hashlib
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

# tiny_llama's vocabulary, its q/k permutation and the version list of the fixtures.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_runtime_fixtures import (  # noqa: E402
    seed_everything,
    tiny_gguf_vocab,
    versions_str,
    write_tiny_llama_gguf,
)

REPO = Path(__file__).resolve().parent.parent
SEED = 20261207
EOS_ID = 127

# A plain ChatML template. It has no default system prompt (ChatTemplate::Detect looks for
# "!= 'system'" and finds none), so Render() writes exactly the messages it is given.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TURN_SUFFIX = "<|im_end|>\n"  # ChatTemplate::TurnSuffix() for ChatML

# English letter frequencies (per mille): the merged tokens "he" and "in" then occur
# about as often as in text.
LETTER_FREQ = {
    "e": 127, "t": 91, "a": 82, "o": 75, "i": 70, "n": 67, "s": 63, "h": 61, "r": 60,
    "d": 43, "l": 40, "c": 28, "u": 28, "m": 24, "w": 24, "f": 22, "g": 20, "y": 20,
    "p": 19, "b": 15, "v": 10, "k": 8, "j": 2, "x": 2, "q": 1, "z": 1,
}
LETTERS = list(LETTER_FREQ)
LETTER_W = [LETTER_FREQ[c] for c in LETTERS]
PRINTABLE = [chr(c) for c in range(32, 127)]

# Questions printed after training (the base answers them by repeating them).
SHOW = ["pet?", "city?", "car?", "tea?", "hello", "What is my dog's name?"]


# --------------------------------------------------------------------------------------
# tokenizer and chat format


def make_tokenizer():
    """tiny_llama's GPT-2 byte-level BPE (128 tokens, 4 merges) as a `tokenizers` object,
    built as transformers converts a GGUF "gpt2" vocabulary (checked against it after the
    file is written)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokens, _, merges = tiny_gguf_vocab()
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def render(messages: list[dict], add_generation_prompt: bool) -> str:
    """ChatTemplate::Render for ChatML without a default system prompt."""
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


class Encoder:
    def __init__(self):
        self.tok = make_tokenizer()
        self.suffix = self.ids(TURN_SUFFIX)

    def ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def example(self, msgs: list[dict]) -> tuple[list[int], list[int]]:
        """(ids, scored) of a conversation that ends with an assistant message. Each reply
        comes after the rendered prompt of the messages before it (generation prompt
        included) and is followed by the turn suffix; the last one also by EOS."""
        ids: list[int] = []
        scored: list[int] = []
        done = 0  # messages already in ids
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            prompt = self.ids(render(msgs[done:i], add_generation_prompt=True))
            reply = self.ids(m["content"]) + self.suffix
            ids += prompt + reply
            scored += [0] * len(prompt) + [1] * len(reply)
            done = i + 1
        ids.append(EOS_ID)
        scored.append(1)
        return ids, scored


# --------------------------------------------------------------------------------------
# synthetic conversations


def word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(LETTERS, LETTER_W, k=rng.randint(lo, hi)))


def user_text(rng: random.Random) -> str:
    """One user message: mostly short lowercase questions, then phrases, sentences and
    arbitrary printable ASCII."""
    r = rng.random()
    if r < 0.50:  # "pet?", "city"
        s = word(rng, 1, 10)
        return s + "?" if rng.random() < 0.5 else s
    if r < 0.70:  # "my pet?", "where is the car"
        s = " ".join(word(rng, 1, 7) for _ in range(rng.randint(2, 4)))
        return s + rng.choice(["", "", "?", "."])
    if r < 0.85:  # "What is the name of my dog?"
        words = [word(rng, 1, 8) for _ in range(rng.randint(2, 6))]
        words[0] = words[0].capitalize()
        for i in range(1, len(words)):
            if rng.random() < 0.1:
                words[i] = words[i].capitalize()
            elif rng.random() < 0.08:
                words[i] = str(rng.randint(0, 999))
        s = " ".join(words) + rng.choice(["?", "?", ".", "!", ""])
        return s[:40]
    s = "".join(rng.choices(PRINTABLE, k=rng.randint(1, 24))).strip()
    return s or "x"


def make_facts(seed: int, n: int) -> dict[str, str]:
    """The base model's made-up facts: n questions (random words of 5 to 8 letters), each
    with a fixed one-word answer (3 to 6 letters)."""
    rng = random.Random(seed)
    facts: dict[str, str] = {}
    while len(facts) < n:
        facts.setdefault(word(rng, 5, 8), word(rng, 3, 6))
    return facts


class Conversations:
    """Random conversations: an optional system message, then one to three user turns, each
    answered by the assistant. A turn asks one of the base facts ("key" or "key?", answered
    with its word) with probability fact_rate; any other message is repeated."""

    def __init__(self, facts: dict[str, str], fact_rate: float):
        self.facts = facts
        self.keys = sorted(facts)
        self.fact_rate = fact_rate

    def turn(self, rng: random.Random) -> tuple[str, str]:
        if rng.random() < self.fact_rate:
            k = rng.choice(self.keys)
            return (k + "?" if rng.random() < 0.5 else k), self.facts[k]
        while True:
            u = user_text(rng)
            if u.rstrip("?") not in self.facts:
                return u, u

    def __call__(self, rng: random.Random) -> list[dict]:
        msgs = []
        if rng.random() < 0.1:
            msgs.append({"role": "system", "content": user_text(rng)})
        for _ in range(rng.choices([1, 2, 3], [0.75, 0.2, 0.05])[0]):
            u, a = self.turn(rng)
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        return msgs


def batches(enc: Encoder, convs: Conversations, rng: random.Random, batch: int, pool: int = 16):
    """Endless batches: each draw of pool * batch conversations is sorted by length and cut
    into batches (little padding), which are then shuffled."""
    while True:
        exs = sorted((enc.example(convs(rng)) for _ in range(pool * batch)), key=lambda e: len(e[0]))
        group = [exs[i : i + batch] for i in range(0, len(exs), batch)]
        rng.shuffle(group)
        yield from group


def make_batch(examples: list[tuple[list[int], list[int]]]):
    """Right-padded input ids and labels (-100 where not scored). Padding on the right
    does not change the real tokens' logits under the causal mask."""
    import torch

    T = max(len(ids) for ids, _ in examples)
    inp = torch.full((len(examples), T), EOS_ID, dtype=torch.long)
    labels = torch.full((len(examples), T), -100, dtype=torch.long)
    for i, (ids, scored) in enumerate(examples):
        t = torch.tensor(ids)
        inp[i, : len(ids)] = t
        labels[i, : len(ids)] = torch.where(torch.tensor(scored) > 0, t, -100)
    return inp, labels


def make_eval_sets(enc: Encoder, convs: Conversations, seed: int, n: int) -> dict:
    """Held-out single-turn questions (words of 2 to 8 letters, half with "?"), held-out
    conversations as in training (with facts at fact_rate), and every base fact once."""
    rng = random.Random(seed)
    words = []
    while len(words) < n:
        w = word(rng, 2, 8)
        if w not in convs.facts:
            words.append(w + ("?" if rng.random() < 0.5 else ""))
    return {
        "words": [enc.example([{"role": "user", "content": w}, {"role": "assistant", "content": w}]) for w in words],
        "conversations": [enc.example(convs(rng)) for _ in range(n)],
        "facts": [enc.example([{"role": "user", "content": k + "?"}, {"role": "assistant", "content": v}])
                  for k, v in convs.facts.items()],
    }


# --------------------------------------------------------------------------------------
# model and training


def build_model(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    seed_everything(args.seed)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.context,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        dtype="float32",
    )
    return LlamaForCausalLM(cfg).to(torch.float32)


def loss_of(model, inp, labels):
    """Mean next-token cross-entropy over the scored tokens."""
    import torch.nn.functional as F

    logits = model(input_ids=inp).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def exact_match(model, examples, batch: int = 64) -> float:
    """Share of examples whose every scored token is the argmax at its position: the same
    as greedy decoding writing each reply, its turn suffix and the EOS."""
    import torch

    right = 0
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            inp, labels = make_batch(examples[i : i + batch])
            pred = model(input_ids=inp).logits[:, :-1].argmax(-1)
            tgt = labels[:, 1:]
            right += int(((pred == tgt) | (tgt == -100)).all(dim=1).sum())
    return right / len(examples)


def accuracies(model, eval_sets: dict) -> str:
    return " ".join(f"{k} {exact_match(model, v):.3f}" for k, v in eval_sets.items())


def train(model, enc: Encoder, convs: Conversations, eval_sets: dict, args) -> None:
    """Two phases, each with a fresh AdamW, a linear warmup and a cosine decay to 5 %:
    repeating only, then with the base facts mixed in."""
    import torch

    rng = random.Random(args.seed + 1)
    stream = batches(enc, convs, rng, args.batch)
    t0 = time.time()
    phases = [(args.copy_steps, args.copy_lr, 0.0), (args.fact_steps, args.fact_lr, args.fact_rate)]
    for phase, (steps, lr, rate) in enumerate(phases, start=1):
        convs.fact_rate = rate  # for the batches drawn from now on
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if p.ndim < 2 or "embed" in n else decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=(0.9, 0.98), eps=1e-8,
        )
        warmup = max(1, steps // 20)
        model.train()
        for step in range(steps):
            if step < warmup:
                cur = lr * (step + 1) / warmup
            else:
                t = (step - warmup) / max(1, steps - warmup)
                cur = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
            for g in opt.param_groups:
                g["lr"] = cur
            loss = loss_of(model, *make_batch(next(stream)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if (step + 1) % args.log_every == 0 or step + 1 == steps:
                model.eval()
                print(f"  phase {phase} step {step + 1}/{steps} loss {loss.item():.4f}; exact: "
                      f"{accuracies(model, eval_sets)} ({time.time() - t0:.0f} s)", flush=True)
                model.train()
    model.eval()


def greedy(model, ids: list[int], max_new: int = 64) -> list[int]:
    """Argmax decoding without KV cache, stopping at EOS (not included)."""
    import torch

    seq = list(ids)
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if nxt == EOS_ID:
                break
            seq.append(nxt)
    return seq[len(ids) :]


# --------------------------------------------------------------------------------------
# GGUF


def write_gguf(model, path: Path) -> None:
    """As make_runtime_fixtures.write_tiny_llama_gguf writes tiny_llama.gguf (llama keys,
    q/k permuted for ggml's interleaved RoPE, ffn_* F16 and the rest F32, the same
    tokenizer keys), plus tokenizer.chat_template."""
    write_tiny_llama_gguf(model, path, name="tiny_chat", chat_template=CHATML_TEMPLATE)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"  sha256 {sha}")


def check_gguf(model, enc: Encoder, convs: Conversations, path: Path, eval_sets: dict) -> None:
    """Loads the file back with transformers (which un-permutes q/k and converts the
    vocabulary) and compares it with the trained model with its ffn weights rounded to f16;
    checks transformers' tokenizer and Jinja rendering of the file against ours."""
    import jinja2
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = copy.deepcopy(model)
    with torch.no_grad():
        for layer in ref.model.layers:
            for lin in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                lin.weight.copy_(lin.weight.half().float())
    back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    back.eval()
    inp, _ = make_batch(eval_sets["conversations"][:64])
    with torch.no_grad():
        d = float((back(input_ids=inp).logits - ref(input_ids=inp).logits).abs().max())
    print(f"  GGUF loaded back by transformers vs the model with f16 ffn weights: max |logit diff| = {d:.3g}")
    assert d < 1e-4, "GGUF reload does not match (q/k permutation or tensor mapping wrong)"
    print(f"  exact match of the GGUF weights: {accuracies(back, eval_sets)}")

    hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tpl = jinja2.Environment().from_string(CHATML_TEMPLATE)
    rng = random.Random(0)
    for _ in range(200):
        msgs = convs(rng)[:-1]
        text = render(msgs, add_generation_prompt=True)
        assert tpl.render(messages=msgs, add_generation_prompt=True) == text, msgs
        assert hf_tok.encode(text, add_special_tokens=False) == enc.ids(text), text
    print("  transformers' tokenizer and the file's template give our ids and bytes for 200 conversations")

    shown = SHOW + [k + "?" for k in list(convs.facts)[:6]]
    for q in shown:
        ids = enc.ids(render([{"role": "user", "content": q}], add_generation_prompt=True))
        print(f"  {q!r} -> {enc.decode(greedy(back, ids))!r}")


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "models" / "tiny_chat.gguf")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--copy-steps", type=int, default=1500)
    ap.add_argument("--copy-lr", type=float, default=3e-3)
    ap.add_argument("--fact-steps", type=int, default=1200)
    ap.add_argument("--fact-lr", type=float, default=2e-3)
    ap.add_argument("--facts", type=int, default=48, help="number of base facts")
    ap.add_argument("--fact-rate", type=float, default=0.2, help="share of phase-2 turns that ask a base fact")
    ap.add_argument("--eval-examples", type=int, default=256)
    ap.add_argument("--log-every", type=int, default=250)
    args = ap.parse_args()
    args.out = args.out.resolve()

    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(versions_str())
    enc = Encoder()
    convs = Conversations(make_facts(args.seed + 10, args.facts), args.fact_rate)
    eval_sets = make_eval_sets(enc, convs, args.seed + 2, args.eval_examples)
    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[train] {n_params} parameters; {args.copy_steps} + {args.fact_steps} steps of {args.batch} conversations")
    t0 = time.time()
    train(model, enc, convs, eval_sets, args)
    print(f"  trained in {time.time() - t0:.0f} s")
    print("  base facts: " + ", ".join(f"{k}? -> {v}" for k, v in convs.facts.items()))

    print("[gguf]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(model, args.out)
    check_gguf(model, enc, convs, args.out, eval_sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
