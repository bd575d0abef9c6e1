#!/usr/bin/env python3
"""front-down-after - kills a process and times how long until HAProxy marks
a server DOWN.

    front-down-after.py PID ADMIN-SOCKET BACKEND SERVER

Sends SIGKILL to PID (a server's listening process), then asks the runtime
socket "show servers state BACKEND" every 20 ms, from this one process (no
fork per poll, so a busy machine adds little to the figure), until SERVER's
srv_op_state is 0 (stopped).  Prints "down_ms=N"; exit status 1 if it is not
DOWN within 60 s (a bound for the wait, not the promise: the test checks
the figure)."""
import os
import signal
import socket
import sys
import time

WAIT_SECONDS = 60.0


def op_state(path, backend, server):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"show servers state %s\n" % backend.encode())
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    for line in data.decode().splitlines():
        f = line.split()
        if len(f) > 5 and not line.startswith("#") and f[3] == server:
            return f[5]
    return None


def main():
    pid, path, backend, server = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while time.monotonic() - t0 < WAIT_SECONDS:
        if op_state(path, backend, server) == "0":
            print("down_ms=%d" % ((time.monotonic() - t0) * 1000))
            return 0
        time.sleep(0.02)
    print("down_ms=never")
    return 1


if __name__ == "__main__":
    sys.exit(main())
