#!/usr/bin/env bats
# whoconn-metrics as installed, under a real systemd: one throw-away systemd
# (systemd-nspawn over the host's /usr, as in tests/systemd.bats) boots for
# the whole file; `make install` puts whoconn, whoconn-metrics and their
# units in it.  Both sockets listen on free 127.0.0.1 ports set by drop-ins
# (the container shares the host's network), never on 4242 or 9242.

load helpers
load container-helpers

setup_file() {
	container_skip_unless_able
	make -C "$TOP" -s whoconn whoconn-metrics >&2
	container_boot

	export PORT MPORT
	PORT=$(free_port)
	MPORT=$(free_port)
	inside make -C /src -s install >&2
	inside systemd-sysusers >/dev/null
	# what boot does: /run/whoconn from the installed tmpfiles.d entry
	inside systemd-tmpfiles --create whoconn.conf
	inside_sh "mkdir -p /etc/systemd/system/whoconn.socket.d /etc/systemd/system/whoconn-metrics.socket.d
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$PORT\n' \
			>/etc/systemd/system/whoconn.socket.d/test-port.conf
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$MPORT\n' \
			>/etc/systemd/system/whoconn-metrics.socket.d/test-port.conf
		systemctl daemon-reload
		systemctl start whoconn.socket whoconn-metrics.socket"
	for p in "$PORT" "$MPORT"; do
		for _ in $(seq 1200); do
			nc -z 127.0.0.1 "$p" 2>/dev/null && continue 2
			sleep 0.05
		done
		echo "nothing listens on $p after 60 s" >&2
		return 1
	done
}

teardown_file() {
	container_stop
}

teardown() {
	if [ -n "${HOLD_PID:-}" ]; then kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true; fi
	HOLD_PID=""
}

# get PATH - an HTTP/1.1 GET to the metrics socket, answer with CRs removed.
get() {
	python3 "$CLIENT" --port "$MPORT" send "GET $1 HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n" \
		>"$BATS_TEST_TMPDIR/get.out" 2>&1 || return
	tr -d '\r' <"$BATS_TEST_TMPDIR/get.out"
}

# sample NAME{LABELS} - its value in a scrape of the installed endpoint.
sample() {
	get /metrics | awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }'
}

# wait_sample NAME VALUE - until the sample has the value (a condition:
# 60 s max, for a slow, busy machine).
wait_sample() {
	local v
	for _ in $(seq 600); do
		v=$(sample "$1" || true)
		[ "$v" = "$2" ] && return 0
		sleep 0.1
	done
	echo "$1 is $v, wanted $2" >&2
	return 1
}

@test "the installed metrics socket answers GET /metrics with the registry up" {
	run -0 get /metrics
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
	[ "${lines[1]}" = "Content-Type: text/plain; version=0.0.4; charset=utf-8" ]
	run -0 sample whoconn_registry_up
	[ "$output" = 1 ]
	run -0 inside systemctl is-active whoconn-metrics.socket
	[ "$output" = active ]
}

@test "whoconn-metrics, as user whoconn, counts the connections held through whoconn.socket" {
	hold 3
	run -0 client wait-who 4
	wait_sample whoconn_connections 3
	release
	wait_sample whoconn_connections 0
	run -0 sample whoconn_registry_up
	[ "$output" = 1 ]
}

@test "sessions served by whoconn@ instances move the installed counters" {
	before=$(sample whoconn_connections_accepted_total || echo 0)
	quits=$(sample 'whoconn_disconnects_total{reason="quit"}' || echo 0)
	run -0 client send 'WHY\nQUIT\n'
	[ "${lines[0]}" = 42 ]
	[ "${lines[1]}" = BYE ]
	wait_sample 'whoconn_disconnects_total{reason="quit"}' $((quits + 1))
	after=$(sample whoconn_connections_accepted_total)
	[ "$after" -gt "$before" ]
}

@test "a refused request is logged in the journal of its whoconn-metrics@ instance and leaves no failed unit" {
	cursor=$(inside journalctl --show-cursor -n 0 -q | sed -n 's/^-- cursor: //p')
	run -0 get /nothing-here
	[ "${lines[0]}" = "HTTP/1.1 404 Not Found" ]
	for _ in $(seq 600); do # the line is written after the answer: 60 s max
		inside journalctl -q -o cat -u 'whoconn-metrics@*' --after-cursor="$cursor" |
			grep -qx 'answered 404: no such path' && break
		sleep 0.1
	done
	run -0 inside journalctl -q -o cat -u 'whoconn-metrics@*' --after-cursor="$cursor"
	[[ "$output" == *"answered 404: no such path"* ]]
	run -0 inside systemctl list-units --plain --no-legend --state=failed 'whoconn-metrics@*'
	[ "$output" = "" ]
}

@test "the metrics service's systemd exposure level is 2.0 or lower" {
	run -0 inside systemd-analyze security --no-pager whoconn-metrics@0.service
	last=${lines[-1]}
	echo "$last"
	[[ "$last" =~ Overall\ exposure\ level\ for\ whoconn-metrics@0.service:\ ([0-9]+\.[0-9]) ]]
	awk -v s="${BASH_REMATCH[1]}" 'BEGIN { exit !(s <= 2.0) }'
}
