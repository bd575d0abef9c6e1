#!/usr/bin/env python3
"""proxyhdr - PROXY protocol v2 headers, well formed and malformed, for the
tests (tests/proxy.bats) and the fuzzers' seeds.  Built from the
specification (HAProxy's doc/proxy-protocol.txt, 2.2), not from whoconn's
parser.

  proxyhdr.py bytes KIND [--then TEXT]      the header (and TEXT) on stdout
  proxyhdr.py send PORT KIND [--then TEXT] [--trickle] [--hold]
        connects to 127.0.0.1:PORT, sends the header and TEXT in one
        segment (--trickle: one byte at a time), closes its sending side
        (--hold: keeps it open), prints every reply line and how the
        connection ended ("-- eof", "-- timeout", "-- reset")
  proxyhdr.py count PROXY_PORT PLAIN_PORT   WHO over two proxied connections
        and then a direct one, each held open: prints the three answers
  proxyhdr.py corpus DIR [--session]        writes every KIND as a fuzz seed
        (--session: in fuzz_session's layout, flags byte 8|1, whole, then
        a request)

TEXT takes C escapes (\\n, \\x01).  Every socket wait is bounded.
"""
import argparse
import os
import socket
import struct
import sys
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PROXY, V2_LOCAL = 0x21, 0x20
TCP4, TCP6, UNSPEC, UNIX4, UDP4 = 0x11, 0x21, 0x00, 0x31, 0x12

CLIENT4 = ("203.0.113.7", 51234)
CLIENT6 = ("2001:db8::7", 51236)
FRONT4 = ("198.51.100.1", 4242)
FRONT6 = ("2001:db8::1", 4242)

# How long a reply may take: a process start on a busy machine, or the
# header timeout of a silent peer (5 s at most), with room to spare.
TIMEOUT = 30.0


def v4(src=CLIENT4, dst=FRONT4):
    return (socket.inet_pton(socket.AF_INET, src[0]) + socket.inet_pton(socket.AF_INET, dst[0])
            + struct.pack("!HH", src[1], dst[1]))


def v6(src=CLIENT6, dst=FRONT6):
    return (socket.inet_pton(socket.AF_INET6, src[0]) + socket.inet_pton(socket.AF_INET6, dst[0])
            + struct.pack("!HH", src[1], dst[1]))


def header(ver_cmd, fam, body, length=None, sig=SIG):
    return sig + bytes([ver_cmd, fam]) + struct.pack("!H", len(body) if length is None else length) + body


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


KINDS = {
    # accepted
    "v4": header(V2_PROXY, TCP4, v4()),
    "v6": header(V2_PROXY, TCP6, v6()),
    "v4-mapped": header(V2_PROXY, TCP6, v6(("::ffff:203.0.113.9", 51239))),
    "local": header(V2_LOCAL, UNSPEC, b""),
    "local-with-addresses": header(V2_LOCAL, TCP4, v4()),  # addresses ignored
    "unspec": header(V2_PROXY, UNSPEC, b""),
    # ALPN, authority and a NOOP, as HAProxy's proxy-v2-options may add
    "v4-tlvs": header(V2_PROXY, TCP4, v4() + tlv(0x01, b"whoconn") + tlv(0x02, b"front.example")
                      + tlv(0x04, b"\0" * 5)),
    "longest": header(V2_PROXY, TCP4, v4() + tlv(0x04, b"\0" * (1024 - 12 - 3))),
    # refused
    "truncated": header(V2_PROXY, TCP4, v4())[:20],
    "oversized": header(V2_PROXY, TCP4, v4() + tlv(0x04, b"\0" * (1025 - 12 - 3))),
    "bad-signature": header(V2_PROXY, TCP4, v4(), sig=b"\r\n\r\n\x00\r\nQUIX\n"),
    "v1": b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 4242\r\n",
    "unknown-family": header(V2_PROXY, 0x41, v4()),
    "unix": header(V2_PROXY, UNIX4, b"\0" * 216),
    "datagram": header(V2_PROXY, UDP4, v4()),
    "version-1": header(0x11, TCP4, v4()),
    "unknown-command": header(0x22, TCP4, v4()),
    "short-addresses": header(V2_PROXY, TCP6, v4()),
    "bad-tlv": header(V2_PROXY, TCP4, v4() + b"\x04\x00\x09abc"),
    "plain": b"",  # no header at all: the request is the first byte
}


def unescape(text):
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def recv_lines(s):
    data, how = b"", "eof"
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        how = "timeout"
    except ConnectionResetError:
        how = "reset"
    return data, how


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def send(args):
    data = KINDS[args.kind] + unescape(args.then)
    s = connect(args.port)
    # the client's own address, for the test to find in whoconn's log
    print("-- from 127.0.0.1:%d" % s.getsockname()[1], flush=True)
    if args.trickle:
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(0.01)
    else:
        s.sendall(data)  # one segment: header and requests together
    if not args.hold:
        s.shutdown(socket.SHUT_WR)
    data, how = recv_lines(s)
    s.close()
    for line in data.decode("latin-1").splitlines():
        print(line)
    print("-- " + how)


def ask(s, line):
    s.sendall(line)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode("latin-1").strip()


def count(args):
    # one after the other: a connection counts from its process's start
    held = []
    for port, first in ((args.proxy_port, KINDS["v4"]), (args.proxy_port, KINDS["v6"]),
                        (args.plain_port, b"")):
        held.append(connect(port))
        print(ask(held[-1], first + b"WHO\n"))
    for s in held:
        s.close()


def corpus(args):
    os.makedirs(args.dir, exist_ok=True)
    for kind, data in KINDS.items():
        if args.session:
            data = bytes([8 | 1, 0]) + data + b"WHO\nWHY\n"
        with open(os.path.join(args.dir, "proxy-" + kind), "wb") as f:
            f.write(data)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bytes")
    b.add_argument("kind", choices=KINDS)
    b.add_argument("--then", default="")
    s = sub.add_parser("send")
    s.add_argument("port", type=int)
    s.add_argument("kind", choices=KINDS)
    s.add_argument("--then", default="")
    s.add_argument("--trickle", action="store_true")
    s.add_argument("--hold", action="store_true")
    c = sub.add_parser("count")
    c.add_argument("proxy_port", type=int)
    c.add_argument("plain_port", type=int)
    k = sub.add_parser("corpus")
    k.add_argument("dir")
    k.add_argument("--session", action="store_true")
    args = p.parse_args()
    if args.mode == "bytes":
        sys.stdout.buffer.write(KINDS[args.kind] + unescape(args.then))
    elif args.mode == "send":
        send(args)
    elif args.mode == "count":
        count(args)
    else:
        corpus(args)


if __name__ == "__main__":
    main()
