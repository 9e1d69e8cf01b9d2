#!/usr/bin/env python3
"""A stand-in OpenID Connect identity provider: its own signing key (made by `cryptography`),
its discovery document and key set served over HTTPS (or HTTP), and tokens minted by PyJWT, a
JOSE implementation independent of the server's.

Usage: idp.py PORT ALG KID [--cert PEM --key PEM] [--path /realms/x] [--names-issuer ISS]
              [--jwks-uri URL]
  PORT 0 picks a free one. ALG is ES256 or RS256. The issuer is SCHEME://localhost:PORT/PATH;
  --names-issuer makes the discovery document name another issuer (a misconfigured or hostile
  provider); --jwks-uri makes it name another key set URL.

It prints `listening on PORT`, then `issuer ISSUER`, once it serves, and `GET PATH` per request.
It reads commands from stdin, one JSON object a line, and answers each with one line:
  {"mint": {CLAIMS}}    ->  `token JWT`, signed with the current key (iss defaults to the issuer)
  {"rotate": "KID"}     ->  `rotated KID`: a new key replaces the old one in the key set
"""
import argparse
import http.server
import json
import ssl
import sys
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

lock = threading.Lock()
state = {}


def new_key(alg, kid):
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    elif alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    else:
        raise SystemExit(f"unsupported alg {alg}")
    jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return {"private": private, "jwk": jwk, "kid": kid, "alg": alg}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        print(f"GET {self.path}", flush=True)
        with lock:
            documents = {
                state["path"] + "/.well-known/openid-configuration": state["discovery"],
                state["path"] + "/jwks": {"keys": [state["key"]["jwk"]]},
            }
        document = documents.get(self.path)
        if document is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("alg")
    parser.add_argument("kid")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--path", default="")
    parser.add_argument("--names-issuer")
    parser.add_argument("--jwks-uri")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    issuer = f"{scheme}://localhost:{port}{args.path}"
    with lock:
        state["path"] = args.path
        state["key"] = new_key(args.alg, args.kid)
        state["discovery"] = {
            "issuer": args.names_issuer or issuer,
            "jwks_uri": args.jwks_uri or f"{issuer}/jwks",
            "id_token_signing_alg_values_supported": [args.alg],
        }
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on {port}", flush=True)
    print(f"issuer {issuer}", flush=True)

    for line in sys.stdin:
        command = json.loads(line)
        if "mint" in command:
            claims = {"iss": issuer, "iat": int(time.time()), **command["mint"]}
            with lock:
                key = state["key"]
            token = jwt.encode(claims, key["private"], algorithm=key["alg"],
                               headers={"kid": key["kid"]})
            print(f"token {token}", flush=True)
        elif "rotate" in command:
            with lock:
                state["key"] = new_key(args.alg, command["rotate"])
            print(f"rotated {command['rotate']}", flush=True)


if __name__ == "__main__":
    main()
