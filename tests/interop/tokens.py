#!/usr/bin/env python3
"""The token service from Python, as an app would call it: keys and tokens made by PyJWT and
`cryptography` (a JOSE implementation independent of the server's), validated over Validate
and over ValidateStream and ValidateBatches with a request iterator.

Usage:
  tokens.py keys DIR              Writes DIR/jwks.json and the private keys beside it.
  tokens.py check HOST:PORT DIR [--ca PEM --cert PEM --key PEM]
                                  Mints tokens with DIR's keys and checks every answer; with
                                  mutual TLS, revokes one too. Exit 0 when every check holds.
  tokens.py verify DIR TOKENS      Verifies each line of the file TOKENS with PyJWT against DIR's
                                  key set (signature, iss, aud, exp); prints `verified N`.
  tokens.py opaque HOST:PORT ISSUER
                                  Opaque tokens of ISSUER, which a stand-in introspection
                                  endpoint judges by their start (introspection_server.py):
                                  active ones valid with the answer as claims, others INACTIVE,
                                  over Validate, ValidateStream and ValidateBatches.
  tokens.py bound HOST:PORT DIR   Tokens bound to a DPoP key (proofs made by PyJWT) and to a client
                                  certificate (made by `cryptography`): valid with their proof or
                                  certificate over Validate and ValidateStream, refused without.
  tokens.py idle-stream HOST:PORT DIR
                                  Opens a stream, has one token validated, prints `answered`,
                                  then keeps the stream open and idle until killed.
"""
import argparse
import json
import os
import queue
import sys
import time
import uuid

import grpc
import jwt
from google.protobuf import json_format
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

import stubs
from channels import open_channel
from checks import check, report

pb, pbg = stubs.load()

ISSUER = "https://id.mrmat.test"
AUDIENCE = "mrmat-api"

# kid: (make a private key, the JWK of its public half, the algorithms to sign with)
KEYS = {
    "py-rsa": (
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        RSAAlgorithm.to_jwk,
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    ),
    "py-ec256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk, ["ES256"]),
    "py-ec384": (lambda: ec.generate_private_key(ec.SECP384R1()), ECAlgorithm.to_jwk, ["ES384"]),
    "py-ed": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm.to_jwk, ["EdDSA"]),
}

V = pb.TokenV1Verdict


def write_keys(folder):
    jwks = []
    for kid, (make, to_jwk, _) in KEYS.items():
        key = make()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        with open(os.path.join(folder, f"{kid}.pem"), "wb") as f:
            f.write(pem)
        jwk = json.loads(to_jwk(key.public_key()))
        jwk.update(kid=kid, use="sig")
        jwks.append(jwk)
    with open(os.path.join(folder, "jwks.json"), "w") as f:
        json.dump({"keys": jwks}, f)


def private_key(folder, kid):
    with open(os.path.join(folder, f"{kid}.pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def mint(folder, kid, alg, subject, **changes):
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "aud": [AUDIENCE, "other"], "iat": now,
              "exp": now + 600, "jti": str(uuid.uuid4()), "scp": ["read", "admin"]}
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, private_key(folder, kid), algorithm=alg, headers={"kid": kid}), claims


def cases(folder):
    """(name, token, expected verdict, claims) for every algorithm and most verdicts."""
    now = int(time.time())
    out = []
    for kid, (_, _, algorithms) in KEYS.items():
        for alg in algorithms:
            token, claims = mint(folder, kid, alg, f"{alg}-user")
            out.append((f"{alg} valid", token, V.TOKEN_V1_VALID, claims))
            token, claims = mint(folder, kid, alg, "late", exp=now - 3600)
            out.append((f"{alg} expired", token, V.TOKEN_V1_EXPIRED, claims))
    token, claims = mint(folder, "py-ec384", "ES384", "rich", email="rich@example.com",
                         email_verified=True, groups=["ops", "dev"], level=3, ratio=0.25,
                         tenant={"id": "t-1", "parent": None, "limits": {"rps": 100}})
    out.append(("every JSON type", token, V.TOKEN_V1_VALID, claims))
    token, claims = mint(folder, "py-ec256", "ES256", "early", nbf=now + 3600)
    out.append(("not yet valid", token, V.TOKEN_V1_NOT_YET_VALID, claims))
    token, claims = mint(folder, "py-ed", "EdDSA", "x", iss="https://elsewhere.example")
    out.append(("wrong issuer", token, V.TOKEN_V1_WRONG_ISSUER, claims))
    token, claims = mint(folder, "py-ed", "EdDSA", "x", aud="billing")
    out.append(("wrong audience", token, V.TOKEN_V1_WRONG_AUDIENCE, claims))
    token, claims = mint(folder, "py-ed", "EdDSA", "x", exp=None)
    out.append(("no exp", token, V.TOKEN_V1_MALFORMED, claims))
    # PyJWT itself refuses to sign HS256 with a PEM key; the header says enough to be refused.
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","kid":"py-rsa"}').decode()
    body = jwt.utils.base64url_encode(json.dumps({"sub": "x"}).encode()).decode()
    out.append(("HS256", f"{header}.{body}.c2ln", V.TOKEN_V1_UNSUPPORTED_ALGORITHM, {}))
    token, claims = mint(folder, "py-rsa", "RS256", "x")
    head, body, sig = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps(dict(claims, sub="root")).encode()).decode()
    out.append(("forged claims", f"{head}.{forged}.{sig}", V.TOKEN_V1_BAD_SIGNATURE, claims))
    return out


def check_answer(what, answer, request_id, expected, claims):
    check(f"{what}: request_id", answer.request_id, request_id)
    check(f"{what}: verdict", V.Name(answer.verdict), V.Name(expected))
    if expected == V.TOKEN_V1_VALID:
        check(f"{what}: status", (answer.status.code, answer.status.message), (200, "Valid"))
        got = (answer.subject, answer.issuer, list(answer.audience), answer.expires_at,
               list(answer.scopes), answer.token_id)
        want = (claims["sub"], ISSUER, [AUDIENCE, "other"], claims["exp"], ["read", "admin"],
                claims["jti"])
        check(f"{what}: claims", got, want)
        # The whole verified payload, every JSON type as the token has it (numbers as doubles,
        # which Python compares equal to the ints minted).
        check(f"{what}: every claim", json_format.MessageToDict(answer.claims), claims)
    else:
        check(f"{what}: status code", answer.status.code, 401)
        check(f"{what}: a reason", bool(answer.status.message), True)


def run_checks(args):
    all_cases = cases(args.dir)
    with open_channel(args) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pbg.TokenV1ProtoStub(channel)
        for i, (what, token, expected, claims) in enumerate(all_cases):
            answer = stub.Validate(pb.TokenV1Input(request_id=i, token=token), timeout=10)
            check_answer(f"Validate {what}", answer, i, expected, claims)

        # One stream, a request iterator, every case three times over.
        plan = [(1000 + n, case) for n, case in enumerate(all_cases * 3)]
        inputs = (pb.TokenV1Input(request_id=rid, token=case[1]) for rid, case in plan)
        answers = list(stub.ValidateStream(inputs, timeout=30))
        check("ValidateStream: one answer per input", len(answers), len(plan))
        for answer, (rid, (what, _, expected, claims)) in zip(answers, plan):
            check_answer(f"ValidateStream {what}", answer, rid, expected, claims)

        # The same plan in batches of 7 (the last one shorter), and an empty batch: answered in
        # order, by one or more messages a batch (an empty batch by one empty message).
        batches = [plan[i:i + 7] for i in range(0, len(plan), 7)] + [[]]
        requests = (pb.TokenV1InputBatch(inputs=[pb.TokenV1Input(request_id=rid, token=case[1])
                                                 for rid, case in batch]) for batch in batches)
        replies = list(stub.ValidateBatches(requests, timeout=30))
        check("ValidateBatches: at least one message a batch", len(replies) >= len(batches), True)
        answers = [answer for reply in replies for answer in reply.outputs]
        check("ValidateBatches: one answer per question", len(answers), len(plan))
        for answer, (rid, (what, _, expected, claims)) in zip(answers, plan):
            check_answer(f"ValidateBatches {what}", answer, rid, expected, claims)

        # A batch whose answers would not fit one message a client takes (4 MiB): 128 tokens
        # of nearly 8 KiB, their claims a long list of numbers. Several messages, each taken by
        # this client's default limits, every answer there.
        big = []
        for i in range(128):
            token, claims = mint(args.dir, "py-ec256", "ES256", f"big-{i:03}",
                                 jti=f"big-{i:03}", n=[0] * 2_900)
            big.append((token, claims))
        check("the big tokens are within the limit", all(len(t) <= 8192 for t, _ in big), True)
        batch = pb.TokenV1InputBatch(inputs=[pb.TokenV1Input(request_id=5000 + i, token=t)
                                             for i, (t, _) in enumerate(big)])
        replies = list(stub.ValidateBatches(iter([batch]), timeout=60))
        check("a 4 MB batch of answers comes in several messages", len(replies) > 1, True)
        check("each message a quarter MiB at most",
              max(reply.ByteSize() for reply in replies) <= 256 * 1024, True)
        answers = [answer for reply in replies for answer in reply.outputs]
        check("every big answer", [a.request_id for a in answers], list(range(5000, 5128)))
        for answer, (_, claims) in zip(answers, big):
            check_answer("a big batch", answer, answer.request_id, V.TOKEN_V1_VALID, claims)
        # Beyond the bound, a clear status.
        try:
            too_many = pb.TokenV1InputBatch(inputs=[pb.TokenV1Input(request_id=n, token="x")
                                                    for n in range(1001)])
            list(stub.ValidateBatches(iter([too_many]), timeout=30))
            check("a batch of 1001 questions", "answered", "RESOURCE_EXHAUSTED")
        except grpc.RpcError as e:
            check("a batch of 1001 questions", (e.code(), "at most 1000" in e.details()),
                  (grpc.StatusCode.RESOURCE_EXHAUSTED, True))

        if args.cert:
            # Revoke needs mutual TLS and an admin certificate; then the token is REVOKED.
            token, claims = mint(args.dir, "py-ec384", "ES384", "revoked")
            before = stub.Validate(pb.TokenV1Input(request_id=1, token=token), timeout=10)
            check("before Revoke", V.Name(before.verdict), "TOKEN_V1_VALID")
            done = stub.Revoke(pb.TokenV1RevokeInput(token_id=claims["jti"],
                                                     expires_at=claims["exp"]), timeout=10)
            check("Revoke status", done.code, 200)
            after = stub.Validate(pb.TokenV1Input(request_id=2, token=token), timeout=10)
            check("after Revoke", V.Name(after.verdict), "TOKEN_V1_REVOKED")
        else:
            try:
                stub.Revoke(pb.TokenV1RevokeInput(token_id="x"), timeout=10)
                check("Revoke without mutual TLS", "allowed", "PERMISSION_DENIED")
            except grpc.RpcError as e:
                check("Revoke without mutual TLS", e.code(), grpc.StatusCode.PERMISSION_DENIED)
    report("tokens.py", args.address)


def idle_stream(args):
    token, _ = mint(args.dir, "py-ed", "EdDSA", "idle")
    with open_channel(args) as channel:
        stub = pbg.TokenV1ProtoStub(channel)
        inputs = queue.Queue()
        inputs.put(pb.TokenV1Input(request_id=1, token=token))
        answers = stub.ValidateStream(iter(inputs.get, None))
        answer = next(answers)
        print("answered" if answer.verdict == V.TOKEN_V1_VALID else "refused", flush=True)
        for _ in answers:  # nothing more is sent, so nothing more comes; blocks until killed
            pass


def verify(folder, tokens_file):
    """Tokens made elsewhere (our CLI's `token v1 mint`), checked by PyJWT alone."""
    with open(os.path.join(folder, "jwks.json")) as f:
        keys = jwt.PyJWKSet.from_dict(json.load(f))
    count = 0
    with open(tokens_file) as f:
        for line in f:
            token = line.strip()
            header = jwt.get_unverified_header(token)
            # The key's own object: its JWK names one algorithm, the RSA key signs with six.
            key = keys[header["kid"]].key
            claims = jwt.decode(token, key, algorithms=[header["alg"]], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "iss", "sub", "jti"]})
            if claims["sub"] != "alice" or claims["scope"] != "read write":
                sys.exit(f"unexpected claims {claims}")
            count += 1
    print(f"verified {count}")


def opaque(args):
    suffix = uuid.uuid4().hex
    active, inactive = f"active-py{suffix}", f"nobody-py{suffix}"
    with open_channel(args) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pbg.TokenV1ProtoStub(channel)
        plan = [(n, token) for n, token in enumerate([active, inactive] * 20)]
        unary = [stub.Validate(pb.TokenV1Input(request_id=rid, token=token), timeout=10)
                 for rid, token in plan[:2]]
        streamed = list(stub.ValidateStream(
            (pb.TokenV1Input(request_id=rid, token=token) for rid, token in plan), timeout=30))
        batched = [answer for reply in stub.ValidateBatches(iter([pb.TokenV1InputBatch(
            inputs=[pb.TokenV1Input(request_id=rid, token=token) for rid, token in plan])]),
            timeout=30) for answer in reply.outputs]
        for way, answers in [("Validate", unary), ("ValidateStream", streamed),
                             ("ValidateBatches", batched)]:
            check(f"{way}: one answer each", len(answers), len(plan[:len(answers)]))
            for answer, (rid, token) in zip(answers, plan):
                check(f"{way}: request_id", answer.request_id, rid)
                if token == active:
                    check(f"{way}: verdict", V.Name(answer.verdict), "TOKEN_V1_VALID")
                    got = (answer.subject, answer.issuer, list(answer.scopes), list(answer.audience))
                    check(f"{way}: answer", got, (active[len("active-"):], args.dir,
                                                  ["read", "write"], ["api"]))
                    claims = json_format.MessageToDict(answer.claims)
                    check(f"{way}: client_id", claims.get("client_id"), "app")
                    check(f"{way}: no active member", "active" in claims, False)
                else:
                    check(f"{way}: verdict", V.Name(answer.verdict), "TOKEN_V1_INACTIVE")
                    check(f"{way}: status", answer.status.code, 401)
                    check(f"{way}: reason", "not active" in answer.status.message, True)
    report("tokens.py opaque", args.address)


def b64url(data):
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bound(args):
    import datetime
    import hashlib
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    url = "https://api.example/orders"
    client = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(client.public_key()))
    canonical = json.dumps({m: jwk[m] for m in ("crv", "kty", "x", "y")},
                           separators=(",", ":"), sort_keys=True)
    jkt = b64url(hashlib.sha256(canonical.encode()).digest())
    token, _ = mint(args.dir, "py-ec256", "ES256", "dpop-alice", cnf={"jkt": jkt})

    def proof(method="GET"):
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time()),
                  "ath": b64url(hashlib.sha256(token.encode()).digest())}
        return jwt.encode(claims, client, algorithm="ES256",
                          headers={"typ": "dpop+jwt", "jwk": jwk})

    def asked(rid, dpop_proof="", certificate=b"", which=None):
        return pb.TokenV1Input(request_id=rid, token=which or token, dpop_proof=dpop_proof,
                               http_method="GET", http_url=url + "?page=1",
                               client_certificate=certificate)

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "py-client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(client.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(client, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    x5t = b64url(hashlib.sha256(der).digest())
    cert_token, _ = mint(args.dir, "py-ec256", "ES256", "cert-alice", cnf={"x5t#S256": x5t})
    with open_channel(args) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = pbg.TokenV1ProtoStub(channel)
        one = proof()
        answer = stub.Validate(asked(1, one), timeout=10)
        check("DPoP: valid", V.Name(answer.verdict), "TOKEN_V1_VALID")
        check("DPoP: subject", answer.subject, "dpop-alice")
        answer = stub.Validate(asked(2, one), timeout=10)
        check("DPoP replayed", V.Name(answer.verdict), "TOKEN_V1_INVALID_DPOP_PROOF")
        check("DPoP replayed: reason", "used before" in answer.status.message, True)
        answer = stub.Validate(asked(3, proof("POST")), timeout=10)
        check("DPoP for POST", V.Name(answer.verdict), "TOKEN_V1_INVALID_DPOP_PROOF")
        answer = stub.Validate(asked(4), timeout=10)
        check("DPoP-bound as Bearer", V.Name(answer.verdict), "TOKEN_V1_WRONG_BINDING")
        streamed = list(stub.ValidateStream((asked(rid, proof()) for rid in range(10, 30)),
                                            timeout=30))
        check("DPoP stream: answers", len(streamed), 20)
        check("DPoP stream: all valid",
              {V.Name(a.verdict) for a in streamed}, {"TOKEN_V1_VALID"})
        for what, certificate in [("DER", der), ("PEM", pem)]:
            answer = stub.Validate(asked(5, certificate=certificate, which=cert_token), timeout=10)
            check(f"certificate-bound with its {what}", V.Name(answer.verdict), "TOKEN_V1_VALID")
        answer = stub.Validate(asked(6, which=cert_token), timeout=10)
        check("certificate-bound without", V.Name(answer.verdict), "TOKEN_V1_WRONG_BINDING")
    report("tokens.py bound", args.address)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["keys", "check", "verify", "idle-stream", "opaque", "bound"])
    parser.add_argument("address_or_dir")
    parser.add_argument("dir", nargs="?")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.mode == "keys":
        write_keys(args.address_or_dir)
        return
    if args.mode == "verify":
        verify(args.address_or_dir, args.dir)
        return
    args.address = args.address_or_dir
    if args.dir is None:
        sys.exit(f"{args.mode} needs HOST:PORT and DIR")
    {"check": run_checks, "idle-stream": idle_stream, "opaque": opaque,
     "bound": bound}[args.mode](args)


if __name__ == "__main__":
    main()
