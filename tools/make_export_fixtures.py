#!/usr/bin/env python3
"""Golden fixtures for the export/ module (PEFT and GGUF-LoRA interop).

Reference implementations: Hugging Face transformers + PEFT (LoRA forward pass, adapter
files) and llama.cpp through llama-cpp-python (GGUF-LoRA loading, forward pass, greedy
decoding). Everything runs on the tiny test model (tests/fixtures/models/tiny_llama and
tiny_llama.gguf), so the C++ tests that compare against these files take milliseconds.

Writes under tests/fixtures/export/:
  peft_trained/                 a LoRA adapter created by PEFT and stepped by torch.optim
                                (B non-zero), saved by save_pretrained: the import check
  attune_peft/, attune_lora.gguf  the Attune fixture adapter exported by our C++ writers
                                (build/tests/export/export_fixture_tool): the export checks
  peft_linear_merge/, peft_cat_merge/  PEFT's add_weighted_adapter(["peft_trained", "attune_peft"],
                                [0.7, -0.4]) with combination_type "linear" and "cat"
  peft_logits.json              logits and greedy tokens of peft_trained and attune_peft on
                                the golden prompts, computed by transformers + PEFT (HF base)
  llamacpp_logits.json          the same for attune_lora.gguf, computed by llama.cpp on
                                tiny_llama.gguf (and the base without adapter)

Usage (from the repository root, after building export_fixture_tool):
  HF_HUB_OFFLINE=1 python tools/make_export_fixtures.py --tool build/tests/export/export_fixture_tool
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_runtime_fixtures import f32_list, seed_everything, write_json  # noqa: E402

SEED = 20261202
# Golden prompts: token ids of the tiny model's 128-token vocabulary.
PROMPTS = [
    [127, 1, 2, 3, 4, 40, 50, 60, 70],
    [127, 116, 104, 101, 32, 99, 97, 116],
    [127, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110],
]
N_GREEDY = 12
# Weights of the PEFT merge fixtures (peft_trained, attune_peft).
MERGE_WEIGHTS = [0.7, -0.4]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "peft", "gguf", "numpy", "safetensors", "llama_cpp_python"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


# --------------------------------------------------------------------------------------
# PEFT


def load_hf_base(models: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(models / "tiny_llama", dtype=torch.float32).eval()


def peft_logits_and_greedy(model, prompt: list[int]) -> tuple[np.ndarray, list[int]]:
    import torch

    with torch.no_grad():
        ids = torch.tensor([prompt])
        logits = model(ids).logits[0].float().numpy()
        out = list(prompt)
        for _ in range(N_GREEDY):
            nxt = int(model(torch.tensor([out])).logits[0, -1].argmax())
            out.append(nxt)
    return logits, out[len(prompt):]


def make_peft_trained(models: Path, out_dir: Path) -> None:
    """A LoRA adapter created by PEFT (B = 0 at init) and stepped 5 times with Adam on a
    fixed sequence, so that both matrices are non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model

    seed_everything(SEED)
    base = load_hf_base(models)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    ids = torch.tensor([[127, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]])
    model.train()
    for _ in range(5):
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir)
    # The absolute base path PEFT records is machine-specific: keep it relative.
    cfg_path = out_dir / "adapter_config.json"
    j = json.loads(cfg_path.read_text())
    j["base_model_name_or_path"] = "tests/fixtures/models/tiny_llama"
    cfg_path.write_text(json.dumps(j, indent=2, sort_keys=True) + "\n")
    print(f"  wrote {out_dir}")


def peft_reference(models: Path, adapter_dir: Path) -> dict:
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_hf_base(models), adapter_dir).eval()
    cases = []
    for p in PROMPTS:
        logits, greedy = peft_logits_and_greedy(model, p)
        cases.append({"ids": p, "logits": [f32_list(r) for r in logits], "greedy_ids": greedy})
    base_logits, _ = peft_logits_and_greedy(load_hf_base(models), PROMPTS[0])
    diff = float(np.abs(np.array(cases[0]["logits"]) - base_logits).max())
    print(f"  {adapter_dir.name}: PEFT max |logit change| vs base = {diff:.3g}")
    assert diff > 1e-2, "the adapter must change the logits measurably"
    return {"cases": cases}


def make_peft_merges(models: Path, out: Path) -> None:
    """PEFT's own add_weighted_adapter on peft_trained (a) and attune_peft (b): the
    "linear" and "cat" results, saved like any adapter, for the C++ merge to match."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_hf_base(models), out / "peft_trained", adapter_name="a")
    model.load_adapter(out / "attune_peft", adapter_name="b")
    for method in ("linear", "cat"):
        name = f"merged_{method}"
        model.add_weighted_adapter(["a", "b"], MERGE_WEIGHTS, name, combination_type=method)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, selected_adapters=[name])
            src = Path(tmp) / name
            dst = out / f"peft_{method}_merge"
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
            cfg = dst / "adapter_config.json"
            j = json.loads(cfg.read_text())
            j["base_model_name_or_path"] = "tests/fixtures/models/tiny_llama"
            cfg.write_text(json.dumps(j, indent=2, sort_keys=True) + "\n")
        print(f"  wrote {dst}")


def make_smollm2(model_path: Path, fixtures: Path, out: Path) -> None:
    """A rank-2 q/v adapter with random A and B (init_lora_weights=False) on SmolLM2-135M
    (the Q4_1 GGUF dequantized by transformers), and PEFT's logits for the first prompt of
    logits/smollm2_logits.json: top-10 and probe logits at every position, 8 greedy ids."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    seed_everything(SEED)
    base = AutoModelForCausalLM.from_pretrained(str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32)
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg).eval()
    dst = out / "smollm2_peft"
    if dst.exists():
        shutil.rmtree(dst)
    model.save_pretrained(dst)
    cfg_path = dst / "adapter_config.json"
    j = json.loads(cfg_path.read_text())
    j["base_model_name_or_path"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
    cfg_path.write_text(json.dumps(j, indent=2, sort_keys=True) + "\n")
    ref = json.loads((fixtures / "logits" / "smollm2_logits.json").read_text())
    probe = ref["probe_ids"]
    ids = ref["prompts"][0]["ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        with model.disable_adapter():
            base_logits = model(torch.tensor([ids])).logits[0].float()
        out_ids = list(ids)
        for _ in range(8):
            out_ids.append(int(model(torch.tensor([out_ids])).logits[0, -1].argmax()))
    diff = float((logits - base_logits).abs().max())
    print(f"  smollm2_peft: PEFT max |logit change| vs base = {diff:.3g}")
    assert diff > 0.1, "the adapter must change the logits measurably"
    positions = []
    for row in logits:
        top = torch.topk(row, 10)
        positions.append({"top_ids": [int(i) for i in top.indices], "top_logits": f32_list(top.values),
                          "probe_logits": f32_list(row[probe])})
    write_json(out / "smollm2_peft_logits.json", {
        "source": "tools/make_export_fixtures.py; " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "probe_ids": probe, "ids": ids, "positions": positions, "greedy_ids": out_ids[len(ids):],
        "max_abs_change": diff}, compact=True)


# --------------------------------------------------------------------------------------
# llama.cpp


def llamacpp_reference(models: Path, lora: Path) -> dict:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(models / "tiny_llama.gguf"),
        lora_path=str(lora),
        n_ctx=64,
        n_batch=64,
        n_threads=1,
        logits_all=True,
        seed=SEED,
        verbose=False,
    )
    cases = []
    for p in PROMPTS:
        llm.reset()
        llm.eval(p)
        logits = np.array(llm.scores[: len(p)], dtype=np.float32)
        greedy = []
        for _ in range(N_GREEDY):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(nxt)
            llm.eval([nxt])
        cases.append({"ids": p, "logits": [f32_list(r) for r in logits], "greedy_ids": greedy})
    return {"cases": cases}


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", type=Path, required=True, help="build/tests/export/export_fixture_tool")
    ap.add_argument("--fixtures", type=Path, default=Path("tests/fixtures"))
    ap.add_argument("--only", default="peft,gguf", help="comma list of fixture groups: peft, gguf, smollm2")
    ap.add_argument("--model", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (group smollm2)")
    args = ap.parse_args()
    groups = set(args.only.split(","))
    models = args.fixtures / "models"
    out = args.fixtures / "export"
    out.mkdir(parents=True, exist_ok=True)
    source = "tools/make_export_fixtures.py; " + ", ".join(f"{k} {v}" for k, v in versions().items())

    print("[attune exports]")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(args.tool), tmp], check=True)
        if (out / "attune_peft").exists():
            shutil.rmtree(out / "attune_peft")
        shutil.copytree(Path(tmp) / "attune_peft", out / "attune_peft")
        shutil.copy(Path(tmp) / "attune_lora.gguf", out / "attune_lora.gguf")

    if "peft" in groups:
        print("[peft]")
        make_peft_trained(models, out / "peft_trained")
        ref = {
            "source": source,
            "peft_trained": peft_reference(models, out / "peft_trained"),
            "attune_peft": peft_reference(models, out / "attune_peft"),
        }
        write_json(out / "peft_logits.json", ref, compact=True)
        make_peft_merges(models, out)
    if "smollm2" in groups:
        print("[smollm2]")
        if args.model is None or not args.model.is_file():
            ap.error("--model must point to the SmolLM2 GGUF file for the smollm2 group")
        make_smollm2(args.model, args.fixtures, out)
    if "gguf" in groups:
        print("[gguf]")
        ref = {
            "source": source,
            "attune_lora_gguf": llamacpp_reference(models, out / "attune_lora.gguf"),
            "base_gguf": llamacpp_reference_base(models),
        }
        with_adapter = np.array(ref["attune_lora_gguf"]["cases"][0]["logits"])
        diff = float(np.abs(with_adapter - np.array(ref["base_gguf"]["logits"])).max())
        print(f"  attune_lora.gguf: llama.cpp max |logit change| vs base = {diff:.3g}")
        assert diff > 1e-2, "the adapter must change llama.cpp's logits measurably"
        write_json(out / "llamacpp_logits.json", ref, compact=True)
    return 0


def llamacpp_reference_base(models: Path) -> dict:
    """The GGUF base without an adapter, to show the adapter changes llama.cpp's output."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(models / "tiny_llama.gguf"), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    llm.eval(PROMPTS[0])
    return {"logits": [f32_list(r) for r in np.array(llm.scores[: len(PROMPTS[0])], dtype=np.float32)]}


if __name__ == "__main__":
    sys.exit(main())
