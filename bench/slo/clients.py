#!/usr/bin/env python3
"""clients - the SLO harness's client fleet (docs/slo.md), all through the front.

Short sessions: started at a steady --rate (open loop: a slow answer never
delays the next start), each connects, sends one of WHO/WHERE/WHY and QUIT,
reads the first line, closes.  A session that fails with a connection error
(refused, reset, or closed before its answer) or a server-side ERR (the
server cannot serve now: SERVER_ERRORS) is tried once more at once,
recorded as its retry (kind "retry"), so the report can give the figure of
a client that retries an idempotent request once (README's guideline).

Held connections: --held of them, each asking WHERE on connect (which
server it is on) and then pipelining WHO every 100 ms.  A connection that
ends, or answers nothing for --dead-after seconds, is lost: it is recorded
with its server and opened again, and its unanswered WHOs are asked once
more on the new one, right after its WHERE (one WHO answers them all, as
they are the same question), recorded as their retries (kind
"held-retry").  A WHO answered with a server-side ERR ends its connection
the same way (how "server-error"), as README's guideline says.

Every request is timed: a short session's from its connect, a held
connection's from its send (its first, WHERE, from its connect).  Output,
tab-separated, times in seconds since the epoch (CLOCK_REALTIME, the clock
of bench/slo/run's events):
  requests: t_start kind cmd result latency answer server id
    result: ok | wrong | conn (connection error) | timeout
  conns:    kind t_open t_first_reply t_close server how
Runs for --seconds, then closes everything and exits 0.
"""
import argparse
import asyncio
import random
import sys
import time

REQUEST_TIMEOUT = 5.0    # a short session that has no answer by then is over
CONNECT_TIMEOUT = 5.0
LINE_MAX = 256           # longest reply line read (whoconn's are < 80 bytes)
HOLD_INTERVAL = 0.1      # a held connection's WHO period
COMMANDS = ("WHO", "WHERE", "WHY")
# Answers that say the server cannot serve now, not that the request was
# wrong: an idempotent request is asked again elsewhere (README).
SERVER_ERRORS = ("ERR registry unavailable", "ERR server id unavailable")


def right(cmd, answer, ids):
    """Whether ANSWER is the right reply to CMD."""
    if cmd == "WHY":
        return answer == "42"
    if cmd == "WHERE":
        return answer in ids
    return answer.isdigit()


class Out:
    def __init__(self, prefix):
        self.req = open(prefix + "requests.tsv", "w", buffering=1 << 16)
        self.conns = open(prefix + "conns.tsv", "w", buffering=1 << 16)
        self.next_id = 0

    def request(self, t0, kind, cmd, result, latency, answer="", server="", rid=None):
        if rid is None:
            self.next_id += 1
            rid = self.next_id
        self.req.write("%.6f\t%s\t%s\t%s\t%.6f\t%s\t%s\t%d\n"
                       % (t0, kind, cmd, result, latency, answer[:40], server, rid))
        return rid

    def conn(self, kind, t_open, t_first, t_close, server, how):
        self.conns.write("%.6f\t%s\t%.6f\t%.6f\t%s\t%s\n"
                         % (t_open, kind, t_first or 0.0, t_close, server, how))

    def close(self):
        self.req.close()
        self.conns.close()


async def session(a, out, cmd, kind, rid=None):
    """One short session; returns its result."""
    t0 = time.time()
    first = 0.0
    result, answer, writer = "conn", "", None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(a.host, a.port), CONNECT_TIMEOUT)
        writer.write(("%s\nQUIT\n" % cmd).encode())
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT - (time.time() - t0))
        if line.endswith(b"\n"):
            first = time.time()
            answer = line[:LINE_MAX].decode("latin-1").strip()
            result = "ok" if right(cmd, answer, a.ids) else "wrong"
            # the rest (BYE, then whoconn's close) ends the session
            await asyncio.wait_for(reader.read(LINE_MAX), 1.0)
    except asyncio.TimeoutError:
        result = "timeout" if result == "conn" and writer is not None else result
    except OSError:
        pass
    finally:
        if writer is not None:
            writer.close()
    t1 = time.time()
    lat = (first or t1) - t0
    out.request(t0, kind, cmd, result, lat, answer, "", rid)
    out.conn(kind, t0, first, t1, "", result)
    return result, answer


async def short(a, out, cmd):
    rid = out.next_id + 1
    out.next_id = rid
    result, answer = await session(a, out, cmd, "short", rid)
    if result == "conn" or answer.startswith(SERVER_ERRORS):
        await session(a, out, cmd, "retry", rid)


async def fleet(a, out, end):
    tasks = set()
    n = 0
    t0 = time.monotonic()
    while time.monotonic() < end:
        task = asyncio.ensure_future(short(a, out, random.choice(COMMANDS)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, t0 + n / a.rate - time.monotonic()))
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 2)


async def held_one(a, out, end):
    """One held connection, opened again each time it is lost."""
    again = []  # ids of the WHOs a lost connection left unanswered
    while time.monotonic() < end:
        t_open = time.time()
        writer, server, first, how = None, "", 0.0, "closed"
        pending = []          # (t_send, cmd, retried ids) of requests sent, unanswered
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port), CONNECT_TIMEOUT)
            writer.write(b"WHERE\n")
            pending.append((t_open, "WHERE", None))
            if again:
                writer.write(b"WHO\n")
                pending.append((time.time(), "WHO", again))
            again = []

            async def sender():
                while time.monotonic() < end:
                    await asyncio.sleep(HOLD_INTERVAL)
                    pending.append((time.time(), "WHO", None))
                    writer.write(b"WHO\n")

            send_task = asyncio.ensure_future(sender())
            try:
                while time.monotonic() < end:
                    try:
                        line = await asyncio.wait_for(reader.readline(), a.dead_after)
                    except asyncio.TimeoutError:
                        # nothing is sent after the end: silence then is no loss
                        how = "end" if time.monotonic() >= end else "silent"
                        break
                    if not line.endswith(b"\n"):
                        how = "eof"
                        break
                    now = time.time()
                    if not pending:
                        continue  # a line nobody asked for: whoconn sends none
                    t_send, cmd, retried = pending.pop(0)
                    answer = line[:LINE_MAX].decode("latin-1").strip()
                    if cmd == "WHERE" and right(cmd, answer, a.ids):
                        server = answer
                    if cmd == "WHERE":
                        first = now
                    ok = "ok" if right(cmd, answer, a.ids) else "wrong"
                    if retried is None:
                        rid = out.request(t_send, "held", cmd, ok, now - t_send, answer, server)
                    for rid in retried or ():
                        out.request(t_send, "held-retry", cmd, ok, now - t_send, answer, server, rid)
                    if answer.startswith(SERVER_ERRORS) and retried is None and cmd == "WHO":
                        # this server cannot serve now: leave it, and
                        # ask again on a new connection (README)
                        again.append(rid)
                        how = "server-error"
                        break
                else:
                    how = "end"
            finally:
                send_task.cancel()
        except (OSError, asyncio.TimeoutError) as e:
            how = "eof" if first else "connect:%s" % type(e).__name__
        if writer is not None:
            writer.close()
        t_close = time.time()
        for t_send, cmd, retried in pending:
            if how == "end":
                continue
            if retried is None:
                rid = out.request(t_send, "held", cmd, "conn", t_close - t_send, "", server)
                if cmd == "WHO":
                    again.append(rid)
            for rid in retried or ():
                out.request(t_send, "held-retry", cmd, "conn", t_close - t_send, "", server, rid)
        out.conn("held", t_open, first, t_close, server, how)
        if how != "end":
            await asyncio.sleep(HOLD_INTERVAL)


async def main_async(a):
    out = Out(a.out)
    end = time.monotonic() + a.seconds
    jobs = [fleet(a, out, end)] + [held_one(a, out, end) for _ in range(a.held)]
    await asyncio.gather(*jobs)
    out.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ids", required=True, help="the servers' ids, comma-separated")
    p.add_argument("--rate", type=float, default=20.0, help="short sessions a second")
    p.add_argument("--held", type=int, default=12)
    p.add_argument("--dead-after", type=float, default=5.0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True, help="output file prefix")
    a = p.parse_args()
    a.ids = set(a.ids.split(","))
    asyncio.run(main_async(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
