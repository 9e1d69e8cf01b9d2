#!/usr/bin/env python3
"""A stand-in identity provider: serves the files of a folder (a key set among them) over HTTP,
or HTTPS when given a certificate and key. Standard library only.

Usage: jwks_server.py FOLDER PORT [CERT KEY]
Prints `listening on PORT` (the bound port; 0 picks a free one) once it serves, and one line
`GET PATH` per request on stdout, so a test can count the fetches.
"""
import functools
import http.server
import ssl
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        print(f"GET {self.path}", flush=True)
        super().do_GET()


def main():
    folder, port = sys.argv[1], int(sys.argv[2])
    handler = functools.partial(Handler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    if len(sys.argv) == 5:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
