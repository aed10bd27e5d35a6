"""Pillow's RGB resize on images of many shapes: the fixture of `tests/florence2_resize.rs`.

Writes `tests/fixtures/florence2_text/resize_pillow.safetensors`: for every case a source
image `src_<w>x<h>` (uint8, [h, w, 3], structured: gradients, edges and noise) and Pillow's
`Image.resize((W, H), resample)` of it, `out_<w>x<h>_<W>x<H>_<filter>`. The shapes cover
both pass orders of Pillow 13 (vertical first when the height shrinks by more than twice as
many pixels as the width, python-pillow/Pillow#9549; horizontal first otherwise), up- and
downscaling, and one-pass resizes. Records the Pillow version in the metadata.

    /tmp/refenv/bin/python scripts/generate_resize_fixtures.py
"""

import os

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "florence2_text")

# (source w, h) -> targets (W, H)
CASES = {
    (30, 97): [(16, 16), (64, 64), (30, 40)],  # tall: vertical first when shrinking height
    (97, 30): [(16, 16), (64, 64)],  # wide: horizontal first
    (50, 61): [(40, 20), (20, 40), (64, 64)],
    (33, 70): [(64, 64), (33, 64)],  # height shrinks a little, width grows: vertical first
    (20, 30): [(64, 64)],  # upscale: horizontal first
    (77, 101): [(101, 77), (24, 24)],
}
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def source(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.float64)
    img[..., 0] = 255.0 * x / max(w - 1, 1)
    img[..., 1] = 255.0 * y / max(h - 1, 1)
    img[..., 2] = np.where(((x // 5) + (y // 3)) % 2 == 0, 230.0, 20.0)
    img += rng.normal(0.0, 25.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main() -> None:
    arrays = {}
    for i, ((w, h), targets) in enumerate(CASES.items()):
        src = source(w, h, i)
        arrays[f"src_{w}x{h}"] = src
        for tw, th in targets:
            for name, flt in FILTERS.items():
                out = Image.fromarray(src, "RGB").resize((tw, th), resample=flt)
                arrays[f"out_{w}x{h}_{tw}x{th}_{name}"] = np.asarray(out, dtype=np.uint8)
    path = os.path.join(OUT, "resize_pillow.safetensors")
    save_file(arrays, path, metadata={"pillow": PIL.__version__})
    print(f"wrote {len(arrays)} arrays to {path} (Pillow {PIL.__version__})")


if __name__ == "__main__":
    main()
