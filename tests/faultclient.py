#!/usr/bin/env python3
"""faultclient - hostile clients for tests/faults.bats, over loopback TCP.

flood KIND: sends bytes of KIND (random, nul, x, blank, why) for at most
--bytes or until the server closes, while reading every reply in a second
thread.  Prints the replies, then 'sent=N end=HOW' on stderr.  Bounded by
--max-seconds, so a server that never closes makes the test fail, not hang.
"""
import argparse
import os
import socket
import sys
import threading
import time

CHUNKS = {
    "random": lambda n: os.urandom(n),
    "nul": lambda n: b"\0" * n,
    "x": lambda n: b"x" * n,
    "blank": lambda n: b"\n" * n,
}


def flood(a):
    s = socket.create_connection(("127.0.0.1", a.port), timeout=a.max_seconds)
    received = bytearray()
    how = ["open"]

    def reader():
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    how[0] = "eof"
                    return
                received.extend(d)
        except ConnectionResetError:
            how[0] = "reset"
        except OSError as e:
            how[0] = "error:%s" % e

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent, t0 = 0, time.monotonic()
    s.settimeout(0.5)
    chunk = CHUNKS[a.kind](4096)
    try:
        while sent < a.bytes and how[0] == "open" and time.monotonic() - t0 < a.max_seconds:
            try:
                sent += s.send(chunk[: a.bytes - sent])
            except socket.timeout:
                pass
        if a.then:
            s.sendall(a.then.encode().decode("unicode_escape").encode("latin-1"))
        if how[0] == "open" and a.half_close:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    t.join(max(0.1, a.max_seconds - (time.monotonic() - t0)))
    sys.stdout.write(received.decode("latin-1"))
    sys.stderr.write("sent=%d end=%s after=%.1fs\n" % (sent, how[0], time.monotonic() - t0))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    sub = p.add_subparsers(dest="mode", required=True)
    x = sub.add_parser("flood")
    x.add_argument("kind", choices=sorted(CHUNKS))
    x.add_argument("--bytes", type=int, default=1 << 40)
    x.add_argument("--then", default="")
    x.add_argument("--half-close", action="store_true")
    x.add_argument("--max-seconds", type=float, default=15)
    a = p.parse_args()
    return flood(a)


if __name__ == "__main__":
    sys.exit(main())
