#!/usr/bin/env python3
"""A stand-in RFC 7662 introspection endpoint that counts. Standard library only.

Usage: introspection_server.py PORT CLIENT_ID SECRET ISSUER
POST /introspect (client_secret_basic with CLIENT_ID and SECRET, else 401) answers by what the
token starts with, so that each test names the behaviour it wants in its token:

  active-*      active, sub = the token's rest, scope "read write", aud "api", client_id "app",
                exp in an hour
  jti-*         as active-*, with jti = the token
  noexp-*       active without exp
  otheraud-*    active for audience "billing"
  slow-*        active, after 3 s
  delay-*       inactive, after 50 ms (a flood's calls, to keep some in flight)
  fail-*        500
  redirect-*    302 to /elsewhere
  huge-*        200 with a body of 1 GiB of spaces, sent until the reader stops
  stringy-*     {"active": "true"}
  deep-*        a JSON that nests 10,000 deep
  dup-*         {"active": true, "active": false}
  anything else inactive

POST /down makes every introspection answer 503 until POST /up. GET /stats answers {"calls": N, "max_in_flight": M, "by_token": {TOKEN: calls}} (by_token only
for tokens of at most 64 bytes, the first 1,000). POST /reset clears the counts. Prints
`listening on PORT` once it serves.
"""
import base64
import json
import http.server
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
DOWN = [False]
STATS = {"calls": 0, "in_flight": 0, "max_in_flight": 0, "by_token": {}}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One segment per answer: headers and body written apart would wait out delayed ACKs.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format, *args):
        pass

    def send_json(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            snapshot = {k: v for k, v in STATS.items() if k != "in_flight"}
            snapshot["by_token"] = dict(STATS["by_token"])
        self.send_json(200, snapshot)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        if self.path == "/reset":
            with LOCK:
                STATS.update(calls=0, max_in_flight=0, by_token={})
            return self.send_json(200, {})
        if self.path in ("/down", "/up"):
            DOWN[0] = self.path == "/down"
            return self.send_json(200, {})
        expected = "Basic " + base64.b64encode(
            f"{CLIENT_ID}:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self.send_json(401, {"error": "invalid_client"})
        form = urllib.parse.parse_qs(body)
        token = form.get("token", [""])[0]
        with LOCK:
            STATS["calls"] += 1
            STATS["in_flight"] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
            if len(token) <= 64 and len(STATS["by_token"]) < 1000:
                STATS["by_token"][token] = STATS["by_token"].get(token, 0) + 1
        try:
            if DOWN[0]:
                return self.send_json(503, {"error": "temporarily_unavailable"})
            self.answer(token)
        finally:
            with LOCK:
                STATS["in_flight"] -= 1

    def answer(self, token):
        kind, _, rest = token.partition("-")
        now = int(time.time())
        active = {"active": True, "sub": rest, "scope": "read write", "aud": "api",
                  "client_id": "app", "iss": ISSUER, "exp": now + 3600, "iat": now}
        if kind == "active":
            return self.send_json(200, active)
        if kind == "jti":
            return self.send_json(200, {**active, "jti": token})
        if kind == "noexp":
            del active["exp"]
            return self.send_json(200, active)
        if kind == "otheraud":
            return self.send_json(200, {**active, "aud": "billing"})
        if kind == "slow":
            time.sleep(3)
            return self.send_json(200, active)
        if kind == "delay":
            time.sleep(0.05)
            return self.send_json(200, {"active": False})
        if kind == "fail":
            return self.send_json(500, {"error": "server_error"})
        if kind == "redirect":
            return self.send_json(302, {}, [("Location", "/elsewhere")])
        if kind == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            chunk = b" " * (1 << 20)
            try:
                for _ in range(1 << 10):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return None
        if kind == "stringy":
            return self.send_json(200, {"active": "true"})
        if kind == "deep":
            return self.send_json(200, b'{"active": true, "x": ' + b"[" * 10000 + b"]" * 10000 + b"}")
        if kind == "dup":
            return self.send_json(200, b'{"active": true, "active": false}')
        return self.send_json(200, {"active": False})


def main():
    global CLIENT_ID, SECRET, ISSUER
    port, CLIENT_ID, SECRET, ISSUER = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
