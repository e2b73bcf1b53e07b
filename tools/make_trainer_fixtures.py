#!/usr/bin/env python3
"""Generate golden fixtures for the tokenizer-loading and trainer C++ tests.

Reference implementations: Hugging Face transformers / tokenizers (SmolLM2 tokenizer
converted from GGUF and saved as tokenizer.json), the `sentencepiece` package (a tiny
Llama-2-style BPE model, written to GGUF with the `gguf` package the way llama.cpp's
convert_hf_to_gguf.py writes a SentencePiece vocabulary), and transformers + PEFT + TRL (one
LoRA optimizer step with SFT, DPO and KTO losses on tiny_llama; the DPO and KTO losses are
the tensors returned by TRL 0.28.0's own DPOTrainer.dpo_loss and KTOTrainer.kto_loss).

Outputs (under --out, default tests/fixtures):
  tokenizer/smollm2_hf/tokenizer.json         SmolLM2 fast tokenizer (save_pretrained)
  tokenizer/smollm2_hf/tokenizer_config.json  its config, with the chat template inline
  tokenizer/tiny_spm.gguf                     tiny SentencePiece BPE vocab (GGUF v3, no tensors)
  tokenizer/tiny_spm_tokens.json              sentencepiece encode/decode goldens for it
  trainer/lora_step.json                      LoRA init, SFT and DPO losses, gradients, one AdamW step
  trainer/lora_kto_step.json                  the same for the KTO loss
  trainer/lr_schedule.json                    transformers' linear schedule with warm-up, per step

Everything is seeded; running the script twice gives identical files with the same
library versions. Nothing is downloaded: the SmolLM2 tokenizer comes from the local GGUF
file given by --model, tiny_llama from tests/fixtures/models/tiny_llama.

Usage:
  python tools/make_trainer_fixtures.py --model /path/to/SmolLM2-135M-Instruct.Q4_1.gguf \
      [--out tests/fixtures] [--only hf_tokenizer,spm,lora,lr_schedule]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import heapq
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

# JSON writers shared with the runtime fixtures (same float and layout rules).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_runtime_fixtures import write_json, write_json_lines  # noqa: E402

SEED = 20240601
REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------
# utilities (same conventions as make_runtime_fixtures.py)


def f32(x) -> float:
    """A Python float equal to the float32 value of x (its repr round-trips float32 exactly)."""
    return float(np.float32(x))


def f32_matrix(t) -> list[list[float]]:
    a = np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float32)
    assert a.ndim == 2
    return [[float(v) for v in row] for row in a]


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "tokenizers", "peft", "sentencepiece", "gguf", "numpy", "safetensors", *extra):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def versions_str(extra: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions(extra).items())


# --------------------------------------------------------------------------------------
# 1. SmolLM2 tokenizer as tokenizer.json


def make_hf_tokenizer_fixture(model_path: Path, out: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    print("[hf_tokenizer]")
    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    dst = out / "tokenizer" / "smollm2_hf"
    if dst.exists():
        shutil.rmtree(dst)
    # save_jinja_files=False keeps the chat template inside tokenizer_config.json
    # (transformers 5 otherwise writes it to a separate chat_template.jinja).
    tok.save_pretrained(str(dst), save_jinja_files=False)
    names = sorted(p.name for p in dst.iterdir())
    assert names == ["tokenizer.json", "tokenizer_config.json"], names
    for p in sorted(dst.iterdir()):
        print(f"  wrote {p} ({p.stat().st_size} bytes)")

    cfg = json.loads((dst / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg.get("chat_template") == tok.chat_template, "chat_template missing from tokenizer_config.json"

    # The existing goldens (made with the transformers tokenizer converted from the GGUF)
    # must come out identically from the saved tokenizer.json through the tokenizers library.
    ref_path = out / "tokenizer" / "smollm2_tokens.json"
    if not ref_path.is_file():
        ref_path = REPO / "tests" / "fixtures" / "tokenizer" / "smollm2_tokens.json"
    ref = json.loads(ref_path.read_text(encoding="utf-8"))
    rt = Tokenizer.from_file(str(dst / "tokenizer.json"))
    n = 0
    for case in ref["cases"]:
        ids = rt.encode(case["text"], add_special_tokens=False).ids
        assert ids == case["ids"], (case["text"], ids, case["ids"])
        assert rt.decode(ids, skip_special_tokens=False) == case["decoded"], case["text"]
        n += 1
    for chat in ref["chat"]:
        ids = rt.encode(chat["text"], add_special_tokens=False).ids
        assert ids == chat["ids"], chat["text"]
        n += 1
    # add_special_tokens=True adds nothing either (the post-processor has no BOS/EOS)
    assert rt.encode("Hello world").ids == ref["cases"][0]["ids"]
    print(f"  {n} cases of tokenizer/smollm2_tokens.json encode identically with tokenizers.Tokenizer")


# --------------------------------------------------------------------------------------
# 2. tiny SentencePiece BPE model (Llama-2 style) as GGUF

SPM_VOCAB_SIZE = 500

SPM_CORPUS = """\
The quick brown fox jumps over the lazy dog.
A small model learns from the feedback of its user while the device is idle.
Training runs in the background when the laptop is charging and the screen is off.
The adapter is saved, evaluated, and promoted only when it passes the gate.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
How much wood would a woodchuck chuck if a woodchuck could chuck wood?
Peter Piper picked a peck of pickled peppers.
It was the best of times, it was the worst of times, it was the age of wisdom.
All happy families are alike; each unhappy family is unhappy in its own way.
In the beginning the tokenizer splits the text into pieces, then merges the pieces.
There are 365 days in a year, 24 hours in a day, and 60 minutes in an hour.
The price was 1999 dollars in 2024, down from 2450 in 2023.
Call me at 555 0123 or 555 0199 before 10 30 in the morning.
Room 101, floor 7, building 42; the code is 8675309.
Le café de la gare ouvre à sept heures, et le thé est très bon.
Où est la bibliothèque? Elle est là, près de l'école.
Mañana vamos a la montaña con el niño y la señora.
El pingüino come atún en el año nuevo.
Die Straße ist schön, und die Brücke über den Fluss ist groß.
Können Sie mir bitte helfen? Ich möchte ein Brötchen.
A naïve coöperation between the résumé and the façade, déjà vu.
São Paulo é uma cidade grande; a população é enorme.
Crème brûlée, piñata, jalapeño, and smörgåsbord are words from other languages.
Åsa and Øystein went to Tromsø in the winter.
We learn, we forget, we learn again: continual learning is hard.
Good morning! How are you today? I am fine, thank you.
The weather is nice and the sun is shining over the hills.
Please write a short poem about the sea and the wind.
Numbers like 3 14159 and 2 71828 appear in mathematics.
The model has 135 million parameters and runs on a phone.
"""

SPM_CASES: list[str] = [
    "Hello world",
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "the lazy dog",
    "The adapter learns from feedback.",
    "a",
    "A",
    "",
    " ",
    "  ",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "multiple   spaces   inside",
    "tab\tand\nnewline",
    "line one\nline two",
    "12345",
    "2024-11-24",
    "3.14159",
    "Call 555 0123 now",
    "x=42, y=7",
    "café",
    "Mañana en la montaña",
    "Straße über Brücke",
    "déjà vu, naïve résumé",
    "São Paulo",
    "Åsa i Tromsø",
    "crème brûlée",
    "zygote quixotic xylophone",
    "Unbelievably extraordinary",
    "supercalifragilisticexpialidocious",
    "KITTEN",
    "😀",
    "I love pizza 🍕!",
    "👨‍👩‍👧",
    "中文",
    "Привет",
    "ñ",
    "ø",
    "€100",
    "naïve café 😀 12",
    "<s> is not a special token in text",
    "Hello, world! How are you?",
    "end.",
    "...",
    "(parentheses) [brackets] {braces}",
    "a\u2581b",
    "CRLF\r\nline",
]


def train_tiny_spm() -> bytes:
    import sentencepiece as spm

    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        # Llama-2's tokenizer.model: identity normalization, whitespace kept as is
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def spm_vocab_like_convert_hf_to_gguf(sp) -> tuple[list[bytes], list[float], list[int]]:
    """What llama.cpp's convert_hf_to_gguf.py `_create_vocab_sentencepiece` produces for a
    tokenizer.model without added tokens and with vocab_size == sp.vocab_size()."""
    from gguf import TokenType

    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        t = TokenType.NORMAL
        if sp.IsUnknown(i):
            t = TokenType.UNKNOWN
        elif sp.IsControl(i):
            t = TokenType.CONTROL
        elif sp.IsUnused(i):
            t = TokenType.UNUSED
        elif sp.IsByte(i):
            t = TokenType.BYTE
        tokens.append(sp.IdToPiece(i).encode("utf-8"))
        scores.append(float(sp.GetScore(i)))
        types.append(int(t))
    return tokens, scores, types


def llama_cpp_spm_encode(text: str, vocab: dict[str, int], scores: list[float], add_space_prefix: bool) -> list[int]:
    """A direct Python transcription of llama.cpp's SPM tokenizer (llm_tokenizer_spm):
    escape spaces as U+2581, start from UTF-8 characters, repeatedly merge the adjacent pair
    whose concatenation is a token with the highest score (ties: leftmost), then map each
    final symbol to its token or, failing that, to its <0xXX> byte tokens."""
    if text == "":
        return []
    if add_space_prefix:
        text = " " + text
    text = text.replace(" ", "\u2581")
    syms = list(text)
    prev = list(range(-1, len(syms) - 1))
    nxt = list(range(1, len(syms) + 1))
    nxt[-1] = -1
    alive = [True] * len(syms)
    heap: list[tuple[float, int, int, str]] = []

    def push(left: int) -> None:
        right = nxt[left]
        if left < 0 or right < 0:
            return
        s = syms[left] + syms[right]
        if s in vocab:
            heapq.heappush(heap, (-scores[vocab[s]], left, right, s))

    for i in range(len(syms) - 1):
        push(i)
    while heap:
        _, left, right, s = heapq.heappop(heap)
        if not alive[left] or not alive[right] or nxt[left] != right or syms[left] + syms[right] != s:
            continue
        syms[left] = s
        alive[right] = False
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        if prev[left] >= 0:
            push(prev[left])
        push(left)
    ids = []
    i = 0
    while i >= 0 and i < len(syms):
        s = syms[i]
        if s in vocab:
            ids.append(vocab[s])
        else:
            ids.extend(vocab[f"<0x{b:02X}>"] for b in s.encode("utf-8"))
        i = nxt[i]
    return ids


def make_spm_fixture(out: Path) -> None:
    import gguf
    import sentencepiece as spm

    print("[spm]")
    model_bytes = train_tiny_spm()
    assert train_tiny_spm() == model_bytes, "sentencepiece training is not deterministic"
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    tokens, scores, types = spm_vocab_like_convert_hf_to_gguf(sp)
    n_vocab = len(tokens)
    n_byte = sum(1 for t in types if t == gguf.TokenType.BYTE)
    print(f"  vocab {n_vocab}: {n_byte} byte tokens, {sum(1 for t in types if t == 1)} normal")
    assert sp.unk_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2 and sp.pad_id() == -1
    assert tokens[:3] == [b"<unk>", b"<s>", b"</s>"] and types[:3] == [2, 3, 3]
    assert n_byte == 256

    # GGUF v3: llama architecture, vocabulary only (no tensors)
    path = out / "tokenizer" / "tiny_spm.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-spm")
    w.add_vocab_size(n_vocab)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(16)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"  wrote {path} ({path.stat().st_size} bytes)")

    # read back
    r = gguf.GGUFReader(str(path))
    assert len(r.tensors) == 0
    assert r.fields["tokenizer.ggml.model"].contents() == "llama"
    assert r.fields["tokenizer.ggml.tokens"].contents() == [t.decode("utf-8") for t in tokens]
    assert [f32(x) for x in r.fields["tokenizer.ggml.scores"].contents()] == [f32(s) for s in scores]
    assert r.fields["tokenizer.ggml.token_type"].contents() == types

    vocab = {t.decode("utf-8"): i for i, t in enumerate(tokens)}
    cases = []
    diffs = 0
    for text in SPM_CASES:
        ids = [int(i) for i in sp.encode(text)]
        decoded = sp.decode(ids)
        ref = llama_cpp_spm_encode(text, vocab, scores, add_space_prefix=True)
        if ref != ids:
            diffs += 1
            print(f"  llama.cpp-style SPM differs for {text!r}: {ref} vs sentencepiece {ids}")
        cases.append({"text": text, "ids": ids, "pieces": [sp.IdToPiece(i) for i in ids], "decoded": decoded})
    assert diffs == 0, "sentencepiece and the llama.cpp SPM algorithm disagree"
    n_byte_cases = sum(1 for c in cases if any(types[i] == gguf.TokenType.BYTE for i in c["ids"]))
    print(f"  {len(cases)} cases ({n_byte_cases} use byte fallback); llama.cpp SPM algorithm agrees on all")

    source = (
        f"sentencepiece SentencePieceTrainer.train(model_type='bpe', vocab_size={SPM_VOCAB_SIZE}, "
        "byte_fallback=True, split_digits=True, character_coverage=1.0, normalization_rule_name='identity', "
        "remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True, "
        "unk_id=0, bos_id=1, eos_id=2, pad_id=-1) on the corpus in tools/make_trainer_fixtures.py; "
        "ids = sp.encode(text) (no BOS); pieces = sp.IdToPiece(id); decoded = sp.decode(ids); "
        "vocabulary written to tokenizer/tiny_spm.gguf as convert_hf_to_gguf.py does; "
        f"generated by tools/make_trainer_fixtures.py; {versions_str()}"
    )
    write_json_lines(
        out / "tokenizer" / "tiny_spm_tokens.json",
        {"source": source, "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "cases": cases},
    )


# --------------------------------------------------------------------------------------
# 3. LoRA one-step fixtures

LORA_R = 4
LORA_ALPHA = 8
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_A_STD = 0.1
LORA_B_STD = 0.05
ADAMW = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
DPO_BETA = 0.1
KTO_BETA = 0.1
PAD_ID = 0
N_PROMPT = 5


def lora_modules(peft_model) -> list[dict[str, object]]:
    layers = peft_model.base_model.model.model.layers
    out = []
    for layer in layers:
        mods = {}
        for name in LORA_TARGETS:
            parent = layer.self_attn if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else layer.mlp
            mods[name] = getattr(parent, name)
        out.append(mods)
    return out


def lora_params(mods) -> list:
    ps = []
    for layer in mods:
        for name in LORA_TARGETS:
            ps.append(layer[name].lora_A["default"].weight)
            ps.append(layer[name].lora_B["default"].weight)
    return ps


def snapshot(mods, what: str) -> list[dict[str, dict[str, list]]]:
    out = []
    for layer in mods:
        d = {}
        for name in LORA_TARGETS:
            a = layer[name].lora_A["default"].weight
            b = layer[name].lora_B["default"].weight
            if what == "value":
                d[name] = {"a": f32_matrix(a), "b": f32_matrix(b)}
            else:
                assert a.grad is not None and b.grad is not None
                d[name] = {"a": f32_matrix(a.grad), "b": f32_matrix(b.grad)}
        out.append(d)
    return out


def build_lora_model():
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(
        str(REPO / "tests" / "fixtures" / "models" / "tiny_llama"), dtype=torch.float32, attn_implementation="eager"
    )
    base.eval()  # no dropout anywhere (attention_dropout is 0 anyway)
    cfg = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=list(LORA_TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    mods = lora_modules(model)
    # seeded non-zero init for A and B (order: layer, target, A then B)
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for layer in mods:
            for name in LORA_TARGETS:
                m = layer[name]
                assert m.scaling["default"] == LORA_ALPHA / LORA_R
                a = m.lora_A["default"].weight
                b = m.lora_B["default"].weight
                a.copy_(torch.randn(a.shape, generator=g, dtype=torch.float32) * LORA_A_STD)
                b.copy_(torch.randn(b.shape, generator=g, dtype=torch.float32) * LORA_B_STD)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(LORA_TARGETS) * len(mods), trainable
    return model, mods


def adamw_step(model, mods, loss):
    import torch

    params = lora_params(mods)
    opt = torch.optim.AdamW(params, **ADAMW)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = snapshot(mods, "grad")
    opt.step()
    after = snapshot(mods, "value")
    return grads, after


def seq_logp(model, ids: list[int], mask: list[int]):
    """sum over positions t with mask[t] == 1 of log p(ids[t] | ids[:t])."""
    import torch

    inp = torch.tensor([ids], dtype=torch.long)
    logits = model(input_ids=inp, attention_mask=torch.ones_like(inp)).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    tgt = inp[0, 1:]
    per_tok = logp.gather(1, tgt[:, None])[:, 0]
    m = torch.tensor(mask[1:], dtype=torch.float32)
    return (per_tok * m).sum()


# TRL 0.28.0 is the last release whose trainers compute the DPO and KTO losses in methods that
# take sequence log-probabilities (DPOTrainer.dpo_loss, KTOTrainer.kto_loss); from 0.29 on
# DPO, and from 1.6 on KTO, compute them inside _compute_loss from a model forward pass.
TRL_VERSION = "0.28.0"


def import_trl_losses():
    """TRL's DPOTrainer/DPOConfig and KTOTrainer/KTOConfig, without building a trainer.

    TRL 0.28's optional-dependency checks (`trl.import_utils.is_weave_available()` and the
    like) return `transformers.utils.import_utils._is_package_available(name)` as they get it.
    transformers 5.24 returns a tuple `(found, version)` from it, which is always true, so
    `import trl.trainer.dpo_trainer` tries to import packages that are not installed (weave).
    TRL's own module gets a wrapper that returns the bool; nothing else is changed.
    """
    import importlib.metadata as md

    have = md.version("trl")
    if have != TRL_VERSION:
        raise SystemExit(f"the DPO/KTO fixtures need trl=={TRL_VERSION} (installed: {have}); see tools/README.md")
    import trl.import_utils as trl_imports

    if isinstance(trl_imports._is_package_available("torch"), tuple):
        found_or_version = trl_imports._is_package_available

        def is_package_available(name, return_version=False):
            r = found_or_version(name, return_version)
            return r if return_version else r[0]

        trl_imports._is_package_available = is_package_available
    from trl.trainer.dpo_config import DPOConfig, FDivergenceConstants
    from trl.trainer.dpo_trainer import DPOTrainer

    with trl_imports.suppress_experimental_warning():
        from trl.experimental.kto import KTOConfig, KTOTrainer
    return DPOTrainer, DPOConfig, FDivergenceConstants, KTOTrainer, KTOConfig


def trl_loss_owners(tmp_dir: str):
    """Stand-ins for `self` of DPOTrainer.dpo_loss and KTOTrainer.kto_loss.

    Each carries exactly the attributes that the method reads, set the way the trainer's
    __init__ sets them from its config (DPOConfig / KTOConfig with our beta and loss type
    and TRL's defaults for everything else). The configs are TrainingArguments; nothing is
    written to their output_dir.
    """
    import torch
    from types import SimpleNamespace

    DPOTrainer, DPOConfig, FDivergenceConstants, KTOTrainer, KTOConfig = import_trl_losses()
    cpu = SimpleNamespace(device=torch.device("cpu"))  # the only use of self.accelerator

    dcfg = DPOConfig(output_dir=tmp_dir, report_to="none", use_cpu=True, bf16=False, beta=DPO_BETA, loss_type="sigmoid")
    # With these, DPOTrainer.get_batch_loss_metrics returns dpo_loss(...)[0].mean() unchanged.
    assert dcfg.loss_type in ("sigmoid", ["sigmoid"]) and dcfg.loss_weights is None, (dcfg.loss_type, dcfg.loss_weights)
    assert dcfg.label_smoothing == 0.0 and not dcfg.reference_free and dcfg.f_divergence_type == "reverse_kl"
    assert dcfg.rpo_alpha is None and not dcfg.use_weighting and not dcfg.use_liger_kernel
    dpo_self = SimpleNamespace(
        accelerator=cpu,
        beta=dcfg.beta,
        label_smoothing=dcfg.label_smoothing,
        reference_free=dcfg.reference_free,
        f_divergence_type=dcfg.f_divergence_type,
        f_divergence_params={FDivergenceConstants.ALPHA_DIVERGENCE_COEF_KEY: dcfg.f_alpha_divergence_coef},
    )

    kcfg = KTOConfig(output_dir=tmp_dir, report_to="none", use_cpu=True, bf16=False, beta=KTO_BETA, loss_type="kto")
    assert kcfg.desirable_weight == 1.0 and kcfg.undesirable_weight == 1.0 and not kcfg.use_liger_kernel
    kto_self = SimpleNamespace(
        accelerator=cpu,
        beta=kcfg.beta,
        loss_type=kcfg.loss_type,
        desirable_weight=kcfg.desirable_weight,
        undesirable_weight=kcfg.undesirable_weight,
        # KTOTrainer.__init__ sets calculate_KL = True for loss_type "kto" (False only for
        # "apo_zero_unpaired"). We use the KL reference point z0 = 0, which is kto_loss's
        # calculate_KL=False branch: kl = torch.zeros(1), no KL completions needed.
        calculate_KL=False,
    )
    return (DPOTrainer.dpo_loss, dpo_self), (KTOTrainer.kto_loss, kto_self)


def manual_adamw(p0: np.ndarray, g: np.ndarray) -> np.ndarray:
    """torch.optim.AdamW, first step (step = 1), zero initial moments."""
    lr, (b1, b2), eps, wd = ADAMW["lr"], ADAMW["betas"], ADAMW["eps"], ADAMW["weight_decay"]
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    p = p0 * (1 - lr * wd)
    denom = np.sqrt(v) / np.sqrt(1 - b2) + eps
    return p - (lr / (1 - b1)) * m / denom


def check_merged_forward(t_ids, t_mask, init) -> None:
    import torch
    from transformers import LlamaForCausalLM

    path = str(REPO / "tests" / "fixtures" / "models" / "tiny_llama")
    model, _ = build_lora_model()
    model.eval()
    plain = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    plain.eval()
    scale = LORA_ALPHA / LORA_R
    with torch.no_grad():
        for li, layer in enumerate(plain.model.layers):
            for t in LORA_TARGETS:
                parent = layer.self_attn if t in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
                lin = getattr(parent, t)
                a = torch.tensor(init[li][t]["a"], dtype=torch.float64)
                b = torch.tensor(init[li][t]["b"], dtype=torch.float64)
                lin.weight.copy_((lin.weight.double() + scale * (b @ a)).float())
        want = model(input_ids=t_ids, attention_mask=t_mask).logits
        got = plain(input_ids=t_ids, attention_mask=t_mask).logits
    diff = float((want - got).abs().max())
    assert diff < 1e-4, diff
    print(f"  merged W + scale*B@A forward matches the PEFT forward within {diff:.2e}")


def make_lora_fixture(out: Path) -> None:
    import tempfile

    import torch
    import torch.nn.functional as F

    print("[lora]")
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    vocab = 128

    def rand_ids(n: int) -> list[int]:
        return [int(x) for x in rng.integers(1, vocab, size=n)]  # never the pad id 0

    # ---- SFT
    model, mods = build_lora_model()
    init = snapshot(mods, "value")
    seq_len = 12
    s1 = rand_ids(seq_len)
    s2 = rand_ids(9) + [PAD_ID] * 3
    input_ids = [s1, s2]
    attention_mask = [[1] * 12, [1] * 9 + [0] * 3]
    labels = [
        [-100] * N_PROMPT + s1[N_PROMPT:],
        [-100] * N_PROMPT + s2[N_PROMPT:9] + [-100] * 3,
    ]
    t_ids = torch.tensor(input_ids)
    t_mask = torch.tensor(attention_mask)
    t_labels = torch.tensor(labels)
    model.train()  # dropout is 0 everywhere; train() only for form
    outp = model(input_ids=t_ids, attention_mask=t_mask, labels=t_labels)
    loss = outp.loss
    # cross-check the reduction: mean over all shifted label positions != -100 of the batch
    logits = outp.logits.float()
    shift_logits = logits[:, :-1]
    shift_labels = t_labels[:, 1:]
    valid = shift_labels != -100
    nll = -torch.log_softmax(shift_logits, -1).gather(2, shift_labels.clamp(min=0)[..., None])[..., 0]
    manual = (nll * valid).sum() / valid.sum()
    assert torch.allclose(manual, loss, rtol=1e-6, atol=0), (manual, loss)
    n_tokens = int(valid.sum())
    per_seq_tokens = [int(v) for v in valid.sum(1)]
    sft_grads, sft_after = adamw_step(model, mods, loss)
    sft = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "pad_id": PAD_ID,
        "n_loss_tokens": n_tokens,
        "n_loss_tokens_per_seq": per_seq_tokens,
        "loss": f32(loss.item()),
        "loss_sum": f32((nll * valid).sum().item()),
        "grads": sft_grads,
        "after": sft_after,
    }
    print(f"  sft loss {sft['loss']} over {n_tokens} tokens {per_seq_tokens}")

    # ---- DPO and KTO share the same pair
    prompt = rand_ids(N_PROMPT)
    chosen = prompt + rand_ids(5)
    rejected = prompt + rand_ids(4)
    chosen_mask = [0] * N_PROMPT + [1] * 5
    rejected_mask = [0] * N_PROMPT + [1] * 4

    def ref_logps(model):
        with torch.no_grad(), model.disable_adapter():
            return seq_logp(model, chosen, chosen_mask), seq_logp(model, rejected, rejected_mask)

    # The DPO and KTO losses are what TRL's own loss methods return for these log-probs
    # (batch of one pair / one desirable + one undesirable example, shape [1] each); the
    # gradients flow from TRL's loss tensor back through the policy log-probs into A and B.
    with tempfile.TemporaryDirectory() as tmp_dir:
        (dpo_loss_fn, dpo_self), (kto_loss_fn, kto_self) = trl_loss_owners(tmp_dir)

    # DPO
    model, mods = build_lora_model()
    assert snapshot(mods, "value") == init
    model.train()
    ref_c, ref_r = ref_logps(model)
    pi_c = seq_logp(model, chosen, chosen_mask)
    pi_r = seq_logp(model, rejected, rejected_mask)
    assert pi_c.requires_grad and pi_r.requires_grad and not ref_c.requires_grad
    dpo_losses, _, _ = dpo_loss_fn(dpo_self, pi_c[None], pi_r[None], ref_c[None], ref_r[None], loss_type="sigmoid")
    dpo_loss = dpo_losses.mean()  # DPOTrainer.get_batch_loss_metrics: losses.mean()
    # the formula the C++ trainer implements (trainer/src/objective.cc DpoLoss) gives the same value
    ours = -F.logsigmoid(DPO_BETA * ((pi_c - ref_c) - (pi_r - ref_r)))
    assert abs(ours.item() - dpo_loss.item()) <= 1e-6 * abs(dpo_loss.item()), (ours.item(), dpo_loss.item())
    dpo_grads, dpo_after = adamw_step(model, mods, dpo_loss)
    dpo = {
        "beta": DPO_BETA,
        "prompt_len": N_PROMPT,
        "chosen_ids": chosen,
        "rejected_ids": rejected,
        "chosen_response_mask": chosen_mask,
        "rejected_response_mask": rejected_mask,
        "ref_chosen_logp": f32(ref_c.item()),
        "ref_rejected_logp": f32(ref_r.item()),
        "policy_chosen_logp": f32(pi_c.item()),
        "policy_rejected_logp": f32(pi_r.item()),
        "loss": f32(dpo_loss.item()),
        "grads": dpo_grads,
        "after": dpo_after,
    }
    print(
        f"  dpo ref ({dpo['ref_chosen_logp']}, {dpo['ref_rejected_logp']}) policy "
        f"({dpo['policy_chosen_logp']}, {dpo['policy_rejected_logp']}) loss {dpo['loss']}"
    )

    # KTO: chosen sequence is the desirable example, rejected the undesirable one, KL = 0
    model, mods = build_lora_model()
    model.train()
    k_ref_c, k_ref_r = ref_logps(model)
    k_pi_c = seq_logp(model, chosen, chosen_mask)
    k_pi_r = seq_logp(model, rejected, rejected_mask)
    # policy_KL_logps / reference_KL_logps are None, as KTOTrainer.forward returns them when
    # calculate_KL is False
    kto_losses, _, _, kl = kto_loss_fn(kto_self, k_pi_c[None], k_pi_r[None], None, k_ref_c[None], k_ref_r[None], None)
    assert kto_losses.shape == (2,) and kl.shape == (1,) and kl.item() == 0.0 and not kl.requires_grad
    desirable, undesirable = kto_losses[0], kto_losses[1]  # desirable_weight = undesirable_weight = 1
    kto_loss = kto_losses.nanmean()  # KTOTrainer.get_batch_loss_metrics: losses.nanmean()
    # the formula the C++ trainer implements (trainer/src/objective.cc KtoLoss, z0 = 0)
    ours_d = 1 - torch.sigmoid(KTO_BETA * (k_pi_c - k_ref_c))
    ours_u = 1 - torch.sigmoid(KTO_BETA * -(k_pi_r - k_ref_r))
    ours = (ours_d + ours_u) / 2
    assert abs(ours.item() - kto_loss.item()) <= 1e-6 * abs(kto_loss.item()), (ours.item(), kto_loss.item())
    kto_grads, kto_after = adamw_step(model, mods, kto_loss)
    assert f32(k_pi_c.item()) == dpo["policy_chosen_logp"] and f32(k_ref_r.item()) == dpo["ref_rejected_logp"]
    kto = {
        "beta": KTO_BETA,
        "prompt_len": N_PROMPT,
        "chosen_ids": chosen,
        "rejected_ids": rejected,
        "chosen_response_mask": chosen_mask,
        "rejected_response_mask": rejected_mask,
        "ref_chosen_logp": f32(k_ref_c.item()),
        "ref_rejected_logp": f32(k_ref_r.item()),
        "policy_chosen_logp": f32(k_pi_c.item()),
        "policy_rejected_logp": f32(k_pi_r.item()),
        "kl": 0.0,
        "desirable_weight": 1.0,
        "undesirable_weight": 1.0,
        "desirable": "chosen_ids",
        "undesirable": "rejected_ids",
        "desirable_loss": f32(desirable.item()),
        "undesirable_loss": f32(undesirable.item()),
        "loss": f32(kto_loss.item()),
        "grads": kto_grads,
        "after": kto_after,
    }
    print(f"  kto losses ({kto['desirable_loss']}, {kto['undesirable_loss']}) mean {kto['loss']}")

    # the LoRA forward is base(x) + scale * B(A x): merging scale * B @ A into the base
    # weights of a plain model gives the same logits
    check_merged_forward(t_ids, t_mask, init)
    # one AdamW step, written out by hand
    for name_, grads_, after_ in (("sft", sft_grads, sft_after), ("dpo", dpo_grads, dpo_after), ("kto", kto_grads, kto_after)):
        worst = 0.0
        for li in range(len(init)):
            for t in LORA_TARGETS:
                for ab in ("a", "b"):
                    p0 = np.asarray(init[li][t][ab], dtype=np.float64)
                    g = np.asarray(grads_[li][t][ab], dtype=np.float64)
                    got = np.asarray(after_[li][t][ab], dtype=np.float64)
                    worst = max(worst, float(np.abs(manual_adamw(p0, g) - got).max()))
        assert worst < 1e-6, (name_, worst)
        print(f"  {name_}: hand-written AdamW step matches torch within {worst:.2e}")

    # determinism of the whole computation: a fresh model gives the same SFT gradients
    model2, mods2 = build_lora_model()
    model2.train()
    loss2 = model2(input_ids=t_ids, attention_mask=t_mask, labels=t_labels).loss
    g2, _ = adamw_step(model2, mods2, loss2)
    assert g2 == sft_grads and f32(loss2.item()) == sft["loss"]

    shapes = {
        name: {"a": [len(init[0][name]["a"]), len(init[0][name]["a"][0])], "b": [len(init[0][name]["b"]), len(init[0][name]["b"][0])]}
        for name in LORA_TARGETS
    }
    source = (
        "transformers LlamaForCausalLM.from_pretrained('tests/fixtures/models/tiny_llama', dtype=float32, "
        "attn_implementation='eager') + peft get_peft_model(LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, "
        "target_modules=[q,k,v,o,gate,up,down]_proj, bias='none')), CPU; lora_A/lora_B overwritten with "
        f"torch.randn(shape, generator=torch.Generator().manual_seed({SEED})) * {LORA_A_STD} / * {LORA_B_STD} "
        "in layer, target, A-then-B order; sft.loss = model(input_ids, attention_mask, labels=labels).loss; "
        "pi/ref = sum of completion-token log-probs, ref from model.disable_adapter(); "
        f"dpo: trl {TRL_VERSION} DPOTrainer.dpo_loss(pi_c, pi_r, ref_c, ref_r, loss_type='sigmoid').mean() "
        "with DPOConfig(beta=0.1) defaults (label_smoothing=0, reverse_kl), "
        "i.e. -logsigmoid(beta*((pi_c-ref_c)-(pi_r-ref_r))); "
        f"kto: trl {TRL_VERSION} trl.experimental.kto KTOTrainer.kto_loss(pi_c, pi_r, None, ref_c, ref_r, None)"
        ".nanmean() "
        "with KTOConfig(beta=0.1, loss_type='kto') and calculate_KL=False (kl = 0), "
        "i.e. mean(1-sigmoid(beta*(pi_c-ref_c-0)), 1-sigmoid(beta*(0-(pi_r-ref_r)))); "
        "each loss starts from the same init, one loss.backward() and one torch.optim.AdamW(lr=1e-2, "
        "betas=(0.9,0.999), eps=1e-8, weight_decay=0.01).step() over all A and B; "
        f"generated by tools/make_trainer_fixtures.py; {versions_str(extra=('trl',))}"
    )
    obj = {
        "source": source,
        "config": {
            "r": LORA_R,
            "alpha": LORA_ALPHA,
            "scale": LORA_ALPHA / LORA_R,
            "targets": LORA_TARGETS,
            "shapes": shapes,
            "peft_name": "base_model.model.model.layers.{layer}.{self_attn|mlp}.{target}.lora_{A|B}.weight",
        },
        "optimizer": {
            "type": "AdamW",
            "lr": ADAMW["lr"],
            "beta1": ADAMW["betas"][0],
            "beta2": ADAMW["betas"][1],
            "eps": ADAMW["eps"],
            "weight_decay": ADAMW["weight_decay"],
            "step": 1,
        },
        "init": init,
        "sft": sft,
        "dpo": dpo,
    }
    write_json(out / "trainer" / "lora_step.json", obj, compact=True)
    # KTO goes to its own file to keep each file under 1 MB; it starts from the same
    # config, optimizer and init as lora_step.json.
    obj_kto = {
        "source": source,
        "init": "trainer/lora_step.json init",
        "kto": kto,
    }
    write_json(out / "trainer" / "lora_kto_step.json", obj_kto, compact=True)
    for p in ("lora_step.json", "lora_kto_step.json"):
        assert (out / "trainer" / p).stat().st_size < 1_000_000, p


# --------------------------------------------------------------------------------------
# 4. The learning-rate schedule


def make_lr_schedule_fixture(out: Path) -> None:
    """transformers' get_linear_schedule_with_warmup on a real optimizer: the learning
    rate each step uses, for the windows TrainerOptions::lr_schedule = "linear" runs."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    cases = []
    for lr, warmup, steps in ((2e-3, 5, 20), (1e-3, 0, 7), (5e-4, 3, 4)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=steps)
        used = []
        for _ in range(steps):
            used.append(opt.param_groups[0]["lr"])  # the rate of this step
            opt.step()
            sched.step()
        cases.append({"lr": lr, "warmup_steps": warmup, "max_steps": steps, "lr_per_step": used})
    doc = {"reference": "transformers.get_linear_schedule_with_warmup", "versions": versions(), "cases": cases}
    path = out / "trainer" / "lr_schedule.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct GGUF file (hf_tokenizer fixture)")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--only", default="hf_tokenizer,spm,lora,lr_schedule", help="comma list of fixture groups")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    groups = {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - {"hf_tokenizer", "spm", "lora", "lr_schedule"}
    if unknown:
        ap.error(f"unknown groups: {sorted(unknown)}")
    if "hf_tokenizer" in groups and (args.model is None or not args.model.is_file()):
        ap.error("--model must point to the SmolLM2 GGUF file for the hf_tokenizer fixture")

    print(versions_str(extra=("trl",) if "lora" in groups else ()))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if "hf_tokenizer" in groups:
        make_hf_tokenizer_fixture(args.model.resolve(), out)
    if "spm" in groups:
        make_spm_fixture(out)
    if "lora" in groups:
        make_lora_fixture(out)
    if "lr_schedule" in groups:
        make_lr_schedule_fixture(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
