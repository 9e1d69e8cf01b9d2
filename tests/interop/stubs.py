"""Generates the Python stubs of proto/grpc-api.proto into a temporary folder and imports them."""
import importlib.resources
import os
import sys
import tempfile

from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load():
    """Returns the (messages, services) modules, as grpc_tools would generate them for a user."""
    out = tempfile.mkdtemp(prefix="mrmat-interop-stubs-")
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", "grpc-api.proto"])
    if rc != 0:
        sys.exit(f"protoc failed on {PROTO_DIR}/grpc-api.proto: {rc}")
    sys.path.insert(0, out)
    import grpc_api_pb2
    import grpc_api_pb2_grpc
    return grpc_api_pb2, grpc_api_pb2_grpc
