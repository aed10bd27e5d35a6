#!/usr/bin/env python3
"""PyTorch reference timings of the CIFAR-10 experiment run eagerly (issue 14): every local step
runs the whole MobileNetV3-small, as the paper's code did, instead of training from a cache.

How to run (a venv with torch and torchvision; no network, random weights):

    /work/torch-venv/bin/python scripts/time_cifar_eager_client.py
    python3 scripts/time_cifar_eager_client.py --threads 2 --steps 40 --cache-images 2048

The model: torchvision's mobilenet_v3_small (random weights; the cost does not depend on the
values) at 64x64 px, its classifier.0 wrapped in a LoRA adapter (rank 4, alpha 8, dropout 0.1
on its input) and a fresh 1024 -> 10 head; everything else frozen and in eval mode (BatchNorm
with running statistics, as fedvlm's frozen backbone). A step: forward of the whole network on
a batch of 32, cross-entropy, backward (it stops at the adapter: nothing earlier trains), AdamW
(lr 1e-3, weight decay 0.01).

Prints JSON lines:
  * eager_step: median seconds of one step;
  * eager_round / eager_150_rounds: the step times the paper's steps (40 clients, 3 epochs of
    ceil(1250 / 32) = 40 batches each; 150 rounds), extrapolated, training only;
  * cache_build: with --cache-images N > 0, seconds per image of the frozen prefix (features
    and classifier.0's frozen product) in eval mode, no grad, batches of 256: what a careful
    PyTorch user precomputes once (60,000 images for the paper).
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

RANK, ALPHA = 4, 8.0


class LoraLinear(torch.nn.Module):
    """A frozen linear layer plus a trainable low-rank update on dropped-out inputs."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        bound = 1.0 / math.sqrt(base.in_features)
        self.lora_a = torch.nn.Parameter(torch.empty(RANK, base.in_features).uniform_(-bound, bound))
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, RANK))
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x):
        update = F.linear(F.linear(self.drop(x), self.lora_a), self.lora_b)
        return self.base(x) + (ALPHA / RANK) * update


def client_model():
    model = torchvision.models.mobilenet_v3_small(weights=None)
    for p in model.parameters():
        p.requires_grad_(False)
    model.classifier[0] = LoraLinear(model.classifier[0])
    model.classifier[3] = torch.nn.Linear(1024, 10)
    model.eval()
    model.classifier.train()  # the adapter's and the classifier's dropout
    return model


def time_eager_step(steps, batch, size):
    model = client_model()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.01)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(steps + 5):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= 5:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def time_cache_build(images, batch, size):
    model = client_model().eval()
    base = model.classifier[0].base
    x = torch.randn(batch, 3, size, size)
    for _ in range(2):  # warm-up
        base(torch.flatten(model.avgpool(model.features(x)), 1))
    start, done = time.perf_counter(), 0
    while done < images:
        n = min(batch, images - done)
        features = torch.flatten(model.avgpool(model.features(x[:n])), 1)
        base(features)
        done += n
    return (time.perf_counter() - start) / images


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--examples", type=int, default=1250)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--cache-images", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size}
    step = time_eager_step(args.steps, args.batch, args.size)
    print(json.dumps({"what": "eager_step", "seconds": step, **info}), flush=True)
    steps = args.clients * args.epochs * math.ceil(args.examples / args.batch)
    print(json.dumps({"what": "eager_round", "clients": args.clients, "steps": steps,
                      "seconds": step * steps, "extrapolated": True, **info}), flush=True)
    print(json.dumps({"what": "eager_150_rounds" if args.rounds == 150 else "eager_rounds",
                      "rounds": args.rounds, "seconds": step * steps * args.rounds,
                      "extrapolated": True, **info}), flush=True)
    if args.cache_images > 0:
        per_image = time_cache_build(args.cache_images, 256, args.size)
        print(json.dumps({"what": "cache_build", "seconds_per_image": per_image,
                          "images": args.cache_images, **info}), flush=True)


if __name__ == "__main__":
    main()
