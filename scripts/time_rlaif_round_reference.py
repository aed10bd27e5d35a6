#!/usr/bin/env python3
"""Times transformers + peft doing the local training of one federated round of
`examples/fedvlm_rlaif.rs` (pLoRA on Florence-2, RLAIF-V), on the same data and machine.

Why: to compare the Rust example's CPU time per step and per client round with what the
usual Python stack (transformers 5.24 native Florence-2 + peft 0.21) needs for the same work.
Use it with the folders of `scripts/make_random_florence2.py` and
`scripts/make_synthetic_rlaif_v.py` (or real ones).

What it does, step by step as the Rust example (src/experiments/rlaif, src/experiments/vqa,
src/federated/simulation.rs):

1. Data: reads `RLAIF-V-Dataset_*.parquet` in file-name order with pyarrow (`question`,
   `chosen`, `origin_dataset`, `image`), skipping rows with a null or blank text or no image
   bytes; with `--samples-per-client N`, at most `N * clients` rows per source are read (as
   the example reads them). Clients by source: sources sorted by size (largest first, ties by
   name) dealt to the client holding the fewest samples; each client keeps a seeded random
   subset of at most N samples, then `round(test_fraction * n)` (at least 1, at most n - 1)
   become its test split. The counts match the Rust split; which rows are picked does not
   (other RNG).
2. Preprocessing (timed): images decoded with Pillow, converted to RGB, resized straight to
   the `preprocessor_config.json` size (768x768 for base) with its filter (bicubic), times
   1/255, ImageNet mean/std. Text with the folder's `tokenizer.json` via `tokenizers`, the 1024
   Florence tokens added as the Rust tokenizer adds them: prompt = `<s> question </s>`,
   labels = `<s> chosen </s>`, each cut to `--max-prompt-len` / `--max-answer-len` tokens
   keeping the final `</s>` (src/experiments/vqa/sample.rs `truncate_ids`).
3. Model: `Florence2ForConditionalGeneration.from_pretrained(--model)` in float32, peft
   `LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1)` on the last decoder layer's
   `self_attn.q_proj` and `self_attn.v_proj` (native names
   `model.language_model.decoder.layers.{L-1}.self_attn.{q,v}_proj`), everything else frozen.
   Per client: fresh adapters (seeded), a fresh `torch.optim.AdamW` (lr 1e-6, betas 0.9/0.999,
   eps 1e-8, weight decay 0.01: the Rust `OptimizerConfig::default()`), train mode.
4. One local round per client: `--epochs` passes over its training samples in a seeded
   shuffled order, batches of `--batch-size` (the last one may be smaller), each step timed:
   forward, loss = mean cross-entropy over the label tokens (padding -100), backward, AdamW.
   The encoder reads the image features followed by the prompt embeddings (prompts
   right-padded with `<pad>`, masked); the decoder reads the labels shifted right behind
   `</s>` (`shift_tokens_right`, -100 -> `<pad>`).

   Default (like the example's default): the frozen-prefix cache. Adapters live only in the
   last decoder layer, so the image features, the encoder output and the output of the earlier
   decoder layers never change: they are computed once per sample (eval mode, no grad, in
   batches of `--cache-batch-size` 16, stored unpadded in float16 as the Rust cache does; timed
   as "cache build") and each step runs only the last decoder layer (train mode: its dropouts
   and the adapters' dropout) and `lm_head`. `--no-cache` (like the example's `--no-cache`)
   runs the whole model every step instead.
5. `--eval`: each client's test split scored once, no grad, eval mode, batches of
   `--eval-batch-size` (loss and token accuracy, timed). The Rust example scores every client
   before training (round 0) and after every round, so one Rust round of training has two
   such passes.

Prints one line per step and per client, the totals, the peak RSS (`ru_maxrss`) and, last, a
JSON summary line (prefixed `SUMMARY `).

    python scripts/time_rlaif_round_reference.py --model /tmp/florence2-base-random \
        --data /tmp/rlaif-synth --clients 2 --samples-per-client 8 --test-fraction 0.25 \
        --batch-size 4 --eval-batch-size 16 --epochs 1 --lr 1e-6 --max-prompt-len 48 \
        --max-answer-len 48 --threads 2 --eval

is the same work as one round of

    RAYON_NUM_THREADS=2 cargo run --release --example fedvlm_rlaif -- \
        --data-dir /tmp/rlaif-synth --model /tmp/florence2-base-random --sharing plora \
        --clients 2 --max-samples-per-client 8 --test-fraction 0.25 --rounds 1 \
        --local-epochs 1 --batch-size 4 --lr 1e-6 --max-prompt-len 48 --max-answer-len 48 \
        --answers-per-client 0 --out /tmp/rl-base

Known differences from the Rust example (details in scripts/README.md): in `--no-cache` mode
transformers' train mode also applies DaViT's drop path (rate 0.1), which the Rust tower does
not implement; pixel values differ by a few 8-bit levels (JPEG decoding; and Pillow 13 resizes
vertically first when the height shrinks much more than the width, the Rust resize always
horizontally first); the split picks other rows (same counts and source groups); the Rust
round also scores every client before training, writes checkpoints and, unless
`--answers-per-client 0`, generates answers with beam search.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import random
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from PIL import Image

IGNORE_INDEX = -100
PAD_ID = 1
DECODER_START_ID = 2

# src/models/florence2/tokenizer.rs: the 1024 tokens Florence-2's processor adds, in order.
TRAILING_TOKENS = [
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
    "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
    "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
]


def florence2_added_tokens() -> list[str]:
    return ["<od>", "</od>", "<ocr>", "</ocr>"] + [f"<loc_{i}>" for i in range(1000)] + TRAILING_TOKENS


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def read_rows(data_dir: Path, per_source_cap: int | None) -> tuple[list[dict], dict]:
    """The usable rows of every shard, in file and row order (at most `per_source_cap` per
    source), with counts of what was seen."""
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and p.name.startswith("RLAIF-V-Dataset_") and p.name.endswith(".parquet") and len(p.name) > len("RLAIF-V-Dataset_.parquet"))
    if not files:
        raise SystemExit(f"no RLAIF-V-Dataset_*.parquet in {data_dir}")
    rows, kept, stats = [], {}, {"files": len(files), "rows_seen": 0, "skipped": 0, "capped": 0}
    for path in files:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=32, columns=["question", "chosen", "origin_dataset", "image"]):
            for r in batch.to_pylist():
                stats["rows_seen"] += 1
                image = r["image"]
                data = image.get("bytes") if isinstance(image, dict) else image
                q, c, o = text_or_none(r["question"]), text_or_none(r["chosen"]), text_or_none(r["origin_dataset"])
                if not data or q is None or c is None or o is None:
                    stats["skipped"] += 1
                    continue
                if per_source_cap is not None and kept.get(o, 0) >= per_source_cap:
                    stats["capped"] += 1
                    continue
                kept[o] = kept.get(o, 0) + 1
                rows.append(dict(question=q, chosen=c, origin=o, image=data))
    stats["kept_per_source"] = kept
    return rows, stats


def group_sources(keys: list[str], num_clients: int) -> list[list[int]]:
    """src/data/rlaif_v/partition.rs `group_sources`: sources by size, largest first (ties by
    name), each to the client with the fewest samples (ties to the lowest id)."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    names = sorted(groups)
    if not 1 <= num_clients <= len(names):
        raise SystemExit(f"--clients must be in 1..={len(names)} (the number of sources), got {num_clients}")
    order = sorted(names, key=lambda n: -len(groups[n]))  # stable: ties stay in name order
    clients: list[list[int]] = [[] for _ in range(num_clients)]
    for name in order:
        smallest = min(range(num_clients), key=lambda c: (len(clients[c]), c))
        clients[smallest].extend(groups[name])
    return [sorted(c) for c in clients]


def split_clients(keys, num_clients, cap, test_fraction, seed):
    """Per client (train, test, sources) as the Rust partition does it (other RNG)."""
    out = []
    for k, indices in enumerate(group_sources(keys, num_clients)):
        rng = random.Random(seed + k)
        if cap is not None and len(indices) > cap:
            rng.shuffle(indices)
            indices = sorted(indices[:cap])
        n = len(indices)
        num_test = 0 if n < 2 else min(max(math.floor(test_fraction * n + 0.5), 1), n - 1)
        shuffled = list(indices)
        rng.shuffle(shuffled)
        test, train = sorted(shuffled[:num_test]), sorted(shuffled[num_test:])
        out.append((train, test, sorted({keys[i] for i in indices})))
    return out


class Preprocessor:
    """The Rust `Florence2Processor` as the experiment uses it: image -> pixel values,
    question -> prompt ids, answer -> label ids."""

    def __init__(self, model_dir: Path, max_prompt: int, max_answer: int):
        from tokenizers import AddedToken, Tokenizer

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.tok.add_special_tokens([AddedToken(t, special=True) for t in florence2_added_tokens()])
        cfg = json.loads((model_dir / "preprocessor_config.json").read_text())
        self.size = (cfg["size"]["width"], cfg["size"]["height"])
        self.resample = cfg.get("resample", 3)
        self.rescale = cfg.get("rescale_factor", 1 / 255) if cfg.get("do_rescale", True) else 1.0
        self.mean = np.array(cfg.get("image_mean", [0.485, 0.456, 0.406]), dtype=np.float32)
        self.std = np.array(cfg.get("image_std", [0.229, 0.224, 0.225]), dtype=np.float32)
        self.max_prompt, self.max_answer = max_prompt, max_answer

    @staticmethod
    def truncate(ids: list[int], n: int) -> list[int]:
        return ids if len(ids) <= n else ids[: n - 1] + ids[-1:]

    def pixels(self, data: bytes) -> torch.Tensor:
        image = Image.open(io.BytesIO(data)).convert("RGB").resize(self.size, resample=self.resample)
        x = np.asarray(image, dtype=np.float32) * np.float32(self.rescale)
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def sample(self, row: dict) -> dict:
        return dict(
            pixels=self.pixels(row["image"]),
            prompt=self.truncate(self.tok.encode(row["question"]).ids, self.max_prompt),
            answer=self.truncate(self.tok.encode(row["chosen"]).ids, self.max_answer),
        )


def pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [value] * (n - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows], dtype=torch.long)
    return ids, mask


def shift_tokens_right(labels: torch.Tensor) -> torch.Tensor:
    out = labels.new_zeros(labels.shape)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = DECODER_START_ID
    return out.masked_fill(out == IGNORE_INDEX, PAD_ID)


def labels_of(samples: list[dict]) -> torch.Tensor:
    labels, _ = pad([s["answer"] for s in samples], IGNORE_INDEX)
    return labels


def masked_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, model, last: int):
        self.model = model  # the peft model
        self.inner = model.base_model.model  # Florence2ForConditionalGeneration (adapted)
        self.decoder = self.inner.model.language_model.decoder
        self.layer = self.decoder.layers[last]

    def encoder_inputs(self, samples):
        """Image features then prompt embeddings, and their mask (what the Rust encoder reads)."""
        pixels = torch.stack([s["pixels"] for s in samples])
        ids, mask = pad([s["prompt"] for s in samples], PAD_ID)
        image = self.inner.model.get_image_features(pixels).pooler_output
        text = self.inner.get_input_embeddings()(ids)
        embeds = torch.cat([image, text.to(image.dtype)], dim=1)
        attn = torch.cat([torch.ones(image.shape[:2], dtype=torch.long), mask], dim=1)
        return embeds, attn, image.shape[1]

    def full_logits(self, samples):
        embeds, attn, _ = self.encoder_inputs(samples)
        labels = labels_of(samples)
        out = self.model(inputs_embeds=embeds, attention_mask=attn, decoder_input_ids=shift_tokens_right(labels), use_cache=False)
        return out.logits, labels

    @torch.no_grad()
    def prefix(self, samples, dtype):
        """The last decoder layer's inputs per sample, unpadded: (encoder [S_i, d], prefix [T_i, d])."""
        captured = {}

        class Stop(Exception):
            pass

        def hook(_module, args, kwargs):
            captured["hidden"], captured["encoder"] = args[0], args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
            raise Stop

        embeds, attn, n_img = self.encoder_inputs(samples)
        labels = labels_of(samples)
        handle = self.layer.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.model(inputs_embeds=embeds, attention_mask=attn, decoder_input_ids=shift_tokens_right(labels), use_cache=False)
        except Stop:
            pass
        finally:
            handle.remove()
        out = []
        for i, s in enumerate(samples):
            s_len, t_len = n_img + len(s["prompt"]), len(s["answer"])
            out.append((captured["encoder"][i, :s_len].to(dtype).clone(), captured["hidden"][i, :t_len].to(dtype).clone()))
        return out

    def cached_logits(self, samples, entries):
        """Only the last decoder layer and the head, from cached inputs."""
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

        n, d = len(samples), entries[0][0].shape[1]
        s_max = max(e[0].shape[0] for e in entries)
        t_max = max(e[1].shape[0] for e in entries)
        enc = torch.zeros(n, s_max, d)
        hid = torch.zeros(n, t_max, d)
        enc_mask = torch.zeros(n, s_max, dtype=torch.long)
        for i, (e, h) in enumerate(entries):
            enc[i, : e.shape[0]] = e.float()
            hid[i, : h.shape[0]] = h.float()
            enc_mask[i, : e.shape[0]] = 1
        cfg = self.decoder.config
        self_mask = create_causal_mask(config=cfg, inputs_embeds=hid, attention_mask=torch.ones(n, t_max), cache=None)
        cross_mask = create_bidirectional_mask(config=cfg, inputs_embeds=hid, attention_mask=enc_mask, encoder_hidden_states=enc)
        hidden = self.layer(hid, self_mask, enc, encoder_attention_mask=cross_mask, cache=None, use_cache=False)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return self.inner.lm_head(hidden), labels_of(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="checkpoint folder (native layout)")
    ap.add_argument("--data", type=Path, required=True, help="folder with RLAIF-V-Dataset_*.parquet")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--samples-per-client", type=int, default=None, help="the example's --max-samples-per-client (before the train/test split)")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="the example's --test-fraction (its --quick preset: 0.25)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--eval-batch-size", type=int, default=16, help="the example's eval batch: 16 (its --quick preset: 4; no flag sets it)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-prompt-len", type=int, default=256)
    ap.add_argument("--max-answer-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--no-cache", action="store_true", help="run the whole model every step (the example's --no-cache)")
    ap.add_argument("--cache-batch-size", type=int, default=16, help="batch of the cache build (the Rust CacheConfig's 16)")
    ap.add_argument("--cache-dtype", choices=["f16", "f32"], default="f16")
    ap.add_argument("--eval", action="store_true", help="also time one scoring pass over each client's test split")
    ap.add_argument("--max-steps", type=int, default=None, help="stop each client's round after this many steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.max_prompt_len < 2 or args.max_answer_len < 2:
        ap.error("prompts and answers need room for <s> and </s>")
    eval_batch = args.eval_batch_size
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    from peft import LoraConfig, get_peft_model
    from transformers import Florence2ForConditionalGeneration

    # 1. data
    t = time.perf_counter()
    cap = args.samples_per_client
    rows, stats = read_rows(args.data, None if cap is None else cap * args.clients)
    clients = split_clients([r["origin"] for r in rows], args.clients, cap, args.test_fraction, args.seed)
    read_s = time.perf_counter() - t
    print(f"read {len(rows)} rows of {stats['files']} shards in {read_s:.1f} s: {stats}")

    # 2. preprocessing (only the samples some client uses)
    t = time.perf_counter()
    prep = Preprocessor(args.model, args.max_prompt_len, args.max_answer_len)
    used = sorted({i for train, test, _ in clients for i in train + test})
    samples = {i: prep.sample(rows[i]) for i in used}
    del rows
    preprocess_s = time.perf_counter() - t
    plen = [len(s["prompt"]) for s in samples.values()]
    alen = [len(s["answer"]) for s in samples.values()]
    print(
        f"{len(samples)} samples preprocessed in {preprocess_s:.1f} s (images {prep.size[0]}x{prep.size[1]}; "
        f"prompt tokens {min(plen)}-{max(plen)} mean {statistics.mean(plen):.1f}, answer tokens "
        f"{min(alen)}-{max(alen)} mean {statistics.mean(alen):.1f}); "
        + "; ".join(f"{k}: {len(tr)} train / {len(te)} test ({'+'.join(src)})" for k, (tr, te, src) in enumerate(clients))
    )

    # 3. model
    t = time.perf_counter()
    model = Florence2ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    load_s = time.perf_counter() - t
    last = model.config.text_config.decoder_layers - 1
    targets = [f"model.language_model.decoder.layers.{last}.self_attn.{p}" for p in ("q_proj", "v_proj")]
    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=targets, bias="none")
    model = get_peft_model(model, lora)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model loaded in {load_s:.1f} s: {n_params:,} parameters, trainable: {trainable}")
    runner = Runner(model, last)

    # 4a. frozen-prefix cache
    cache, cache_s = None, 0.0
    if not args.no_cache:
        t = time.perf_counter()
        model.eval()
        dtype = torch.float16 if args.cache_dtype == "f16" else torch.float32
        cache = {}
        for b in range(0, len(used), args.cache_batch_size):
            chunk = used[b : b + args.cache_batch_size]
            for i, entry in zip(chunk, runner.prefix([samples[i] for i in chunk], dtype)):
                cache[i] = entry
        cache_s = time.perf_counter() - t
        mb = sum(e.numel() * e.element_size() + h.numel() * h.element_size() for e, h in cache.values()) / 1e6
        print(f"frozen-prefix cache: {len(cache)} samples, {mb:.0f} MB in {cache_s:.1f} s")

    def logits_of(idx):
        batch = [samples[i] for i in idx]
        if cache is None:
            return runner.full_logits(batch)
        return runner.cached_logits(batch, [cache[i] for i in idx])

    # 4b. one local round per client
    lora_modules = [m for m in model.modules() if hasattr(m, "reset_lora_parameters") and "default" in getattr(m, "lora_A", {})]
    step_times, client_rounds, losses = [], [], []
    for k, (train, test, src) in enumerate(clients):
        torch.manual_seed(args.seed * 1000 + k)
        for m in lora_modules:  # fresh adapters per client: A random, B = 0
            m.reset_lora_parameters("default", True)
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        model.train()
        order = list(range(len(train)))
        t_client, steps = time.perf_counter(), 0
        client_steps = []
        for epoch in range(args.epochs):
            random.Random(args.seed * 7919 + k * 31 + epoch).shuffle(order)
            for b in range(0, len(order), args.batch_size):
                if args.max_steps is not None and steps >= args.max_steps:
                    break
                idx = [train[j] for j in order[b : b + args.batch_size]]
                t = time.perf_counter()
                optim.zero_grad(set_to_none=True)
                logits, labels = logits_of(idx)
                loss = masked_ce(logits, labels)
                loss.backward()
                optim.step()
                dt = time.perf_counter() - t
                steps += 1
                client_steps.append(dt)
                losses.append(loss.item())
                print(
                    f"client {k} epoch {epoch} step {steps}: {len(idx)} samples, answer tokens {labels.shape[1]}, "
                    f"loss {loss.item():.4f}, {dt:.3f} s",
                    flush=True,
                )
        round_s = time.perf_counter() - t_client
        step_times.extend(client_steps)
        client_rounds.append(dict(client=k, sources=src, train=len(train), test=len(test), steps=steps, seconds=round_s, step_seconds=client_steps))
        print(f"client {k}: {steps} steps in {round_s:.2f} s ({round_s / max(steps, 1):.3f} s per step)")

        # 5. scoring pass
        if args.eval and test:
            model.eval()
            t = time.perf_counter()
            loss_sum, count, correct = 0.0, 0, 0
            with torch.no_grad():
                for b in range(0, len(test), eval_batch):
                    logits, labels = logits_of(test[b : b + eval_batch])
                    keep = labels != IGNORE_INDEX
                    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
                    loss_sum += nll.item()
                    count += int(keep.sum())
                    correct += int((logits.argmax(-1)[keep] == labels[keep]).sum())
            eval_s = time.perf_counter() - t
            client_rounds[-1].update(eval_seconds=eval_s, eval_loss=loss_sum / max(count, 1), eval_accuracy=correct / max(count, 1))
            print(f"client {k}: eval of {len(test)} test samples in {eval_s:.2f} s (loss {loss_sum / max(count, 1):.4f}, token accuracy {correct / max(count, 1):.4f})")

    train_total = sum(c["seconds"] for c in client_rounds)
    rss = peak_rss_mib()
    print(
        f"training: {len(step_times)} steps, {train_total:.2f} s in all, "
        f"{statistics.mean(step_times) if step_times else float('nan'):.3f} s per step "
        f"(median {statistics.median(step_times) if step_times else float('nan'):.3f}); peak RSS {rss:.0f} MiB; "
        f"wall {time.perf_counter() - t_start:.1f} s"
    )
    summary = dict(
        tool="transformers+peft",
        torch=torch.__version__,
        threads=args.threads,
        machine=platform.processor() or platform.machine(),
        model=str(args.model),
        parameters=n_params,
        mode="no-cache" if args.no_cache else "cache",
        clients=args.clients,
        samples_per_client=cap,
        test_fraction=args.test_fraction,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_prompt_len=args.max_prompt_len,
        max_answer_len=args.max_answer_len,
        read_seconds=read_s,
        preprocess_seconds=preprocess_s,
        load_seconds=load_s,
        cache_seconds=cache_s,
        steps=len(step_times),
        mean_step_seconds=statistics.mean(step_times) if step_times else None,
        train_seconds=train_total,
        per_client=client_rounds,
        mean_train_loss=statistics.mean(losses) if losses else None,
        peak_rss_mib=rss,
        wall_seconds=time.perf_counter() - t_start,
    )
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
