#!/usr/bin/env python3
"""Tokenizer and processor fixtures for Florence-2's text side (tests/florence2_text/).

Nothing can be downloaded, so this script builds a small stand-in for Microsoft's
`tokenizer.json` (BART's byte-level BPE) with the Python `tokenizers` library, wraps it the
way transformers does for Florence-2, and records what transformers' native
`Florence2Processor` produces:

* the raw tokenizer is BART-shaped: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, a byte-level BPE
  vocabulary trained on the built-in corpus below, `<mask>` last (lstrip, like BART), a
  ByteLevel pre-tokenizer and decoder and a RobertaProcessing post-processor;
* the 1024 Florence tokens are added exactly as Microsoft's processor does
  (`additional_special_tokens`: `<od> </od> <ocr> </ocr>`, `<loc_0>`..`<loc_999>`, then 20 more
  ending `<and>`), then `<image>` as transformers' conversion script does;
* `Florence2Processor` (transformers' native port) is built on that tokenizer with a
  `CLIPImageProcessorPil` configured like Florence-2's preprocessor_config.json (resize
  straight to HxW, bicubic, 1/255, ImageNet mean/std, no centre crop) at small sizes.

Run: /tmp/refenv/bin/python scripts/generate_florence2_text_fixtures.py
Writes tests/fixtures/florence2_text/{tokenizer.json, tokenizer_converted.json, cases.json,
image.png, image_rgba.png, pixel_values.safetensors}; see the README there.
"""

import json
import os
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import transformers
from transformers import BartTokenizerFast, Florence2Processor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.models.clip.image_processing_clip import CLIPImageProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "florence2_text")

# Florence-2's tokens, in the order of Microsoft's processing_florence2.py.
FLORENCE_TOKENS = (
    ["<od>", "</od>", "<ocr>", "</ocr>"]
    + [f"<loc_{x}>" for x in range(1000)]
    + [
        "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
        "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
        "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>",
    ]
)
assert len(FLORENCE_TOKENS) == 1024

# The number of `<image>` placeholders the native processor writes (577 for the real model).
IMAGE_SEQ_LENGTH = 7

CORPUS = """
What does the image describe? Describe in detail what is shown in the image.
Describe with a paragraph what is shown in the image. Locate the objects with category name in
the image. Locate the objects in the image, with their descriptions. Locate the region proposals
in the image. What is the text in the image? What is the text in the image, with regions?
Locate the phrases in the caption: a green car parked in front of a yellow building.
Locate a red ball in the image with mask. What is the polygon mask of region one?
What is the region? What does the region describe? What text is in the region?
A black camera sitting on top of a wooden table. The image shows a black film camera sitting on
top of a wooden table with a blurred background. The camera is black in color and has the logo on
the top left corner. The body of the camera is made of wood and has a textured grip for easy
handling. The lens is in the center of the body and is surrounded by a gold-colored ring.
It's a sunny day; we're at the beach, they've gone swimming and I'd like to join. You'll see.
Two dogs run across the grass while a child throws a frisbee. A cat sleeps on the sofa.
The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14.
Federated learning trains a shared model across many clients without moving their data.
Ünïcödé façade, naïve café, smörgåsbord, jalapeño, Straße; 日本語のテキスト; emoji 🐱🚀.
"""


def build_raw_tokenizer() -> Tokenizer:
    """A BART-shaped byte-level BPE tokenizer (the shape of Microsoft's tokenizer.json)."""
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in CORPUS.strip().splitlines() if line]
    tok.train_from_iterator(lines * 3, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    return tok


def florence_tokenizer(raw_path: str) -> BartTokenizerFast:
    """Wraps the raw file as Microsoft's processor and transformers' conversion script do."""
    tok = BartTokenizerFast(tokenizer_file=raw_path)
    # Microsoft's Florence2Processor.__init__: tokenizer.add_special_tokens(tokens_to_add).
    added = tok.add_special_tokens({"additional_special_tokens": FLORENCE_TOKENS})
    assert added == 1024, added
    # transformers' convert_florence2_original_pytorch_to_hf.py: the image placeholder.
    tok.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    tok.image_token = "<image>"
    tok.image_token_id = tok.convert_tokens_to_ids("<image>")
    return tok


def image_processor(backend: str, height: int, width: int):
    cls = CLIPImageProcessorPil if backend == "pil" else CLIPImageProcessor
    return cls(
        size={"height": height, "width": width},
        crop_size={"height": height, "width": width},
        do_center_crop=False,
        resample=PILImageResampling.BICUBIC,
        image_mean=IMAGENET_DEFAULT_MEAN,
        image_std=IMAGENET_DEFAULT_STD,
        image_seq_length=IMAGE_SEQ_LENGTH,
    )


def make_images():
    """An odd-sized RGB test image with edges, gradients and noise, and a small RGBA one."""
    rng = np.random.default_rng(1234)
    h, w = 77, 101
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), dtype=np.float64)
    img[..., 0] = 255.0 * x / (w - 1)
    img[..., 1] = 255.0 * y / (h - 1)
    img[..., 2] = np.where(((x // 9) + (y // 7)) % 2 == 0, 230.0, 20.0)
    img[20:40, 30:70] = [250, 250, 5]  # a sharp rectangle
    img += rng.normal(0.0, 18.0, img.shape)
    rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    rgba = np.zeros((19, 23, 4), dtype=np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (19, 23, 3))
    rgba[..., 3] = np.tile(np.linspace(0, 255, 23).astype(np.uint8), (19, 1))
    rgba[:5, :5, 3] = 0
    return Image.fromarray(rgb, "RGB"), Image.fromarray(rgba, "RGBA")


ENCODE_TEXTS = [
    "What does the image describe?",
    "Locate the objects with category name in the image.",
    "<od>",
    "</od>",
    "<ocr>",
    "<loc_0>",
    "<loc_12>",
    "<loc_999>",
    "<and>",
    "a cat<loc_12><loc_40><loc_500><loc_999>a dog<loc_1><loc_2><loc_3><loc_4></s>",
    "<loc_1000>",
    "<loc_12 >",
    "< loc_12>",
    "<LOC_12>",
    "loc_12",
    "Ünïcödé façade — naïve café 日本語のテキスト 🐱🚀",
    "emoji ZWJ 👩\u200d👩\u200d👧 and combining e\u0301 and ﬁ ligature",
    "\u00a0nbsp\u3000ideographic\u2028line sep",
    "  leading and trailing spaces  ",
    "multiple     spaces\tand\ttabs\nnew\r\nlines",
    "",
    " ",
    "\n",
    "It's we're they've I'd you'll she'll we'd",
    "numbers 1234567890 3.14159 -42 1,000,000",
    "<s>already wrapped</s>",
    "<pad><unk><mask>",
    "text before <mask> after",
    "x<mask>y  <mask>",
    "<cap>caption</cap><ncap><dcap><grounding></grounding><seg></seg><sep><region_cap></region_cap>"
    "<region_to_desciption></region_to_desciption><proposal></proposal><poly></poly>",
    "What is the region <loc_100><loc_200><loc_300><loc_400>?",
    "punctuation!!! ??? ... ;;; --- (brackets) [square] {curly} <angle> \"quotes\" 'single'",
    "The quick brown fox jumps over the lazy dog. " * 6,
]

PROMPTS = [
    "<CAPTION>",
    "<DETAILED_CAPTION>",
    "<MORE_DETAILED_CAPTION>",
    "<OD>",
    "<OCR>",
    "<OCR_WITH_REGION>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<CAPTION_TO_PHRASE_GROUNDING>A green car parked in front of a yellow building.",
    "<CAPTION_TO_PHRASE_GROUNDING>   spaced input \t\n",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<REFERRING_EXPRESSION_SEGMENTATION>a red ball",
    "<REGION_TO_SEGMENTATION><loc_1><loc_2><loc_3><loc_4>",
    "<OPEN_VOCABULARY_DETECTION>cat",
    "<REGION_TO_CATEGORY><loc_10><loc_20><loc_30><loc_40>",
    "<REGION_TO_DESCRIPTION><loc_10><loc_20><loc_30><loc_40>",
    "<REGION_TO_OCR><loc_10><loc_20><loc_30><loc_40>",
    "input first<OPEN_VOCABULARY_DETECTION>",
    "a<CAPTION_TO_PHRASE_GROUNDING>b<CAPTION_TO_PHRASE_GROUNDING>c",
    "<OPEN_VOCABULARY_DETECTION>x<REGION_TO_OCR>y",
    "<OPEN_VOCABULARY_DETECTION>\x1cpython-only space\x1f",
    "What color is the car?",
    "  free text with spaces  ",
    "",
    "<caption>",
    "<CAPTION> extra",
    "prefix <OD>",
    "<OCR><OCR>",
    "<OD><CAPTION>",
]

# The post-processor configuration transformers' conversion script writes into the converted
# checkpoints' processor_config.json (native code reads "PATTERN"/"AREA_THRESHOLD" in capitals,
# so the lower-case entries leave the defaults in force).
BANNED_GROUNDING_TOKENS = [
    "it", "I", "me", "mine", "you", "your", "yours", "he", "him", "his", "she", "her", "hers",
    "they", "them", "their", "theirs", "one", "oneself", "we", "us", "our", "ours", "you", "your",
    "yours", "they", "them", "their", "theirs", "mine", "yours", "his", "hers", "its", "ours",
    "yours", "theirs", "myself", "yourself", "himself", "herself", "itself", "ourselves",
    "yourselves", "themselves", "this", "that", "these", "those", "who", "whom", "whose", "which",
    "what", "who", "whom", "whose", "which", "that", "all", "another", "any", "anybody", "anyone",
    "anything", "each", "everybody", "everyone", "everything", "few", "many", "nobody", "none",
    "one", "several", "some", "somebody", "someone", "something", "each other", "one another",
    "myself", "yourself", "himself", "herself", "itself", "ourselves", "yourselves", "themselves",
    "the image", "image", "images", "the", "a", "an", "a group", "other objects", "lots", "a set",
]
POST_PROCESSOR_CONFIG = {
    "ocr": {
        "pattern": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>",
        "area_threshold": 0.0,
    },
    "phrase_grounding": {"banned_grounding_tokens": BANNED_GROUNDING_TOKENS},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}

POST_TEXTS = [
    "</s><s>A green car parked in front of a yellow building.</s>",
    "</s><s>  A very long caption.  </s><pad>",
    "</s><s>car<loc_54><loc_375><loc_906><loc_707>door<loc_710><loc_276><loc_908><loc_537>"
    "wheel<loc_708><loc_531><loc_906><loc_704><loc_1><loc_2><loc_3><loc_4></s>",
    "</s><s><loc_54><loc_375><loc_906><loc_707><loc_710><loc_276><loc_908><loc_537></s>",
    "</s><s>Hello<loc_10><loc_20><loc_30><loc_20><loc_30><loc_40><loc_10><loc_40>"
    "World 2<loc_100><loc_200><loc_300><loc_200><loc_300><loc_400><loc_100><loc_400></s>",
    "</s><s>the image<loc_1><loc_2><loc_3><loc_4>a green car<loc_5><loc_6><loc_7><loc_8>"
    "it<loc_9><loc_10><loc_11><loc_12></s>",
    "</s><s>a red ball<loc_100><loc_120><loc_140><loc_160><loc_180><loc_200><loc_220></s>",
    "</s><s>a red ball<poly><loc_100><loc_120><loc_140><loc_160><sep><loc_1><loc_2><loc_3>"
    "<loc_4><loc_5></poly><poly><loc_7><loc_8><loc_9><loc_10></poly>cat<loc_1><loc_2><loc_3>"
    "<loc_4><loc_5><loc_6></s>",
    "</s><s><loc_100><loc_120><loc_140><loc_160><loc_180><loc_200></s>",
    "</s><s>café ünïcode<loc_0><loc_0><loc_999><loc_999></s>",
    "</s><s><ground>cat<obj><loc_1><loc_2><loc_3><loc_4></s>",
    "</s><s>multi\nline<loc_1><loc_2><loc_3><loc_4></s>",
    "</s><s>no boxes here</s>",
    "</s><s>a<loc_1><loc_2><loc_3></s>",
    "</s><s>x<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7></s>",
    "</s><s>dog<od><loc_11><loc_22><loc_33><loc_44></od></s>",
]
POST_TASKS = [
    "<OCR>", "<OCR_WITH_REGION>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>",
    "<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>",
    "<REFERRING_EXPRESSION_SEGMENTATION>", "<REGION_TO_SEGMENTATION>",
    "<OPEN_VOCABULARY_DETECTION>", "<REGION_TO_CATEGORY>", "<REGION_TO_DESCRIPTION>",
    "<REGION_TO_OCR>", "<REGION_PROPOSAL>", "<CUSTOM>",
]
POST_SIZES = [(640, 480), (101, 77), (1000, 1000), (333, 777)]

DECODE_IDS_TEXTS = [
    "</s><s>A green car parked in front of a yellow building.</s>",
    "</s><s>car<loc_54><loc_375><loc_906><loc_707>door<loc_710><loc_276><loc_908><loc_537></s><pad><pad>",
    "</s><s>Ünïcödé 日本語 🐱</s>",
    "<s>  spaces   kept  </s>",
    "<mask> masked <unk> and <image>",
    "<cap>cap</cap><poly><loc_1><loc_2><sep><loc_3></poly>",
]


def main() -> int:
    print(f"transformers {transformers.__version__}", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    raw = build_raw_tokenizer()
    raw_path = os.path.join(OUT, "tokenizer.json")
    raw.save(raw_path)
    vocab = raw.get_vocab_size()
    tok = florence_tokenizer(raw_path)
    assert tok.convert_tokens_to_ids("<od>") == vocab
    assert tok.convert_tokens_to_ids("<loc_0>") == vocab + 4
    assert tok.convert_tokens_to_ids("<and>") == vocab + 1023
    assert tok.image_token_id == vocab + 1024
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            converted = json.load(f)
    with open(os.path.join(OUT, "tokenizer_converted.json"), "w", encoding="utf-8") as f:
        json.dump(converted, f, ensure_ascii=False, separators=(",", ":"))

    encode = []
    for text in ENCODE_TEXTS:
        encode.append(
            {
                "text": text,
                "ids": tok(text)["input_ids"],
                "ids_no_special": tok(text, add_special_tokens=False)["input_ids"],
            }
        )

    batch_texts = ["What does the image describe?", "a cat<loc_12>", "", ENCODE_TEXTS[-1]]
    batches = []
    for padding, max_length in [("longest", None), ("longest", 12), ("max_length", 16)]:
        kwargs = {"padding": padding}
        if max_length is not None:
            kwargs.update(truncation=True, max_length=max_length)
        out = tok(batch_texts, **kwargs)
        batches.append(
            {
                "texts": batch_texts,
                "padding": padding,
                "max_length": max_length,
                "input_ids": out["input_ids"],
                "attention_mask": out["attention_mask"],
            }
        )

    rgb, rgba = make_images()
    rgb.save(os.path.join(OUT, "image.png"), optimize=True)
    rgba.save(os.path.join(OUT, "image_rgba.png"), optimize=True)
    # A JPEG (4:2:0 chroma subsampling) to measure the Rust decoder against Pillow's libjpeg.
    rgb.save(os.path.join(OUT, "image.jpg"), quality=90, subsampling=2)
    # Read back what was written, so Python and Rust start from the same decoded pixels.
    rgb = Image.open(os.path.join(OUT, "image.png"))
    rgba = Image.open(os.path.join(OUT, "image_rgba.png"))

    proc = Florence2Processor(
        image_processor=image_processor("pil", 64, 64),
        tokenizer=tok,
        post_processor_config=POST_PROCESSOR_CONFIG,
    )
    prompts = []
    for prompt in PROMPTS:
        try:
            sentence = proc._construct_prompts([prompt])[0]
            prompts.append({"prompt": prompt, "sentence": sentence})
        except ValueError as e:
            prompts.append({"prompt": prompt, "error": str(e)})

    processor_cases = []
    for prompt in ["<CAPTION>", "<OD>", "<CAPTION_TO_PHRASE_GROUNDING>a cat on a mat", "What is it?"]:
        out = proc(text=prompt, images=rgb)
        processor_cases.append({"prompt": prompt, "input_ids": out["input_ids"][0]})
    batch_prompts = ["<CAPTION>", "<MORE_DETAILED_CAPTION>", "Is there a dog?"]
    out = proc(text=batch_prompts, images=[rgb, rgb, rgb], padding=True)
    processor_batch = {
        "prompts": batch_prompts,
        "input_ids": out["input_ids"],
        "attention_mask": out["attention_mask"],
    }

    post_process = []
    for i, text in enumerate(POST_TEXTS):
        for j, task in enumerate(POST_TASKS):
            size = POST_SIZES[(i + j) % len(POST_SIZES)]
            result = proc.post_process_generation(text=text, task=task, image_size=size)[task]
            post_process.append({"text": text, "task": task, "image_size": list(size), "result": result})

    decode = []
    all_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in DECODE_IDS_TEXTS]
    rng = np.random.default_rng(7)
    all_ids.append(rng.integers(0, len(tok), 40).tolist())
    all_ids.append([vocab - 40 + i for i in range(40)])  # late merges, partial UTF-8 likely
    for ids in all_ids:
        for skip in (False, True):
            decode.append({"ids": ids, "skip_special_tokens": skip, "text": tok.decode(ids, skip_special_tokens=skip)})

    arrays = {}
    specs = [("pil_64x64", "pil", 64, 64, rgb), ("pil_40x72", "pil", 40, 72, rgb),
             ("torchvision_64x64", "torchvision", 64, 64, rgb), ("pil_rgba_32x32", "pil", 32, 32, rgba),
             ("pil_77x101", "pil", 77, 101, rgb)]
    for name, backend, h, w, img in specs:
        ip = image_processor(backend, h, w)
        pv = ip(images=img, return_tensors="pt")["pixel_values"]
        assert pv.shape == (1, 3, h, w), pv.shape
        arrays[name] = pv.numpy().astype(np.float32)
    jpeg = Image.open(os.path.join(OUT, "image.jpg"))
    arrays["jpeg_decoded_rgb8"] = np.asarray(jpeg.convert("RGB"), dtype=np.uint8)
    arrays["pil_jpeg_64x64"] = (
        image_processor("pil", 64, 64)(images=jpeg, return_tensors="pt")["pixel_values"].numpy()
    )
    diff = np.abs(arrays["pil_64x64"] - arrays["torchvision_64x64"]).max()
    print(f"max |pil - torchvision| at 64x64: {diff:.6g}", file=sys.stderr)
    save_file(arrays, os.path.join(OUT, "pixel_values.safetensors"))

    cases = {
        "transformers_version": transformers.__version__,
        "base_vocab_size": vocab,
        "image_token_id": tok.image_token_id,
        "image_seq_length": IMAGE_SEQ_LENGTH,
        "florence_tokens": {t: tok.convert_tokens_to_ids(t) for t in ("<od>", "<loc_0>", "<loc_999>", "<cap>", "<and>")},
        "len_tokenizer": len(tok),
        "encode": encode,
        "batches": batches,
        "prompts": prompts,
        "processor": processor_cases,
        "processor_batch": processor_batch,
        "decode": decode,
        "banned_grounding_tokens": sorted(set(BANNED_GROUNDING_TOKENS)),
        "post_process": post_process,
        "pil_vs_torchvision_max_abs_64x64": float(diff),
    }
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT} ({total} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
