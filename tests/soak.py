#!/usr/bin/env python3
"""soak - whoconn under mixed load for a while, checked at quiescent points.

Runs whoconn under systemd-socket-activate on 127.0.0.1 (a free port, a
scratch registry in a mktemp directory) and, all at once, for --seconds:
  - a steady connect-WHO-close rate (--rate-clients threads);
  - held connections opened and closed in waves (--hold-min..--hold-max),
    each served one reply before it counts as held, a few asked WHO now
    and then;
  - SIGKILL storms on random connection processes (children of the
    activator, signalled through pidfds, so a reused PID is never hit);
  - the registry (registry.db, -wal, -shm; --delete db: the first alone)
    deleted once, mid-run.

Every --checkpoint-every seconds the load pauses (nothing is closed for it)
and, once every killed process is gone and 1 s has passed since the last one
went (the contract's "a killed connection is gone within 1 s"), it opens
CHECKPOINT_FRESH more held connections, each served one reply, waits
--settle seconds (default 0: the contract is "counted at once"; the old
250 ms registration delay needs 1), and checks:
  1. no connection process but the held ones is left (closed sessions ended);
  2. WHO on a fresh connection = held + 1, and WHO on held ones = held;
  3. every row of `conn` (sqlite3 CLI, read-only) is a live connection
     process, and every live connection process has its row;
  4. the -locks directory holds only its 64 shard files and "create", the
     registry directory only the registry's own files;
  5. no connection process has more than FD_MAX open fds;
  6. the -wal file, sampled every 50 ms all run long, stays under WAL_MAX.
During the load, every WHO reply must be a number, no session may time out,
and a session may end without its reply only while a SIGKILL storm runs.
At the end, after every client closed, no connection process may remain
within PROC_GONE_S, and every connection that ended by itself must have
logged end=client-closed and exited 0 (the soak never errs or idles).

It prints what it did and the figures (sessions, kills, max WAL size, worst
WHO latency, checkpoints passed) and exits 1 with a VIOLATION line per
failure, 2 if it could not run.  Everything is bounded: clients time out,
the run has a watchdog, and every process it started is killed on exit
(the activator also dies with this process: PR_SET_PDEATHSIG).
"""
import argparse
import ctypes
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
# A reply not here within this long is a violation (a loaded 2-core machine
# answers in well under a second; SQLite's busy timeout is 5 s).
IO_TIMEOUT_S = 10.0
# An idle connection process holds 5 fds: the socket as stdin and stdout,
# stderr, the lock shard file carrying its liveness lock, and the registry
# directory it watches with dnotify (measured).  3 more allow a design that
# keeps its SQLite handle open between requests (db, -wal, -shm); anything
# beyond is a leak, which WHOs repeated on long-held connections would grow.
FD_MAX = 8
# whoconn closes a connection's SQLite handle after 100 ms of quiet
# (WHOCONN_HANDLE_IDLE_MS); fds are counted this long after the last WHO.
QUIET_S = 0.3
# whoconn has SQLite checkpoint on commit once the WAL holds 200 frames
# (WHOCONN_WAL_AUTOCHECKPOINT) of a 4096-byte page plus a 24-byte frame
# header, after a 32-byte file header: 824,032 bytes; the -wal file is kept
# (persistent WAL) and cut back to 1 MiB (WHOCONN_WAL_LIMIT_BYTES) when a
# checkpoint resets it, so its size is a high-water mark near 1 MiB.  A
# checkpoint cannot reset the WAL while a reader is still in it, so under
# constant readers a WAL may run past 200 frames; twice the kept size is
# allowed for that, no more: a WAL that grows beyond is one whose
# checkpoints starve, and it would grow on.
WAL_LIMIT_BYTES = 1 << 20
WAL_MAX = 2 * WAL_LIMIT_BYTES
# After the last client closed, every connection process must be gone
# (each lingers WHOCONN_JOURNAL_GRACE_MS at most).  A wait for a condition,
# not a timing check: bounded at 60 s, as a slow, busy machine (a 3x slower
# process start and exit) only takes longer; a process that never exits
# still fails it.
PROC_GONE_S = 60.0
# A killed process must be gone from WHO within this long of its death.
KILL_GONE_S = 1.0
# Held connections a checkpoint opens right before its WHO: counted at once
# (the contract: served once, counted by every WHO that begins after).
CHECKPOINT_FRESH = 5
# The first held connections are never closed by a wave (only killed) and
# are asked WHO on every wave: a leak per WHO accumulates in them.
VETERANS = 5
# The only files the registry directory may hold, and its -locks directory.
DB_NAME = "registry.db"
REG_FILES = {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-metrics",
             DB_NAME + "-locks"}
LOCK_FILES = {"%02d" % i for i in range(64)} | {"create"}

PR_SET_PDEATHSIG = 1


class Violation(Exception):
    pass


def log(msg):
    sys.stdout.write("soak: %s\n" % msg)
    sys.stdout.flush()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = 0          # rate sessions answered with a number
        self.cut = 0               # sessions ended without a reply in a storm
        self.lat = []              # WHO latencies (connect to reply), seconds
        self.worst = (0.0, 0.0, 0.0)  # worst latency, its connect part, when
        self.held_opened = 0
        self.held_closed = 0
        self.held_lost = 0         # held connections whose process was killed
        self.held_who = 0          # WHOs asked on held connections
        self.waves = 0
        self.storms = 0
        self.kills = 0
        self.deletions = 0
        self.checkpoints = 0
        self.planned = 0           # checkpoints begun
        self.wal_max = 0
        self.fd_max = 0
        self.held_max = 0
        self.violations = []

    def violation(self, msg):
        with self.lock:
            self.violations.append(msg)
        log("VIOLATION: " + msg)


def connect(port):
    s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ask(s, line=b"WHO\n"):
    """Sends one request and reads one reply line; returns it, or None if
    the server closed first.  socket.timeout propagates."""
    s.sendall(line)
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = s.recv(256)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
        if len(data) > 256:
            return data.decode("latin-1")
    return data[:-1].decode("latin-1")


class Server:
    """systemd-socket-activate running whoconn, and its connection processes."""

    def __init__(self, whoconn, tmp, idle_timeout, stats):
        self.tmp = tmp
        self.regdir = os.path.join(tmp, "reg")
        os.mkdir(self.regdir, 0o700)
        self.db = os.path.join(self.regdir, DB_NAME)
        self.whoconn = os.path.realpath(whoconn)
        self.stats = stats
        self.ends = {}             # end=REASON -> count, from whoconn's log lines
        self.exits = {}            # "code N" / other -> count, from the activator
        self.errors = []           # whoconn's other log lines (registry errors ...)
        # tests/free-port: the stage's own port range under make check
        self.port = int(subprocess.check_output(
            [os.path.join(os.path.dirname(os.path.abspath(__file__)), "free-port")]))
        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent():
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        self.log = open(os.path.join(tmp, "server.log"), "w")
        self.proc = subprocess.Popen(
            ["systemd-socket-activate", "-l", "%s:%d" % (HOST, self.port), "--inetd", "-a",
             "-E", "WHOCONN_DB=" + self.db, "-E", "WHOCONN_IDLE_TIMEOUT=%d" % idle_timeout,
             self.whoconn],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent)
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 60  # a condition: 60 s for a slow machine
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("systemd-socket-activate did not listen on %d" % self.port)
                time.sleep(0.05)

    _end_re = re.compile(r"^whoconn\[\d+\]: peer=\S+ .* end=(\S+)")
    _child_re = re.compile(r"^Child \d+ died with (.*)$")

    def _read_log(self):
        """Keeps whoconn's own lines (not the activator's per-connection
        chatter) and tallies end reasons and exit statuses."""
        for raw in self.proc.stderr:
            line = raw.decode("latin-1").rstrip("\n")
            m = self._end_re.match(line)
            if m:
                self.ends[m.group(1)] = self.ends.get(m.group(1), 0) + 1
                continue
            m = self._child_re.match(line)
            if m:
                self.exits[m.group(1)] = self.exits.get(m.group(1), 0) + 1
                continue
            if line.startswith("whoconn["):
                self.errors.append(line)
                self.log.write(line + "\n")
                self.log.flush()

    def children(self):
        """PIDs of the live (not zombie) connection processes."""
        me = str(self.proc.pid)
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            if fields[1] == me and fields[0] != "Z":
                pids.append(int(p))
        return pids

    def pidfd(self, pid):
        """A pidfd for PID if it is still one of our connection processes."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            if st[st.rindex(")") + 2:].split()[1] == str(self.proc.pid):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def kill_children(self):
        for pid in self.children():
            fd = self.pidfd(pid)
            if fd is not None:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
                os.close(fd)

    def stop(self):
        if self.proc.poll() is None:
            self.kill_children()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(2)
        self.log.close()

    def stray(self):
        """Processes of our binary serving our registry, wherever they are."""
        found = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/exe" % p) != self.whoconn:
                    continue
                with open("/proc/%s/environ" % p, "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if ("WHOCONN_DB=" + self.db).encode() in env:
                found.append(int(p))
        return found


class Load:
    """The load threads, which stop at a pause and report when idle."""

    def __init__(self, server, stats, a):
        self.server, self.stats, self.a = server, stats, a
        self.port = server.port
        self.run = threading.Event()
        self.done = threading.Event()
        self.idle = []
        self.threads = []
        self.held = []             # sockets, each served one reply
        self.opened = {}           # held socket -> when it was opened
        self.held_lock = threading.Lock()
        self.storm_windows = []    # (start, end) monotonic
        self.killed = []           # pidfds of killed processes not seen gone yet
        self.last_gone = 0.0       # when the last killed process was seen gone
        self._storm_start = None   # set while a storm's victims are dying
        self.rng = random.Random(a.seed)
        for i in range(a.rate_clients):
            self._spawn(self._rate, i)
        self._spawn(self._waves, 100)
        self._spawn(self._storms, 200)

    def _spawn(self, fn, i):
        idle = threading.Event()
        t = threading.Thread(target=self._loop, args=(fn, i, idle), daemon=True)
        self.idle.append(idle)
        self.threads.append(t)

    def start(self):
        self.run.set()
        for t in self.threads:
            t.start()

    def _loop(self, fn, i, idle):
        rng = random.Random(self.a.seed * 1000 + i)
        while not self.done.is_set():
            if not self.run.is_set():
                idle.set()
                self.run.wait(0.2)
                continue
            idle.clear()
            if not self.run.is_set():
                continue
            try:
                fn(rng)
            except Exception as e:  # a bug of the soak itself: say so, stop
                self.stats.violation("soak thread %s crashed: %r" % (fn.__name__, e))
                self.done.set()
        idle.set()

    def pause(self):
        self.run.clear()
        deadline = time.monotonic() + 3 * IO_TIMEOUT_S
        for ev in self.idle:
            if not ev.wait(max(0, deadline - time.monotonic())):
                raise Violation("the load did not pause within %.0f s" % (3 * IO_TIMEOUT_S))

    def resume(self):
        for ev in self.idle:
            ev.clear()
        self.run.set()

    def stop(self):
        self.done.set()
        self.run.set()
        for t in self.threads:
            t.join(3 * IO_TIMEOUT_S)

    def in_storm(self, t0, t1):
        """Whether [t0, t1] overlaps a SIGKILL storm (its victims' deaths
        included, with 0.5 s of slack for the client to see the close)."""
        with self.stats.lock:
            windows = list(self.storm_windows)
        return any(t0 <= e + 0.5 and t1 >= s for s, e in windows) or self.storming(t1)

    def storming(self, t):
        start = self._storm_start
        return start is not None and t >= start

    def _note_cut(self, what, t0):
        t1 = time.monotonic()
        if self.in_storm(t0, t1):
            with self.stats.lock:
                self.stats.cut += 1
        else:
            self.stats.violation("%s: the server closed without a reply, no SIGKILL near" % what)

    # ---- a steady connect-WHO-close rate ------------------------------
    def _rate(self, rng):
        t0 = time.monotonic()
        try:
            s = connect(self.port)
        except OSError as e:
            self.stats.violation("rate session: connect failed: %s" % e)
            time.sleep(0.5)
            return
        tc = time.monotonic() - t0
        try:
            reply = ask(s)
        except socket.timeout:
            self.stats.violation("rate session: no WHO reply in %.0f s" % IO_TIMEOUT_S)
            return
        except OSError as e:
            reply = None
            if not isinstance(e, (ConnectionResetError, BrokenPipeError)):
                self.stats.violation("rate session: %s" % e)
                return
        finally:
            s.close()
        t1 = time.monotonic()
        if reply is None:
            self._note_cut("rate session", t0)
        elif not reply.isdigit() or int(reply) < 1:
            self.stats.violation("rate session: WHO answered %r" % reply)
        else:
            with self.stats.lock:
                self.stats.sessions += 1
                self.stats.lat.append(t1 - t0)
                if t1 - t0 > self.stats.worst[0]:
                    self.stats.worst = (t1 - t0, tc, t0 - self.stats.t_start)

    # ---- held connections in waves -------------------------------------
    def open_held(self, rng):
        t0 = time.monotonic()
        try:
            s = connect(self.port)
            reply = ask(s, b"WHY\n")
        except socket.timeout:
            self.stats.violation("held connection: no WHY reply in %.0f s" % IO_TIMEOUT_S)
            return
        except OSError as e:
            self.stats.violation("held connection: %s" % e)
            return
        if reply is None:
            s.close()
            self._note_cut("held connection (WHY)", t0)
        elif reply != "42":
            s.close()
            self.stats.violation("held connection: WHY answered %r" % reply)
        else:
            with self.held_lock:
                self.held.append(s)
                self.opened[s] = t0
            with self.stats.lock:
                self.stats.held_opened += 1

    def _waves(self, rng):
        a = self.a
        target = rng.randint(a.hold_min, a.hold_max)
        with self.stats.lock:
            self.stats.waves += 1
        while self.run.is_set():
            with self.held_lock:
                n = len(self.held)
            if n < target:
                self.open_held(rng)
            elif n > target:
                with self.held_lock:
                    s = self.held.pop(rng.randrange(min(VETERANS, len(self.held) - 1),
                                                    len(self.held)))
                    del self.opened[s]
                s.close()
                with self.stats.lock:
                    self.stats.held_closed += 1
            else:
                break
        # WHO on the veterans and on a random held connection: exercises
        # their reopen path, and a per-WHO leak grows on the veterans.
        # Those killed since they opened are dropped first.
        self.prune_held()
        for i in range(VETERANS + 1):
            if not self.run.is_set():
                return
            with self.held_lock:
                if not self.held:
                    break
                s = self.held[i if i < min(VETERANS, len(self.held)) else
                              rng.randrange(len(self.held))]
            t0 = time.monotonic()
            try:
                reply = ask(s)
            except socket.timeout:
                self.stats.violation("held connection: no WHO reply in %.0f s" % IO_TIMEOUT_S)
                continue
            except OSError:
                reply = None
            if reply is None:
                self._drop(s)
                self._note_cut("held connection (WHO)", t0)
            elif not reply.isdigit():
                self.stats.violation("held connection: WHO answered %r" % reply)
            else:
                with self.stats.lock:
                    self.stats.held_who += 1
        self._sleep(rng.uniform(1.0, 3.0))

    def _drop(self, s):
        with self.held_lock:
            if s in self.held:
                self.held.remove(s)
                del self.opened[s]
                with self.stats.lock:
                    self.stats.held_lost += 1
        s.close()

    def prune_held(self):
        """Drops held sockets whose process is gone (readable: the server
        never speaks unasked, so readable means closed).  Returns how many
        stay held."""
        with self.held_lock:
            p = select.poll()
            byfd = {}
            for s in self.held:
                p.register(s, select.POLLIN)
                byfd[s.fileno()] = s
            dead = [(byfd[fd], self.opened[byfd[fd]]) for fd, _ in p.poll(0)]
        for s, t0 in dead:
            self._drop(s)
            if not self.in_storm(t0, time.monotonic()):
                self.stats.violation("a held connection was closed by the server, "
                                     "no SIGKILL since it opened")
        with self.held_lock:
            return len(self.held)

    def _sleep(self, seconds):
        end = time.monotonic() + seconds
        while self.run.is_set() and time.monotonic() < end:
            time.sleep(0.05)

    # ---- SIGKILL storms --------------------------------------------------
    def _storms(self, rng):
        self._sleep(rng.uniform(1.0, 4.0))
        if not self.run.is_set():
            return
        pids = self.server.children()
        if not pids:
            return
        victims = rng.sample(pids, min(len(pids), rng.randint(1, max(1, min(40, len(pids) // 3)))))
        self._storm_start = time.monotonic()
        fds = []
        for pid in victims:
            fd = self.server.pidfd(pid)
            if fd is None:
                continue
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                fds.append(fd)
            except OSError:
                os.close(fd)
        with self.stats.lock:
            self.stats.storms += 1
            self.stats.kills += len(fds)
        # the storm lasts until its victims are gone (a pidfd turns
        # readable when its process has exited)
        self.wait_gone(fds, IO_TIMEOUT_S)
        with self.stats.lock:
            self.storm_windows.append((self._storm_start, time.monotonic()))
        self._storm_start = None

    def wait_gone(self, fds, timeout):
        deadline = time.monotonic() + timeout
        left = set(fds)
        while left and time.monotonic() < deadline:
            p = select.poll()
            for fd in left:
                p.register(fd, select.POLLIN)
            for fd, _ in p.poll(50):
                left.discard(fd)
                os.close(fd)
        if left:
            with self.stats.lock:
                self.killed.extend(sorted(left))  # checked at the next checkpoint
        else:
            self.last_gone = max(self.last_gone, time.monotonic())


def read_conn_pids(db):
    out = subprocess.run(["sqlite3", "-readonly", "-cmd", ".timeout 5000", db,
                          "SELECT pid FROM conn"],
                         capture_output=True, text=True, timeout=IO_TIMEOUT_S)
    if out.returncode != 0:
        raise Violation("sqlite3 could not read %s: %s" % (db, out.stderr.strip()))
    return {int(x) for x in out.stdout.split()}


def wait_children(server, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        pids = server.children()
        if len(pids) == want or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def checkpoint(server, load, stats, a, final=False):
    t0 = time.monotonic()
    stats.planned += 1
    load.pause()
    with stats.lock:
        pending, load.killed = load.killed, []
    if pending:
        load.wait_gone(pending, PROC_GONE_S)
        with stats.lock:
            if load.killed:
                raise Violation("%d SIGKILLed connection processes still run after %.0f s"
                                % (len(load.killed), IO_TIMEOUT_S + PROC_GONE_S))
    held = load.prune_held()
    # 1. only the held connections' processes are left
    pids = wait_children(server, held, PROC_GONE_S)
    if len(pids) != held:
        raise Violation("%d connection processes for %d held connections, %.0f s after the "
                        "load paused" % (len(pids), held, PROC_GONE_S))
    # killed ones are gone from WHO within KILL_GONE_S of their death
    wake = load.last_gone + KILL_GONE_S
    if wake > time.monotonic():
        time.sleep(wake - time.monotonic())
    # a few more held connections, each served one reply, and WHO at once
    # (after --settle, which the old registration delay needed)
    for _ in range(CHECKPOINT_FRESH):
        load.open_held(random)
    held = load.prune_held()
    pids = wait_children(server, held, PROC_GONE_S)
    if len(pids) != held:
        raise Violation("%d connection processes for %d held connections" % (len(pids), held))
    time.sleep(a.settle)
    # 2. WHO exact, fresh and held
    w0 = time.monotonic()
    try:
        s = connect(server.port)
        reply = ask(s)
        s.close()
    except OSError as e:
        raise Violation("checkpoint WHO failed: %s" % e)
    lat = time.monotonic() - w0
    with stats.lock:
        stats.lat.append(lat)
    if reply != str(held + 1):
        raise Violation("WHO answered %r with %d connections held and served (wanted %d)"
                        % (reply, held, held + 1))
    # the asker's process must be gone before held connections ask
    pids = wait_children(server, held, PROC_GONE_S)
    if len(pids) != held:
        raise Violation("%d connection processes for %d held connections after the "
                        "checkpoint's WHO ended" % (len(pids), held))
    with load.held_lock:
        sample = load.held[:1] + random.sample(load.held[1:], max(0, min(2, len(load.held) - 1)))
    for h in sample:
        try:
            r = ask(h)
        except OSError as e:
            raise Violation("WHO on a held connection failed: %s" % e)
        if r != str(held):
            raise Violation("WHO on a held connection answered %r with %d held (wanted %d)"
                            % (r, held, held))
    pids = set(pids)
    # 3. rows = live connection processes
    rows = read_conn_pids(server.db)
    dead_rows = sorted(rows - pids)
    if dead_rows:
        raise Violation("%d rows in conn without a live connection process: %s"
                        % (len(dead_rows), dead_rows[:10]))
    unreg = sorted(pids - rows)
    if unreg:
        raise Violation("%d live connection processes without a row in conn: %s"
                        % (len(unreg), unreg[:10]))
    # 4. no leaked files
    extra = sorted(set(os.listdir(server.db + "-locks")) - LOCK_FILES)
    if extra:
        raise Violation("leaked files in %s-locks: %s" % (server.db, extra[:10]))
    extra = sorted(set(os.listdir(server.regdir)) - REG_FILES)
    if extra:
        raise Violation("unexpected files in %s: %s" % (server.regdir, extra[:10]))
    # 5. no leaked fds.  Counted once every connection is quiet: a connection
    # keeps its SQLite handle (3 fds) for QUIET_S after its last request, and
    # a WHO that sweeps opens other processes' lock shards for a moment.
    time.sleep(QUIET_S)
    worst = (0, None)
    for pid in pids:
        try:
            n = len(os.listdir("/proc/%d/fd" % pid))
        except OSError as e:
            raise Violation("connection process %d vanished during the checkpoint: %s" % (pid, e))
        worst = max(worst, (n, pid))
    stats.fd_max = max(stats.fd_max, worst[0])
    if worst[0] > FD_MAX:
        raise Violation("connection process %d has %d open fds (at most %d): %s"
                        % (worst[1], worst[0], FD_MAX,
                           sorted(os.readlink("/proc/%d/fd/%s" % (worst[1], f))
                                  for f in os.listdir("/proc/%d/fd" % worst[1]))))
    # 6. WAL bounded
    if stats.wal_max > WAL_MAX:
        raise Violation("the -wal file reached %d bytes (bound %d)" % (stats.wal_max, WAL_MAX))
    stats.checkpoints += 1
    stats.held_max = max(stats.held_max, held)
    log("checkpoint %d at %.0fs: %d held, WHO=%s in %.0f ms, %d rows, max %d fds, "
        "wal %d bytes, quiet after %.1fs"
        % (stats.checkpoints, t0 - a.t_start, held, reply, lat * 1000, len(rows), worst[0],
           stats.wal_max, time.monotonic() - t0))
    if not final:
        load.resume()


def watch_wal(db, stats, done):
    while not done.wait(0.05):
        try:
            n = os.stat(db + "-wal").st_size
        except OSError:
            continue
        if n > stats.wal_max:
            stats.wal_max = n


def delete_registry(server, stats, mode):
    for suffix in ("", "-wal", "-shm") if mode == "all" else ("",):
        try:
            os.unlink(server.db + suffix)
        except FileNotFoundError:
            pass
    stats.deletions += 1
    log("deleted %s%s at %.0fs" % (server.db, ", -wal and -shm" if mode == "all" else "",
                                   time.monotonic() - stats.t_start))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


def summary(server, stats, a, elapsed):
    lat = stats.lat
    log("ran %.0fs on 127.0.0.1:%d, %d rate clients, %d-%d held in waves"
        % (elapsed, server.port, a.rate_clients, a.hold_min, a.hold_max))
    log("sessions done: %d (%.0f/s), cut by SIGKILL: %d" % (stats.sessions,
                                                            stats.sessions / max(elapsed, 1),
                                                            stats.cut))
    log("held: %d opened, %d closed, %d killed, %d WHOs on held, %d waves, max %d held at a "
        "checkpoint" % (stats.held_opened, stats.held_closed, stats.held_lost, stats.held_who,
                        stats.waves, stats.held_max))
    log("kills: %d processes in %d SIGKILL storms; registry deleted %d time(s)"
        % (stats.kills, stats.storms, stats.deletions))
    log("WHO latency (connect to reply): p50 %.1f ms, p99 %.1f ms, worst %.1f ms (%d WHOs); "
        "the worst of a rate session %.1f ms at %.1fs, %.1f ms of it to connect"
        % (percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000,
           (max(lat) if lat else 0) * 1000, len(lat), stats.worst[0] * 1000, stats.worst[2],
           stats.worst[1] * 1000))
    log("max WAL size: %d bytes (bound %d); max fds of a connection process: %d (bound %d)"
        % (stats.wal_max, WAL_MAX, stats.fd_max, FD_MAX))
    log("connection ends: %s; exits: %s" % (
        " ".join("%s=%d" % kv for kv in sorted(server.ends.items())) or "-",
        ", ".join("%s: %d" % kv for kv in sorted(server.exits.items())) or "-"))
    log("checkpoints passed: %d" % stats.checkpoints)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--whoconn", required=True)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--checkpoint-every", type=float, default=10)
    p.add_argument("--rate-clients", type=int, default=3)
    p.add_argument("--hold-min", type=int, default=100)
    p.add_argument("--hold-max", type=int, default=300)
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds a checkpoint waits between serving its fresh held "
                        "connections and asking WHO (0: the contract; the old 250 ms "
                        "registration delay needs 1)")
    p.add_argument("--delete", choices=("all", "db"), default="all",
                   help="mid-run, delete registry.db with its -wal and -shm, or alone")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = p.parse_args()
    if not (1 <= a.seconds <= 86400 and 1 <= a.rate_clients <= 32
            and 0 <= a.hold_min <= a.hold_max <= 2000 and a.checkpoint_every >= 2
            and 0 <= a.settle <= 10):
        p.error("a setting is out of range")
    if a.seed is None:
        a.seed = random.randrange(1 << 30)
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (hard, hard))

    stats = Stats()
    tmp = tempfile.mkdtemp(prefix="whoconn-soak.")
    server = load = None
    done = threading.Event()
    ok = False

    def on_signal(signum, _frame):
        raise SystemExit("soak: stopped by signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def watchdog():
        if not done.wait(a.seconds + 120):
            log("VIOLATION: the soak did not finish within %.0f s; killing everything"
                % (a.seconds + 120))
            if server:
                server.kill_children()
                server.proc.kill()
            os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        server = Server(a.whoconn, tmp, int(a.seconds) + 300, stats)
        a.t_start = stats.t_start = time.monotonic()
        log("whoconn on 127.0.0.1:%d, registry %s, %.0fs, seed %d"
            % (server.port, server.db, a.seconds, a.seed))
        threading.Thread(target=watch_wal, args=(server.db, stats, done), daemon=True).start()
        load = Load(server, stats, a)
        load.start()
        end = a.t_start + a.seconds
        next_cp = a.t_start + a.checkpoint_every
        delete_at = a.t_start + a.seconds / 2
        deleted = False
        try:
            while time.monotonic() < end and not load.done.is_set():
                now = time.monotonic()
                if not deleted and now >= delete_at:
                    if next_cp - now < 2 and next_cp < end:
                        delete_at = next_cp + 1  # not right before a checkpoint
                    else:
                        delete_registry(server, stats, a.delete)
                        deleted = True
                if now >= next_cp and next_cp < end - 1:
                    checkpoint(server, load, stats, a)
                    next_cp = time.monotonic() + a.checkpoint_every
                time.sleep(0.05)
            if not load.done.is_set():
                checkpoint(server, load, stats, a, final=True)
        except Violation as e:
            stats.violation(str(e))
        elapsed = time.monotonic() - a.t_start
        load.stop()
        # every client closes: no connection process may stay
        with load.held_lock:
            for s in load.held:
                s.close()
            load.held = []
        left = wait_children(server, 0, PROC_GONE_S)
        if left:
            stats.violation("%d connection processes still run %.0f s after every client "
                            "closed: %s" % (len(left), PROC_GONE_S, sorted(left)[:10]))
        server.stop()
        if stats.wal_max > WAL_MAX and stats.checkpoints == stats.planned:  # the closes write too
            stats.violation("the -wal file reached %d bytes (bound %d)" % (stats.wal_max, WAL_MAX))
        stray = server.stray()
        if stray:
            stats.violation("whoconn processes of this registry outlived the activator: %s"
                            % stray[:10])
        unexpected = {k: v for k, v in server.ends.items() if k != "client-closed"}
        if unexpected:
            stats.violation("connections ended otherwise than by the client closing: %s"
                            % unexpected)
        # the activator reports a signal's number as the code: 9 is SIGKILL
        bad_exits = {k: v for k, v in server.exits.items() if k not in ("code 0", "code 9")}
        if bad_exits:
            stats.violation("connection processes exited otherwise than 0 or SIGKILL: %s"
                            % bad_exits)
        if server.errors:
            kinds = {}
            for line in server.errors:  # one of each, PIDs aside
                kinds.setdefault(re.sub(r"^whoconn\[\d+\]: ", "", line), line)
            stats.violation("whoconn logged %d error line(s), %d kind(s):\n  %s"
                            % (len(server.errors), len(kinds),
                               "\n  ".join(list(kinds.values())[:5])))
        summary(server, stats, a, elapsed)
        ok = not stats.violations
    except (RuntimeError, OSError) as e:
        log("could not run: %s" % e)
        done.set()
        return 2
    finally:
        done.set()
        if load:
            load.done.set()
        if server:
            server.stop()
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("scratch directory kept: %s" % tmp)
    if stats.violations:
        log("FAILED: %d violation(s), the first: %s" % (len(stats.violations),
                                                         stats.violations[0]))
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
