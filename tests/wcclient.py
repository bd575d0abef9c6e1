#!/usr/bin/env python3
"""wcclient - a test client for whoconn over a real TCP socket.

Every mode is bounded in time and prints what it received, so a failing
bats test shows the server's actual bytes.  Loopback only.
"""
import argparse
import os
import resource
import signal
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"


# How long wait-who polls by default (see main()).
WAIT_WHO_SECONDS = 60.0
# How long hold keeps its connections open at most (see main()).
HOLD_MAX_SECONDS = 1800.0
# How long one connection of a load (burst, hold, burst-check) may take to
# be answered.  A bound on a condition, not a rate: 1000 sanitized
# processes starting at once on a busy 2-core machine take minutes.
LOAD_SECONDS = 300.0


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# A socket operation waits for a condition (a process started and answered):
# bounded generously, a slow, busy machine with a sanitized build only takes
# longer.  A mode that measures a time bounds it itself.
SOCKET_TIMEOUT = 30.0


def connect(port, timeout=SOCKET_TIMEOUT):
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
            last = "no reply in %d s" % SOCKET_TIMEOUT  # ask again until the deadline
        if last == str(a.expected):
            print("%s after %.3fs" % (last, time.monotonic() - t0))
            return 0
        if time.monotonic() - t0 > a.within:
            print("%s (wanted %d) after %.3fs" % (last, a.expected, time.monotonic() - t0))
            return 1
        time.sleep(0.02)


def ask_held(socks, path):
    """WHO on each held connection in turn; writes the replies to path, one
    line each ("lost: ..." for a connection that no longer answers)."""
    replies = []
    for s in socks:
        try:
            s.settimeout(SOCKET_TIMEOUT)
            s.sendall(b"WHO\n")
            r = recv_line(s)
            replies.append(r if r else "lost: closed")
        except OSError as e:
            replies.append("lost: %s" % e)
    with open(path + ".new", "w") as f:
        f.write("".join(r + "\n" for r in replies))
    os.rename(path + ".new", path)


def cmd_hold(a):
    """Holds N idle connections until SIGTERM; with --reset closes them with
    an RST instead of a FIN.  Writes 'ready' to --ready once all are open.
    With --ask-into FILE, each SIGUSR1 asks WHO on every held connection
    and writes the replies to FILE (proof that they are still served)."""
    raise_nofile()
    socks = []
    for _ in range(a.n):
        socks.append(connect(a.port, LOAD_SECONDS))
        if a.send:
            socks[-1].sendall(a.send.encode().decode("unicode_escape").encode("latin-1"))
        if a.served:
            # served: one WHY answered before the next connection opens
            socks[-1].sendall(b"WHY\n")
            r = recv_line(socks[-1])
            if r != "42":
                sys.stderr.write("hold --served: got %r, not 42\n" % (r,))
                return 1
    if a.who_into:
        # a fresh WHO right after the last reply, microseconds later
        with open(a.who_into, "w") as f:
            f.write(ask(a.port) + "\n")
    stop = threading.Event()
    asked = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: asked.set())
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    deadline = time.monotonic() + a.max_seconds
    while not stop.wait(0.05) and time.monotonic() < deadline:
        if asked.is_set() and a.ask_into:
            asked.clear()
            ask_held(socks, a.ask_into)
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
            s = connect(a.port, LOAD_SECONDS)
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
        t.join(LOAD_SECONDS)
    ok = sum(1 for r in results if r is not None and r.isdigit())
    for r in results:
        if r is None or not r.isdigit():
            sys.stderr.write("failure: %r\n" % (r,))
    print("ok=%d failed=%d" % (ok, a.n - ok))
    return 0


def cmd_burst_check(a):
    """Opens N new connections from --threads threads; each is served one
    WHY and then stays open.  Meanwhile --checkers connections, served
    before the burst, ask WHO over and over; before each WHO the number of
    connections served and still open is read, and the answer must not be
    below it (it counts the checkers too).  Prints 'served=N whos=W
    below=B final=F' (F: a fresh WHO after the burst) and exits 1 if any
    WHO was below its bound."""
    raise_nofile()
    lock = threading.Lock()
    served = [0]
    socks = []
    failures = []
    checkers = []
    for _ in range(a.checkers):
        s = connect(a.port, LOAD_SECONDS)
        s.sendall(b"WHY\n")
        if recv_line(s) != "42":
            print("checker not served")
            return 1
        checkers.append(s)
    done = threading.Event()
    whos = [0]
    below = []

    def opener(k):
        for _ in range(k):
            try:
                s = connect(a.port, LOAD_SECONDS)
                s.sendall(b"WHY\n")
                r = recv_line(s)
            except OSError as e:
                failures.append(str(e))
                continue
            if r != "42":
                failures.append(r)
                continue
            with lock:
                socks.append(s)
                served[0] += 1

    def checker(s):
        while not done.is_set():
            with lock:
                bound = served[0] + len(checkers)
            s.sendall(b"WHO\n")
            r = recv_line(s)
            whos[0] += 1
            if not r.isdigit() or int(r) < bound:
                below.append((r, bound))

    per = [a.n // a.threads + (1 if i < a.n % a.threads else 0) for i in range(a.threads)]
    ts = [threading.Thread(target=opener, args=(k,)) for k in per]
    cs = [threading.Thread(target=checker, args=(s,)) for s in checkers]
    for t in cs + ts:
        t.start()
    for t in ts:
        t.join(LOAD_SECONDS)
    done.set()
    for t in cs:
        t.join(LOAD_SECONDS)
    final = ask(a.port)
    for r, bound in below[:10]:
        sys.stderr.write("WHO answered %r with %d connections served and open\n" % (r, bound))
    for f in failures[:10]:
        sys.stderr.write("connection failed: %s\n" % f)
    print("served=%d whos=%d below=%d final=%s" % (served[0], whos[0], len(below), final))
    for s in socks + checkers:
        s.close()
    return 1 if below or failures else 0


def cmd_pipeline(a):
    """Sends N commands in one write, counts the replies."""
    s = connect(a.port, 60)
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
    if a.send_after:
        time.sleep(a.send_after)
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
    x.add_argument("--timeout", type=float, default=SOCKET_TIMEOUT)
    sub.add_parser("who")
    x = sub.add_parser("wait-who")
    x.add_argument("expected", type=int)
    # A wait for a condition (processes started or ended) is bounded
    # generously: a slow or busy machine only takes longer.  A bound that is
    # the contract ("gone within 1 s") is given by the test with --within.
    x.add_argument("--within", type=float, default=WAIT_WHO_SECONDS)
    x = sub.add_parser("hold")
    x.add_argument("n", type=int)
    x.add_argument("--ready")
    x.add_argument("--reset", action="store_true")
    x.add_argument("--send")
    x.add_argument("--served", action="store_true")
    x.add_argument("--who-into")
    x.add_argument("--ask-into")
    # only a client its test left behind reaches this bound: tests release
    # their connections themselves, and on a slow, busy machine a test can
    # spend many minutes between hold and release (etcd, 1000 connections);
    # 120 s once ended a held pair under a loaded systemd test, and WHO fell
    x.add_argument("--max-seconds", type=float, default=HOLD_MAX_SECONDS)
    x = sub.add_parser("burst-check")
    x.add_argument("n", type=int)
    x.add_argument("--threads", type=int, default=8)
    x.add_argument("--checkers", type=int, default=2)
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
    x.add_argument("--send-after", type=float, default=0, help="seconds between connect and --send")
    x.add_argument("--max-seconds", type=float, default=20)
    x = sub.add_parser("noread")
    x.add_argument("--max-seconds", type=float, default=30)
    a = p.parse_args()
    return globals()["cmd_" + a.mode.replace("-", "_")](a)


if __name__ == "__main__":
    sys.exit(main())
