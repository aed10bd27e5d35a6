#!/usr/bin/env python3
"""Builds the reference models the golden tests compare against and writes their fixtures.

Usage (CPU, no network once the packages are installed):

    pip install -r scripts/requirements.txt
    python scripts/generate_reference.py                    # the committed fixtures
    python scripts/generate_reference.py mobilenet_v3_full  # full-size, under target/ only

Everything is seeded, so running the script again rewrites byte-identical tensors (the
`.pth` zip container may differ in metadata only).

## mobilenet_v3 -> tests/fixtures/mobilenet_v3/

torchvision's `mobilenet_v3_small` / `mobilenet_v3_large` with `num_classes=10`, EVERY
parameter and buffer randomised (conv weights ~ N(0, 1/fan_in), linear weights
~ N(0, 9/fan_in), biases ~ N(0, 0.1^2), BatchNorm weight ~ U(0.5, 1.5), bias ~ N(0, 0.2^2),
running_mean ~ N(0, 0.2^2), running_var ~ U(0.5, 2.0), num_batches_tracked a random
integer), so that a missing bias, a wrong transpose or a BatchNorm in training mode cannot
pass by accident; evaluated in eval mode on one seeded input. Logits come out of order 1
(max |logit| about 2.5), pooled features below 2.

Width multipliers below 1 keep the files small; both widths still contain every block kind
(with and without expansion, with and without squeeze-excitation, ReLU and Hardswish,
stride 1 and 2, residual and not), and the third model covers `dilated` and `reduced_tail`.
The full-size architectures are checked through `shapes.json` (every state-dict key and
shape at width 1.0, 1000 classes) and, on demand, by the `mobilenet_v3_full` set.

| file                    | contents                                                 | size    |
|-------------------------|----------------------------------------------------------|---------|
| small_w025.pth          | small, width_mult 0.25, 10 classes (123,076 values)      | 0.56 MB |
| small_w025.safetensors  | the same state_dict                                      | 0.52 MB |
| large_w025.pth          | large, width_mult 0.25, 10 classes (305,560 values)      | 1.31 MB |
| large_w025.safetensors  | the same state_dict                                      | 1.25 MB |
| small_w025_dilated.pth  | small, width 0.25, dilated, reduced_tail (64,036 values) | 0.33 MB |
| io.safetensors          | `input` [2, 3, 64, 64]; per model `<name>.pooled`        | 0.10 MB |
|                         | [2, C_last] (features, avgpool, flatten) and             |         |
|                         | `<name>.logits` [2, 10]                                  |         |
| shapes.json             | small and large at width 1.0, 1000 classes: every        | 0.03 MB |
|                         | state_dict key's shape, and the parameter count          |         |

Total 4.0 MB.

## mobilenet_v3_full -> target/fixtures/mobilenet_v3_full/ (not committed)

The same at width 1.0 with 1000 classes (`small`, `large`: .pth and .safetensors, 65 MB),
for `cargo test --test mobilenet_v3 -- --ignored`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# name -> (builder, keyword arguments, also write a .safetensors copy)
MOBILENET_V3_MODELS = {
    "small_w025": (mobilenet_v3_small, dict(num_classes=10, width_mult=0.25), True),
    "large_w025": (mobilenet_v3_large, dict(num_classes=10, width_mult=0.25), True),
    "small_w025_dilated": (
        mobilenet_v3_small,
        dict(num_classes=10, width_mult=0.25, dilated=True, reduced_tail=True),
        False,
    ),
}
INPUT_SHAPE = (2, 3, 64, 64)


def randomise_(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrites every parameter and buffer of `model` with seeded random values."""
    bn_prefixes = {
        name + "."
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    }
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            in_bn = any(key.startswith(p) for p in bn_prefixes)
            leaf = key.rsplit(".", 1)[-1]
            shape = tuple(tensor.shape)
            if leaf == "num_batches_tracked":
                tensor.fill_(int(torch.randint(1, 10_000, (1,), generator=generator)))
            elif in_bn and leaf == "weight":
                tensor.copy_(torch.rand(shape, generator=generator) + 0.5)
            elif in_bn and leaf == "running_var":
                tensor.copy_(torch.rand(shape, generator=generator) * 1.5 + 0.5)
            elif in_bn and leaf in ("bias", "running_mean"):
                tensor.copy_(torch.randn(shape, generator=generator) * 0.2)
            elif leaf == "weight":
                # Linear layers get a larger gain so that the logits are of order 1.
                gain = 1.0 if len(shape) == 4 else 3.0
                fan_in = math.prod(shape[1:])
                tensor.copy_(torch.randn(shape, generator=generator) * gain / math.sqrt(fan_in))
            elif leaf == "bias":
                tensor.copy_(torch.randn(shape, generator=generator) * 0.1)
            else:
                raise ValueError(f"unexpected state_dict entry {key}")


def pooled_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Everything before the classifier: features, adaptive average pool, flatten."""
    return torch.flatten(model.avgpool(model.features(x)), 1)


def write_models(out: Path, models: dict) -> None:
    """Builds, randomises and runs `models`, writing their state dicts and `io.safetensors`."""
    out.mkdir(parents=True, exist_ok=True)
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(1234))
    io = {"input": x.contiguous()}
    for index, (name, (builder, kwargs, with_safetensors)) in enumerate(models.items()):
        torch.manual_seed(index)
        model = builder(**kwargs)
        randomise_(model, torch.Generator().manual_seed(100 + index))
        model.eval()
        with torch.no_grad():
            pooled = pooled_features(model, x)
            logits = model(x)
            assert torch.allclose(model.classifier(pooled), logits)
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        torch.save(state, out / f"{name}.pth")
        if with_safetensors:
            save_file(state, str(out / f"{name}.safetensors"))
        io[f"{name}.pooled"] = pooled.contiguous()
        io[f"{name}.logits"] = logits.contiguous()
        values = sum(v.numel() for v in state.values())
        print(
            f"{name}: {values} values, pooled {tuple(pooled.shape)}, logits "
            f"{tuple(logits.shape)}, |pooled| max {pooled.abs().max():.3f}, "
            f"|logits| max {logits.abs().max():.3f} std {logits.std():.3f}"
        )
    save_file(io, str(out / "io.safetensors"), metadata={"torch": torch.__version__})


def mobilenet_v3() -> None:
    out = FIXTURES / "mobilenet_v3"
    write_models(out, MOBILENET_V3_MODELS)

    shapes = {}
    for name, builder in (("small", mobilenet_v3_small), ("large", mobilenet_v3_large)):
        model = builder()
        shapes[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        print(f"{name} (width 1.0, 1000 classes): {shapes[name]['parameters']} parameters")
    (out / "shapes.json").write_text(json.dumps(shapes, indent=1) + "\n")

    for path in sorted(out.iterdir()):
        print(f"  {path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")


def mobilenet_v3_full() -> None:
    """Full-size models (width 1.0, 1000 classes; 65 MB): not committed, written under
    target/ for the ignored test `full_size_matches_torchvision`."""
    out = ROOT / "target" / "fixtures" / "mobilenet_v3_full"
    write_models(
        out,
        {
            "small": (mobilenet_v3_small, dict(), True),
            "large": (mobilenet_v3_large, dict(), True),
        },
    )
    for path in sorted(out.iterdir()):
        print(f"  {path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")


GENERATORS = {"mobilenet_v3": mobilenet_v3, "mobilenet_v3_full": mobilenet_v3_full}
DEFAULT_SETS = ["mobilenet_v3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sets", nargs="*", help=f"fixture sets among {sorted(GENERATORS)} (default: {DEFAULT_SETS})"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.sets) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown fixture sets {unknown}; choose from {sorted(GENERATORS)}")
    torch.set_num_threads(1)  # deterministic reductions
    for name in args.sets or DEFAULT_SETS:
        GENERATORS[name]()


if __name__ == "__main__":
    main()
