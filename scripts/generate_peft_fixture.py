#!/usr/bin/env python3
"""Writes a Hugging Face PEFT LoRA adapter for the tiny Florence-2 fixture, and the logits it gives.

Usage (CPU, offline; peft 0.21.2, transformers 5.24.0, torch 2.9.1):

    python scripts/generate_peft_fixture.py             # writes tests/fixtures/florence2/peft/
    python scripts/generate_peft_fixture.py --check DIR # checks an adapter folder written elsewhere
                                                         # (e.g. by fedvlm's save_peft_adapter)

It loads `tests/fixtures/florence2/tiny_native` (made by generate_florence2_reference.py), wraps it
with `peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0)` on the LAST decoder layer's self-attention
`q_proj` and `v_proj` (given as full module names), sets every `lora_A` / `lora_B` to seeded random
non-zero fp16-representable values, and writes:

- peft/adapter/{adapter_config.json, adapter_model.safetensors}: `PeftModel.save_pretrained`
  (peft's README.md model card is removed);
- peft/io.safetensors: `logits` (and `decoder_hidden`) of the adapted model for tiny_io.safetensors'
  inputs, called as the fixture README says (`native_input_ids`, `pixel_values`,
  `decoder_input_ids`, attention mask all ones).

Before writing it checks that `PeftModel.from_pretrained(fresh base, adapter)` reproduces the logits
bit for bit and that the adapter really changes them. `--check DIR` loads DIR the same way and
compares its logits with peft/io.safetensors (tolerance 1e-5).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import transformers
from transformers import Florence2ForConditionalGeneration

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "florence2"
BASE_DIR = FIXTURES / "tiny_native"
IO_FILE = FIXTURES / "tiny_io.safetensors"
DEFAULT_OUT = FIXTURES / "peft"

SEED = 4242
RANK = 4
ALPHA = 8
LAYER = 1  # last decoder layer of the tiny model (decoder_layers = 2)
TARGETS = [f"model.language_model.decoder.layers.{LAYER}.self_attn.{p}" for p in ("q_proj", "v_proj")]
# The base_model_name_or_path written in adapter_config.json (relative to the repository root).
BASE_NAME = "tests/fixtures/florence2/tiny_native"


def load_base() -> Florence2ForConditionalGeneration:
    return Florence2ForConditionalGeneration.from_pretrained(BASE_DIR).eval()


def inputs() -> dict[str, torch.Tensor]:
    io = load_file(str(IO_FILE))
    ids = io["native_input_ids"]
    return dict(
        input_ids=ids,
        pixel_values=io["pixel_values"],
        attention_mask=torch.ones_like(ids),
        decoder_input_ids=io["decoder_input_ids"],
    )


@torch.no_grad()
def run(model) -> dict[str, torch.Tensor]:
    out = model(**inputs(), output_hidden_states=True)
    return {"logits": out.logits.contiguous(), "decoder_hidden": out.decoder_hidden_states[-1].contiguous()}


def nonzero_fp16(shape, std: float, gen: torch.Generator) -> torch.Tensor:
    """N(0, std^2) rounded to fp16 values, with no zero (a zero would hide a transposition bug)."""
    t = (torch.randn(shape, generator=gen) * std).half().float()
    tiny = torch.full_like(t, 2.0**-10)
    return torch.where(t.abs() < 2.0**-10, torch.where(t < 0, -tiny, tiny), t)


@torch.no_grad()
def randomise_adapters(model) -> list[str]:
    gen = torch.Generator().manual_seed(SEED)
    names = []
    for name, p in sorted(model.named_parameters()):
        if "lora_A" in name:
            p.copy_(nonzero_fp16(p.shape, p.shape[1] ** -0.5, gen))  # A: [r, in]
        elif "lora_B" in name:
            p.copy_(nonzero_fp16(p.shape, 0.5, gen))  # B: [out, r]
        else:
            continue
        names.append(name)
    return names


def check(adapter_dir: Path, expected: Path, atol: float = 1e-5) -> None:
    """Loads `adapter_dir` with peft onto a fresh base and compares its logits with `expected`."""
    model = PeftModel.from_pretrained(load_base(), adapter_dir).eval()
    got = run(model)["logits"]
    want = load_file(str(expected))["logits"]
    diff = (got - want).abs().max().item()
    print(f"{adapter_dir}: max |logits - expected| = {diff:.3e}")
    if diff > atol:
        raise SystemExit(f"FAILED: {diff} > {atol}")
    print("OK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", type=Path, help="only check an adapter folder against OUT/io.safetensors")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.check:
        check(args.check, args.out / "io.safetensors")
        return

    base_out = run(load_base())
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=list(TARGETS))
    model = get_peft_model(load_base(), config)
    model.peft_config["default"].base_model_name_or_path = BASE_NAME
    lora_params = randomise_adapters(model)
    assert lora_params == sorted(
        f"base_model.model.{t}.lora_{m}.default.weight" for t in TARGETS for m in "AB"
    ), lora_params
    model.eval()
    out = run(model)
    change = (out["logits"] - base_out["logits"]).abs().max().item()
    assert change > 0.5, f"the adapter barely changes the logits ({change})"

    adapter_dir = args.out / "adapter"
    if adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    model.save_pretrained(adapter_dir)
    (adapter_dir / "README.md").unlink(missing_ok=True)  # peft's model card, not needed

    # what peft wrote: keys without the adapter name, equal to the in-memory values
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    state = dict(model.named_parameters())
    assert sorted(saved) == sorted(f"base_model.model.{t}.lora_{m}.weight" for t in TARGETS for m in "AB")
    for key, value in saved.items():
        assert value.dtype == torch.float32, (key, value.dtype)
        assert torch.equal(value, state[key.replace(".weight", ".default.weight")]), key
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == RANK and cfg["lora_alpha"] == ALPHA
    assert sorted(cfg["target_modules"]) == sorted(TARGETS), cfg["target_modules"]

    # reloading the files gives the same logits, bit for bit
    reloaded = PeftModel.from_pretrained(load_base(), adapter_dir).eval()
    assert torch.equal(run(reloaded)["logits"], out["logits"])

    save_file(
        out,
        str(args.out / "io.safetensors"),
        metadata={
            "seed": str(SEED),
            "peft": peft.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
    )
    print(f"wrote {adapter_dir} and {args.out / 'io.safetensors'}")
    print(f"max |adapted - base logits| = {change:.3f}; keys:")
    for key, value in sorted(saved.items()):
        print(f"  {key} {list(value.shape)}")


if __name__ == "__main__":
    main()
