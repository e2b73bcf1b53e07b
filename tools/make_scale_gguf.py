#!/usr/bin/env python3
"""Write a random-weight Llama GGUF with the shapes of Llama-3.2-1B, for speed and memory
benchmarks of the runtime against llama.cpp at a realistic size.

The weights are random, so the model's text is meaningless: use the file only to time prefill
and decode and to measure memory, never to judge output. The file is generated on the machine
that runs the benchmark (about 1.3 GB for Q8_0, 0.8 GB for Q4_K_M) and is never committed.

Shapes (Llama-3.2-1B's config.json): 16 layers, hidden 2048, intermediate 8192, 32 query
heads and 8 KV heads of head_dim 64, vocab 128256, tied embeddings (token_embd.weight only,
no output.weight, as llama.cpp writes Llama-3.2-1B), RMSNorm eps 1e-5, RoPE theta 500000,
declared context length 131072 (--context-length). The declared context is metadata only:
llama.cpp allocates its KV cache for the n_ctx its caller asks for (bench/runtime/
compare_llamacpp.py asks for 512) and our runtime sizes each request's KV cache to the prompt
plus --max-tokens, but our loader builds its RoPE cos/sin tables for the whole declared
context (131072 x 32 x 2 floats = 32 MiB resident), which counts in its peak RSS.

What differs from the real model:
- No rope_freqs.weight tensor and no rope.scaling keys: Llama-3.2's "llama3" frequency
  scaling is left out (plain RoPE with theta 500000), because our loader refuses
  rope_freqs.weight rather than ignore it. The real file's rope_freqs.weight is 32 floats;
  no matrix shape changes.
- Tokenizer: no Llama-3 tokenizer is available offline, so SmolLM2's (byte-level BPE, pre
  "smollm", its 49152 tokens, merges, special token ids and ChatML chat template) is copied
  from SmolLM2-135M-Instruct.Q4_1.gguf (--tokenizer-from) and its token list is padded to
  128256 with "<|reserved_N|>" tokens of type UNUSED, so the vocabulary, the embedding and
  the output head have Llama-3's real size. UNUSED (not CONTROL) keeps the 79104 padding
  tokens out of both tokenizers' special-token matching, which scans every control token
  at every position of the text. Generated ids often fall in the padding (random logits);
  llama.cpp prints them as nothing, our runtime as their text.
- Norm weights are 1. Every matrix is random with about N(0, 0.02) entries, so activations
  stay finite through all layers.

Types (--type):
- q8_0: every matrix Q8_0, quantized from N(0, 0.02) floats with gguf.quants.
- q4_k_m: the Q4_K_M mix of llama.cpp's llama-quant.cpp (llama_tensor_get_type_impl) for a
  llama model with tied embeddings: token_embd.weight (which serves as the output head)
  Q6_K; attn_v.weight and ffn_down.weight Q6_K in the layers where use_more_bits(i, n)
  holds (i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2: layers 0, 1, 4, 7, 10, 13, 14, 15 of
  16); every other matrix Q4_K. gguf.quants cannot quantize to Q4_K or Q6_K (it only
  dequantizes them), and random weights need no quantizer: the script builds valid blocks
  directly from random super-block scales, random 6-bit sub-block scales and mins (Q4_K) or
  random int8 sub-block scales (Q6_K), and random 4-/6-bit codes, chosen so the values have
  mean about 0 and standard deviation about 0.02. The first blocks of every tensor are
  checked against gguf.quants.dequantize.
Norms are F32 in both.

Memory: tensor infos are written first, then each tensor's data is generated and written a
slab of rows at a time (4M values), so the script's peak RSS stays near 220 MB whatever the
tensor size. The same --seed writes the same bytes.

Usage:
  python tools/make_scale_gguf.py --out /path/llama1b-shape.q8_0.gguf --type q8_0
  python tools/make_scale_gguf.py --out /path/llama1b-shape.q4_k_m.gguf --type q4_k_m
Options: --layers N (default 16; fewer makes a small test file), --seed S (default 0),
--context-length N (default 131072), --tokenizer-from PATH (default: the SmolLM2 GGUF in
the Attune model cache).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

HIDDEN = 2048
INTERMEDIATE = 8192
N_HEADS = 32
N_KV_HEADS = 8
HEAD_DIM = 64
VOCAB = 128256
ROPE_THETA = 500000.0
RMS_EPS = 1e-5
STD = 0.02
QK_K = 256
SLAB_ELEMS = 1 << 22  # elements generated at once (16 MiB as float32)


def default_tokenizer_source() -> str:
    cache = os.environ.get("ATTUNE_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attune")
    return os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    # llama-quant.cpp's use_more_bits (C integer division and remainder; i - n/8 is only
    # negative when i < n/8, which the first test already takes).
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def tensor_plan(n_layers: int, kind: str) -> list[tuple[str, tuple[int, int] | tuple[int], QT]]:
    """(name, numpy shape [rows, cols], type) in file order: token_embd, the blocks, output_norm."""
    def mat(name: str, rows: int, cols: int, layer: int | None) -> tuple:
        if kind == "q8_0":
            t = QT.Q8_0
        elif name == "token_embd.weight":
            t = QT.Q6_K  # tied: quantized as the output tensor
        elif name.endswith((".attn_v.weight", ".ffn_down.weight")) and use_more_bits(layer, n_layers):
            t = QT.Q6_K
        else:
            t = QT.Q4_K
        return (name, (rows, cols), t)

    plan = [mat("token_embd.weight", VOCAB, HIDDEN, None)]
    q_out, kv_out = N_HEADS * HEAD_DIM, N_KV_HEADS * HEAD_DIM
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (HIDDEN,), QT.F32),
            mat(b + "attn_q.weight", q_out, HIDDEN, i),
            mat(b + "attn_k.weight", kv_out, HIDDEN, i),
            mat(b + "attn_v.weight", kv_out, HIDDEN, i),
            mat(b + "attn_output.weight", HIDDEN, q_out, i),
            (b + "ffn_norm.weight", (HIDDEN,), QT.F32),
            mat(b + "ffn_gate.weight", INTERMEDIATE, HIDDEN, i),
            mat(b + "ffn_up.weight", INTERMEDIATE, HIDDEN, i),
            mat(b + "ffn_down.weight", HIDDEN, INTERMEDIATE, i),
        ]
    plan.append(("output_norm.weight", (HIDDEN,), QT.F32))
    return plan


# --------------------------------------------------------------------------------------
# K-quant blocks built from their parts (ggml-common.h: block_q4_K, block_q6_K)


def q4_k_parts(rng: np.random.Generator, nb: int) -> dict:
    # value = d * sc[s] * q - dmin * m[s] for element e of sub-block s = e // 32,
    # q uniform in 0..15 (mean 7.5, sd 4.61). dmin = 8 d and m = round(15 sc / 16) make the
    # mean offset at most 4 d against a step d * sc >= 32 d.
    sc = rng.integers(32, 64, size=(nb, 8), dtype=np.uint8)
    m = np.rint(sc.astype(np.float32) * (15.0 / 16.0)).astype(np.uint8)
    step = STD / np.sqrt((16 * 16 - 1) / 12.0)
    d = (step / 47.5 * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16)
    dmin = (d.astype(np.float32) * 8.0).astype(np.float16)
    q = rng.integers(0, 16, size=(nb, QK_K), dtype=np.uint8)
    return {"d": d, "dmin": dmin, "sc": sc, "m": m, "q": q}


def q4_k_pack(p: dict) -> np.ndarray:
    nb = p["q"].shape[0]
    sc, m = p["sc"], p["m"]
    scales = np.empty((nb, 12), dtype=np.uint8)
    # get_scale_min_k4: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scale) and 4..7
    # (min); sub-blocks 4..7 as a low nibble in bytes 8..11 and 2 high bits on top of 0..7.
    scales[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    # qs: 4 chunks of 64 elements, 32 bytes each; low nibbles hold the first 32 elements.
    q = p["q"].reshape(nb, 4, 2, 32)
    qs = (q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(nb, 128)
    return np.concatenate([p["d"].reshape(nb, 1).view(np.uint8), p["dmin"].reshape(nb, 1).view(np.uint8),
                           scales, qs], axis=1)


def q4_k_values(p: dict) -> np.ndarray:
    nb = p["q"].shape[0]
    d = p["d"].astype(np.float32)[:, None] * p["sc"].astype(np.float32)
    dm = p["dmin"].astype(np.float32)[:, None] * p["m"].astype(np.float32)
    q = p["q"].reshape(nb, 8, 32).astype(np.float32)
    return (d[:, :, None] * q - dm[:, :, None]).reshape(nb, QK_K)


def q6_k_parts(rng: np.random.Generator, nb: int) -> dict:
    # value = d * sc[e // 16] * (q - 32), q uniform in 0..63 (sd 18.47), sc int8 of random
    # sign and magnitude 16..63.
    mag = rng.integers(16, 64, size=(nb, 16))
    sign = np.where(rng.integers(0, 2, size=(nb, 16)) == 0, -1, 1)
    sc = (mag * sign).astype(np.int8)
    step = STD / np.sqrt((64 * 64 - 1) / 12.0)
    d = (step / 39.5 * rng.uniform(0.8, 1.2, size=nb)).astype(np.float16)
    q = rng.integers(0, 64, size=(nb, QK_K), dtype=np.uint8)
    return {"d": d, "sc": sc, "q": q}


def q6_k_pack(p: dict) -> np.ndarray:
    nb = p["q"].shape[0]
    # Each half of 128 elements is 4 quarters of 32: quarter k's low 4 bits go to
    # ql[64h + 32 (k & 1) + l] (low nibble for k < 2, high for k >= 2) and its high 2 bits to
    # qh[32h + l] at bit 2k (dequantize_row_q6_K).
    q = p["q"].reshape(nb, 2, 4, 32)
    lo, hi = q & 15, q >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2)
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    return np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), p["sc"].view(np.uint8),
                           p["d"].reshape(nb, 1).view(np.uint8)], axis=1)


def q6_k_values(p: dict) -> np.ndarray:
    nb = p["q"].shape[0]
    d = p["d"].astype(np.float32)[:, None] * p["sc"].astype(np.float32)
    q = p["q"].reshape(nb, 16, 16).astype(np.float32) - 32.0
    return (d[:, :, None] * q).reshape(nb, QK_K)


K_QUANTS = {QT.Q4_K: (q4_k_parts, q4_k_pack, q4_k_values), QT.Q6_K: (q6_k_parts, q6_k_pack, q6_k_values)}


def check_blocks(name: str, t: QT, blocks: np.ndarray, expected: np.ndarray) -> None:
    """Our layout must decode, through gguf.quants, to the values we meant."""
    got = gguf.quants.dequantize(blocks, t).reshape(expected.shape)
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)[0]
        sys.exit(f"{name}: {t.name} blocks do not round-trip through gguf.quants.dequantize "
                 f"(first mismatch at {tuple(bad)}: {got[tuple(bad)]} != {expected[tuple(bad)]})")


# --------------------------------------------------------------------------------------
# tensor data, a slab of rows at a time


class Slabs:
    """A tensor's bytes produced a slab of rows at a time. GGUFWriter.write_tensor_data needs
    only .nbytes and .tofile(), so this streams a tensor without holding it in memory."""

    def __init__(self, name: str, shape: tuple, t: QT, rng: np.random.Generator):
        self.name, self.shape, self.t, self.rng = name, shape, t, rng
        block, type_size = gguf.GGML_QUANT_SIZES[t]
        n = int(np.prod(shape))
        self.nbytes = n // block * type_size
        self.values = []  # a sample of the values written (to report mean and sd)

    def tofile(self, fout) -> None:
        if self.t == QT.F32:
            np.ones(self.shape, dtype=np.float32).tofile(fout)
            return
        rows, cols = self.shape
        slab = max(1, SLAB_ELEMS // cols)
        for r0 in range(0, rows, slab):
            n = min(slab, rows - r0)
            if self.t == QT.Q8_0:
                x = self.rng.standard_normal((n, cols), dtype=np.float32) * np.float32(STD)
                blocks = gguf.quants.quantize(x, QT.Q8_0)
                if r0 == 0:
                    y = gguf.quants.dequantize(blocks, QT.Q8_0)
                    if not np.all(np.abs(y - x) <= np.abs(x).reshape(n, -1, 32).max(-1).repeat(32, -1) / 127 + 1e-7):
                        sys.exit(f"{self.name}: Q8_0 round trip is off by more than half a step")
                    self.values.append(y.reshape(-1)[:65536].copy())  # a copy: a view would keep the slab alive
            else:
                parts_fn, pack_fn, values_fn = K_QUANTS[self.t]
                p = parts_fn(self.rng, n * cols // QK_K)
                blocks = pack_fn(p)
                if r0 == 0:
                    k = min(256, blocks.shape[0])
                    sub = {key: v[:k] for key, v in p.items()}
                    check_blocks(self.name, self.t, blocks[:k], values_fn(sub))
                    self.values.append(values_fn(sub).reshape(-1))
            blocks.tofile(fout)


# --------------------------------------------------------------------------------------


def copy_tokenizer(w: gguf.GGUFWriter, path: str) -> int:
    """Copies every tokenizer.* key of the GGUF at path, the token list padded to VOCAB."""
    r = gguf.GGUFReader(path)
    n_src = 0
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = f.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [f.parts[i].tolist()[0] for i in f.data]
            if key == "tokenizer.ggml.tokens":
                n_src = len(val)
                have = set(val)
                pad = [f"<|reserved_{i}|>".encode() for i in range(VOCAB - n_src)]
                if have.intersection(pad):
                    sys.exit(f"{path}: a padding token name is already in the vocabulary")
                val += pad
            elif key == "tokenizer.ggml.token_type":
                val += [int(gguf.TokenType.UNUSED)] * (VOCAB - len(val))
            elif key == "tokenizer.ggml.scores":
                val += [0.0] * (VOCAB - len(val))
            w.add_key_value(key, val, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            w.add_key_value(key, bytes(f.parts[f.data[0]]), vtype)
        else:
            w.add_key_value(key, f.parts[f.data[0]].tolist()[0], vtype)
    if n_src == 0 or n_src > VOCAB:
        sys.exit(f"{path}: no usable tokenizer.ggml.tokens (found {n_src})")
    return n_src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output GGUF path")
    ap.add_argument("--type", required=True, choices=["q8_0", "q4_k_m"])
    ap.add_argument("--layers", type=int, default=16, help="number of blocks (default 16, as Llama-3.2-1B)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context-length", type=int, default=131072, help="declared llama.context_length")
    ap.add_argument("--tokenizer-from", default=default_tokenizer_source(),
                    help="GGUF whose tokenizer.* keys are copied (default: SmolLM2-135M-Instruct.Q4_1.gguf in the model cache)")
    a = ap.parse_args()
    if a.layers < 1:
        ap.error("--layers must be at least 1")
    if not os.path.isfile(a.tokenizer_from):
        ap.error(f"--tokenizer-from: no file {a.tokenizer_from} (run `attune model fetch` or pass the SmolLM2 GGUF)")

    plan = tensor_plan(a.layers, a.type)
    counts = collections.Counter(t.name for _, _, t in plan)
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if a.type == "q8_0" else gguf.LlamaFileType.MOSTLY_Q4_K_M
    label = "Q8_0" if a.type == "q8_0" else "Q4_K_M"

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_type("model")
    w.add_name(f"Llama-3.2-1B-shaped random weights ({a.layers} layers, {label})")
    w.add_description("Random weights at Llama-3.2-1B shapes for speed and memory benchmarks; "
                      "not a trained model. Tokenizer: SmolLM2's, padded with unused tokens.")
    w.add_block_count(a.layers)
    w.add_context_length(a.context_length)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(INTERMEDIATE)
    w.add_head_count(N_HEADS)
    w.add_head_count_kv(N_KV_HEADS)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(VOCAB)
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    n_src = copy_tokenizer(w, a.tokenizer_from)

    total = 0
    for name, shape, t in plan:
        block, type_size = gguf.GGML_QUANT_SIZES[t]
        nbytes = int(np.prod(shape)) // block * type_size
        total += nbytes
        byte_shape = shape if t == QT.F32 else gguf.quant_shape_to_byte_shape(shape, t)
        w.add_tensor_info(name, byte_shape, np.float32 if t == QT.F32 else np.uint8, nbytes,
                          raw_dtype=None if t == QT.F32 else t)

    n_params = sum(int(np.prod(s)) for _, s, _ in plan)
    print(f"writing {a.out}: {label}, {a.layers} layers, {n_params / 1e9:.3f} B parameters, "
          f"tensors {dict(sorted(counts.items()))}, {total / 1e6:.1f} MB of tensor data; "
          f"tokenizer from {os.path.basename(a.tokenizer_from)} ({n_src} tokens + {VOCAB - n_src} unused)", flush=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    rng = np.random.default_rng(a.seed)
    t0 = time.monotonic()
    done = 0
    sample = []
    for i, (name, shape, t) in enumerate(plan):
        s = Slabs(name, shape, t, rng)
        w.write_tensor_data(s)
        done += s.nbytes
        sample += s.values
        if t != QT.F32:
            print(f"[{i + 1:3d}/{len(plan)}] {name:28s} {t.name:5s} {'x'.join(map(str, shape)):>12s} "
                  f"{s.nbytes / 1e6:8.1f} MB  {done / total * 100:5.1f}%  {time.monotonic() - t0:6.1f} s", flush=True)
    w.close()

    v = np.concatenate(sample)
    size = os.path.getsize(a.out)
    print(f"done: {a.out}, {size} bytes ({size / 1e9:.3f} GB) in {time.monotonic() - t0:.1f} s; "
          f"weight sample mean {v.mean():+.2e}, sd {v.std():.4f}; types {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
