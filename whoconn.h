/*
 * whoconn.h - limits, defaults and exit statuses of whoconn(8), and of its
 * two companions whoconn-sync(8) and whoconn-metrics(8) where they share
 * them.  The code they share is in lib/ (README, "Layout").
 *
 * Every quantity a peer or an operator can influence is bounded here, in one
 * place, with the reason for its value.  Each is a macro so that a build can
 * override it (-DWHOCONN_LINE_MAX=...), as SQLite does in sqliteLimit.h.
 */
#ifndef WHOCONN_H
#define WHOCONN_H

#ifndef WHOCONN_VERSION
#define WHOCONN_VERSION "0.1.0"
#endif

/* Longest request line, CR and LF excluded.  Commands are at most five
 * letters; 1 KiB leaves room for future arguments while keeping a hostile
 * peer from making us buffer anything large. */
#ifndef WHOCONN_LINE_MAX
#define WHOCONN_LINE_MAX 1024
#endif

/* Bytes read from the peer per read(2).  Larger than a line so that a
 * pipelining client is served with few system calls. */
#define WHOCONN_READ_BUF 4096

/* Replies are gathered and written once per read.  The longest reply is an
 * ERR line under 128 bytes, so a flush always leaves room for the next. */
#define WHOCONN_WRITE_BUF 8192
#define WHOCONN_REPLY_MAX 128

/* Seconds without a complete request line (or without progress writing a
 * reply) before the peer is dropped.  Bytes that do not finish a line do
 * not reset it, which is what stops a slowloris client. */
#define WHOCONN_IDLE_TIMEOUT_DEFAULT 60
#define WHOCONN_IDLE_TIMEOUT_MIN 1
#define WHOCONN_IDLE_TIMEOUT_MAX 86400

/* A connection registers itself before it reads its first request and
 * stays registered until its process ends, so every WHO that begins after a
 * connection was served counts it.  A registered connection keeps its SQLite
 * handle open while it is busy and closes it once it has been quiet this
 * long: short sessions open the registry once, held connections hold no
 * lock on the -shm file (see reg_idle()). */
#ifndef WHOCONN_HANDLE_IDLE_MS
#define WHOCONN_HANDLE_IDLE_MS 100
#endif

/* After the registry was deleted or replaced, every held connection
 * registers again in the new file; they spread it over this long, by PID,
 * so that 10,000 of them do not all queue for the write lock at once. */
#define WHOCONN_REREGISTER_SPREAD_MS 250

/* While the registry is failing, a held connection retries this often, so
 * counting recovers by itself once the fault is gone. */
#define WHOCONN_RETRY_MS 1000

/* Dead entries (SIGKILL, crash, OOM) are swept by whichever WHO finds the
 * last sweep older than this.  Between SWEEP_AFTER_MS and SWEEP_BEFORE_MS the
 * sweep runs after the reply is sent, so WHO latency is not paid for it under
 * steady load; a sweep older than SWEEP_BEFORE_MS runs before the reply, so a
 * WHO answer is never more than 1 s stale. */
#define WHOCONN_SWEEP_AFTER_MS 500
#define WHOCONN_SWEEP_BEFORE_MS 1000

/* Liveness locks are spread over this many files ("<registry>-locks/NN"):
 * the kernel walks a file's whole lock list on each test, so with 10,000
 * connections one file would make a sweep quadratic. */
#define WHOCONN_LOCK_SHARDS 64

/* How long a connection process waits for another one's write lock.  Writes
 * are single-row transactions of a few microseconds; 5 s absorbs a burst of
 * thousands of connections without a client ever seeing SQLITE_BUSY. */
#define WHOCONN_BUSY_TIMEOUT_MS 5000

/* While waiting for the write lock, a process sleeps this long at first,
 * doubling up to BUSY_SLEEP_MAX_US.  SQLite's default handler sleeps 1 ms,
 * then 2, 5, 10 ms...: far longer than the few microseconds a holder keeps
 * the lock, so under contention every session would idle for milliseconds. */
#ifndef WHOCONN_BUSY_SLEEP_MIN_US
#define WHOCONN_BUSY_SLEEP_MIN_US 20
#endif
#ifndef WHOCONN_BUSY_SLEEP_MAX_US
#define WHOCONN_BUSY_SLEEP_MAX_US 1000
#endif

/* SQLite checkpoints the WAL into the database after a commit that leaves
 * it this many pages long (its default is 1000).  Each session writes two
 * small transactions, so the WAL grows ~2 pages a session; a short WAL keeps
 * each checkpoint to a few page copies (tens of microseconds, paid by the
 * one committing session) and the -wal file small.  JOURNAL_LIMIT caps what
 * the -wal file keeps on disk once checkpointed (journal_size_limit). */
#ifndef WHOCONN_WAL_AUTOCHECKPOINT
#define WHOCONN_WAL_AUTOCHECKPOINT 200
#endif
#define WHOCONN_WAL_LIMIT_BYTES 1048576 /* spelled out: pasted into SQL */

/* After the last reply before a close (QUIT, protocol error), input the peer
 * already sent is read and discarded for at most this long / this much, so
 * the kernel sends FIN rather than RST and the reply is not lost. */
#define WHOCONN_DRAIN_MS 200
#define WHOCONN_DRAIN_MAX 65536

/* TCP keepalive on every connection that stays open (armed once it has
 * been quiet for WHOCONN_HANDLE_IDLE_MS, see keepalive_on()): after this many seconds without a
 * packet the kernel probes the peer, every INTERVAL s, and ends the
 * connection after PROBES unanswered ones.  A peer that vanished without a
 * word (a front that dropped the connection while cut off from this server,
 * a client host that died) then stops being counted within 5 + 3 x 1 = 8 s
 * of silence, and at the first probe when its host answers with a reset,
 * instead of at the idle timeout (60 s by default).  A probe is one small
 * segment per idle connection every 5 s.  Measured: after a 4 s partition
 * behind the front, WHO counted the partitioned server's 6 dropped held
 * connections for the 60 s of the idle timeout (make slo, docs/slo.md). */
#define WHOCONN_KEEPALIVE_IDLE_S 5
#define WHOCONN_KEEPALIVE_INTERVAL_S 1
#define WHOCONN_KEEPALIVE_PROBES 3
/* The kernel sends no keepalive probe while a reply is unacknowledged (a
 * peer that vanished right after asking); then this bounds how long it
 * stays so (TCP_USER_TIMEOUT), the same 8 s, instead of ~15 min of
 * retransmissions (cut short only by the idle timeout). */
#define WHOCONN_UNACKED_MAX_MS \
    ((WHOCONN_KEEPALIVE_IDLE_S + WHOCONN_KEEPALIVE_PROBES * WHOCONN_KEEPALIVE_INTERVAL_S) * 1000)

/* Most fields in one structured journal entry (whoconn's has 9, 12 behind
 * a PROXY header). */
#define WHOCONN_JOURNAL_FIELDS 16

/* With --proxy-protocol v2, the PROXY header must be complete this soon
 * after the process started serving (and within the idle timeout, if that
 * is shorter).  A balancer sends it as it connects, in one segment; a peer
 * that trickles it holds a connection slot no longer than this. */
#ifndef WHOCONN_PROXY_HEADER_TIMEOUT_MS
#define WHOCONN_PROXY_HEADER_TIMEOUT_MS 5000
#endif

/* After its journal entry a process waits this long before exiting, so
 * journald can still read its unit from /proc (see log_session()). */
#define WHOCONN_JOURNAL_GRACE_MS 20

/* SQLite's arena in a connection process (lib/sqlmem.h): address space
 * reserved, not memory: only the pages a session uses (~120 KiB at its
 * peak) are.  Past it, SQLite's requests go to malloc(). */
#define WHOCONN_SQLMEM_BYTES ((size_t)1 << 20)

/* Peer text quoted in a log line is cut to this many bytes. */
#define WHOCONN_LOG_PEER_TEXT 32

/* Default registry, inside the unit's RuntimeDirectory=whoconn.  When
 * systemd sets $RUNTIME_DIRECTORY, the registry goes there instead. */
#define WHOCONN_DB_DEFAULT "/run/whoconn/registry.db"
#define WHOCONN_DB_NAME "registry.db"

/* Application id for sd_id128_get_machine_app_specific(): WHERE is derived
 * from the machine id with it, so the raw machine id never leaves the host.
 * Never change it: it would change every server's id. */
#define WHOCONN_APP_ID \
    SD_ID128_MAKE(6b,2f,0e,d4,5a,91,4c,37,a8,1d,93,c4,7e,05,b2,6f)

/* "whoc": stored in the registry header so that we never adopt or alter a
 * SQLite file that belongs to something else. */
#define WHOCONN_SQLITE_APP_ID 0x77686f63
#define WHOCONN_SCHEMA_VERSION 1

/* Exit statuses (documented in whoconn(8)).  Statuses caused by the peer are
 * listed in SuccessExitStatus= of the unit, so they do not mark it failed. */
enum {
    WHOCONN_EXIT_OK = 0,        /* peer closed, or QUIT */
    WHOCONN_EXIT_USAGE = 64,    /* bad option or environment value */
    WHOCONN_EXIT_PROTOCOL = 65, /* peer broke the protocol: long line, bad byte */
    WHOCONN_EXIT_SOFTWARE = 70, /* internal error: confinement failed */
    WHOCONN_EXIT_IO = 74,       /* connection reset or write failed */
    WHOCONN_EXIT_TIMEOUT = 75,  /* idle timeout or stalled writes */
    WHOCONN_EXIT_SIGNAL = 76,   /* SIGTERM/SIGINT/SIGHUP */
};

/* ---- files beside the registry ------------------------------------- */

/* Liveness locks: a registered process holds an OFD write lock on byte PID
 * of "<registry>-locks/NN", NN = PID % WHOCONN_LOCK_SHARDS in two digits. */
#define WHOCONN_LOCKS_SUFFIX "-locks"

/* ---- whoconn-metrics(8): the Prometheus endpoint ----------------------- */

/* Default listening address of whoconn-metrics.socket (documentation and
 * units only: the program itself serves whatever fd 0 is). */
#define WHOCONN_METRICS_PORT 9242

/* Longest HTTP request head (request line and header fields) we read.  A
 * Prometheus scrape sends about 300 bytes; browsers and curl under 1 KiB.
 * Longer gets 431 and a close. */
#ifndef WHOCONN_METRICS_HEAD_MAX
#define WHOCONN_METRICS_HEAD_MAX 8192
#endif

/* Header fields per request, past which we answer 431 too. */
#define WHOCONN_METRICS_FIELDS_MAX 64

/* Time for the whole request head to arrive, in seconds: a deadline, not
 * an idle timer, so trickling bytes does not keep the process alive.  Also
 * bounds each write of the answer.  Prometheus' default scrape timeout is
 * 10 s, and a scrape's request arrives in one segment. */
#define WHOCONN_METRICS_TIMEOUT_DEFAULT 5
#define WHOCONN_METRICS_TIMEOUT_MIN 1
#define WHOCONN_METRICS_TIMEOUT_MAX 60

/* Peers listed one by one (whoconn_peer_*{peer=...}); further peers are
 * still counted in whoconn_peers.  Keeps a runaway peer table from making
 * an unbounded answer and unbounded series in Prometheus. */
#define WHOCONN_METRICS_PEERS_MAX 256

/* A peer id longer than this is cut in its label (ids are UUIDs). */
#define WHOCONN_METRICS_LABEL_MAX 128

#endif /* WHOCONN_H */
