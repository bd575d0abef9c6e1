#!/usr/bin/env bats
# TCP keepalive (whoconn.h, WHOCONN_KEEPALIVE_*): a connection whose peer
# vanished without a word stops being counted within the keepalive's
# probes, not at the idle timeout.  Behind a front that drops a cut-off
# server's sessions (contrib/haproxy/whoconn.cfg, on-marked-down
# shutdown-sessions) this is what ends them on the server once the cut heals.

load helpers

# the timings, from the header that sets them
ka() { sed -n "s/^#define WHOCONN_KEEPALIVE_$1 \([0-9]*\)$/\1/p" "$TOP/whoconn.h"; }

teardown() {
	[ -n "${CLIENT_PID:-}" ] && kill -KILL "$CLIENT_PID" 2>/dev/null
	stop_server
	if [ -n "${NS:-}" ]; then
		ip netns pids "$NS-c" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns pids "$NS-s" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$NS-c" 2>/dev/null
		ip netns del "$NS-s" 2>/dev/null
	fi
	true
}

@test "every TCP connection held open has keepalive on, with whoconn's idle time: the kernel shows its timer" {
	local idle
	idle=$(ka IDLE_S)
	[ -n "$idle" ]
	start_server
	hold 1 --served
	# armed once the connection has been quiet for 100 ms (a short session never is)
	wait_until "the keepalive timer armed" \
		bash -c "ss -tnoH state established '( sport = :$PORT )' | grep -q 'timer:(keepalive'"
	run -0 ss -tnoH state established "( sport = :$PORT )"
	[[ "$output" =~ timer:\(keepalive,([0-9.]+)(ms|sec),0\) ]]
	local left=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
	# the time left to the first probe, never more than the idle time
	if [ "$unit" = sec ]; then
		awk -v l="$left" -v i="$idle" 'BEGIN { exit !(l <= i) }'
	fi
}

# two_hosts - a server host and a client host (network namespaces NS-s and
# NS-c, 10.253.7.1 and .2 on one cable), whoconn on the server with an idle
# timeout far beyond any test (only keepalive can end a connection), and one
# client connection, served a WHY and then silent; the client sends WHY again
# once $BATS_TEST_TMPDIR/ask exists.
two_hosts() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
	NS="wcka$$"
	ip netns add "$NS-s" 2>/dev/null || skip "cannot create network namespaces here"
	ip netns add "$NS-c"
	ip -n "$NS-s" link set lo up
	ip -n "$NS-s" link add eth0 type veth peer name eth0 netns "$NS-c"
	ip -n "$NS-s" addr add 10.253.7.1/24 dev eth0
	ip -n "$NS-c" addr add 10.253.7.2/24 dev eth0
	ip -n "$NS-s" link set eth0 up
	ip -n "$NS-c" link set eth0 up
	PORT=$(free_port)
	ip netns exec "$NS-s" systemd-socket-activate -l "0.0.0.0:$PORT" --inetd -a \
		-E WHOCONN_DB="$BATS_TEST_TMPDIR/registry.db" -E WHOCONN_IDLE_TIMEOUT=3600 "$WHOCONN" \
		2>>"$BATS_TEST_TMPDIR/server.log" &
	SERVER_PID=$!
	wait_until "the server listening" ip netns exec "$NS-s" nc -z 127.0.0.1 "$PORT"
	ip netns exec "$NS-c" python3 -c '
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
s.sendall(b"WHY\n")
assert s.recv(16) == b"42\n"
open(sys.argv[3] + "/ready", "w").write("ready\n")
while not os.path.exists(sys.argv[3] + "/ask"):
    time.sleep(0.05)
s.sendall(b"WHY\n")
time.sleep(3600)' 10.253.7.1 "$PORT" "$BATS_TEST_TMPDIR" &
	CLIENT_PID=$!
	wait_until "the client served" test -e "$BATS_TEST_TMPDIR/ready"
	who_is 2
}

# who_is N - WHO, asked on the server host, answers N.
who_is() { [ "$(ip netns exec "$NS-s" python3 "$CLIENT" --port "$PORT" send 'WHO\n')" = "$1" ]; }

@test "a connection whose client host vanished (its cable cut for good) stops being counted within the keepalive's probes, not at the idle timeout" {
	two_hosts
	# the cable is gone, with the client's host behind it: not a FIN, not a reset
	ip -n "$NS-s" link del eth0
	# keepalive ends it after idle + probes x interval (8 s); the wait's
	# bound (60 s) leaves a slow machine room, and is far below the idle
	# timeout (3600 s): without keepalive the client stays counted
	wait_until "the vanished client no longer counted" who_is 1
}

@test "a connection whose reply can no longer reach its client stops being counted within 8 s, though keepalive sends no probe while the reply is unacknowledged" {
	two_hosts
	# the server's way back to the client is gone; the client still reaches it
	ip -n "$NS-s" route add blackhole 10.253.7.2/32
	touch "$BATS_TEST_TMPDIR/ask"
	# the reply to that WHY stays unacknowledged: TCP_USER_TIMEOUT (8 s)
	# ends the connection; without it, retransmissions for ~15 min
	wait_until "the unreachable client no longer counted" who_is 1
}
