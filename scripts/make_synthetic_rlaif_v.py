#!/usr/bin/env python3
"""Writes a synthetic RLAIF-V (`openbmb/RLAIF-V-Dataset`) in the real dataset's parquet layout.

Why: the real dataset cannot be downloaded here, but `examples/fedvlm_rlaif.rs` and
`scripts/time_rlaif_round_reference.py` need shards to time a federated round on. What matters
for timing is the shape of the work, so the rows are made to look like RLAIF-V's where it
counts: real encoded images (JPEG mostly, some PNG, a few grayscale JPEGs) of varied sizes
(300-900 px a side, with gradients, shapes, lines, texture and noise so the codecs do real
work), questions of 8-20 words and chosen answers of 40-150 words (RLAIF-V's chosen answers
are long descriptive paragraphs), spread over several `origin_dataset` values of unequal size
(the natural non-IID client key). The text is word salad from a fixed word list and a seeded
RNG: it means nothing, and a model cannot learn anything useful from it.

What it writes: `OUT/RLAIF-V-Dataset_000.parquet` ... `RLAIF-V-Dataset_{S-1:03d}.parquet`
(the names `src/data/rlaif_v/reader.rs` globs: `RLAIF-V-Dataset_*.parquet`), rows dealt to the
shards in order, written with pyarrow in RLAIF-V's schema as Hugging Face `datasets` stores it
(the schema `tests/rlaif_v/main.rs` writes too):

    ds_name: string, image: struct<bytes: binary, path: string>, question: string,
    chosen: string, rejected: string, origin_dataset: string, origin_split: string,
    idx: int64, image_path: string

plus the `huggingface` schema metadata that marks `image` as an `Image` feature. The Rust
reader decodes only `question`, `chosen`, `origin_dataset` and `image.bytes`.

Token counts: with the stand-in byte-level BPE tokenizer that `scripts/make_random_florence2.py`
copies (tests/fixtures/florence2_text/tokenizer.json, ~700 tokens trained on a tiny corpus),
a word of this text costs about 3 tokens instead of the ~1.3 of BART's real tokenizer: chosen
answers of 40-150 words come out at about 110-500 tokens (`<s>`/`</s>` included) instead of
roughly 55-200, questions at 15-70 instead of ~12-28. So with the paper's 256-token limits most
answers are cut to 256 tokens here, about twice a real RLAIF-V answer's length; pick
`--max-answer-len` with that in mind. Pass `--tokenizer` to print the token statistics of what
was written.

    python scripts/make_synthetic_rlaif_v.py --out /tmp/rlaif-synth --rows 200 --shards 2 --seed 0

Deterministic: the same arguments write the same rows (pyarrow's file metadata aside).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import statistics
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter

SHARD_NAME = "RLAIF-V-Dataset_{:03d}.parquet"  # reader.rs: RLAIF_V_SHARD_PREFIX + ... + SUFFIX

# Source datasets (RLAIF-V's instructions come from sources like these), with unequal weights.
SOURCES = [
    ("VQAv2", 0.28),
    ("COCO", 0.22),
    ("OKVQA", 0.16),
    ("TextVQA", 0.13),
    ("ShareGPT4V", 0.12),
    ("MovieNet", 0.09),
]

# A fixed word list: function words (about 40 % of running English text, drawn with that
# share) and content words of image descriptions (drawn uniformly). Many are whole tokens of the
# stand-in tokenizer (the, image, with, table, wooden, sitting, ...), many are not.
FUNCTION_WORDS = """
the the the a a of of in in with and and is is are on at to to there that this which its
an it as by for from near behind next
""".split()
FUNCTION_SHARE = 0.4
WORDS = """
image shows front left right center corner background foreground top bottom side middle edge
across over under between above below inside outside around along through
man woman person people child boy girl dog cat car bus train truck bicycle motorcycle boat
plane bird horse sheep cow elephant bear zebra giraffe table chair sofa bed window door
building street road sidewalk tree grass sky cloud water beach mountain field fence wall
floor ceiling kitchen room sign light pole shirt hat jacket umbrella bag bottle cup plate
bowl food pizza sandwich cake banana apple orange phone laptop book clock vase flower
frisbee ball kite skateboard surfboard camera screen logo text letters words number label
red blue green yellow black white brown gray orange purple pink golden silver dark bright
wooden metal plastic glass large small tall short long old young several many two three
four few some most each another other similar different clear blurred sunny cloudy
sitting standing walking running holding wearing looking riding playing parked moving
eating drinking reading writing smiling carrying throwing jumps sleeps appears seems
visible located placed covered surrounded filled painted printed written displayed
describe detail details scene picture photo photograph view object objects region area
color colors shape pattern texture surface lighting shadow reflection style setting
because while although however also likely probably perhaps clearly overall indicates
suggests contains includes features shows presents depicts highlights captures
""".split()

QUESTION_STARTS = [
    "What is", "What are", "How many", "What color is", "Where is", "Why is", "Is there",
    "Can you describe", "Describe", "What kind of", "Which", "Who is", "What does",
    "Please describe", "What is written on",
]
ANSWER_STARTS = [
    "The image shows", "In the image,", "The photo depicts", "This picture features",
    "The scene contains", "There is", "In this photograph,", "The image captures",
]


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(FUNCTION_WORDS if rng.random() < FUNCTION_SHARE else WORDS) for _ in range(n)]


def question(rng: random.Random) -> str:
    start = rng.choice(QUESTION_STARTS)
    n = rng.randint(8, 20) - len(start.split())
    return f"{start} {' '.join(words(rng, max(n, 2)))}?"


def paragraph(rng: random.Random, lo: int, hi: int) -> str:
    """Sentences of 8-22 words, lo..hi words in all (a short remainder joins the last one)."""
    target = rng.randint(lo, hi)
    sentences: list[list[str]] = []
    total = 0
    while total < target:
        left = target - total
        if sentences and left < 4:
            sentences[-1].extend(words(rng, left))
            break
        n = min(rng.randint(8, 22), left)
        if not sentences:
            start = rng.choice(ANSWER_STARTS).split()
            body = start + words(rng, max(n - len(start), 2))
        else:
            body = words(rng, n)
            body[0] = body[0].capitalize()
            if n > 10 and rng.random() < 0.5:
                body[n // 2] += ","
        sentences.append(body)
        total += len(body)
    return " ".join(" ".join(b) + "." for b in sentences)


def make_image(
    rng: random.Random, np_rng: np.random.Generator, grayscale: bool, max_side: int = 900
) -> Image.Image:
    """A structured image: a two-colour gradient, random rectangles, ellipses, polygons and
    lines, a textured patch, mild blur and per-pixel noise. Sides are drawn from
    [max(80, max_side // 3), max_side] (300-900 px by default)."""
    lo = max(80, max_side // 3)
    w, h = rng.randint(lo, max_side), rng.randint(lo, max_side)
    c0 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    c1 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    angle = rng.random() * math.pi
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / (w * abs(math.cos(angle)) + h * abs(math.sin(angle)) + 1)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    base = c0 + (c1 - c0) * t[..., None]
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    color = lambda: tuple(rng.randint(0, 255) for _ in range(3))  # noqa: E731
    for _ in range(rng.randint(4, 14)):
        x0, y0 = rng.randint(0, w - 1), rng.randint(0, h - 1)
        x1, y1 = min(w - 1, x0 + rng.randint(10, w // 2)), min(h - 1, y0 + rng.randint(10, h // 2))
        kind = rng.random()
        if kind < 0.35:
            draw.rectangle([x0, y0, x1, y1], fill=color(), outline=color(), width=rng.randint(1, 5))
        elif kind < 0.65:
            draw.ellipse([x0, y0, x1, y1], fill=color(), outline=color(), width=rng.randint(1, 4))
        elif kind < 0.85:
            pts = [(rng.randint(0, w - 1), rng.randint(0, h - 1)) for _ in range(rng.randint(3, 6))]
            draw.polygon(pts, fill=color())
        else:
            for _ in range(rng.randint(3, 10)):
                draw.line(
                    [(rng.randint(0, w - 1), rng.randint(0, h - 1)), (rng.randint(0, w - 1), rng.randint(0, h - 1))],
                    fill=color(),
                    width=rng.randint(1, 6),
                )
    # a textured patch (stripes or a checkerboard)
    px, py = rng.randint(0, w // 2), rng.randint(0, h // 2)
    pw, ph = rng.randint(40, w // 2), rng.randint(40, h // 2)
    period = rng.randint(4, 24)
    if rng.random() < 0.5:
        for x in range(px, min(w, px + pw), 2 * period):
            draw.rectangle([x, py, min(w - 1, x + period - 1), min(h - 1, py + ph)], fill=color())
    else:
        a, b = color(), color()
        for y in range(py, min(h, py + ph), period):
            for x in range(px, min(w, px + pw), period):
                draw.rectangle([x, y, x + period - 1, y + period - 1], fill=a if ((x - px) // period + (y - py) // period) % 2 else b)
    image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.0, 1.2)))
    pixels = np.asarray(image, dtype=np.int16)
    pixels = pixels + np_rng.normal(0.0, rng.uniform(1.0, 6.0), size=pixels.shape).astype(np.int16)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    return image.convert("L") if grayscale else image


def encode(rng: random.Random, image: Image.Image, png: bool) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if png:
        image.save(buf, format="PNG", optimize=False)
        return buf.getvalue(), "png"
    image.save(buf, format="JPEG", quality=rng.randint(80, 95))
    return buf.getvalue(), "jpg"


def source_counts(rows: int) -> list[tuple[str, int]]:
    """Rows per source in proportion to the weights (largest remainder), each at least 1."""
    raw = [(name, rows * w) for name, w in SOURCES]
    counts = {name: max(1, int(x)) for name, x in raw}
    left = rows - sum(counts.values())
    for name, x in sorted(raw, key=lambda p: p[1] - int(p[1]), reverse=True):
        if left <= 0:
            break
        counts[name] += 1
        left -= 1
    while left < 0:  # tiny row counts: take back from the largest
        name = max(counts, key=counts.get)
        counts[name] -= 1
        left += 1
    return [(name, counts[name]) for name, _ in SOURCES if counts[name] > 0]


SCHEMA = pa.schema(
    [
        ("ds_name", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("question", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("origin_dataset", pa.string()),
        ("origin_split", pa.string()),
        ("idx", pa.int64()),
        ("image_path", pa.string()),
    ]
)
HF_FEATURES = {
    "info": {
        "features": {
            "ds_name": {"dtype": "string", "_type": "Value"},
            "image": {"_type": "Image"},
            "question": {"dtype": "string", "_type": "Value"},
            "chosen": {"dtype": "string", "_type": "Value"},
            "rejected": {"dtype": "string", "_type": "Value"},
            "origin_dataset": {"dtype": "string", "_type": "Value"},
            "origin_split": {"dtype": "string", "_type": "Value"},
            "idx": {"dtype": "int64", "_type": "Value"},
            "image_path": {"dtype": "string", "_type": "Value"},
        }
    }
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--rows", type=int, default=200, help="rows in all")
    ap.add_argument("--shards", type=int, default=1, help="parquet files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--row-group-size", type=int, default=64, help="rows per parquet row group")
    ap.add_argument("--png-fraction", type=float, default=0.15)
    ap.add_argument("--gray-fraction", type=float, default=0.03)
    ap.add_argument(
        "--max-side",
        type=int,
        default=900,
        help="largest image side in pixels (sides drawn from [max(80, N/3), N]); small values "
        "write many rows fast, e.g. for memory checks against the row count",
    )
    ap.add_argument("--tokenizer", type=Path, help="tokenizer.json: print token length statistics")
    args = ap.parse_args()
    if args.max_side < 80:
        raise SystemExit("--max-side must be at least 80")
    if args.rows < 1 or args.shards < 1 or args.shards > args.rows:
        ap.error("need rows >= shards >= 1")

    rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)
    counts = source_counts(args.rows)
    origins = [name for name, n in counts for _ in range(n)]
    rng.shuffle(origins)

    rows = []
    for idx, origin in enumerate(origins):
        png = rng.random() < args.png_fraction
        gray = not png and rng.random() < args.gray_fraction
        image = make_image(rng, np_rng, gray, args.max_side)
        data, ext = encode(rng, image, png)
        name = f"{origin.lower()}_{idx:06d}.{ext}"
        rows.append(
            dict(
                ds_name="RLAIF-V-synthetic",
                image={"bytes": data, "path": name},
                question=question(rng),
                chosen=paragraph(rng, 40, 150),
                rejected=paragraph(rng, 40, 150),
                origin_dataset=origin,
                origin_split=json.dumps({"split": "train", "source": origin}),
                idx=idx,
                image_path=f"images/{name}",
            )
        )

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("RLAIF-V-Dataset_*.parquet"):
        old.unlink()
    schema = SCHEMA.with_metadata({"huggingface": json.dumps(HF_FEATURES)})
    per = math.ceil(len(rows) / args.shards)
    for s in range(args.shards):
        part = rows[s * per : (s + 1) * per]
        table = pa.Table.from_pylist(part, schema=schema)
        path = args.out / SHARD_NAME.format(s)
        pq.write_table(table, path, row_group_size=args.row_group_size, compression="snappy")
        print(f"{path}: {len(part)} rows, {path.stat().st_size / 1e6:.1f} MB")

    per_source = {name: n for name, n in counts}
    sizes = [len(r["image"]["bytes"]) for r in rows]
    qw = [len(r["question"].split()) for r in rows]
    aw = [len(r["chosen"].split()) for r in rows]
    print(f"sources: {per_source}")
    print(
        f"images: {sum(r['image']['path'].endswith('.png') for r in rows)} PNG, "
        f"mean {statistics.mean(sizes) / 1e3:.0f} kB; question words {min(qw)}-{max(qw)} "
        f"(mean {statistics.mean(qw):.1f}); chosen words {min(aw)}-{max(aw)} (mean {statistics.mean(aw):.1f})"
    )
    if args.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.tokenizer))
        qt = [len(tok.encode(r["question"]).ids) for r in rows]
        at = [len(tok.encode(r["chosen"]).ids) for r in rows]
        print(
            f"tokens with {args.tokenizer} (<s> and </s> included): question {min(qt)}-{max(qt)} "
            f"(mean {statistics.mean(qt):.1f}), chosen {min(at)}-{max(at)} (mean {statistics.mean(at):.1f}, "
            f"median {statistics.median(at):.0f}); {sum(at) / sum(aw):.2f} tokens per answer word"
        )


if __name__ == "__main__":
    main()
