#!/usr/bin/env python3
"""A Python grpcio client that calls all 8 rpcs of a fresh server and checks every answer,
including the gRPC errors for a name over the limit and a request that does not decode.

Usage: client.py HOST:PORT [--ca PEM [--cert PEM --key PEM] [--server-name NAME]]
Plaintext without --ca; TLS with it; mutual TLS with --cert and --key too.
Exit 0 when every check holds; otherwise the failures on stderr.
"""
import argparse

import grpc
from google.protobuf.empty_pb2 import Empty

import stubs
from channels import open_channel
from checks import check, report

pb, pbg = stubs.load()


def status(s):
    return (s.code, s.message)


def resource(r):
    return (r.id, r.owner_id, r.name)


def error_of(call):
    """The (code, details) of a call expected to fail, or None when it succeeded."""
    try:
        call()
    except grpc.RpcError as e:
        return (e.code(), e.details())
    return None


def main(args):
    address = args.address
    with open_channel(args) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        t = 10
        g1 = pbg.GreetingV1ProtoStub(channel)
        g2 = pbg.GreetingV2ProtoStub(channel)
        hz = pbg.HealthzProtoStub(channel)
        rs = pbg.ResourceV1ProtoStub(channel)

        check("GreetingV1", g1.GetGreeting(pb.GreetingV1Input(), timeout=t).message, "Hello World")
        check("GreetingV2 named", g2.GetGreeting(pb.GreetingV2Input(name="Mat"), timeout=t).message,
              "Hello Mat")
        check("GreetingV2 unnamed", g2.GetGreeting(pb.GreetingV2Input(), timeout=t).message,
              "Hello Stranger")
        check("Healthz", status(hz.GetHealth(pb.HealthzInput(), timeout=t)), (200, "OK"))

        listed = rs.List(Empty(), timeout=t)
        check("List empty", (status(listed.status), len(listed.resources)), ((200, "OK"), 0))

        a = rs.Create(pb.ResourceV1(id=77, owner_id=1, name="a"), timeout=t)
        check("Create a", (status(a.status), resource(a.resource)), ((201, "Created"), (0, 1, "a")))
        b = rs.Create(pb.ResourceV1(owner_id=2, name="Grüße 🦀"), timeout=t)
        check("Create b", (status(b.status), resource(b.resource)),
              ((201, "Created"), (1, 2, "Grüße 🦀")))

        got = rs.Get(pb.ResourceV1IdInput(id=1), timeout=t)
        check("Get found", (status(got.status), resource(got.resource)),
              ((200, "OK"), (1, 2, "Grüße 🦀")))
        missing = rs.Get(pb.ResourceV1IdInput(id=9), timeout=t)
        check("Get missing", (status(missing.status), missing.HasField("resource")),
              ((404, "Not Found"), False))

        mod = rs.Modify(pb.ResourceV1(id=0, owner_id=5, name="z"), timeout=t)
        check("Modify found", (status(mod.status), resource(mod.resource)),
              ((200, "OK"), (0, 1, "z")))
        mod = rs.Modify(pb.ResourceV1(id=9, owner_id=5, name="z"), timeout=t)
        check("Modify missing", (status(mod.status), mod.HasField("resource")),
              ((404, "Not Found"), False))

        check("Remove found", status(rs.Remove(pb.ResourceV1IdInput(id=0), timeout=t)),
              (401, "Removed"))
        check("Remove again", status(rs.Remove(pb.ResourceV1IdInput(id=0), timeout=t)),
              (410, "Gone"))

        c = rs.Create(pb.ResourceV1(owner_id=3, name="c"), timeout=t)
        check("Create after remove gets a new id", resource(c.resource), (2, 3, "c"))
        listed = rs.List(Empty(), timeout=t)
        check("List", (status(listed.status), [resource(r) for r in listed.resources]),
              ((200, "OK"), [(1, 2, "Grüße 🦀"), (2, 3, "c")]))

        too_long = error_of(lambda: rs.Create(pb.ResourceV1(owner_id=1, name="x" * 1025), timeout=t))
        check("Create with a name over the limit", too_long,
              (grpc.StatusCode.INVALID_ARGUMENT,
               "the name is 1025 bytes long; the limit is 1024 bytes"))
        raw = channel.unary_unary("/GreetingV2Proto/GetGreeting",
                                  request_serializer=None, response_deserializer=None)
        undecodable = error_of(lambda: raw(b"\x0a\x02\xc3\x28", timeout=t))  # invalid UTF-8
        check("A request that does not decode",
              (undecodable[0], "not a valid GreetingV2Input" in undecodable[1])
              if undecodable else None,
              (grpc.StatusCode.INTERNAL, True))

    report("python client", address)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the server")
    parser.add_argument("--ca", help="PEM CA certificate to trust; turns TLS on")
    parser.add_argument("--cert", help="PEM client certificate, for mutual TLS")
    parser.add_argument("--key", help="PEM client key, for mutual TLS")
    parser.add_argument("--server-name", help="name the server certificate is issued to")
    main(parser.parse_args())
