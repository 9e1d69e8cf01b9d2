#!/usr/bin/env python3
"""Python grpcio-reflection against the server, with no .proto file at hand: the services, a
service's methods and a message's fields from the reflection descriptor database, then a call
made with message classes built from those descriptors alone.

Usage: reflection.py HOST:PORT SERVICE...   (every service the server registers)
Exit 0 when every check holds; otherwise the failures on stderr.
"""
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from checks import check, report


def main(address, services):
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        check("services", sorted(database.get_services()), sorted(services))
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("ResourceV1Proto")
        check("ResourceV1Proto methods",
              [(m.name, m.input_type.full_name, m.output_type.full_name) for m in service.methods],
              [("List", "google.protobuf.Empty", "ResourcesV1"),
               ("Get", "ResourceV1IdInput", "ResourceV1Output"),
               ("Create", "ResourceV1", "ResourceV1Output"),
               ("Modify", "ResourceV1", "ResourceV1Output"),
               ("Remove", "ResourceV1IdInput", "StatusOutput")])
        resource = pool.FindMessageTypeByName("ResourceV1")
        check("ResourceV1 fields", [(f.name, f.number) for f in resource.fields],
              [("id", 1), ("owner_id", 2), ("name", 3)])
        health = pool.FindServiceByName("grpc.health.v1.Health")
        check("Health methods", [m.name for m in health.methods], ["Check", "List", "Watch"])

        request_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("GreetingV2Input"))
        answer_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("GreetingV2Output"))
        greet = channel.unary_unary("/GreetingV2Proto/GetGreeting",
                                    request_serializer=request_class.SerializeToString,
                                    response_deserializer=answer_class.FromString)
        check("a call from reflected descriptors",
              greet(request_class(name="reflected"), timeout=10).message, "Hello reflected")

    report("python reflection", address)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
