"""Reference vectors for `tests/strategy_flower.rs`, made by Flower 1.42's own strategies.

Every case builds `Message`s the way a Flower `ServerApp` sees them (an `ArrayRecord` with the
update and a `MetricRecord` with `num-examples`), calls the strategy's `configure_train` (which
records the current arrays where the class needs them) and then `aggregate_train`, round after
round for the stateful strategies. The next round's global arrays are the previous result cast
to float32, as the Rust payload (f32) carries them.

Usage (the shared venv has flwr==1.42.0 and numpy):

    /work/flwr-venv/bin/python scripts/generate_strategy_vectors.py \
        tests/fixtures/strategy/flower_vectors.json
"""

import json
import sys

import flwr
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    Bulyan,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)
from flwr.supercore.differential_privacy import compute_clip_model_update, get_norm
from flwr.supercore.task_identity import TaskIdentity

SHAPES = {"dense.lora_a": (3, 4), "dense.lora_b": (2, 5)}  # sorted names, 22 values
RNG = np.random.default_rng(20261204)


class FakeGrid:
    """What `configure_train` needs of a Grid: the connected node ids."""

    def __init__(self, n):
        self.n = n

    def get_node_ids(self):
        return list(range(1, self.n + 1))


def random_arrays(scale=0.5):
    return {k: (RNG.normal(0.0, scale, s)).astype(np.float32) for k, s in SHAPES.items()}


def around(global_arrays, scale, shift=0.0):
    return {
        k: (v + shift + RNG.normal(0.0, scale, v.shape)).astype(np.float32)
        for k, v in global_arrays.items()
    }


def encode(arrays):
    out = {}
    for k in sorted(arrays):
        v = np.asarray(arrays[k])
        out[k] = {"shape": list(v.shape), "values": [float(x) for x in v.ravel()]}
    return out


def run_round(strategy, rnd, global_arrays, updates):
    """One configure_train / aggregate_train round; returns the result arrays (numpy)."""
    grid = FakeGrid(len(updates))
    record = ArrayRecord({k: Array(global_arrays[k]) for k in sorted(global_arrays)})
    messages = list(strategy.configure_train(rnd, record, ConfigRecord(), grid))
    assert len(messages) == len(updates), (len(messages), len(updates))
    replies = []
    for msg, (arrays, num_examples) in zip(messages, updates):
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(arrays[k]) for k in sorted(arrays)}),
                "metrics": MetricRecord({"num-examples": num_examples}),
            }
        )
        replies.append(Message(content, reply_to=msg))
    arrays, _ = strategy.aggregate_train(rnd, replies)
    assert arrays is not None
    return {k: arrays[k].numpy() for k in arrays.keys()}


def make_updates(global_arrays, n, honest_scale=0.05, outliers=(), examples=None):
    """n updates around the global; indices in `outliers` are far away."""
    updates = []
    for i in range(n):
        if i in outliers:
            arrays = around(global_arrays, 1.0, shift=3.0 if i % 2 == 0 else -4.0)
        else:
            arrays = around(global_arrays, honest_scale * (1.0 + 0.3 * i))
        num = int(examples[i]) if examples is not None else int(RNG.integers(5, 60))
        updates.append((arrays, num))
    return updates


def case(name, kind, params, strategy, rounds, n, outliers=(), honest_scale=0.05):
    global_arrays = random_arrays()
    out_rounds = []
    for rnd in range(1, rounds + 1):
        updates = make_updates(global_arrays, n, honest_scale, outliers)
        result = run_round(strategy, rnd, global_arrays, updates)
        dtypes = sorted({str(v.dtype) for v in result.values()})
        out_rounds.append(
            {
                "round": rnd,
                "global": encode(global_arrays),
                "updates": [
                    {"num_examples": num, "tensors": encode(arrays)} for arrays, num in updates
                ],
                "expected": encode(result),
                "expected_dtype": ",".join(dtypes),
            }
        )
        global_arrays = {k: v.astype(np.float32) for k, v in result.items()}
    return {"name": name, "strategy": kind, "params": params, "rounds": out_rounds}


def clip_cases():
    cases = []
    for clipping_norm, scale in [(0.3, 0.2), (5.0, 0.2), (0.05, 0.01)]:
        global_arrays = random_arrays()
        update = around(global_arrays, scale)
        param1 = [update[k].copy() for k in sorted(update)]
        param2 = [global_arrays[k] for k in sorted(global_arrays)]
        norm = get_norm([p1 - p2 for p1, p2 in zip(param1, param2)])
        compute_clip_model_update(param1, param2, clipping_norm)
        cases.append(
            {
                "clipping_norm": clipping_norm,
                "global": encode(global_arrays),
                "update": encode(update),
                "norm": float(norm),
                "expected": encode(dict(zip(sorted(update), param1))),
            }
        )
    return cases


def main(path):
    # What a running ServerApp process has set; Message() reads it.
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 0
    adam_custom = {"eta": 0.05, "beta_1": 0.8, "beta_2": 0.95, "tau": 1e-4}
    yogi_custom = {"eta": 0.05, "beta_1": 0.5, "beta_2": 0.9, "tau": 1e-2}
    adagrad_custom = {"eta": 0.3, "tau": 1e-2}
    cases = [
        case("fedavg", "fedavg", {}, FedAvg(), 2, 6),
        case("fedavgm_momentum", "fedavgm", {"server_learning_rate": 0.8, "server_momentum": 0.9},
             FedAvgM(server_learning_rate=0.8, server_momentum=0.9), 3, 5),
        case("fedavgm_lr_only", "fedavgm", {"server_learning_rate": 0.5, "server_momentum": 0.0},
             FedAvgM(server_learning_rate=0.5, server_momentum=0.0), 2, 5),
        case("fedavgm_default", "fedavgm", {"server_learning_rate": 1.0, "server_momentum": 0.0},
             FedAvgM(), 2, 4),
        case("fedadagrad_default", "fedadagrad", {}, FedAdagrad(), 3, 5),
        case("fedadagrad_custom", "fedadagrad", adagrad_custom, FedAdagrad(**adagrad_custom), 3, 5),
        case("fedadam_default", "fedadam", {}, FedAdam(), 4, 5),
        case("fedadam_custom", "fedadam", adam_custom, FedAdam(**adam_custom), 3, 6),
        case("fedyogi_default", "fedyogi", {}, FedYogi(), 3, 5),
        case("fedyogi_custom", "fedyogi", yogi_custom, FedYogi(**yogi_custom), 3, 6),
        case("fedmedian_odd", "fedmedian", {}, FedMedian(), 1, 7, outliers=(2, 5)),
        case("fedmedian_even", "fedmedian", {}, FedMedian(), 2, 6, outliers=(1,)),
        case("fedtrimmedavg_02", "fedtrimmedavg", {"beta": 0.2}, FedTrimmedAvg(beta=0.2), 1, 7,
             outliers=(0, 4)),
        case("fedtrimmedavg_03", "fedtrimmedavg", {"beta": 0.3}, FedTrimmedAvg(beta=0.3), 2, 8,
             outliers=(3, 6)),
        case("fedtrimmedavg_0", "fedtrimmedavg", {"beta": 0.0}, FedTrimmedAvg(beta=0.0), 1, 5),
        case("krum", "krum", {"num_malicious_nodes": 2}, Krum(num_malicious_nodes=2), 2, 7,
             outliers=(1, 4)),
        case("multikrum", "multikrum", {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
             MultiKrum(num_malicious_nodes=1, num_nodes_to_select=3), 2, 6, outliers=(5,)),
        case("bulyan_7", "bulyan", {"num_malicious_nodes": 1}, Bulyan(num_malicious_nodes=1), 2, 7,
             outliers=(3,)),
        case("bulyan_8", "bulyan", {"num_malicious_nodes": 1}, Bulyan(num_malicious_nodes=1), 1, 8,
             outliers=(0,)),
        case("bulyan_f0", "bulyan", {"num_malicious_nodes": 0}, Bulyan(num_malicious_nodes=0), 1, 4),
        case("dp_fedavg", "dp_fedavg", {"noise_multiplier": 0.0, "clipping_norm": 0.3,
                                        "num_sampled_clients": 6},
             DifferentialPrivacyServerSideFixedClipping(FedAvg(), 0.0, 0.3, 6), 2, 6,
             honest_scale=0.05),
        case("dp_fedadam", "dp_fedadam", {"noise_multiplier": 0.0, "clipping_norm": 0.25,
                                          "num_sampled_clients": 5},
             DifferentialPrivacyServerSideFixedClipping(FedAdam(), 0.0, 0.25, 5), 3, 5,
             honest_scale=0.05),
    ]
    data = {
        "generator": "scripts/generate_strategy_vectors.py",
        "flwr_version": flwr.__version__,
        "numpy_version": np.__version__,
        "cases": cases,
        "clip_update": clip_cases(),
    }
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        print(c["name"], c["rounds"][0]["expected_dtype"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/strategy/flower_vectors.json")
