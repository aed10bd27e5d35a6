# Generation grid for tests/florence2_language/generation.rs: 1008 settings (greedy and beam search with
# n-gram banning, early-stopping modes, length penalties, eos tokens, forced <s>) run by
# transformers on the tiny Florence-2 fixture; the Rust generator must give the same ids.
# Run: python scripts/generate_florence2_generation_grid.py (after generate_florence2_reference.py)
import json, itertools, torch
from safetensors.torch import load_file
from transformers import Florence2ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput
import pathlib
fx = str(pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/florence2")
model = Florence2ForConditionalGeneration.from_pretrained(fx + "/tiny_native").eval()
io = load_file(fx + "/tiny_io.safetensors")
enc = io["encoder_hidden"]
ids = io["native_input_ids"]
cases = []
def run(s):
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             encoder_outputs=BaseModelOutput(last_hidden_state=enc.clone()),
                             do_sample=False, **s)
    return out.tolist()
grid = []
for ngram, mx, eos, fbos in itertools.product([0, 2, 3], [12, 40], [2, 34, 74], [0, None]):
    base = dict(max_new_tokens=mx, no_repeat_ngram_size=ngram, eos_token_id=eos, forced_eos_token_id=eos,
                forced_bos_token_id=fbos, pad_token_id=1, decoder_start_token_id=2, use_cache=True)
    grid.append(dict(base, num_beams=1))
    for nb, early, lp in itertools.product([2, 3, 4], [True, False, "never"], [1.0, 0.6, 2.0]):
        grid.append(dict(base, num_beams=nb, early_stopping=early, length_penalty=lp, num_return_sequences=1))
for s in grid:
    cases.append({"settings": s, "ids": run(s)})
json.dump(cases, open(fx + "/generation_grid.json", "w"), separators=(",", ":"))
print(len(cases))
