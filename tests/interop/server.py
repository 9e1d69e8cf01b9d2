#!/usr/bin/env python3
"""A Python grpcio server with this project's behaviour (ids never reused), for the Rust client.

Usage: server.py HOST:PORT    Prints `listening on HOST:PORT` (the bound port) once it serves.
"""
import signal
import sys
import threading
from concurrent import futures

import grpc

import stubs

pb, pbg = stubs.load()


def status(code, message):
    return pb.StatusOutput(code=code, message=message)


class GreetingV1(pbg.GreetingV1ProtoServicer):
    def GetGreeting(self, request, context):
        return pb.GreetingV1Output(message="Hello World")


class GreetingV2(pbg.GreetingV2ProtoServicer):
    def GetGreeting(self, request, context):
        return pb.GreetingV2Output(message=f"Hello {request.name or 'Stranger'}")


class Healthz(pbg.HealthzProtoServicer):
    def GetHealth(self, request, context):
        return status(200, "OK")


class ResourceV1(pbg.ResourceV1ProtoServicer):
    def __init__(self):
        self._lock = threading.Lock()
        self._next_id = 0
        self._resources = {}

    def List(self, request, context):
        with self._lock:
            resources = [self._resources[i] for i in sorted(self._resources)]
        return pb.ResourcesV1(status=status(200, "OK"), resources=resources)

    def Get(self, request, context):
        with self._lock:
            found = self._resources.get(request.id)
        if found is None:
            return pb.ResourceV1Output(status=status(404, "Not Found"))
        return pb.ResourceV1Output(status=status(200, "OK"), resource=found)

    def Create(self, request, context):
        with self._lock:
            created = pb.ResourceV1(id=self._next_id, owner_id=request.owner_id, name=request.name)
            self._next_id += 1
            self._resources[created.id] = created
        return pb.ResourceV1Output(status=status(201, "Created"), resource=created)

    def Modify(self, request, context):
        with self._lock:
            found = self._resources.get(request.id)
            if found is None:
                return pb.ResourceV1Output(status=status(404, "Not Found"))
            found.name = request.name
            answer = pb.ResourceV1(id=found.id, owner_id=found.owner_id, name=found.name)
        return pb.ResourceV1Output(status=status(200, "OK"), resource=answer)

    def Remove(self, request, context):
        with self._lock:
            existed = self._resources.pop(request.id, None) is not None
        return status(401, "Removed") if existed else status(410, "Gone")


def main(address):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    pbg.add_GreetingV1ProtoServicer_to_server(GreetingV1(), server)
    pbg.add_GreetingV2ProtoServicer_to_server(GreetingV2(), server)
    pbg.add_HealthzProtoServicer_to_server(Healthz(), server)
    pbg.add_ResourceV1ProtoServicer_to_server(ResourceV1(), server)
    port = server.add_insecure_port(address)
    if port == 0:
        sys.exit(f"cannot listen on {address}")
    server.start()
    host = address.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
