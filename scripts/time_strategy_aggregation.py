"""Aggregation throughput of Flower 1.42's own strategies (numpy), for BENCHMARKS beside
`cargo bench --bench aggregation -- strategies`.

Times `aggregate_train` of each `flwr.serverapp.strategy` class on prebuilt reply `Message`s
(an `ArrayRecord` of float32 arrays and `num-examples`), after `configure_train` for the classes
that record the current arrays. Building the messages is not timed; Flower's own conversion of
each `Array` to numpy inside `aggregate_train` is. Throughput is the bytes of client updates,
`n * d * 4`, divided by the time (best of the repetitions).

Cases: 10 clients x 2 tensors of [768, 768] (1,179,648 values, Florence-2-base's default
adapter targets) and 100 clients x 2 tensors of [1000, 500] (1,000,000 values).

Usage:  /work/flwr-venv/bin/python scripts/time_strategy_aggregation.py [--reps 3]
"""

import argparse
import json
import platform
import time

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
from flwr.supercore.task_identity import TaskIdentity

CASES = [
    ("10x1.18M", 10, {"q_proj.lora": (768, 768), "v_proj.lora": (768, 768)}),
    ("100x1M", 100, {"q_proj.lora": (1000, 500), "v_proj.lora": (1000, 500)}),
]


class FakeGrid:
    def __init__(self, n):
        self.n = n

    def get_node_ids(self):
        return list(range(1, self.n + 1))


def strategies(n):
    f = max(1, (n - 3) // 4) if n >= 7 else 0  # Bulyan needs n >= 4f + 3
    return [
        ("fedavg", lambda: FedAvg()),
        ("fedavgm", lambda: FedAvgM(server_learning_rate=1.0, server_momentum=0.9)),
        ("fedadagrad", lambda: FedAdagrad()),
        ("fedadam", lambda: FedAdam()),
        ("fedyogi", lambda: FedYogi()),
        ("fedmedian", lambda: FedMedian()),
        ("fedtrimmedavg", lambda: FedTrimmedAvg(beta=0.2)),
        ("krum", lambda: Krum(num_malicious_nodes=f)),
        ("multikrum", lambda: MultiKrum(num_malicious_nodes=f, num_nodes_to_select=n // 2)),
        ("bulyan", lambda: Bulyan(num_malicious_nodes=f)),
        ("dp_fixed_clipping", lambda: DifferentialPrivacyServerSideFixedClipping(
            FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=n)),
    ]


def time_one(make, global_arrays, updates, reps):
    best = float("inf")
    for _ in range(reps):
        strategy = make()
        grid = FakeGrid(len(updates))
        record = ArrayRecord({k: Array(v) for k, v in global_arrays.items()})
        messages = list(strategy.configure_train(1, record, ConfigRecord(), grid))
        replies = [
            Message(
                RecordDict(
                    {
                        "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                        "metrics": MetricRecord({"num-examples": 10 + i}),
                    }
                ),
                reply_to=msg,
            )
            for i, (msg, arrays) in enumerate(zip(messages, updates))
        ]
        start = time.perf_counter()
        arrays, _ = strategy.aggregate_train(1, replies)
        best = min(best, time.perf_counter() - start)
        assert arrays is not None
        del replies, arrays
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quadratic-reps", type=int, default=1,
                        help="repetitions for Krum, MultiKrum, Bulyan at 100 clients")
    args = parser.parse_args()
    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 0
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(f"flwr {flwr.__version__}, numpy {np.__version__}, python {platform.python_version()}")
    rng = np.random.default_rng(0)
    results = []
    for label, n, shapes in CASES:
        global_arrays = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in shapes.items()}
        updates = [
            {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32)
             for k, v in global_arrays.items()}
            for _ in range(n)
        ]
        d = sum(int(np.prod(s)) for s in shapes.values())
        nbytes = n * d * 4
        for name, make in strategies(n):
            quadratic = name in ("krum", "multikrum", "bulyan")
            reps = args.quadratic_reps if (quadratic and n >= 100) else args.reps
            seconds = time_one(make, global_arrays, updates, reps)
            gbps = nbytes / seconds / 1e9
            results.append({"case": label, "strategy": name, "seconds": seconds, "GB/s": gbps})
            print(f"{label:9} {name:18} {seconds * 1e3:10.1f} ms {gbps:8.3f} GB/s", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
