"""Rebuilds proto/flwr_1_42_fleet.fds.bin: the FileDescriptorSet of the 9 flwr 1.42 proto files a
SuperNode needs, taken from the `*_pb2` modules of the flwr wheel (which ships no .proto files).

usage: /path/to/venv-with-flwr-1.42/bin/python scripts/flower_dump_fds.py proto/flwr_1_42_fleet.fds.bin
Adapted from /work/shared/flower/dump_fds.py (which dumps all 17 files).
"""
import importlib, sys
from google.protobuf import descriptor_pb2

fds = descriptor_pb2.FileDescriptorSet()
seen = set()


def add(fd):
    if fd.name in seen:
        return
    for dep in fd.dependencies:
        add(dep)
    seen.add(fd.name)
    p = descriptor_pb2.FileDescriptorProto()
    p.ParseFromString(fd.serialized_pb)
    fds.file.append(p)


# fleet.proto imports heartbeat, node, run, fab, message (-> error, recorddict, transport).
add(importlib.import_module("flwr.proto.fleet_pb2").DESCRIPTOR)
open(sys.argv[1], "wb").write(fds.SerializeToString())
print(sorted(seen))
