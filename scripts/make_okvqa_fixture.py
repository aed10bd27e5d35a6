"""Writes tests/fixtures/okvqa/: a tiny OK-VQA parquet file as the Hugging Face hub publishes
`lmms-lab/OK-VQA`, written by the `datasets` library itself (the writer `push_to_hub` uses).

The hub card of lmms-lab/OK-VQA (commit c9f8589) declares, for the split `val2014` in
`data/val2014-*.parquet`:

    question_id: string, image: Image, question: string, answers: Sequence(string),
    question_type: string, answer_type: string

This script builds rows with exactly those features and writes them with
`Dataset.to_parquet` (row groups of 4 rows), then records the parquet schema pyarrow wrote in
`schema.txt`, so the Rust reader's test reads the real physical layout (the `image` struct,
the three-level `answers` list) rather than one written by the Rust test itself.

Rows (10): 6 well-formed ones (JPEG and PNG images, 10 answers each, one tie), then one
each of: null image, undecodable image bytes, blank question, 9 answers, empty answer list,
a null answer.

    python3 -m venv /work/venvs/okvqa && /work/venvs/okvqa/bin/pip install datasets pillow
    /work/venvs/okvqa/bin/python scripts/make_okvqa_fixture.py

Versions used for the committed fixture: see `versions.txt` next to it.
"""

import io
import os
import sys

import datasets
import pyarrow
import pyarrow.parquet as pq
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "okvqa")


def encoded(seed: int, fmt: str) -> bytes:
    img = Image.new("RGB", (20, 14))
    img.putdata([((x * 11 + seed * 40) % 256, (y * 17) % 256, (seed * 70) % 256)
                 for y in range(14) for x in range(20)])
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def main() -> None:
    features = datasets.Features({
        "question_id": datasets.Value("string"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answers": datasets.Sequence(datasets.Value("string")),
        "question_type": datasets.Value("string"),
        "answer_type": datasets.Value("string"),
    })
    good = [
        ("2971475", "What sport can you use this for?",
         ["racing"] * 6 + ["motocross"] * 4, "JPEG"),
        ("5767105", "Name the type of plant this is?",
         ["vine"] * 4 + ["ivy"] * 4 + ["green"] * 2, "PNG"),  # a tie: "vine" is first
        ("1051935", "What toy is this?",
         ["stuffed animal"] * 3 + ["teddy bear"] * 7, "JPEG"),
        ("4577785", "Which country is this?",
         ["england"] * 2 + ["uk"] * 2 + ["united kingdom"] * 6, "PNG"),
        ("3297915", "What is the man doing?",
         ["surfing"] * 10, "JPEG"),
        ("1805045", "What breed is the dog?",
         ["husky"] * 5 + ["malamute"] * 5, "PNG"),  # a tie: "husky" is first
    ]
    rows = []
    for i, (qid, question, answers, fmt) in enumerate(good):
        rows.append({
            "question_id": qid,
            "image": {"bytes": encoded(i, fmt), "path": f"{qid}.jpg"},
            "question": question,
            "answers": answers,
            "question_type": "one" if i % 2 == 0 else "eight",
            "answer_type": "other",
        })
    ten = ["yes"] * 10
    bad = [
        ("9000001", None, "What is this?", ten),                                    # missing image
        ("9000002", {"bytes": b"not an image", "path": "x.jpg"}, "What?", ten),     # undecodable
        ("9000003", {"bytes": encoded(7, "PNG"), "path": "y.png"}, "   ", ten),     # blank question
        ("9000004", {"bytes": encoded(8, "PNG"), "path": "z.png"}, "Why?", ["a"] * 9),  # 9 answers
        ("9000005", {"bytes": encoded(9, "PNG"), "path": "w.png"}, "Who?", []),     # no answers
        ("9000006", {"bytes": encoded(10, "PNG"), "path": "v.png"}, "How?",
         ["a"] * 9 + [None]),                                                        # null answer
    ]
    for qid, image, question, answers in bad:
        rows.append({
            "question_id": qid,
            "image": image,
            "question": question,
            "answers": answers,
            "question_type": "other",
            "answer_type": "other",
        })
    ds = datasets.Dataset.from_list(rows, features=features)
    data = os.path.join(OUT, "data")
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "val2014-00000-of-00001.parquet")
    ds.to_parquet(path, batch_size=4)
    schema = pq.ParquetFile(path).schema
    with open(os.path.join(OUT, "schema.txt"), "w") as f:
        f.write(str(schema))
        f.write("\n")
    with open(os.path.join(OUT, "versions.txt"), "w") as f:
        f.write(f"python {sys.version.split()[0]}\ndatasets {datasets.__version__}\n"
                f"pyarrow {pyarrow.__version__}\n")
    meta = pq.ParquetFile(path).metadata
    print(f"wrote {path}: {meta.num_rows} rows, {meta.num_row_groups} row groups")
    print(schema)


if __name__ == "__main__":
    main()
