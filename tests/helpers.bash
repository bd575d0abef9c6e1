# Shared set-up for the whoconn bats suites.  Each test gets its own
# registry in $BATS_TEST_TMPDIR; servers listen on 127.0.0.1 only and are
# stopped in teardown.

# Debian's programs first (as the Makefile does): a pyenv shim in front of
# python3 costs up to seconds a call on a loaded machine.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

TOP="$(cd "$BATS_TEST_DIRNAME/.." && pwd)"
WHOCONN="${WHOCONN_BIN:-$TOP/whoconn}"
CLIENT="$TOP/tests/wcclient.py"

bats_require_minimum_version 1.5.0

# stdio SESSION-BYTES [ENV=VALUE...] - runs one session over a pipe with
# a scratch registry; replies on stdout, the log in $BATS_TEST_TMPDIR/log.
stdio() {
	local input="$1"; shift
	printf '%b' "$input" | env WHOCONN_DB="$BATS_TEST_TMPDIR/registry.db" "$@" \
		"$WHOCONN" 2>>"$BATS_TEST_TMPDIR/log"
}

# settings_of SOURCE - the environment variables a program reads: the rows
# {"--option", "VARIABLE", ...} of its lib/cli settings table in SOURCE.
settings_of() {
	grep -oE '\{"--[a-z-]+", "[A-Z_]+"' "$1" | grep -oE '"[A-Z_]+"' | tr -d '"' | sort -u
}

free_port() {
	"$TOP/tests/free-port"
}

# start_server [-E NAME=VALUE...] - serves whoconn on a free loopback port
# with systemd-socket-activate; sets PORT and SERVER_PID.
start_server() {
	PORT=$(free_port)
	: "${DB:=$BATS_TEST_TMPDIR/registry.db}"
	systemd-socket-activate -l "127.0.0.1:$PORT" --inetd -a \
		-E WHOCONN_DB="$DB" "$@" "$WHOCONN" \
		2>>"$BATS_TEST_TMPDIR/server.log" &
	SERVER_PID=$!
	# a condition (60 s at most): listening, and the probe's own session
	# over.  nc -z's connection is a session: a test that names "the"
	# connection process must not find the probe's, still exiting.
	for _ in $(seq 1200); do
		if nc -z 127.0.0.1 "$PORT" 2>/dev/null; then
			wait_for_children 0
			return
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "server did not start listening on $PORT" >&2
	return 1
}

stop_server() {
	if [ -n "${HOLD_PID:-}" ]; then kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true; fi
	if [ -n "${SERVER_PID:-}" ]; then
		pkill -KILL -P "$SERVER_PID" 2>/dev/null || true
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=""
}

client() {
	python3 "$CLIENT" --port "$PORT" "$@"
}

# hold N [wcclient hold options] - holds N connections in the background
# (HOLD_PID) until release; returns once all are open (a condition: 60 s
# at most).
# sqlite3 - the sqlite3 shell, waiting up to 10 s for a lock as whoconn
# does (its busy timeout): a test reading the registry while connection
# processes write or close it is otherwise refused "database is locked" by
# the first writer or checkpoint it meets (seen: 300 held connections).
sqlite3() { command sqlite3 -cmd '.timeout 10000' "$@"; }

# at_scale N - N, the size of a load test; a quarter of it in check-asan
# (WHOCONN_SANITIZED): the plain pass proves the full scale, the sanitizer
# looks for memory errors on the same paths, which a quarter walks as well,
# and sanitized processes start ~3x slower (docs/robustness.md).
at_scale() {
	if [ -n "${WHOCONN_SANITIZED:-}" ]; then echo $(($1 / 4)); else echo "$1"; fi
}

hold() {
	local ready="$BATS_TEST_TMPDIR/ready.$RANDOM"
	python3 "$CLIENT" --port "$PORT" hold "$@" --ready "$ready" &
	HOLD_PID=$!
	# a condition: N connections opened (and, --served, answered) one after
	# the other, which a slow machine with a sanitized build can take
	# minutes for; the client bounds each step itself (LOAD_SECONDS) and exits on
	# failure, so wait while it runs (10 min at most)
	for _ in $(seq 12000); do
		[ -e "$ready" ] && return 0
		kill -0 "$HOLD_PID" 2>/dev/null || break
		sleep 0.05
	done
	[ -e "$ready" ] && return 0
	echo "hold: connections not open (the client has exited or 10 min passed)" >&2
	return 1
}

release() {
	kill "$HOLD_PID"
	wait "$HOLD_PID" || true
	HOLD_PID=""
}

# connection_pids - the whoconn processes the activator started.
connection_pids() {
	pgrep -P "$SERVER_PID" || true
}

# wait_for_children N - until exactly N connection processes run; sets
# CHILDREN to their PIDs, as seen in that same look (a second pgrep could
# already see another set).  A wait for a condition, not a timing check:
# bounded at 60 s for a slow, busy machine (a sanitized process takes long
# to start and to exit).
wait_for_children() {
	for _ in $(seq 1200); do
		CHILDREN=$(connection_pids)
		[ "$(grep -c . <<<"$CHILDREN")" -eq "$1" ] && return 0
		sleep 0.05
	done
	echo "wanted $1 connection processes, have $(connection_pids | wc -l)" >&2
	return 1
}

# wait_until WHAT CMD... - polls CMD (quietly) until it succeeds.  A wait for
# a condition, not a timing check: bounded at 60 s for a slow, busy machine;
# on failure says what it waited for and runs CMD once more, loudly.
wait_until() {
	local what="$1"; shift
	for _ in $(seq 1200); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "waited 60 s for $what; last try:" >&2
	"$@" >&2
	return 1
}

# A held stdio session, driven through a fifo so the test decides when each
# request is sent (never a timer):
#   held_start NAME [ENV=VALUE...] - starts $WHOCONN reading NAME.in, replies
#       to NAME.out (in $BATS_TEST_TMPDIR); sets HELD_PID_NAME; the test's
#       writer fd stays open, so the session sees no EOF until held_end.
#   held_ask NAME LINE REPLY - writes LINE, waits until NAME.out holds REPLY
#       as a line: the session has then been served (and, by the README's
#       contract, is counted by any WHO that begins now).
#   held_end NAME - closes the writer (EOF) and waits for the process.
held_start() {
	local name="$1" fifo="$BATS_TEST_TMPDIR/$1.in" fd; shift
	mkfifo "$fifo"
	: >"$BATS_TEST_TMPDIR/$name.out"
	# the child closes every writer the test keeps, or it would never see EOF
	(
		for fd in ${HELD_FDS:-}; do eval "exec $fd>&-"; done
		exec env "$@" "$WHOCONN" >"$BATS_TEST_TMPDIR/$name.out" 2>>"$BATS_TEST_TMPDIR/log"
	) <"$fifo" &
	printf -v "HELD_PID_$name" '%s' "$!"
	exec {fd}>"$fifo" # meets the child's open of the fifo
	printf -v "HELD_FD_$name" '%s' "$fd"
	HELD_FDS="${HELD_FDS:-} $fd"
}

held_ask() {
	local fdvar="HELD_FD_$1"
	printf '%b' "$2" >&"${!fdvar}"
	wait_until "reply '$3' in $1.out" grep -qxF "$3" "$BATS_TEST_TMPDIR/$1.out" || {
		echo "$1.out holds: $(cat "$BATS_TEST_TMPDIR/$1.out")" >&2
		return 1
	}
}

held_end() {
	local fdvar="HELD_FD_$1" pidvar="HELD_PID_$1"
	eval "exec ${!fdvar}>&-"
	HELD_FDS="${HELD_FDS/ ${!fdvar}/}"
	wait "${!pidvar}"
}

# at_least SECONDS - $output is wcclient's "... after N.Ns" and N >= SECONDS.
# The idle timeout is a lower bound measured from the client's connect (the
# server's timer starts later, when its process has started); how much
# later depends on the machine, so no upper bound but the client's own
# --max-seconds, well below the 60 s default the timeout must not fall back to.
at_least() {
	[[ "$output" =~ after\ ([0-9]+\.[0-9])s$ ]] || { echo "no duration in: $output" >&2; return 1; }
	python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' \
		"${BASH_REMATCH[1]}" "$1" || { echo "closed too early: $output" >&2; return 1; }
}

# dead PID - the process has ended: gone, or a zombie its parent has not reaped.
dead() {
	[ ! -e "/proc/$1" ] || awk '$3 != "Z" { exit 1 }' "/proc/$1/stat" 2>/dev/null
}
