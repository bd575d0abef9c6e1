#!/usr/bin/env python3
"""frontloop - short sessions, one after another, through a front door (or to one server).

Each session: connect, WHY, QUIT; it succeeds when the reply is exactly
"42\nBYE\n".  Runs until the file --stop exists (or --max-seconds pass),
then prints "sessions=N failed=F" and lists up to 10 failures on stderr.
--count FILE holds the number of sessions that succeeded so far (rewritten
after each), so a test can act once the loop runs and wait for progress.  Exit status 1 if any
session failed."""
import argparse
import os
import socket
import sys
import time


def session(port, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(b"WHY\nQUIT\n")
        data = b""
        while len(data) < 64:
            c = s.recv(64)
            if not c:
                break
            data += c
        return data
    finally:
        s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--count")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--max-seconds", type=float, default=100.0)
    a = p.parse_args()
    n, ok, failures = 0, 0, []
    t0 = time.monotonic()
    while not os.path.exists(a.stop) and time.monotonic() - t0 < a.max_seconds:
        n += 1
        try:
            got = session(a.port, a.timeout)
        except OSError as e:
            got = str(e)
        if got != b"42\nBYE\n":
            failures.append("session %d: %r" % (n, got))
        else:
            ok += 1
            if a.count:
                with open(a.count + ".new", "w") as f:
                    f.write("%d\n" % ok)
                os.rename(a.count + ".new", a.count)
    for f in failures[:10]:
        sys.stderr.write("failed: %s\n" % f)
    print("sessions=%d failed=%d" % (n, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
