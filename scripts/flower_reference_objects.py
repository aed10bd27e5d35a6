"""Writes tests/fixtures/flower/reference_objects.json: what flwr 1.42's own classes make, for
tests/flower_protocol.rs to match byte for byte.

- `message`: a train-like Message (arrays incl. f16, 0-d and zero-size ones, a ConfigRecord with
  every value type, a MetricRecord) deflated by flwr: every object (post-order), its tree, id.
- `error_message`: a Message carrying Error{code, reason} instead of content.
- `chunked`: Arrays over 5 MiB: the Array object bytes (the chunks are left out, they are large
  and reproducible: zeros / a ramp) and the chunk ids, incl. a repeated (deduplicated) chunk.
- `npy`: numpy.save output of odd arrays (0-d, zero-size, f16, f64, big-endian, Fortran order).

usage: /path/to/venv-with-flwr-1.42/bin/python scripts/flower_reference_objects.py \
           tests/fixtures/flower/reference_objects.json
"""
import base64, io, json, sys

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.common.serde import metadata_to_proto
from flwr.supercore.task_identity import TaskIdentity

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 3, 5


def b64(b):
    return base64.b64encode(bytes(b)).decode()


def tree_dict(t):
    return {"id": t.object_id, "children": [tree_dict(c) for c in t.children]}


def set_metadata(msg, run_id=7, src=3, dst=11, reply_to="", group="2", created_at=1796394973.005565,
                 ttl=43196.5, src_task=None, dst_task=991):
    md = msg.metadata.__dict__
    md.update({"_run_id": run_id, "_src_node_id": src, "_dst_node_id": dst,
               "_reply_to_message_id": reply_to, "_group_id": group, "_created_at": created_at,
               "_ttl": ttl, "_src_task_id": src_task, "_dst_task_id": dst_task})
    return msg


def dump_message(msg):
    objs = get_all_nested_objects(msg)
    meta = metadata_to_proto(msg.metadata)
    meta.message_id = ""
    return {
        "message_id": msg.object_id,
        "metadata": b64(meta.SerializeToString(deterministic=True)),
        "objects": [[oid, b64(o.deflate())] for oid, o in objs.items()],
        "tree": tree_dict(get_object_tree(msg)),
    }


def npy(a):
    b = io.BytesIO()
    np.save(b, a, allow_pickle=False)
    return b.getvalue()


lora_b = (np.arange(32, dtype=np.float32).reshape(4, 8) / 7.0).astype(np.float32)
half = np.array([[0.5, -1.25, 3.0], [65504.0, 1e-3, 0.0]], dtype=np.float16)
content = RecordDict({
    "arrays": ArrayRecord({
        "lora_b": Array(lora_b),
        "half": Array(half),
        "scalar": Array(np.array(2.5, dtype=np.float32)),
        "empty": Array(np.zeros((0, 3), dtype=np.float32)),
        "wide": Array(np.linspace(-1, 1, 5, dtype=np.float64)),
    }),
    "config": ConfigRecord({
        "lr": 0.1, "server-round": 2, "name": "héllo \"x\"", "flag": True, "blob": b"\x00\x01",
        "floats": [0.5, 1.5], "ints": [1, -2], "bools": [True, False], "strs": ["a", "b"],
        "blobs": [b"x", b""],
    }),
    "metrics": MetricRecord({"num-examples": 40, "loss": 0.25, "accs": [0.5, 0.75],
                             "counts": [3, 4]}),
    "copy": ConfigRecord({"lr": 0.1}),  # a second record; distinct id
})
msg = set_metadata(Message(content, dst_node_id=11, message_type="train"))

err = set_metadata(Message(RecordDict(), dst_node_id=11, message_type="query"), group="")
err.__dict__["_error"] = Error(code=2, reason="<class 'RuntimeError'>:<'asked to fail'>")
err.__dict__["_content"] = None

chunked = []
for name, a in [("ramp", np.arange(2_000_000, dtype=np.float32)),   # 2 chunks
                ("zeros", np.zeros(4_500_000, dtype=np.float32))]:  # 4 chunks, 2 identical
    arr = Array(a)
    children = list(arr.children.keys())
    chunked.append({"name": name, "len": int(a.size), "array_id": arr.object_id,
                    "array_object": b64(arr.deflate()), "chunk_ids": children,
                    "npy_len": len(npy(a))})

npys = {
    "f32_2x3": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
    "f32_scalar": np.array(-7.25, dtype=np.float32),
    "f32_zero_size": np.zeros((3, 0, 2), dtype=np.float32),
    "f32_1d": np.array([1.0, 2.0, 3.0], dtype=np.float32),
    "f32_4d": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4),
    "f16_2x2": np.array([[0.5, -2.0], [1024.0, 0.0999]], dtype=np.float16),
    "f64_3": np.array([0.1, -1e10, 3.0], dtype=np.float64),
    "big_endian_f4": np.array([1.5, -2.0], dtype=">f4"),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "int32": np.arange(3, dtype=np.int32),
}
out = {
    "message": dump_message(msg),
    "error_message": dump_message(err),
    "chunked": chunked,
    "npy": {k: {"bytes": b64(npy(v)), "shape": list(v.shape),
                "values": [float(x) for x in np.ravel(v, order="C")]} for k, v in npys.items()},
}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print("wrote", sys.argv[1])
