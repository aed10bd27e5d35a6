"""pLoRA-style step in transformers: peft LoRA r=4 alpha=8 dropout 0.1 on the last decoder layer's
self_attn q_proj/v_proj, everything else frozen; same batch as scripts/time_florence2_reference.py.
Also the frozen-prefix step: only decoder layer 5 + lm_head + CE from cached inputs."""
import sys, statistics, time
sys.path.insert(0, "scripts")
import torch
from peft import LoraConfig, get_peft_model
from time_florence2_reference import build, timed

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads); torch.manual_seed(0)
model = build(51328, 51289)
batch, prompt, dec = 2, 10, 20
g = torch.Generator().manual_seed(1)
pixel_values = torch.randn((batch, 3, 768, 768), generator=g)
n_image = 1 + 24 * 24
text = torch.randint(3, 50000, (batch, prompt), generator=g); text[:, 0], text[:, -1] = 0, 2
input_ids = torch.cat([torch.full((batch, n_image), model.config.image_token_id), text], dim=1)
labels = torch.randint(3, 50000, (batch, dec), generator=g); labels[:, -1] = 2
kw = dict(input_ids=input_ids, pixel_values=pixel_values, attention_mask=torch.ones_like(input_ids), labels=labels)
cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                 target_modules=r".*language_model\.decoder\.layers\.5\.self_attn\.(q_proj|v_proj)")
pm = get_peft_model(model, cfg)
print("trainable", [n for n, p in pm.named_parameters() if p.requires_grad])
pm.train()
def fb():
    pm.zero_grad(set_to_none=True)
    pm(**kw).loss.backward()
t, ts = timed(fb, 3) if "--skip-full" not in sys.argv else (float("nan"), [])
print(f"pLoRA forward+backward (train, dropout 0.1), {threads} threads: {t:7.2f} s  {['%.2f' % x for x in ts]}")

# frozen prefix: hidden states entering decoder layer 5, cached without grad in eval mode
lm = model.model.language_model
pm.eval()
captured = {}
h = lm.decoder.layers[5].register_forward_pre_hook(lambda m, a, k: captured.update(args=a, kwargs=k), with_kwargs=True)
with torch.no_grad():
    out = pm(**kw)
h.remove()
pm.train()
layer = lm.decoder.layers[5]
args, kwargs = captured["args"], dict(captured["kwargs"])
print("cached kwargs", {k: type(v).__name__ for k, v in kwargs.items()}, "args", [type(a).__name__ for a in args])
kwargs.update(cache=None, use_cache=False)
print("cached prefix", [tuple(a.shape) for a in args if torch.is_tensor(a)], {k: tuple(v.shape) for k, v in kwargs.items() if torch.is_tensor(v)})
lm_head = model.lm_head
def last():
    pm.zero_grad(set_to_none=True)
    hidden = layer(*args, **kwargs)
    hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    logits = lm_head(hidden)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    loss.backward()
t, ts = timed(last, 10)
print(f"last layer + head + CE + backward (train), {threads} threads: {t*1000:7.1f} ms  {['%.1f' % (x*1000) for x in ts]}")
