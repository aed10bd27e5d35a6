#!/usr/bin/env python3
"""Times PyTorch's side of the CIFAR-10 frozen-prefix cache build on the CPU.

torchvision's `mobilenet_v3_small(weights=None, num_classes=10)` (the same architecture as the
ImageNet checkpoint; timing does not depend on the weights, so nothing is downloaded), in eval
mode under `torch.inference_mode()`, on random images `[batch, 3, size, size]` (default 256 at
64 px). One cache batch is what fedvlm's `PrefixCache::build` computes per image:

    x    = flatten(avgpool(features(images)))   # [batch, 576], the pooled features
    base = classifier[0](x)                     # [batch, 1024], the adapted layer's frozen product

Prints the median over `--repeat` timed batches (after `--warmup` untimed ones) of the whole
batch and per image, as `torch_ms_per_image=<value>` on the last line (read by
`scripts/bench_cache_build.sh`). With `--per-layer`, also times each child of `features` alone
on its own input (median of the same repeats).

    python scripts/time_cifar_cache_build.py [--threads 2] [--batch 256] [--size 64] [--per-layer] [--channels-last]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torchvision


def timed(fn, warmup: int, repeat: int) -> float:
    """Median wall-clock seconds of `fn()` over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="model and images in torch.channels_last memory format",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def cache_batch():
        x = torch.flatten(model.avgpool(model.features(images)), 1)
        return x, model.classifier[0](x)

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, "
        f"{'channels_last' if args.channels_last else 'NCHW'}"
    )
    with torch.inference_mode():
        if args.per_layer:
            h = images
            for i, layer in enumerate(model.features):
                inp = h
                t = timed(lambda: layer(inp), args.warmup, args.repeat)
                h = layer(inp)
                print(
                    f"features.{i:<2} {tuple(inp.shape[1:])} -> {tuple(h.shape[1:])}: "
                    f"{t * 1e3:8.2f} ms per batch"
                )
        seconds = timed(cache_batch, args.warmup, args.repeat)
    per_image = seconds * 1e3 / args.batch
    print(f"cache batch {args.batch} at {args.size} px: {seconds * 1e3:.1f} ms per batch")
    print(f"torch_ms_per_image={per_image:.4f}")


if __name__ == "__main__":
    main()
