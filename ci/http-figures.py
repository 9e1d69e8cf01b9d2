"""The HTTP port's figures (README, "The HTTP ports"): keep-alive latency, and what three attacks
cost the server. Usage: http-figures.py PID HOST:PORT, for a server already serving /metrics there.
Prints one `name: value` line per figure."""

import socket
import statistics
import sys
import threading
import time

PID = int(sys.argv[1])
HOST, PORT = sys.argv[2].rsplit(":", 1)
PORT = int(PORT)
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


def status(name):
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {name} in /proc/{PID}/status")


def read_response(sock, buf):
    """Reads one response with a Content-Length off `sock`; returns what is left over."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the server closed the connection")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the server closed the connection")
        rest += chunk
    return rest[length:]


def keep_alive(count=1000):
    sock = socket.create_connection((HOST, PORT))
    buf = b""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(REQUEST)
        buf = read_response(sock, buf)
        times.append(time.perf_counter() - start)
    sock.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def scrape_ms():
    """One fresh connection's GET /metrics, in ms; None when not answered within 5 s."""
    start = time.perf_counter()
    try:
        sock = socket.create_connection((HOST, PORT), timeout=5)
        sock.sendall(REQUEST)
        read_response(sock, b"")
        sock.close()
    except (OSError, SystemExit):
        return None
    return (time.perf_counter() - start) * 1000


def header_attack(mib=64):
    """One connection sends an unterminated header of `mib` MiB while the RSS is watched."""
    before = status("VmRSS")
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], status("VmRSS"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    sock = socket.create_connection((HOST, PORT))
    sock.settimeout(10)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nX-Long: ")
    chunk = b"a" * 65536
    sent = 0
    try:
        for _ in range(mib * 16):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    answer = b""
    try:
        answer = sock.recv(200)
    except OSError:
        pass
    done.set()
    watcher.join()
    sock.close()
    first = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed, no answer)"
    return before, peak[0], sent, first


def pipelining_attack(count=5000):
    """One connection pipelines `count` requests and never reads; another client scrapes."""
    sock = socket.create_connection((HOST, PORT))
    sock.settimeout(3)
    try:
        sock.sendall(REQUEST * count)
    except OSError:
        pass
    time.sleep(1)
    latencies = [scrape_ms() for _ in range(4)]
    sock.close()
    return latencies


def idle_attack(count=1000):
    socks = []
    for _ in range(count):
        socks.append(socket.create_connection((HOST, PORT)))
    time.sleep(0.5)
    threads = status("Threads")
    answered = scrape_ms()
    for s in socks:
        s.close()
    return threads, answered


p50, p99 = keep_alive()
print(f"keep-alive p50: {p50 * 1000:.3f} ms, p99: {p99 * 1000:.3f} ms (1,000 sequential requests)")
print(f"threads before attacks: {status('Threads')}")
before, peak, sent, first = header_attack()
print(f"header attack: RSS {before // 1024} MiB before, {peak // 1024} MiB peak; "
      f"{sent // 1024} KiB sent; answer: {first}")
lat = pipelining_attack()
shown = ", ".join("timeout" if l is None else f"{l:.1f} ms" for l in lat)
print(f"pipelining attack: a second client's scrapes: {shown}")
threads, answered = idle_attack()
shown = "timeout" if answered is None else f"{answered:.1f} ms"
print(f"1,000 idle connections: {threads} threads; a new client's scrape: {shown}")
