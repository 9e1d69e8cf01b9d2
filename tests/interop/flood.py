"""Floods a server's TokenV1Proto/ValidateBatches as an attacker would, with no credential:
--streams streams over --connections connections, each sending batches of about --batch-bytes
bytes of tokens as fast as the server takes them, and never reading an answer.

Each batch holds --questions junk tokens (no dots, so each is answered MALFORMED), or, with
--tokens FILE, tokens from that file (one per line) repeated to fill it. With --method stream,
ValidateStream instead, each message one junk token of --batch-bytes. Messages are built once,
as bytes, and sent as they are: the client's own cost is the gRPC core's.

Prints `sent N batches (M MiB)` once a second to stdout, then, after --seconds, `done` and
exits 0 without reading anything. The client never credits the server's answers beyond its
transport's first window (no BDP probing, a 64 KiB lookahead), so answers back up in the server
as they would against a client that does not read.
"""

import argparse
import sys
import threading
import time

import grpc

METHODS = {
    "batches": "/TokenV1Proto/ValidateBatches",
    "stream": "/TokenV1Proto/ValidateStream",
}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def batch(tokens):
    """A TokenV1InputBatch of TokenV1Input {request_id = i, token} for each token."""
    out = bytearray()
    for i, token in enumerate(tokens):
        question = varint(1 << 3 | 0) + varint(i) + field(2, token)
        out += field(1, question)
    return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--batch-bytes", type=int, default=1 << 20)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--tokens")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--method", choices=sorted(METHODS), default="batches")
    args = parser.parse_args()

    if args.tokens:
        with open(args.tokens, encoding="ascii") as f:
            pool = [line.strip().encode() for line in f if line.strip()]
        tokens, size = [], 0
        while size + len(pool[len(tokens) % len(pool)]) <= args.batch_bytes and len(tokens) < 1000:
            token = pool[len(tokens) % len(pool)]
            tokens.append(token)
            size += len(token)
    else:
        each = max(1, args.batch_bytes // args.questions)
        tokens = [b"x" * each] * args.questions
    if args.method == "stream":
        message = varint(1 << 3 | 0) + varint(1) + field(2, b"x" * args.batch_bytes)
    else:
        message = batch(tokens)

    options = [
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 65535),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
    ]
    channels = [grpc.insecure_channel(args.address, options=options)
                for _ in range(args.connections)]
    for channel in channels:
        grpc.channel_ready_future(channel).result(timeout=10)

    stop = threading.Event()
    sent = [0]
    lock = threading.Lock()

    def requests():
        while not stop.is_set():
            yield message
            with lock:
                sent[0] += 1

    calls = []
    for i in range(args.streams):
        call = channels[i % len(channels)].stream_stream(METHODS[args.method])
        # Never iterated: no answer is ever read.
        calls.append(call(requests()))

    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        time.sleep(1)
        with lock:
            n = sent[0]
        print(f"sent {n} batches ({n * len(message) / (1 << 20):.0f} MiB)", flush=True)
    stop.set()
    print("done", flush=True)
    # Leave at once: a graceful close would wait for the calls.
    sys.stdout.flush()
    import os
    os._exit(0)


if __name__ == "__main__":
    main()
