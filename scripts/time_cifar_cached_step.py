#!/usr/bin/env python3
"""PyTorch reference timings for the CIFAR-10 experiment's cached training (issue 14).

The cached step: features x [32, 576] and the frozen product W0 x + b [32, 1024] are
precomputed; a step runs the adapter (LoRA rank 4, alpha 8, dropout 0.1 on its input),
Hardswish, dropout 0.2, the 1024 -> 10 head, cross-entropy, backward and AdamW (PyTorch's
defaults, weight decay 0.01, lr 1e-3), as fedvlm's cached step does.

Times, on random data of the right shapes (the cost does not depend on the values):
  * one cached step (median of many);
  * a cached round done the natural PyTorch way: every client in turn, a fresh AdamW,
    3 epochs over its 1,250 examples in shuffled batches of 32;
  * the same round batched over clients by hand (torch.bmm on stacked adapters and heads,
    one AdamW over the stacked tensors: what a careful PyTorch user could write).

Prints one JSON line per measurement. torch.set_num_threads(2) unless --threads says otherwise.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

IN, HIDDEN, CLASSES, RANK, ALPHA = 576, 1024, 10, 4, 8.0
SCALING = ALPHA / RANK


class Client(torch.nn.Module):
    """classifier.0's adapter and the head (the frozen product comes from the cache)."""

    def __init__(self):
        super().__init__()
        bound = 1.0 / math.sqrt(IN)
        self.lora_a = torch.nn.Parameter(torch.empty(RANK, IN).uniform_(-bound, bound))
        self.lora_b = torch.nn.Parameter(torch.zeros(HIDDEN, RANK))
        self.head = torch.nn.Linear(HIDDEN, CLASSES)
        self.drop_in = torch.nn.Dropout(0.1)
        self.drop = torch.nn.Dropout(0.2)

    def forward(self, x, base):
        h = base + SCALING * F.linear(F.linear(self.drop_in(x), self.lora_a), self.lora_b)
        return self.head(self.drop(F.hardswish(h)))


def time_step(steps, batch):
    model = Client()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, base = torch.randn(batch, IN), torch.randn(batch, HIDDEN)
    y = torch.randint(0, CLASSES, (batch,))
    times = []
    for i in range(steps + 20):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x, base), y)
        loss.backward()
        opt.step()
        if i >= 20:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def sequential_round(clients, examples, epochs, batch, cache_x, cache_base, labels):
    start = time.perf_counter()
    for k in range(clients):
        model = Client()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        rows = torch.randint(0, cache_x.shape[0], (examples,))
        for _ in range(epochs):
            order = rows[torch.randperm(examples)]
            for i in range(0, examples, batch):
                idx = order[i:i + batch]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(cache_x[idx], cache_base[idx]), labels[idx])
                loss.backward()
                opt.step()
    return time.perf_counter() - start


def batched_round(clients, examples, epochs, batch, cache_x, cache_base, labels):
    """Every client at once: stacked tensors, torch.bmm, loss = sum of the clients' means.
    Clients hold equal numbers of examples here, so no masking is needed."""
    start = time.perf_counter()
    bound = 1.0 / math.sqrt(IN)
    a = torch.empty(clients, RANK, IN).uniform_(-bound, bound).requires_grad_()
    b = torch.zeros(clients, HIDDEN, RANK, requires_grad=True)
    w = (torch.randn(clients, HIDDEN, CLASSES) * 0.01).requires_grad_()
    bias = torch.zeros(clients, 1, CLASSES, requires_grad=True)
    opt = torch.optim.AdamW([a, b, w, bias], lr=1e-3)
    rows = torch.randint(0, cache_x.shape[0], (clients, examples))
    for _ in range(epochs):
        perm = torch.argsort(torch.rand(clients, examples), dim=1)
        order = torch.gather(rows, 1, perm)
        for i in range(0, examples, batch):
            idx = order[:, i:i + batch]
            x, base, y = cache_x[idx], cache_base[idx], labels[idx]
            opt.zero_grad(set_to_none=True)
            xd = F.dropout(x, 0.1)
            h = base + SCALING * torch.bmm(torch.bmm(xd, a.transpose(1, 2)), b.transpose(1, 2))
            z = torch.bmm(F.dropout(F.hardswish(h), 0.2), w) + bias
            loss = F.cross_entropy(z.reshape(-1, CLASSES), y.reshape(-1), reduction="none")
            loss = loss.reshape(clients, -1).mean(dim=1).sum()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=str, default="40")
    parser.add_argument("--examples", type=int, default=1250)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--skip-sequential-above", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    step = time_step(args.steps, args.batch)
    print(json.dumps({"what": "cached_step", "seconds": step, **info}), flush=True)
    cache_x = torch.randn(args.images, IN)
    cache_base = torch.randn(args.images, HIDDEN)
    labels = torch.randint(0, CLASSES, (args.images,))
    for clients in [int(c) for c in args.clients.split(",")]:
        common = (clients, args.examples, args.epochs, args.batch, cache_x, cache_base, labels)
        if clients <= args.skip_sequential_above:
            seconds = sequential_round(*common)
            print(json.dumps({"what": "round_sequential", "clients": clients,
                              "seconds": seconds, **info}), flush=True)
        batched_round(*common)  # warm-up
        seconds = batched_round(*common)
        print(json.dumps({"what": "round_batched_bmm", "clients": clients,
                          "seconds": seconds, **info}), flush=True)


if __name__ == "__main__":
    main()
