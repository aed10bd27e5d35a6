"""ServerApp: a stock `flwr.serverapp.strategy` class drives fedvlm nodes.

The strategy's math is Flower's own; the only addition is a recorder that logs every reply and
every aggregate (for the run record at `result-path`) before handing them to the stock method.
"""

import json
import time

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp import strategy as stock

app = ServerApp()

STRATEGIES = {
    "fedavg": stock.FedAvg,
    "fedprox": stock.FedProx,
    "fedavgm": stock.FedAvgM,
    "fedadagrad": stock.FedAdagrad,
    "fedadam": stock.FedAdam,
    "fedyogi": stock.FedYogi,
    "fedmedian": stock.FedMedian,
    "fedtrimmedavg": stock.FedTrimmedAvg,
    "krum": stock.Krum,
    "multikrum": stock.MultiKrum,
    "bulyan": stock.Bulyan,
}


def arrays_json(arrays):
    if arrays is None:
        return None
    return {
        name: {"shape": list(a.numpy().shape), "values": a.numpy().astype(np.float64).ravel().tolist()}
        for name, a in arrays.items()
    }


def reply_json(msg: Message, with_arrays: bool):
    out = {"node_id": msg.metadata.src_node_id, "error": None}
    if msg.has_error():
        out["error"] = {"code": msg.error.code, "reason": msg.error.reason}
        return out
    content = msg.content
    out["metrics"] = {k: v for k, v in content.metric_records.get("metrics", {}).items()}
    if with_arrays:
        out["arrays"] = {name: arrays_json(rec) for name, rec in content.array_records.items()}
    return out


def recording(cls, log):
    class Recording(cls):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            log["train"].append({"round": server_round, "replies": [reply_json(m, True) for m in replies]})
            arrays, metrics = super().aggregate_train(server_round, replies)
            log["aggregates"].append({"round": server_round, "arrays": arrays_json(arrays)})
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            log["evaluate"].append({"round": server_round, "replies": [reply_json(m, False) for m in replies]})
            return super().aggregate_evaluate(server_round, replies)

    Recording.__name__ = cls.__name__
    return Recording


def wait_for_nodes(grid: Grid, n: int, timeout: float) -> list:
    deadline = time.time() + timeout
    while time.time() < deadline:
        nodes = list(grid.get_node_ids())
        if len(nodes) >= n:
            return nodes
        time.sleep(1)
    raise RuntimeError(f"fewer than {n} nodes connected after {timeout} s")


def malformed_probe(grid: Grid, initial: ArrayRecord, nodes: list, timeout: float) -> list:
    """Malformed train instructions; every node must answer each with an error reply."""
    name = next(iter(initial.keys()))
    good = {k: v.numpy() for k, v in initial.items()}

    def arrays(mutate):
        values = {k: v.copy() for k, v in good.items()}
        mutate(values)
        return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in values.items()})

    def nan(v):
        v[name] = v[name].copy()
        v[name].flat[0] = np.nan

    cases = {
        "wrong-shape": arrays(lambda v: v.__setitem__(name, np.zeros(v[name].shape + (1,), np.float32))),
        "unknown-name": arrays(lambda v: v.__setitem__("not.a.tensor", np.zeros((2, 2), np.float32))),
        "private-a": arrays(lambda v: v.__setitem__(name.replace("lora_b", "lora_a"), v[name])),
        "nan": arrays(nan),
        "no-arrays": None,
    }
    results = []
    for case, record in cases.items():
        content = {"config": ConfigRecord({"server-round": 1})}
        if record is not None:
            content["arrays"] = record
        messages = [
            Message(content=RecordDict(content), message_type=MessageType.TRAIN, dst_node_id=n)
            for n in nodes
        ]
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        results.append({"case": case, "replies": [reply_json(m, False) for m in replies]})
    return results


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds = int(cfg["num-server-rounds"])
    min_nodes = int(cfg["min-nodes"])
    timeout = float(cfg["round-timeout"])
    path = str(cfg["initial-arrays"])
    if not path:
        raise ValueError("set initial-arrays to the .npz written by `flower_node --export-initial`")
    with np.load(path) as npz:
        initial = ArrayRecord({k: Array(np.ascontiguousarray(npz[k])) for k in npz.files})

    log = {"rounds": rounds, "strategy": str(cfg["strategy"]), "train": [], "evaluate": [],
           "aggregates": [], "probe": [], "final": None, "initial": arrays_json(initial)}
    nodes = wait_for_nodes(grid, min_nodes, timeout)
    if bool(cfg["malformed-probe"]):
        log["probe"] = malformed_probe(grid, initial, nodes, timeout)

    name = str(cfg["strategy"])
    kwargs = dict(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=min_nodes,
                  min_evaluate_nodes=min_nodes, min_available_nodes=min_nodes)
    if name == "fedprox":
        kwargs["proximal_mu"] = float(cfg["proximal-mu"])
    strategy = recording(STRATEGIES[name], log)(**kwargs)

    train_config = {}
    if int(cfg["local-epochs"]) > 0:
        train_config["local-epochs"] = int(cfg["local-epochs"])
    if float(cfg["lr"]) > 0:
        train_config["lr"] = float(cfg["lr"])
    started = time.time()
    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=timeout,
                            train_config=ConfigRecord(train_config))
    log["seconds"] = time.time() - started
    log["final"] = arrays_json(result.arrays)
    if str(cfg["result-path"]):
        with open(str(cfg["result-path"]), "w") as f:
            json.dump(log, f)
    print(f"FEDVLM_RESULT rounds={rounds} strategy={name} seconds={log['seconds']:.2f}", flush=True)
