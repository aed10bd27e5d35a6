#!/usr/bin/env python3
"""Writes tests/fixtures/vqa_eval/cases.json: answer-level metrics computed by the official VQA
evaluation code, for the Rust port in src/metrics/answers/ to match exactly.

The reference is `VQAEval` of the official evaluation, GT-Vision-Lab/VQA at commit a013f00
("Fixed processing answers bug", the last change to the file):

    https://github.com/GT-Vision-Lab/VQA/blob/a013f0043c1e2cdc995922dfe257f7149aa9af06/PythonEvaluationTools/vqaEvaluation/vqaEval.py

Its source is NOT copied here: this script loads that file (pass `--vqa-eval PATH`, or let it
download the pinned URL above), turns its two Python 2 `print "..."` statements into calls so that
Python 3 compiles it, and runs its own `processPunctuation`, `processDigitArticle` and `evaluate`
on hand-made cases. Two faithful-to-Python-2 details:

* The official code ran under Python 2, where `\\d` in a pattern compiled without `re.UNICODE`
  matches ASCII digits only; Python 3 would match every Unicode decimal digit. The two patterns
  are recompiled with `re.ASCII` so that the fixtures show what the official evaluation did.
* `periodStrip.sub("", outText, re.UNICODE)` passes `re.UNICODE` (32) as the `count` argument:
  at most 32 periods are removed. Python 3.11 keeps that meaning; the cases include one with
  more than 32 periods.

`vqa_accuracy` comes from `VQAEval.evaluate` itself on a one-question data set (its `setEvalQA`
is wrapped to keep the unrounded accuracy). The human answers get distinct `answer_id`s, as in
the real annotations, so `otherGTAns` leaves out exactly one answer each time.

`token_f1` is not part of the VQA evaluation: it is SQuAD's `f1_score` (a `Counter` intersection
over whitespace tokens; both empty 1, one empty 0) over answers normalised by the official
`processPunctuation` + `processDigitArticle` after the same `\\n`/`\\t` replacement and strip.

Usage (no packages needed):

    git -C VQA show a013f00:PythonEvaluationTools/vqaEvaluation/vqaEval.py > /tmp/vqaEval.py
    python3 scripts/generate_vqa_eval_fixtures.py --vqa-eval /tmp/vqaEval.py
"""

import argparse
import collections
import contextlib
import hashlib
import io
import json
import re
import urllib.request
from pathlib import Path

URL = (
    "https://raw.githubusercontent.com/GT-Vision-Lab/VQA/"
    "a013f0043c1e2cdc995922dfe257f7149aa9af06/PythonEvaluationTools/vqaEvaluation/vqaEval.py"
)
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "vqa_eval" / "cases.json"


def load_vqa_eval(path):
    source = Path(path).read_text() if path else urllib.request.urlopen(URL).read().decode()
    digest = hashlib.sha256(source.encode()).hexdigest()
    py3 = re.sub(r'^(\s*)print "(.*)"\s*$', r'\1print("\2")', source, flags=re.M)
    namespace = {}
    exec(compile(py3, "vqaEval.py", "exec"), namespace)
    return namespace["VQAEval"], digest


class FakeVqa:
    """The two attributes `VQAEval` reads: `qa` and `getQuesIds()`."""

    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def official(vqa_eval_class):
    """The official normalisation and accuracy functions, with Python 2's ASCII `\\d`."""
    empty = FakeVqa({})
    proto = vqa_eval_class(empty, empty)
    proto.periodStrip = re.compile(proto.periodStrip.pattern, re.ASCII)
    proto.commaStrip = re.compile(proto.commaStrip.pattern, re.ASCII)

    def clean(text):
        return text.replace("\n", " ").replace("\t", " ").strip()

    def normalize(text):
        return proto.processDigitArticle(proto.processPunctuation(clean(text)))

    def accuracy(prediction, humans):
        answers = [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
            for i, a in enumerate(humans)
        ]
        gts = FakeVqa({1: {"answers": answers, "question_type": "what", "answer_type": "other"}})
        res = FakeVqa({1: {"answer": prediction}})
        ev = vqa_eval_class(gts, res)
        ev.periodStrip, ev.commaStrip = proto.periodStrip, proto.commaStrip
        raw = {}
        ev.setEvalQA = lambda q, acc: raw.__setitem__(q, acc)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
        return raw[1]

    return normalize, accuracy


def token_f1(normalize, prediction, reference):
    p, r = normalize(prediction).split(), normalize(reference).split()
    if not p or not r:
        return float(p == r)
    same = sum((collections.Counter(p) & collections.Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


NORMALIZE = [
    "yes", "Yes", "yes.", "Yes!", "  yes \n", "yes\tno", "no.", "it's", "It's a dog.", "its",
    "1,000", "1,000 dogs", "1, 000", "2.5", "2.5.", "3.", "e.g. this", "U.S.A.", "a.b.c",
    "a dog", "A Dog", "the dog", "an apple", "the the a an", "a", "the", "Two", "two dogs",
    "none", "None of them", "zero", "ten", "eleven", "one two three four five six seven eight nine ten",
    "don't", "dont", "Dont", "doesnt", "I'm", "Im", "im", "ive", "youre", "yall", "yall'll",
    "won't", "wont", "whats up", "thats it", "oclock", "twas", "hes", "let's", "somebody'd",
    "black-and-white", "black - white", "black -white", "red/blue", "red / blue", "(left)",
    "left (side)", "a+b", "a + b", "x=y", "[1]", "{x}", "<b>", "a<b", "@home", "`code`",
    "under_score", "back\\slash", "question?", "what ?", "hi!", "hi !", 'say "hi"', "semi;colon",
    "semi ; colon", "colon: yes", "1,000.5", "1,2,3", "a,b", "a , b", "a, b", "1,a",
    "..", "...", "..5", "5..", ".5", "5.", "end.", "mr. smith", "3.14.15", "." * 40,
    "tab\tseparated\twords", "new\nline", "multiple   spaces", "", "   ", "\n\t",
    "Café", "naïve answer", "ÉCOLE", "日本", "2,5", "١,٢", "x.١",
]

ANSWER_PAIRS = [
    ("yes", "yes"), ("Yes.", "yes"), ("yes", "no"), ("a dog", "dog"), ("The Dog", "dog"),
    ("two", "2"), ("Two dogs", "2 dogs"), ("dont", "don't"), ("it's", "its"),
    ("1,000", "1000"), ("2.5", "2.5"), ("2.5", "25"), ("red and blue", "blue and red"),
    ("a red car", "the car is red"), ("the the the", "the"), ("", ""), ("", "yes"),
    ("yes", ""), ("dog dog cat", "dog cat cat"), ("black-and-white", "black and white"),
    ("A cat sitting on a mat.", "a cat is sitting on the mat"), ("none", "0"),
    ("ten", "10"), ("U.S.A.", "usa"), ("red / blue", "red blue"), ("red/blue", "red blue"),
]

TEN = 10


def human_sets():
    cases = []
    # k of the ten humans answered "yes", the others "no": the leave-one-out average.
    for k in range(TEN + 1):
        humans = ["yes"] * k + ["no"] * (TEN - k)
        cases.append(("yes", humans))
        cases.append(("Yes.", humans))
    # Every human gave the same answer: the official code then normalises neither side.
    cases += [
        ("yes", ["yes"] * TEN),
        ("yes.", ["yes"] * TEN),
        ("Yes", ["yes"] * TEN),
        ("2", ["two"] * TEN),
        ("two", ["two"] * TEN),
        ("dog", ["a dog"] * TEN),
        ("a dog", ["a dog"] * TEN),
        (" a dog \n", ["a dog"] * TEN),
        ("a dog", ["a dog\n"] * TEN),
    ]
    # Different answers: both sides are normalised.
    cases += [
        ("2", ["two"] * 5 + ["2"] * 3 + ["three"] * 2),
        ("Two", ["two"] * 3 + ["three"] * 7),
        ("a dog", ["dog", "the dog", "dogs", "a dog", "Dog.", "puppy", "cat", "dog", "dog", "pup"]),
        ("don't know", ["dont know"] * 2 + ["unknown"] * 8),
        ("1,000", ["1000"] * 4 + ["1,000"] * 2 + ["thousand"] * 4),
        ("yes", ["yes", "Yes", "YES", "yes.", "no", "no", "no", "no", "no", "no"]),
        ("cat", ["dog"] * 9 + ["cat"]),
        ("cat", ["dog"] * 8 + ["cat"] * 2),
        ("fish", ["dog"] * 5 + ["cat"] * 5),
        ("black and white", ["black and white"] * 6 + ["black & white"] * 2 + ["gray"] * 2),
        ("2.5", ["2.5"] * 3 + ["2.50"] * 3 + ["2 and half"] * 4),
    ]
    # Fewer than ten humans (the official code averages over as many subsets as there are).
    cases += [
        ("yes", ["yes", "no", "yes"]),
        ("yes", ["yes"]),
        ("yes", ["yes", "yes", "yes", "yes", "no"]),
    ]
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vqa-eval", help="path to the official vqaEval.py (else downloaded)")
    args = parser.parse_args()
    vqa_eval_class, digest = load_vqa_eval(args.vqa_eval)
    normalize, accuracy = official(vqa_eval_class)

    out = {
        "source": URL,
        "source_sha256": digest,
        "normalize": [{"input": t, "normalized": normalize(t)} for t in NORMALIZE],
        "pairs": [
            {
                "prediction": p,
                "reference": r,
                "exact_match": normalize(p) == normalize(r),
                "token_f1": token_f1(normalize, p, r),
            }
            for p, r in ANSWER_PAIRS
        ],
        "vqa_accuracy": [
            {"prediction": p, "human_answers": h, "accuracy": accuracy(p, h)}
            for p, h in human_sets()
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(out['normalize'])} normalisations, {len(out['pairs'])} pairs, "
          f"{len(out['vqa_accuracy'])} accuracy cases")


if __name__ == "__main__":
    main()
