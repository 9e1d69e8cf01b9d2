#!/usr/bin/env python3
"""Python grpcio-health-checking against the server: Check of the server and of each service,
NOT_FOUND for an unknown one, List, then a Watch of the server that must see NOT_SERVING when the
server begins to shut down, and then end.

Usage: health.py HOST:PORT SERVICE...   (the APIs the server serves, as it registers them)
Prints `watching` once the Watch has said SERVING (the test then stops the server), and
`saw NOT_SERVING` when it changed. Exit 0 when every check holds; otherwise the failures on stderr.
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def main(address, apis):
    services = sorted([""] + apis)
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            if answer.status != SERVING:
                fail(f"Check({service!r}) = {answer.status}")
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="NoSuchService"), timeout=10)
            fail("Check of an unknown service answered")
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                fail(f"Check of an unknown service: {e.code()}")
        listed = stub.List(health_pb2.HealthListRequest(), timeout=10)
        if sorted(listed.statuses) != services:
            fail(f"List = {sorted(listed.statuses)}")

        statuses = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        first = next(statuses)
        if first.status != SERVING:
            fail(f"Watch started with {first.status}")
        print("watching", flush=True)
        second = next(statuses)
        if second.status != NOT_SERVING:
            fail(f"Watch then said {second.status}")
        print("saw NOT_SERVING", flush=True)
        rest = list(statuses)  # raises if the stream ends with an error
        if rest:
            fail(f"more after NOT_SERVING: {rest}")
    print("python health: all checks hold")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
