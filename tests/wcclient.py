#!/usr/bin/env python3
"""wcclient - a test client for whoconn over a real TCP socket.

Every mode is bounded in time and prints what it received, so a failing
bats test shows the server's actual bytes.  Loopback only.
"""
import argparse
import resource
import signal
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connect(port, timeout=5.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(s, limit=1 << 20):
    """Reads until EOF; returns (bytes, how it ended)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except socket.timeout:
        return data, "timeout"
    except ConnectionResetError:
        return data, "reset"
    return data, "limit"


def recv_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", "replace").rstrip("\n")


def cmd_send(a):
    """Sends the bytes (Python escapes allowed), half-closes unless --keep-open,
    prints everything received and how the connection ended."""
    payload = a.data.encode("latin-1").decode("unicode_escape").encode("latin-1")
    s = connect(a.port, a.timeout)
    s.sendall(payload)
    if not a.keep_open:
        s.shutdown(socket.SHUT_WR)
    data, how = recv_all(s)
    sys.stdout.write(data.decode("latin-1"))
    sys.stderr.write("end=%s\n" % how)
    return 0


def ask(port, line="WHO"):
    s = connect(port)
    s.sendall(line.encode() + b"\n")
    reply = recv_line(s)
    s.close()
    return reply


def cmd_who(a):
    print(ask(a.port))
    return 0


def cmd_wait_who(a):
    """Polls WHO until it equals the expected value or the deadline passes;
    prints the last answer and the time it took."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            last = ask(a.port)
        except socket.timeout:
            last = "no reply in 5 s"  # a loaded machine: ask again until the deadline
        if last == str(a.expected):
            print("%s after %.3fs" % (last, time.monotonic() - t0))
            return 0
        if time.monotonic() - t0 > a.within:
            print("%s (wanted %d) after %.3fs" % (last, a.expected, time.monotonic() - t0))
            return 1
        time.sleep(0.02)


def cmd_hold(a):
    """Holds N idle connections until SIGTERM; with --reset closes them with
    an RST instead of a FIN.  Writes 'ready' to --ready once all are open."""
    raise_nofile()
    socks = []
    for _ in range(a.n):
        socks.append(connect(a.port, 30))
        if a.send:
            socks[-1].sendall(a.send.encode().decode("unicode_escape").encode("latin-1"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    stop.wait(a.max_seconds)
    for s in socks:
        if a.reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    return 0


def cmd_burst(a):
    """N clients at once (each a thread), each connect -> WHO -> reply -> close.
    Prints 'ok=K failed=F'; failures listed on stderr."""
    raise_nofile()
    results = [None] * a.n
    go = threading.Event()

    def one(i):
        go.wait()
        try:
            s = connect(a.port, 20)
            s.sendall(b"WHO\n")
            results[i] = recv_line(s)
            s.close()
        except OSError as e:
            results[i] = "EXC %s" % e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.n)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(60)
    ok = sum(1 for r in results if r is not None and r.isdigit())
    for r in results:
        if r is None or not r.isdigit():
            sys.stderr.write("failure: %r\n" % (r,))
    print("ok=%d failed=%d" % (ok, a.n - ok))
    return 0


def cmd_pipeline(a):
    """Sends N commands in one write, counts the replies."""
    s = connect(a.port, 30)
    s.sendall((a.cmd + "\n").encode() * a.n)
    s.shutdown(socket.SHUT_WR)
    data, how = recv_all(s, 64 << 20)
    lines = data.decode("ascii", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    distinct = sorted(set(lines))
    print("replies=%d distinct=%s end=%s" % (len(lines), ",".join(distinct[:5]), how))
    return 0


def cmd_trickle(a):
    """Sends one byte every INTERVAL seconds, never a newline; prints how long
    until the server closed the connection."""
    s = connect(a.port, a.max_seconds)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < a.max_seconds:
            s.sendall(b"W")
            r, _, _ = __import__("select").select([s], [], [], a.interval)
            if r:
                data = s.recv(100)
                if not data:
                    print("closed after %.1fs" % (time.monotonic() - t0))
                    return 0
    except (BrokenPipeError, ConnectionResetError):
        print("closed after %.1fs" % (time.monotonic() - t0))
        return 0
    print("still open after %.1fs" % (time.monotonic() - t0))
    return 1


def cmd_idle(a):
    """Connects, optionally sends a line, then waits for the server to close;
    prints what arrived and after how long."""
    s = connect(a.port, a.max_seconds)
    t0 = time.monotonic()
    if a.send:
        s.sendall(a.send.encode().decode("unicode_escape").encode("latin-1"))
    data, how = recv_all(s)
    print("%r %s after %.1fs" % (data.decode("latin-1"), how, time.monotonic() - t0))
    return 0


def cmd_noread(a):
    """Sends WHO forever without reading replies, until the server stops
    accepting or closes; prints how it ended and after how long."""
    s = connect(a.port, a.max_seconds)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    chunk = b"WHY\n" * 1024
    t0 = time.monotonic()
    s.settimeout(1.0)
    stalled = None
    while time.monotonic() - t0 < a.max_seconds:
        try:
            s.send(chunk)
            stalled = None
        except socket.timeout:
            stalled = stalled or time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            print("cut off after %.1fs" % (time.monotonic() - t0))
            return 0
    print("still connected after %.1fs" % (time.monotonic() - t0))
    return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    sub = p.add_subparsers(dest="mode", required=True)
    x = sub.add_parser("send")
    x.add_argument("data")
    x.add_argument("--keep-open", action="store_true")
    x.add_argument("--timeout", type=float, default=5.0)
    sub.add_parser("who")
    x = sub.add_parser("wait-who")
    x.add_argument("expected", type=int)
    x.add_argument("--within", type=float, default=1.5)
    x = sub.add_parser("hold")
    x.add_argument("n", type=int)
    x.add_argument("--ready")
    x.add_argument("--reset", action="store_true")
    x.add_argument("--send")
    x.add_argument("--max-seconds", type=float, default=120)
    x = sub.add_parser("burst")
    x.add_argument("n", type=int)
    x = sub.add_parser("pipeline")
    x.add_argument("n", type=int)
    x.add_argument("--cmd", default="WHO")
    x = sub.add_parser("trickle")
    x.add_argument("--interval", type=float, default=0.5)
    x.add_argument("--max-seconds", type=float, default=20)
    x = sub.add_parser("idle")
    x.add_argument("--send")
    x.add_argument("--max-seconds", type=float, default=20)
    x = sub.add_parser("noread")
    x.add_argument("--max-seconds", type=float, default=30)
    a = p.parse_args()
    return globals()["cmd_" + a.mode.replace("-", "_")](a)


if __name__ == "__main__":
    sys.exit(main())
