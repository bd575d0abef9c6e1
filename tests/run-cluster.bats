#!/usr/bin/env bats
# make run-cluster (scripts/run-cluster): one command starts three servers
# with their etcd members and agents and the HAProxy front, says how to
# reach each, serves as it says, and Ctrl-C leaves no namespace, process or
# file behind.  Root, as tests/cluster.bats; on free ports, never 4242.

load cluster-helpers

RUN_CLUSTER="$TOP/scripts/run-cluster"
# Everything run-cluster starts at once: three etcd members forming a
# cluster, agents, servers, the front's checks.  A bound on a condition on a
# slow, busy machine, not a timing.
START_STEPS=3600 # x 0.05 s

setup() {
	cluster_skip_unless_able
	command -v haproxy >/dev/null || skip "haproxy not installed (Debian package haproxy)"
	command -v socat >/dev/null || skip "socat not installed (Debian package socat)"
	FRONT=$(free_port)
	SP=("" "$(free_port)" "$(free_port)" "$(free_port)")
	OUT="$BATS_TEST_TMPDIR/run-cluster.out"
	# its own session, so that every process it starts can be found by the
	# session id (its PID); SIGINT as a terminal's Ctrl-C delivers it (a
	# background job of a script would otherwise ignore it)
	setsid env --default-signal=INT "$RUN_CLUSTER" --port "$FRONT" \
		--server-ports "${SP[1]},${SP[2]},${SP[3]}" >"$OUT" 2>&1 &
	RUN_PID=$!
}

teardown() {
	[ -n "${RUN_PID:-}" ] || return 0
	if [ -n "${HOLD_PID:-}" ]; then kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true; fi
	# a failed test leaves nothing either
	kill -TERM "$RUN_PID" 2>/dev/null || true
	for _ in $(seq 1200); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.05; done
	pkill -KILL -s "$RUN_PID" 2>/dev/null || true
	for n in 1 2 3 sw; do ip netns del "wcrun$RUN_PID-$n" 2>/dev/null || true; done
	rm -rf "$(run_dir)"
}

# run_dir - the directory run-cluster said it keeps its files in.
run_dir() {
	sed -n 's/^run-cluster: starting .* (files in \(\/tmp\/whoconn-cluster\.[A-Za-z0-9]*\))$/\1/p' "$OUT"
}

@test "run-cluster starts three counting servers behind the front as it prints, and Ctrl-C leaves no namespace, process or file behind" {
	[ "$(ps -o sid= -p "$RUN_PID" | tr -d ' ')" = "$RUN_PID" ]
	for _ in $(seq $START_STEPS); do
		grep -q '^whoconn cluster: ' "$OUT" && break
		kill -0 "$RUN_PID" 2>/dev/null || break
		sleep 0.05
	done
	cat "$OUT"
	grep -q '^whoconn cluster: ' "$OUT"
	dir=$(run_dir)
	[ -d "$dir" ]
	# it says where the front and each server are, and each answers there
	grep -qE "^  front +nc 127\.0\.0\.1 $FRONT " "$OUT"
	for n in 1 2 3; do
		grep -qE "^  s$n +nc 127\.0\.0\.1 ${SP[$n]} +WHERE ${CL_IDS[$n]}; etcd and agent in namespace wcrun$RUN_PID-$n " "$OUT"
		run -0 python3 "$CLIENT" --port "${SP[$n]}" send 'WHERE\n'
		[ "${lines[0]}" = "${CL_IDS[$n]}" ]
	done
	# WHO through the front counts the clients of every server: two held
	# on s2, and the asker wherever the front sends it
	PORT=${SP[2]} hold 2 --served
	run -0 python3 "$CLIENT" --port "$FRONT" wait-who 3
	run -0 python3 "$CLIENT" --port "$FRONT" send 'WHERE\nWHY\n'
	[[ " ${CL_IDS[*]:1} " == *" ${lines[0]} "* ]]
	[ "${lines[1]}" = 42 ]
	release
	run -0 python3 "$CLIENT" --port "$FRONT" wait-who 1

	# Ctrl-C
	kill -INT "$RUN_PID"
	for _ in $(seq 1200); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.05; done
	local rc=0
	wait "$RUN_PID" || rc=$?
	[ "$rc" -eq 0 ]
	tail -n 1 "$OUT"
	[ "$(tail -n 1 "$OUT")" = "run-cluster: stopped; its namespaces, processes and $dir are gone" ]
	run ip netns list
	[[ "$output" != *"wcrun$RUN_PID-"* ]]
	run pgrep -s "$RUN_PID"
	[ "$output" = "" ]
	[ ! -e "$dir" ]
	for p in "$FRONT" "${SP[1]}" "${SP[2]}" "${SP[3]}"; do
		run ! nc -z 127.0.0.1 "$p"
	done
	RUN_PID=""
}
