"""A Python ClientApp that speaks the same record keys as a fedvlm node, for mixed federations.

A fedvlm node and a Python ClientApp can join one run when both follow the contract:
- train: receives `arrays` (tensor names = fedvlm payload names, float32) and `config`
  (`server-round`, optional `lr`, `local-epochs`, `proximal-mu`); replies `arrays` with exactly
  the received names and shapes and `metrics` with `num-examples` (int) and `train-loss` (float).
- evaluate: receives the same; replies `metrics` with `num-examples`, `accuracy` and `loss`.
This stand-in does no real training (it returns the global arrays unchanged and zero loss);
replace the marked lines with your own model.
"""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    arrays = msg.content["arrays"]
    # --- your local training here: the arrays travel back under the same names ---
    updated = ArrayRecord({k: v for k, v in arrays.items()})
    num_examples = int(context.node_config.get("num-examples", 64))
    metrics = MetricRecord({"num-examples": num_examples, "train-loss": 0.0})
    return Message(content=RecordDict({"arrays": updated, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    num_examples = int(context.node_config.get("num-examples", 64))
    metrics = MetricRecord({"num-examples": num_examples, "accuracy": 0.0, "loss": float(np.log(4.0))})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
