#!/usr/bin/env python3
"""Times transformers' native Florence-2-base (random weights, no download) on the CPU.

One batch: 2 images 768x768, a 10-token prompt (`<s> 8 tokens </s>`, after the 577 image tokens),
20 decoder tokens with labels. Prints the parameter count, then the median of --repeat timed runs
(after one warm-up) of:
- vision tower + projector forward (no grad, eval),
- full forward with loss (no grad, eval),
- full forward + backward of the loss (train mode, dropout as in Florence's config: 0.1).

    python scripts/time_florence2_reference.py [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration

VISION_BASE = dict(
    in_channels=3,
    depths=[1, 1, 9, 1],
    patch_size=[7, 3, 3, 3],
    patch_stride=[4, 2, 2, 2],
    patch_padding=[3, 1, 1, 1],
    patch_prenorm=[False, True, True, True],
    embed_dim=[128, 256, 512, 1024],
    num_heads=[4, 8, 16, 32],
    num_groups=[4, 8, 16, 32],
    window_size=12,
    drop_path_rate=0.1,
    mlp_ratio=4.0,
    qkv_bias=True,
    activation_function="gelu",
    projection_dim=768,
    max_temporal_embeddings=100,
    max_position_embeddings=50,
)


def text_base(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        max_position_embeddings=1024,
        activation_function="gelu",
        dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.1,
        scale_embedding=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )


def build(vocab_size: int, image_token_id: int) -> Florence2ForConditionalGeneration:
    cfg = Florence2Config(
        vision_config=dict(VISION_BASE),
        text_config=BartConfig(**text_base(vocab_size)).to_dict(),
        image_token_id=image_token_id,
    )
    return Florence2ForConditionalGeneration(cfg)


def count(model: torch.nn.Module) -> dict[str, int]:
    m = model.model
    parts = {
        "vision_tower": sum(p.numel() for p in m.vision_tower.parameters()),
        "multi_modal_projector": sum(p.numel() for p in m.multi_modal_projector.parameters()),
        "language_model": sum(p.numel() for p in m.language_model.parameters()),
    }
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts


def timed(fn, repeat: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    # Microsoft's vocabulary (51289) for the parameter count of the original checkpoint ...
    with torch.device("meta"):
        original_vocab = build(51289, 51288)
    print("Florence-2-base, vocab 51289 (Microsoft's original):", count(original_vocab))
    # ... and the converted native checkpoint's padded vocabulary (51328, <image> = 51289), timed.
    model = build(51328, 51289)
    print("Florence-2-base, vocab 51328 (native, padded):     ", count(model))

    batch, prompt, dec = 2, 10, 20
    g = torch.Generator().manual_seed(1)
    pixel_values = torch.randn((batch, 3, 768, 768), generator=g)
    n_image = 1 + 24 * 24
    text = torch.randint(3, 50000, (batch, prompt), generator=g)
    text[:, 0], text[:, -1] = 0, 2
    input_ids = torch.cat([torch.full((batch, n_image), model.config.image_token_id), text], dim=1)
    labels = torch.randint(3, 50000, (batch, dec), generator=g)
    labels[:, -1] = 2
    kw = dict(input_ids=input_ids, pixel_values=pixel_values, attention_mask=torch.ones_like(input_ids), labels=labels)

    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; "
        f"batch {batch}, images 768x768 ({n_image} image tokens), prompt {prompt} tokens, "
        f"{dec} decoder tokens; median of {args.repeat} after 1 warm-up"
    )

    model.eval()

    def vision():
        with torch.no_grad():
            model.model.get_image_features(pixel_values)

    def forward():
        with torch.no_grad():
            model(**kw)

    t, ts = timed(vision, args.repeat)
    print(f"vision tower + projector forward (eval, no grad): {t:7.2f} s  {['%.2f' % x for x in ts]}")
    t, ts = timed(forward, args.repeat)
    print(f"full forward + loss (eval, no grad):             {t:7.2f} s  {['%.2f' % x for x in ts]}")

    model.train()

    def forward_backward():
        model.zero_grad(set_to_none=True)
        out = model(**kw)
        out.loss.backward()

    t, ts = timed(forward_backward, args.repeat)
    print(f"full forward + backward (train, dropout 0.1):    {t:7.2f} s  {['%.2f' % x for x in ts]}")


if __name__ == "__main__":
    main()
