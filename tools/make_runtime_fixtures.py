#!/usr/bin/env python3
"""Generate golden fixtures for the runtime C++ tests from reference implementations.

Reference implementations: Hugging Face transformers / tokenizers (tokenizer, chat
template, forward pass, greedy generation) and the `gguf` Python package (GGUF writer,
quantizers and dequantizers).

Outputs (under --out, default tests/fixtures):
  tokenizer/smollm2_tokens.json   tokenizer + chat template goldens for SmolLM2-135M-Instruct
  logits/smollm2_logits.json      per-position logits (top-10 + fixed probe set), greedy ids
  models/tiny_llama/              tiny random Llama, one model.safetensors
  models/tiny_qwen2/              tiny random Qwen2 (q/k/v biases, tied embeddings), sharded
  models/tiny_llama.gguf          tiny_llama converted to GGUF the way convert_hf_to_gguf.py does
  models/tiny_logits.json         forward-pass logits of the three tiny models
  gguf/quants.gguf                one tensor per quant type + one metadata key per value type
  gguf/quants_ref.json            dequantized values and metadata values for quants.gguf

Everything is seeded; running the script twice gives identical files (the safetensors
and GGUF files byte for byte, the JSON files text for text) with the same library versions.
Nothing is downloaded: the SmolLM2 model comes from the local GGUF file given by --model.

Usage:
  python tools/make_runtime_fixtures.py --model /path/to/SmolLM2-135M-Instruct.Q4_1.gguf \
      [--out tests/fixtures] [--only tokenizer,logits,tiny,quants]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

SEED = 20240601
TOP_K = 10
N_PROBES = 256
N_GREEDY = 16

# --------------------------------------------------------------------------------------
# utilities


def f32(x) -> float:
    """A Python float equal to the float32 value of x (its repr round-trips float32 exactly)."""
    return float(np.float32(x))


def f32_list(a) -> list[float]:
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    return [float(v) for v in a]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj, compact: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compact:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=1, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"  wrote {path} ({path.stat().st_size} bytes)")


def write_json_lines(path: Path, obj: dict) -> None:
    """Like write_json, but list values of the top-level object get one element per line
    (readable diffs for case lists)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def dumps(v):
        return json.dumps(v, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)

    parts = []
    for k, v in obj.items():
        if isinstance(v, list):
            body = ",\n".join("  " + dumps(x) for x in v)
            parts.append(f" {dumps(k)}: [\n{body}\n ]")
        else:
            parts.append(f" {dumps(k)}: {dumps(v)}")
    text = "{\n" + ",\n".join(parts) + "\n}\n"
    assert json.loads(text) == obj
    path.write_text(text, encoding="utf-8")
    print(f"  wrote {path} ({path.stat().st_size} bytes)")


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "tokenizers", "gguf", "numpy", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def versions_str() -> str:
    return ", ".join(f"{k} {v}" for k, v in versions().items())


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_smollm2_tokenizer(model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)


def gguf_string_field(model_path: Path, key: str) -> str | None:
    from gguf import GGUFReader

    reader = GGUFReader(str(model_path))
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


# --------------------------------------------------------------------------------------
# 1. tokenizer

TOKENIZER_CASES: list[str] = [
    # plain ASCII
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "This is a test of the tokenizer. It has two sentences.",
    "hello",
    "HELLO WORLD",
    "a",
    "A",
    "Attune learns from feedback while the device is idle and charging.",
    # empty / whitespace
    "",
    " ",
    "  ",
    "   leading",
    "trailing   ",
    " \n ",
    "\n",
    "\n\n\n",
    "\t",
    "a\tb\t\tc",
    "line one\nline two\n\nline four",
    "mixed \t \n whitespace\r\nwindows line",
    "word     five spaces",
    "Hello  world",
    "x\n\n  y",
    "  two leading spaces and two trailing  ",
    # digits and numbers
    "12345678",
    "3.14159",
    "1,000,000",
    "0",
    "In 2024 there were 365 days and 8760 hours.",
    "-42 +7 1e-5 0x1F 0b1010",
    "Call 555-0123 at 9:30am.",
    # contractions and case
    "don't",
    "I'M",
    "we'll",
    "they've",
    "She'd say it's what you're doing",
    "DON'T SHOUT, WE'RE HERE",
    # accents / Latin
    "café résumé naïve",
    "Español: mañana, niño, señor",
    "Größe über Müller",
    "Ångström Åland",
    "Œuvre, façade, déjà vu",
    # CJK
    "中文",
    "我爱自然语言处理。",
    "日本語",
    "こんにちは、世界！カタカナ",
    "한국어",
    "안녕하세요 세계",
    # RTL and Indic
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "Русский текст: привет, мир!",
    "Ελληνικά: γειά σου κόσμε",
    # emoji
    "😀",
    "I love pizza 🍕🍕!",
    "👨‍👩‍👧‍👦",
    "👩🏽‍💻 coding",
    "🇫🇷🇯🇵🇺🇸",
    "❤️ ✨ 🎉",
    # mixed scripts
    "English, 中文, русский и العربية together",
    "mix日本語andEnglish123",
    # code
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tprint(i)",
    "class Foo:\n    def __init__(self):\n        self.x = [1, 2, 3]\n",
    "#include <iostream>\nint main() {\n    std::cout << \"hi\" << std::endl;\n    return 0;\n}\n",
    "template <typename T>\nT max(T a, T b) { return a > b ? a : b; }",
    "{\n  \"name\": \"attune\",\n  \"version\": 1,\n  \"tags\": [\"a\", \"b\"],\n  \"ok\": true\n}",
    "x = {'key': None, \"other\": 3.5}  # comment",
    "if (a && b || !c) { x += 1; y <<= 2; }",
    # special tokens
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|endoftext|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text before<|endoftext|>text after",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "<file_sep>x",
    "a<jupyter_code>b",
    " <|im_end|> ",
    "<|im_end|>\n\n",
    # URLs / paths / emails
    "https://example.com/path?query=1&x=y#frag",
    "Visit http://www.example.org or mail me@example.com",
    "C:\\Users\\name\\file.txt and /usr/local/bin",
    # punctuation
    "!!!???...",
    "Wait... what?! No way!!!",
    "\"quoted\" 'single' (parens) [brackets] {braces}",
    "---===***___",
    "...",
    # math
    "∀x ∈ ℝ: x² ≥ 0",
    "E = mc² and ∑_{i=1}^{n} i = n(n+1)/2",
    "√2 ≈ 1.414, π ≈ 3.14159, ∞ ≠ 0",
    "a+b=c; a*b/c-d%e^f",
    # misc
    "naïve café — “smart quotes” – en dash … ellipsis",
    "Zero\u200bwidth space and non\u00a0breaking",
]


def make_tokenizer_fixture(model_path: Path, out: Path) -> None:
    print("[tokenizer]")
    tok = load_smollm2_tokenizer(model_path)
    cases = []
    mismatches = 0
    for text in TOKENIZER_CASES:
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != text:
            mismatches += 1
            print(f"  decode differs: {text!r} -> {decoded!r}")
        cases.append({"text": text, "ids": [int(i) for i in ids], "decoded": decoded})

    chat_cases = []
    conversations = [
        [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        [
            {"role": "user", "content": "Hi! Can you help me?"},
            {"role": "assistant", "content": "Of course. What do you need?"},
            {"role": "user", "content": "Write a haiku about the sea."},
        ],
    ]
    for messages in conversations:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok.encode(text, add_special_tokens=False)
        chat_cases.append({"messages": messages, "text": text, "ids": [int(i) for i in ids]})

    chat_template = gguf_string_field(model_path, "tokenizer.chat_template")
    assert chat_template == tok.chat_template, "tokenizer chat_template differs from GGUF metadata"

    source = (
        f"transformers AutoTokenizer.from_pretrained(dir, gguf_file='{model_path.name}') "
        f"(fast tokenizer converted from the GGUF vocab/merges); "
        "ids = tok.encode(text, add_special_tokens=False); "
        "decoded = tok.decode(ids, skip_special_tokens=False); "
        "chat[].text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), "
        "chat[].ids = tok.encode(chat[].text, add_special_tokens=False); "
        "chat_template = GGUF metadata tokenizer.chat_template; "
        f"generated by tools/make_runtime_fixtures.py; {versions_str()}"
    )
    write_json_lines(
        out / "tokenizer" / "smollm2_tokens.json",
        {"source": source, "cases": cases, "chat": chat_cases, "chat_template": chat_template},
    )
    print(f"  {len(cases)} cases, {mismatches} where decode(encode(text)) != text")


# --------------------------------------------------------------------------------------
# 2. SmolLM2 logits

LOGIT_USER_PROMPTS = ["What is the capital of France?", "Write a haiku about the sea."]
LOGIT_PLAIN_PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def make_logits_fixture(model_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    print("[logits]")
    seed_everything(SEED)
    tok = load_smollm2_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    )
    model.eval()
    vocab = model.config.vocab_size

    rng = np.random.default_rng(SEED)
    probe_ids = sorted(int(i) for i in rng.choice(vocab, size=N_PROBES, replace=False))
    probe_t = torch.tensor(probe_ids, dtype=torch.long)

    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in LOGIT_USER_PROMPTS
    ] + [LOGIT_PLAIN_PROMPT]

    # Greedy decoding that never stops early: EOS handling is disabled so there are always
    # exactly N_GREEDY ids (an EOS id, if chosen, is simply recorded and decoding continues).
    model.generation_config.eos_token_id = None
    gen_cfg = GenerationConfig(
        do_sample=False,
        max_new_tokens=N_GREEDY,
        min_new_tokens=0,
        eos_token_id=None,
        pad_token_id=model.config.pad_token_id if model.config.pad_token_id is not None else 0,
        use_cache=True,
    )

    prompts = []
    with torch.no_grad():
        for text in texts:
            ids = tok.encode(text, add_special_tokens=False)
            inp = torch.tensor([ids], dtype=torch.long)
            logits = model(input_ids=inp, attention_mask=torch.ones_like(inp)).logits[0].float()
            positions = []
            for p in range(logits.shape[0]):
                row = logits[p]
                top = torch.topk(row, TOP_K, sorted=True)
                positions.append(
                    {
                        "top_ids": [int(i) for i in top.indices],
                        "top_logits": f32_list(top.values.numpy()),
                        "probe_logits": f32_list(row[probe_t].numpy()),
                    }
                )
            gen = model.generate(inp, attention_mask=torch.ones_like(inp), generation_config=gen_cfg)
            greedy = [int(i) for i in gen[0, len(ids):]]
            assert len(greedy) == N_GREEDY, greedy

            # cross-check generate() against a plain argmax loop without KV cache
            seq = list(ids)
            manual = []
            for _ in range(N_GREEDY):
                lg = model(input_ids=torch.tensor([seq])).logits[0, -1]
                nxt = int(torch.argmax(lg))
                manual.append(nxt)
                seq.append(nxt)
            if manual != greedy:
                print(f"  WARNING: generate() {greedy} != argmax loop {manual}")

            print(f"  {text!r}: {len(ids)} tokens -> {tok.decode(greedy)!r}")
            prompts.append(
                {
                    "text": text,
                    "ids": [int(i) for i in ids],
                    "positions": positions,
                    "greedy_ids": greedy,
                    "max_abs_logit": f32(logits.abs().max().item()),
                }
            )

    source = (
        f"transformers AutoModelForCausalLM.from_pretrained(dir, gguf_file='{model_path.name}', "
        "dtype=torch.float32) (Q4_1/Q8_0 weights dequantized to float32 by transformers), CPU, "
        "full-sequence forward pass without KV cache; "
        f"gguf sha256 {sha256_file(model_path)}; "
        f"probe_ids = sorted(numpy.random.default_rng({SEED}).choice({vocab}, {N_PROBES}, replace=False)); "
        f"greedy_ids = model.generate(do_sample=False, max_new_tokens={N_GREEDY}, eos_token_id=None) "
        "(EOS does not stop decoding, always 16 ids; identical to an argmax loop); "
        "prompt ids = tok.encode(text, add_special_tokens=False), no BOS added; "
        f"generated by tools/make_runtime_fixtures.py; {versions_str()}"
    )
    write_json(
        out / "logits" / "smollm2_logits.json",
        {"source": source, "probe_ids": probe_ids, "prompts": prompts},
        compact=True,
    )


# --------------------------------------------------------------------------------------
# 3. tiny models

TINY_COMMON = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)
TINY_IDS = [1, 17, 42, 99, 5, 127, 64, 3, 88, 23, 110, 7, 56, 31, 0, 77]


def reinit_tiny(model, seed: int) -> None:
    """Deterministic re-initialisation with magnitudes that make every part of the network
    matter for the logits (the default std=0.02 init gives nearly uniform attention, which
    would hide RoPE / q-k permutation bugs)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # linear weights [out, in]
                fan_in = p.shape[1]
                scale = 2.0 if (".q_proj." in name or ".k_proj." in name) else 1.0
                p.copy_(scale * torch.randn(p.shape, generator=g) / fan_in**0.5)


def permute_qk(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half layout -> GGML interleaved RoPE)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 byte-level BPE byte -> printable unicode char map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


# merged tokens placed in the slots of the (otherwise unused) control bytes 0x01..0x04
TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġ", "a"), ("i", "n")]


def tiny_gguf_vocab() -> tuple[list[str], list[int], list[str]]:
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(128)]
    for slot, (a, b) in enumerate(TINY_MERGES, start=1):
        tokens[slot] = a + b
    tokens[127] = "<|endoftext|>"
    types = [1] * 128  # NORMAL
    types[127] = 3  # CONTROL
    merges = [f"{a} {b}" for a, b in TINY_MERGES]
    return tokens, types, merges


def write_tiny_llama_gguf(model, path: Path, name: str = "tiny_llama", chat_template: str | None = None) -> None:
    """tiny_llama.gguf's layout (also tools/make_tiny_chat_model.py's, which adds a chat
    template): llama keys, q/k permuted for ggml's interleaved RoPE, ffn_* F16 and the rest
    F32, the 128-token byte-level vocabulary."""
    import gguf

    cfg = model.config
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = cfg.hidden_size // n_head

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(head_dim)

    tokens, types, merges = tiny_gguf_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(127)
    w.add_eos_token_id(127)
    w.add_add_bos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    def f32t(name, a):
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    def f16t(name, a):
        w.add_tensor(name, np.ascontiguousarray(a.astype(np.float16)))

    f32t("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        f32t(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        f32t(b + "attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], n_head, n_head))
        f32t(b + "attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], n_head, n_kv))
        f32t(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        f32t(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        f32t(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        f16t(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        f16t(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        f16t(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    f32t("output_norm.weight", sd["model.norm.weight"])
    f32t("output.weight", sd["lm_head.weight"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"  wrote {path} ({path.stat().st_size} bytes)")


def make_tiny_fixtures(out: Path) -> None:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    print("[tiny models]")
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([TINY_IDS], dtype=torch.long)

    def logits_of(m):
        m.eval()
        with torch.no_grad():
            return m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float().numpy()

    # --- tiny_llama
    seed_everything(SEED)
    llama_cfg = LlamaConfig(
        **TINY_COMMON, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, dtype="float32"
    )
    llama = LlamaForCausalLM(llama_cfg).to(torch.float32)
    reinit_tiny(llama, SEED + 1)
    llama_dir = models_dir / "tiny_llama"
    shutil.rmtree(llama_dir, ignore_errors=True)
    llama.save_pretrained(str(llama_dir), safe_serialization=True)
    llama_re = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32)
    logits_llama = logits_of(llama_re)
    assert np.array_equal(logits_llama, logits_of(llama)), "tiny_llama reload changed logits"

    # --- tiny_qwen2 (sharded, tied embeddings, q/k/v biases)
    seed_everything(SEED)
    qwen_cfg = Qwen2Config(
        **TINY_COMMON, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, dtype="float32"
    )
    qwen = Qwen2ForCausalLM(qwen_cfg).to(torch.float32)
    reinit_tiny(qwen, SEED + 2)
    assert qwen.lm_head.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()
    for layer in qwen.model.layers:
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
            assert proj.bias is not None and float(proj.bias.detach().abs().min()) > 0.0
    qwen_dir = models_dir / "tiny_qwen2"
    shutil.rmtree(qwen_dir, ignore_errors=True)
    qwen.save_pretrained(str(qwen_dir), safe_serialization=True, max_shard_size="100KB")
    shards = sorted(qwen_dir.glob("model-*.safetensors"))
    assert (qwen_dir / "model.safetensors.index.json").exists() and len(shards) >= 2, shards
    qwen_re = AutoModelForCausalLM.from_pretrained(str(qwen_dir), dtype=torch.float32)
    logits_qwen = logits_of(qwen_re)
    assert np.array_equal(logits_qwen, logits_of(qwen)), "tiny_qwen2 reload changed logits"

    # --- tiny_llama.gguf
    gguf_path = models_dir / "tiny_llama.gguf"
    write_tiny_llama_gguf(llama, gguf_path)
    llama_gguf = AutoModelForCausalLM.from_pretrained(
        str(models_dir), gguf_file=gguf_path.name, dtype=torch.float32
    )
    logits_gguf = logits_of(llama_gguf)

    # expected: the original model with its ffn weights rounded to f16
    llama_f16ffn = AutoModelForCausalLM.from_pretrained(str(llama_dir), dtype=torch.float32)
    with torch.no_grad():
        for layer in llama_f16ffn.model.layers:
            for lin in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                lin.weight.copy_(lin.weight.half().float())
    logits_f16ffn = logits_of(llama_f16ffn)
    d_exact = float(np.abs(logits_gguf - logits_f16ffn).max())
    d_orig = float(np.abs(logits_gguf - logits_llama).max())
    print(f"  tiny_llama_gguf vs f16-ffn reference: max|diff| = {d_exact:.3g}; vs original: {d_orig:.3g}")
    assert d_exact < 1e-4, "GGUF reload does not match (q/k permutation or tensor mapping wrong)"

    # the tiny GGUF tokenizer must be accepted by transformers' GGUF tokenizer converter too
    tiny_tok = AutoTokenizer.from_pretrained(str(models_dir), gguf_file=gguf_path.name)
    print(f"  tiny gguf tokenizer: 'the cat' -> {tiny_tok.encode('the cat', add_special_tokens=False)}")

    write_json(
        models_dir / "tiny_logits.json",
        {
            "ids": TINY_IDS,
            "tiny_llama": [f32_list(r) for r in logits_llama],
            "tiny_qwen2": [f32_list(r) for r in logits_qwen],
            "tiny_llama_gguf": [f32_list(r) for r in logits_gguf],
        },
        compact=True,
    )


# --------------------------------------------------------------------------------------
# 4. quantization types + metadata value types

QUANT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]

# byte offsets of the f16 scale fields inside one block, for types filled with random bytes
F16_SCALE_OFFSETS = {"Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def metadata_spec():
    """(key, GGUFValueType name, value, sub_type name) for every GGUF metadata value type."""
    return [
        ("test.u8", "UINT8", 7, None),
        ("test.i8", "INT8", -8, None),
        ("test.u16", "UINT16", 65000, None),
        ("test.i16", "INT16", -32000, None),
        ("test.u32", "UINT32", 4000000000, None),
        ("test.i32", "INT32", -2000000000, None),
        ("test.u64", "UINT64", 12345678901234567890, None),
        ("test.i64", "INT64", -1234567890123456789, None),
        ("test.f32", "FLOAT32", f32(0.1), None),
        ("test.f64", "FLOAT64", 2.718281828459045, None),
        ("test.bool", "BOOL", True, None),
        ("test.bool_false", "BOOL", False, None),
        ("test.str", "STRING", "héllo wörld ✓", None),
        ("test.str_empty", "STRING", "", None),
        ("test.arr_i32", "ARRAY", [1, -2, 3, 2147483647, -2147483648], "INT32"),
        ("test.arr_f32", "ARRAY", [f32(0.5), f32(-1.25), f32(3.3)], "FLOAT32"),
        ("test.arr_str", "ARRAY", ["alpha", "", "γάμμα", "<|im_end|>"], "STRING"),
        ("test.arr_nested", "ARRAY", [[1, 2, 3], [4], [5, 6]], "ARRAY"),
    ]


def parse_gguf_kv(path: Path) -> tuple[dict, dict]:
    """Minimal independent GGUF v3 metadata parser (little endian): {key: value}, {key: type}."""
    import struct

    names = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32",
             7: "BOOL", 8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"}
    fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    buf = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        (v,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    def value(t):
        nonlocal pos
        if t in fmts:
            return take(fmts[t])
        if t == 8:
            n = take("<Q")
            s = buf[pos : pos + n].decode("utf-8")
            pos += n
            return s
        sub = take("<I")
        n = take("<Q")
        items = [value(sub) for _ in range(n)]
        return items

    assert buf[:4] == b"GGUF" and struct.unpack_from("<I", buf, 4)[0] == 3
    pos = 8
    take("<Q")  # tensor count
    n_kv = take("<Q")
    kv, types = {}, {}
    for _ in range(n_kv):
        n = take("<Q")
        key = buf[pos : pos + n].decode("utf-8")
        pos += n
        t = take("<I")
        if t == 9:
            sub = struct.unpack_from("<I", buf, pos)[0]
            tn = f"ARRAY[{names[sub]}]"
            if sub == 9:
                inner = struct.unpack_from("<I", buf, pos + 12)[0]
                tn = f"ARRAY[ARRAY[{names[inner]}]]"
        else:
            tn = names[t]
        kv[key] = value(t)
        types[key] = tn
    return kv, types


def make_quants_fixture(out: Path) -> None:
    import gguf
    from gguf import GGMLQuantizationType as QT
    from gguf import GGUFValueType as VT

    print("[quants]")
    rng = np.random.default_rng(SEED)
    gdir = out / "gguf"
    gdir.mkdir(parents=True, exist_ok=True)
    path = gdir / "quants.gguf"

    w = gguf.GGUFWriter(str(path), "test")
    meta_ref = {"general.architecture": "test"}
    meta_types = {"general.architecture": "STRING"}
    for key, vtype, value, sub in metadata_spec():
        w.add_key_value(key, value, VT[vtype], sub_type=VT[sub] if sub else None)
        meta_ref[key] = value
        meta_types[key] = vtype if sub is None else f"ARRAY[{sub if sub != 'ARRAY' else 'ARRAY[INT32]'}]"

    tensors_ref = {}
    raw_by_name = {}
    for tname in QUANT_TYPES:
        qt = QT[tname]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        data = (rng.standard_normal((2, 256)) * rng.uniform(0.5, 3.0)).astype(np.float32)
        data[0, :8] = [0.0, -0.0, 1.0, -1.0, 0.5, 100.0, -100.0, 1e-3]
        try:
            raw = gguf.quants.quantize(data, qt)
            how = "gguf.quants.quantize"
        except NotImplementedError:
            nblocks = 2 * 256 // block_size
            raw = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)
            for off in F16_SCALE_OFFSETS[tname]:
                scale = rng.uniform(-0.1, 0.1, size=nblocks).astype(np.float16)
                raw[:, off : off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
            raw = raw.reshape(2, -1)
            how = "seeded random bytes, f16 scales in [-0.1, 0.1]"
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(2, -1)
        assert raw.shape[1] == 256 // block_size * type_size
        values = gguf.quants.dequantize(raw, qt).astype(np.float32)
        assert values.shape == (2, 256) and np.all(np.isfinite(values)), tname
        name = tname.lower()
        w.add_tensor(name, raw, raw_dtype=qt)
        raw_by_name[name] = raw
        tensors_ref[name] = {"type": tname, "shape": [256, 2], "values": f32_list(values)}
        print(f"  {name}: {how}, {raw.nbytes} bytes")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"  wrote {path} ({path.stat().st_size} bytes)")

    # read back
    reader = gguf.GGUFReader(str(path))
    assert reader.alignment == 32
    for t in reader.tensors:
        ref = tensors_ref[t.name]
        assert t.tensor_type.name == ref["type"] and [int(x) for x in t.shape] == ref["shape"], t.name
        assert np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), raw_by_name[t.name].reshape(-1))
    # GGUFReader flattens nested arrays, so check the metadata with an independent parser
    kv, types = parse_gguf_kv(path)
    assert kv == meta_ref, (kv, meta_ref)
    assert types == meta_types, (types, meta_types)

    write_json(
        gdir / "quants_ref.json",
        {
            "tensors": tensors_ref,
            "metadata": meta_ref,
            "metadata_types": meta_types,
            "alignment": 32,
        },
        compact=True,
    )


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct GGUF file (tokenizer + logits fixtures)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "fixtures")
    ap.add_argument("--only", default="tokenizer,logits,tiny,quants", help="comma list of fixture groups")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - {"tokenizer", "logits", "tiny", "quants"}
    if unknown:
        ap.error(f"unknown groups: {sorted(unknown)}")
    if groups & {"tokenizer", "logits"} and (args.model is None or not args.model.is_file()):
        ap.error("--model must point to the SmolLM2 GGUF file for the tokenizer/logits fixtures")

    print(versions_str())
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if "tokenizer" in groups:
        make_tokenizer_fixture(args.model.resolve(), out)
    if "logits" in groups:
        make_logits_fixture(args.model.resolve(), out)
    if "tiny" in groups:
        make_tiny_fixtures(out)
    if "quants" in groups:
        make_quants_fixture(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
