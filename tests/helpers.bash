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
	for _ in $(seq 100); do
		nc -z 127.0.0.1 "$PORT" 2>/dev/null && return 0
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
hold() {
	local ready="$BATS_TEST_TMPDIR/ready.$RANDOM"
	python3 "$CLIENT" --port "$PORT" hold "$@" --ready "$ready" &
	HOLD_PID=$!
	for _ in $(seq 1200); do
		[ -e "$ready" ] && return 0
		sleep 0.05
	done
	echo "hold: connections not open in time" >&2
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

# wait_for_children N - until exactly N connection processes run.  A wait
# for a condition, not a timing check: bounded at 60 s for a slow, busy
# machine (a sanitized process takes long to start and to exit).
wait_for_children() {
	for _ in $(seq 1200); do
		[ "$(connection_pids | wc -l)" -eq "$1" ] && return 0
		sleep 0.05
	done
	echo "wanted $1 connection processes, have $(connection_pids | wc -l)" >&2
	return 1
}
