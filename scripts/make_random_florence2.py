#!/usr/bin/env python3
"""Writes a randomly initialised Florence-2 checkpoint folder in transformers' native layout.

Why: Microsoft's weights cannot be downloaded here, but timing `examples/fedvlm_rlaif.rs`
(and `scripts/time_rlaif_round_reference.py`) at Florence-2-base size only needs a model of the
right shape: the cost of a step does not depend on the weights' values. The folder is what
`Florence2Pipeline::from_pretrained(DIR)` (src/models/florence2/pretrained.rs, hub.rs) and
`Florence2ForConditionalGeneration.from_pretrained(DIR)` both load:

- `config.json` + `model.safetensors` (one file, float32): `save_pretrained` of transformers'
  native `Florence2ForConditionalGeneration` built from the sizes below and initialised by
  transformers' own `_init_weights` (normal(0, 0.02) linears/embeddings, ...) under
  `torch.manual_seed(--seed)`. Tied weights (`lm_head`, the encoder/decoder `embed_tokens`)
  are stored once, as `save_pretrained` does.
- `tokenizer.json`: the stand-in byte-level BPE tokenizer of
  tests/fixtures/florence2_text/tokenizer.json (see its README: BART-shaped, `<s>`=0,
  `<pad>`=1, `</s>`=2, `<unk>`=3, `<mask>`=700, no Florence tokens; the loader adds the 1024
  Florence tokens, 1725 tokens in all, within every size's vocabulary). BART's real tokenizer
  cannot be downloaded. The stand-in was trained on a tiny corpus, so it cuts English into
  about 3 tokens a word where BART's makes about 1.3: the same text gives longer sequences.
- `preprocessor_config.json`: Microsoft's Florence-2 image settings (CLIPImageProcessor,
  resize straight to SIZE x SIZE, resample 3 = bicubic, rescale 1/255, ImageNet mean/std,
  no centre crop, `image_seq_length` = grid^2 + 1), which src/models/florence2/processor/
  image.rs parses.

Sizes (`--size`):
- `base`: Florence-2-base as `Florence2Config::base()` (src/models/florence2/config.rs): DaViT
  128/256/512/1024 channels, heads and groups 4/8/16/32, depths 1/1/9/1, window 12, projection
  768, 50 position rows, 100 temporal rows; BART 768 wide, 6 + 6 layers, 12 heads, FFN 3072,
  1024 positions, vocabulary 51289 (Microsoft's; the converted florence-community checkpoint
  pads it to 51328), dropouts 0.1 (Microsoft's `text_config`), drop path 0.1; 768x768 images
  (577 image tokens). 231.4M parameters, about 0.93 GB of float32. The saved keys and shapes
  are checked against tests/fixtures/florence2/base_shapes.json.
- `large`: `Florence2Config::large()`: DaViT 256/512/1024/2048, heads and groups 8/16/32/64,
  projection 1024; BART 1024 wide, 12 + 12 layers, 16 heads, FFN 4096, 1024 positions. 770M
  parameters, about 3.1 GB.
- `tiny`: tests/fixtures/florence2/tiny_native's shapes (DaViT 8/16/24/40, BART 32 wide,
  2 + 2 layers) but a vocabulary of 1728 (the tokenizer's 1725 ids must fit), 128 text
  positions and dropouts 0.1 like base; 64x64 images (2x2 grid, 5 image tokens). For fast end
  to end checks.

`image_token_id` (the native port's `<image>` placeholder, which the Rust model never reads)
is 51289 for base and large as in tests/fixtures/florence2/base_shapes.json, 1725 for tiny.

    python scripts/make_random_florence2.py --size base --out /tmp/florence2-base-random --seed 0
    python scripts/make_random_florence2.py --size tiny --out /tmp/florence2-tiny-random

About 1 minute and 3 GB of RAM for base on 2 cores (`--check` reloads it with transformers and
runs one forward pass: about a minute more).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import time
from pathlib import Path

import torch

from transformers import BartConfig, Florence2Config, Florence2ForConditionalGeneration

REPO = Path(__file__).resolve().parent.parent
STAND_IN_TOKENIZER = REPO / "tests" / "fixtures" / "florence2_text" / "tokenizer.json"
BASE_SHAPES = REPO / "tests" / "fixtures" / "florence2" / "base_shapes.json"

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
TEXT_BASE = dict(
    vocab_size=51289,
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
    classifier_dropout=0.0,
    encoder_layerdrop=0.0,
    decoder_layerdrop=0.0,
    init_std=0.02,
    scale_embedding=False,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    decoder_start_token_id=2,
    forced_eos_token_id=2,
    is_encoder_decoder=True,
    tie_word_embeddings=True,
)

SIZES = {
    "base": dict(vision=VISION_BASE, text=TEXT_BASE, image_size=768, image_token_id=51289),
    "large": dict(
        vision=dict(
            VISION_BASE,
            embed_dim=[256, 512, 1024, 2048],
            num_heads=[8, 16, 32, 64],
            num_groups=[8, 16, 32, 64],
            projection_dim=1024,
        ),
        text=dict(
            TEXT_BASE,
            d_model=1024,
            encoder_layers=12,
            decoder_layers=12,
            encoder_attention_heads=16,
            decoder_attention_heads=16,
            encoder_ffn_dim=4096,
            decoder_ffn_dim=4096,
        ),
        image_size=768,
        image_token_id=51289,
    ),
    # tests/fixtures/florence2/tiny_native/config.json's shapes, a vocabulary the stand-in
    # tokenizer fits in (1725 ids + 3 spare), more positions, base's dropouts.
    "tiny": dict(
        vision=dict(
            VISION_BASE,
            depths=[1, 2, 2, 1],
            embed_dim=[8, 16, 24, 40],
            num_heads=[2, 2, 3, 4],
            num_groups=[2, 2, 3, 4],
            window_size=3,
            projection_dim=32,
            max_temporal_embeddings=8,
            max_position_embeddings=5,
        ),
        text=dict(
            TEXT_BASE,
            vocab_size=1728,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=128,
        ),
        image_size=64,
        image_token_id=1725,
    ),
}


def grid_side(vision: dict, image_size: int) -> int:
    """Side of the DaViT output grid: each stage's conv, (s + 2p - k) // stride + 1."""
    side = image_size
    for k, s, p in zip(vision["patch_size"], vision["patch_stride"], vision["patch_padding"]):
        side = (side + 2 * p - k) // s + 1
    return side


def preprocessor_config(image_size: int, image_seq_length: int) -> dict:
    """Microsoft's Florence-2 `preprocessor_config.json`, at `image_size`."""
    return {
        "auto_map": {"AutoProcessor": "processing_florence2.Florence2Processor"},
        "crop_size": {"height": image_size, "width": image_size},
        "do_center_crop": False,
        "do_convert_rgb": None,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "CLIPImageProcessor",
        "image_seq_length": image_seq_length,
        "image_std": [0.229, 0.224, 0.225],
        "processor_class": "Florence2Processor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
    }


def safetensors_shapes(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Key -> (dtype, shape) from a safetensors header, without reading the tensors."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"]) for k, v in header.items()}


def check_base_shapes(saved: dict[str, tuple[str, list[int]]]) -> None:
    """Every saved key is in base_shapes.json's native list with the same shape, and the keys
    it lists that were not saved are tied copies."""
    expected = json.loads(BASE_SHAPES.read_text())["native"]
    wrong = {k: (s, expected.get(k)) for k, (_, s) in saved.items() if expected.get(k) != s}
    assert not wrong, f"keys/shapes differ from {BASE_SHAPES}: {list(wrong.items())[:5]}"
    tied = {"lm_head.weight", "model.language_model.encoder.embed_tokens.weight", "model.language_model.decoder.embed_tokens.weight"}
    left = set(expected) - set(saved)
    assert left <= tied, f"not saved and not tied: {sorted(left - tied)[:5]}"
    print(f"keys and shapes match {BASE_SHAPES.relative_to(REPO)} ({len(saved)} saved, tied not saved: {sorted(left)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", type=Path, default=STAND_IN_TOKENIZER, help="tokenizer.json to copy")
    ap.add_argument("--check", action="store_true", help="reload with transformers and run one forward pass")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = SIZES[args.size]

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    config = Florence2Config(
        vision_config=dict(spec["vision"]),
        text_config=BartConfig(**spec["text"]).to_dict(),
        image_token_id=spec["image_token_id"],
        tie_word_embeddings=True,
        is_encoder_decoder=True,
    )
    model = Florence2ForConditionalGeneration(config).float().eval()
    n_params = sum(p.numel() for p in model.parameters())
    args.out.mkdir(parents=True, exist_ok=True)
    for old in list(args.out.glob("model*.safetensors")) + list(args.out.glob("*.index.json")):
        old.unlink()
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="100GB")
    weights = args.out / "model.safetensors"
    weights.chmod(0o644)  # save_pretrained writes it 0600
    assert weights.is_file(), f"save_pretrained did not write one {weights}: {sorted(p.name for p in args.out.iterdir())}"

    shutil.copyfile(args.tokenizer, args.out / "tokenizer.json")
    side = grid_side(spec["vision"], spec["image_size"])
    (args.out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(spec["image_size"], side * side + 1), indent=2) + "\n"
    )

    saved = safetensors_shapes(weights)
    dtypes = sorted({d for d, _ in saved.values()})
    assert dtypes == ["F32"], f"expected float32 only, found {dtypes}"
    print(
        f"{args.out}: Florence-2 {args.size}, {n_params:,} parameters, {len(saved)} tensors, "
        f"{weights.stat().st_size / 1e9:.2f} GB, images {spec['image_size']}x{spec['image_size']} "
        f"({side * side + 1} image tokens), in {time.perf_counter() - t0:.1f} s"
    )
    if args.size == "base":
        check_base_shapes(saved)

    if args.check:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.out / "tokenizer.json"))
        vocab = tok.get_vocab_size(with_added_tokens=True) + 1024  # + Florence's tokens
        assert vocab <= spec["text"]["vocab_size"], (vocab, spec["text"]["vocab_size"])
        del model
        reloaded = Florence2ForConditionalGeneration.from_pretrained(args.out).eval()
        ids = torch.tensor([tok.encode("What is on the table?").ids])
        n_img = side * side + 1
        size = spec["image_size"]
        with torch.no_grad():
            image = reloaded.model.get_image_features(torch.randn(1, 3, size, size)).pooler_output
            assert image.shape[1] == n_img, image.shape
            embeds = torch.cat([image, reloaded.get_input_embeddings()(ids)], dim=1)
            out = reloaded(inputs_embeds=embeds, decoder_input_ids=torch.tensor([[2, 0, 5]]))
        assert torch.isfinite(out.logits).all()
        print(f"reloaded with transformers: logits {tuple(out.logits.shape)} finite")


if __name__ == "__main__":
    main()
