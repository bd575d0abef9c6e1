#!/usr/bin/env python3
"""report - the SLIs of one SLO run (docs/slo.md), from bench/slo/run's files.

Reads DIR/requests.tsv, DIR/conns.tsv (bench/slo/clients.py) and
DIR/events.tsv (bench/slo/run), writes OUT/slo-RESULTS.md and, where
matplotlib is installed, OUT/slo-timeline.png.  Prints the headline figures.
With --gate PERCENT, exits 1 when availability at the front is below
PERCENT or a held connection was lost on a server that no fault touched.
"""
import argparse
import bisect
import datetime
import os
import statistics
import sys

GOOD_WITHIN = 1.0      # s: a request is good when its right answer arrives by then
                       # (--good-within; make check's gate asks only for a right
                       # answer within the clients' own 5 s timeout: a latency
                       # bound is a benchmark's, and fails on a busy machine)
DETECTED_WITHIN = 1.0  # s: the front should have taken a dead server out by then
CONVERGENCE = 0.5      # s: a count change reaches every server's WHO (DESIGN.md 5, 2.: ~0.3 s)
CHECKS = 3             # the front's health checks: one session per server may be open
STEADY_AFTER = 4.0     # s after a recovery: staleness bound (3 s) + 1 s; steady from then
LOSS_GRACE = 8.0       # s after a recovery in which a loss still belongs to its fault
BIN = 0.1              # s: the timeline's bins
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(path, types):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(types):
                continue  # a line cut by the end of a run
            rows.append([t(v) for t, v in zip(types, parts)])
    return rows


class Req:
    __slots__ = ("t", "kind", "cmd", "result", "lat", "answer", "server", "id")

    def __init__(self, r):
        self.t, self.kind, self.cmd, self.result, self.lat, self.answer, self.server, self.id = r

    @property
    def good(self):
        return self.result == "ok" and self.lat <= GOOD_WITHIN

    @property
    def done(self):
        return self.t + self.lat


def pct(a, b):
    return 100.0 * a / b if b else 100.0


def quantile(v, q):
    if not v:
        return 0.0
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


class Faults:
    """The fault timeline: one entry per fault, with its window."""

    def __init__(self, events, ids, t_end):
        self.list = []
        for t, phase, cls, srv in events:
            if phase == "fault":
                self.list.append({"t": t, "class": cls, "host": srv, "rec": None})
            elif phase == "recovered" and self.list:
                self.list[-1]["rec"] = t
        for i, f in enumerate(self.list):
            f["rec"] = f["rec"] or t_end
            f["next"] = self.list[i + 1]["t"] if i + 1 < len(self.list) else t_end
            f["steady"] = f["rec"] + STEADY_AFTER
            f["ids"] = set(ids) if f["host"] == "-" else {ids[int(f["host"]) - 1]}

    def at(self, t):
        """The fault whose window (its start to the next one's) holds T."""
        for f in reversed(self.list):
            if f["t"] <= t < f["next"]:
                return f
        return None


class Truth:
    """What the harness knows of the true total: every connection it opened."""

    def __init__(self, conns, t_end):
        self.opens = sorted(c[0] for c in conns)
        self.closes = sorted(c[3] if c[3] else t_end for c in conns)
        self.held = [(c[2], c[3]) for c in conns if c[1] == "held" and c[2] > 0]

    def bounds(self, t_send, t_ans):
        """Low: held connections counted everywhere through the request's span
        (answered before t_send - CONVERGENCE, open until its answer).  High:
        every connection open at any instant of [t_send - CONVERGENCE, t_ans],
        plus one health check per server."""
        a = t_send - CONVERGENCE
        low = sum(1 for first, close in self.held if first <= a and close >= t_ans)
        n = len(self.opens)
        high = n - (n - bisect.bisect_right(self.opens, t_ans)) - bisect.bisect_left(self.closes, a)
        return low, high + CHECKS


def main():
    global GOOD_WITHIN
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ids", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--settings", default="")
    p.add_argument("--gate", type=float)
    p.add_argument("--good-within", type=float, default=GOOD_WITHIN)
    a = p.parse_args()
    GOOD_WITHIN = a.good_within
    ids = a.ids.split(",")
    reqs = [Req(r) for r in load(os.path.join(a.dir, "requests.tsv"),
                                 (float, str, str, str, float, str, str, int))]
    conns = load(os.path.join(a.dir, "conns.tsv"), (float, str, float, float, str, str))
    events = load(os.path.join(a.dir, "events.tsv"), (float, str, str, str))
    t0 = next(e[0] for e in events if e[1] == "start")
    t_end = max([e[0] for e in events] + [r.done for r in reqs])
    faults = Faults(events, ids, t_end)
    truth = Truth(conns, t_end)

    first = [r for r in reqs if r.kind in ("short", "held")]
    short = [r for r in reqs if r.kind == "short"]
    held = [r for r in reqs if r.kind == "held"]
    # a short session's retry on a connection error or a server-side ERR;
    # a held WHO's, asked again on the new connection after its was lost
    retries = {r.id: r for r in reqs if r.kind in ("retry", "held-retry")}

    def retried_good(r):
        if r.good:
            return True
        x = retries.get(r.id)
        return x is not None and x.result == "ok" and x.done - r.t <= GOOD_WITHIN

    # ---- held connections lost, each charged to a fault or not -------------
    losses = []
    for c in conns:
        t_open, kind, t_first, t_close, server, how = c
        # "server-error": the client left a server that answered a
        # server-side ERR (its requests count as failed, not as a loss)
        if kind != "held" or t_first == 0 or how in ("end", "server-error"):
            continue
        f = faults.at(t_close)
        if f is None or t_close > f["rec"] + LOSS_GRACE:
            f2 = None
        else:
            f2 = f
        mine = f2 is not None and server in f2["ids"]
        losses.append({"t": t_close, "server": server, "how": how, "fault": f2, "on_faulted": mine})
    lost_faulted = [x for x in losses if x["on_faulted"]]
    lost_other = [x for x in losses if not x["on_faulted"]]

    # ---- WHO accuracy ------------------------------------------------------
    who = []
    for r in reqs:
        if r.cmd == "WHO" and r.result == "ok":
            low, high = truth.bounds(r.t, r.done)
            v = int(r.answer)
            dev = v - high if v > high else (v - low if v < low else 0)
            who.append((r.done, v, low, high, dev))

    who.sort()

    def steady(t):
        if t < t0 + STEADY_AFTER:
            return False
        f = faults.at(t)
        return f is None or t >= f["steady"]

    who_steady = [w for w in who if steady(w[0])]
    exact_steady = sum(1 for w in who_steady if w[4] == 0)

    # ---- per fault and per class -------------------------------------------
    def window_stats(lo, hi):
        rs = [r for r in first if lo <= r.t < hi]
        failed = [r for r in rs if not r.good]
        goods = sorted(r.done for r in rs if r.good and r.kind == "short")
        gap = max((b - a for a, b in zip(goods, goods[1:])), default=hi - lo)
        ws = [w for w in who if lo <= w[0] < hi and w[4] != 0]
        worst = max((abs(w[4]) for w in ws), default=0)
        dur = (ws[-1][0] - ws[0][0]) if ws else 0.0
        return {"n": len(rs), "failed": len(failed),
                "failed_short": sum(1 for r in failed if r.kind == "short"),
                "retry_failed": sum(1 for r in rs if not retried_good(r)),
                "after_detect": sum(1 for r in failed if r.t > lo + DETECTED_WITHIN and r.t < hi),
                "gap": gap, "worst": worst, "dur": dur}

    rows = []
    for f in faults.list:
        s = window_stats(f["t"], f["next"])
        s.update(f)
        s["lost"] = sum(1 for x in lost_faulted if x["fault"] is f)
        s["lost_other"] = sum(1 for x in lost_other if x["fault"] is f)
        rows.append(s)
    classes = []
    for f in rows:
        if f["class"] not in classes:
            classes.append(f["class"])

    # ---- headline figures --------------------------------------------------
    n_first = len(first)
    good_first = sum(1 for r in first if r.good)
    avail = pct(good_first, n_first)
    avail_short = pct(sum(1 for r in short if r.good), len(short))
    avail_held = pct(sum(1 for r in held if r.good), len(held))
    avail_retry = pct(sum(1 for r in short if retried_good(r)), len(short))
    avail_held_retry = pct(sum(1 for r in held if retried_good(r)), len(held))
    avail_all_retry = pct(sum(1 for r in first if retried_good(r)), n_first)
    lat_short = [r.lat for r in short if r.result == "ok"]
    lat_held = [r.lat for r in held if r.result == "ok"]
    load_now = open("/proc/loadavg").read().split()[:3]

    out = []
    w = out.append
    w("# SLO at the front door, measured (bench/slo/run)")
    w("")
    # the link works from wherever the report is written (bench/, or a
    # directory of its own for a second run)
    docs = os.path.relpath(os.path.join(TOP, "docs", "slo.md"), os.path.abspath(a.out))
    w("Written by `bench/slo/run` on %s UTC; definitions: [docs/slo.md](%s)."
      % (datetime.datetime.utcfromtimestamp(t0).strftime("%Y-%m-%d %H:%M"), docs))
    w("%.0f s run, %d faults; settings: %s.  Machine: %d cores, load average at the end %s "
      "(1/5/15 min: other work shares the machine)."
      % (a.seconds, len(faults.list), a.settings, os.cpu_count(), " / ".join(load_now)))
    w("")
    w("## Headline")
    w("")
    w("| SLI | value |")
    w("|---|---|")
    w("| availability at the front, all requests (good / attempted) | **%.3f %%** (%d of %d failed) |"
      % (avail, n_first - good_first, n_first))
    w("| all requests, a client retrying once (README's guideline) | %.3f %% (%d failed) |"
      % (avail_all_retry, sum(1 for r in first if not retried_good(r))))
    w("| short sessions as they are (each timed from its connect) | %.3f %% (%d of %d failed) |"
      % (avail_short, sum(1 for r in short if not r.good), len(short)))
    w("| short sessions, retried once on a connection error or a server-side `ERR` | %.3f %% (%d failed) |"
      % (avail_retry, sum(1 for r in short if not retried_good(r))))
    w("| held connections' WHO (each timed from its send) | %.3f %% (%d of %d failed) |"
      % (avail_held, sum(1 for r in held if not r.good), len(held)))
    w("| held connections' WHO, asked once more on the new connection when one is lost | %.3f %% (%d failed) |"
      % (avail_held_retry, sum(1 for r in held if not retried_good(r))))
    w("| held connections lost on a faulted server (killed, partitioned, drained) | %d |" % len(lost_faulted))
    w("| held connections lost on any other server | **%d** |" % len(lost_other))
    w("| WHO within the true total's bounds in steady windows (bounds' width: median %d, p90 %d) | %d of %d (%.2f %%) |"
      % (quantile([x[3] - x[2] for x in who_steady], .5), quantile([x[3] - x[2] for x in who_steady], .9),
         exact_steady, len(who_steady), pct(exact_steady, len(who_steady))))
    w("| latency, short sessions from connect: p50 / p99 / max | %.0f / %.0f / %.0f ms |"
      % (1000 * quantile(lat_short, .5), 1000 * quantile(lat_short, .99), 1000 * max(lat_short, default=0)))
    w("| latency, held WHO from send: p50 / p99 / max | %.0f / %.0f / %.0f ms |"
      % (1000 * quantile(lat_held, .5), 1000 * quantile(lat_held, .99), 1000 * max(lat_held, default=0)))
    w("")
    w("## Per fault class")
    w("")
    w("Each fault's window runs from its injection to the next fault (or the end). "
      "*failed* counts short sessions and held WHOs; *after 1 s* those started more than "
      "1 s after the injection (the front should have detected the fault by then); *gap* the "
      "longest time between two good short-session answers; *WHO dev* the worst deviation "
      "of a WHO answer from the true total's bounds and how long deviating answers lasted.")
    w("")
    w("| class | faults | requests | failed | failed short | failed, retrying once | after 1 s | held lost there | held lost elsewhere | longest gap s | WHO dev (worst, s) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in classes:
        rs = [f for f in rows if f["class"] == c]
        w("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %.2f | %d, %.1f |" % (
            c, len(rs), sum(f["n"] for f in rs), sum(f["failed"] for f in rs),
            sum(f["failed_short"] for f in rs), sum(f["retry_failed"] for f in rs),
            sum(f["after_detect"] for f in rs), sum(f["lost"] for f in rs),
            sum(f["lost_other"] for f in rs), max(f["gap"] for f in rs),
            max(f["worst"] for f in rs), max(f["dur"] for f in rs)))
    w("")
    w("## Each fault")
    w("")
    w("| at s | class | host | recovered after s | requests | failed | held lost there | WHO dev (worst, s) |")
    w("|---|---|---|---|---|---|---|---|")
    for f in rows:
        w("| %.1f | %s | %s | %.1f | %d | %d | %d | %d, %.1f |" % (
            f["t"] - t0, f["class"], f["host"], f["rec"] - f["t"], f["n"], f["failed"],
            f["lost"], f["worst"], f["dur"]))
    w("")
    fails = [r for r in first if not r.good]
    if fails:
        w("## Failed requests (first 20)")
        w("")
        w("| at s | kind | command | result | latency ms | in the window of |")
        w("|---|---|---|---|---|---|")
        for r in fails[:20]:
            f = faults.at(r.t)
            w("| %.2f | %s | %s | %s | %.0f | %s |" % (
                r.t - t0, r.kind, r.cmd, r.result, 1000 * r.lat,
                "%s on %s (+%.2f s)" % (f["class"], f["host"], r.t - f["t"]) if f else "no fault"))
        w("")
    if lost_other:
        w("## Held connections lost on a server no fault touched")
        w("")
        for x in lost_other:
            w("- at %.2f s, server %s, %s" % (x["t"] - t0, x["server"], x["how"]))
        w("")

    png = plot(a.out, reqs, who, faults, t0, t_end)
    if png:
        w("![timeline](slo-timeline.png)")
        w("")
    with open(os.path.join(a.out, "slo-RESULTS.md"), "w") as f:
        f.write("\n".join(out))
    print("slo: availability %.3f %% (%d of %d failed; short %.3f %%, retry once %.3f %%, held %.3f %%, "
          "all retrying once %.3f %%); "
          "held lost on faulted servers %d, elsewhere %d; WHO in bounds in steady windows %.2f %%"
          % (avail, n_first - good_first, n_first, avail_short, avail_retry, avail_held, avail_all_retry,
             len(lost_faulted), len(lost_other), pct(exact_steady, len(who_steady))))
    if a.gate is not None:
        bad = []
        if avail < a.gate:
            bad.append("availability %.3f %% < %.1f %%" % (avail, a.gate))
        if lost_other:
            bad.append("%d held connections lost on servers no fault touched" % len(lost_other))
        if n_first == 0 or not faults.list:
            bad.append("no requests or no faults: the run did not happen")
        if bad:
            print("slo: FAILED: " + "; ".join(bad), file=sys.stderr)
            return 1
    return 0


def plot(outdir, reqs, who, faults, t0, t_end):
    """The timeline picture; None where matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    nb = int((t_end - t0) / BIN) + 1
    good, bad = [0] * nb, [0] * nb
    for r in reqs:
        if r.kind not in ("short", "held"):
            continue  # retries: the picture is of requests as they are
        i = int((r.t - t0) / BIN)
        if 0 <= i < nb:
            (good if r.good else bad)[i] += 1
    xs = [i * BIN for i in range(nb)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    ax1.plot(xs, good, lw=0.6, color="tab:green", label="good requests / 100 ms")
    ax1.bar(xs, bad, width=BIN, color="tab:red", label="failed requests / 100 ms")
    ax1.set_ylabel("requests per 100 ms")
    ax1.legend(loc="upper right", fontsize=8)
    wt = [w[0] - t0 for w in who]
    ax2.fill_between(wt, [w[2] for w in who], [w[3] for w in who], step="mid", color="0.85",
                     label="true total (bounds)")
    ax2.plot(wt, [w[1] for w in who], ".", ms=1.5, color="tab:blue", label="WHO answers")
    ax2.set_ylabel("clients")
    ax2.set_xlabel("seconds since start")
    ax2.legend(loc="upper right", fontsize=8)
    for f in faults.list:
        for ax in (ax1, ax2):
            ax.axvspan(f["t"] - t0, f["rec"] - t0, color="tab:orange", alpha=0.2)
        ax1.text(f["t"] - t0, ax1.get_ylim()[1] * 0.95, "%s %s" % (f["class"], f["host"]),
                 fontsize=7, rotation=90, va="top")
    fig.tight_layout()
    path = os.path.join(outdir, "slo-timeline.png")
    fig.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    sys.exit(main())
