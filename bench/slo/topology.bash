# bench/slo/topology.bash - the SLO harness's machines, sourced by bench/slo/run.
#
# Contract: slo_up builds, all inside network namespaces (nothing in the
# root namespace but HAProxy's runtime socket file):
#   - the three servers of tests/cluster-helpers.bash (hosts 1-3 on the
#     switch, 10.254.0.N; each an etcd member, whoconn-sync, and whoconn
#     behind systemd-socket-activate on port 7000, here on every address of
#     its host so that the front can reach it);
#   - the front ("fr", 10.254.0.100 on the switch): HAProxy with the shipped
#     contrib/haproxy/whoconn.cfg, its servers and its bind given by the
#     file's own environment variables (not a copy of the file);
#   - the client ("cl", 10.254.1.2): one cable to the front (10.254.1.1), no
#     route anywhere else, so every client request goes through the front.
# slo_down kills everything in those namespaces and removes them.
#
# The cluster helpers are reused as they are (sourced with the two bats
# functions they need); this file only adds the front and the client, so
# that one shared topology script can later replace both.
# Needs: SLO_DIR (scratch directory), TOP.

BATS_TEST_DIRNAME="$TOP/tests"
BATS_TEST_TMPDIR="$SLO_DIR"
load() { source "$BATS_TEST_DIRNAME/$1.bash"; }
bats_require_minimum_version() { :; }
skip() { echo "slo: cannot run: $*" >&2; exit 77; }
# shellcheck source=../../tests/cluster-helpers.bash
source "$TOP/tests/cluster-helpers.bash"

WC_LISTEN=0.0.0.0
FRONT_ADDR=10.254.1.1
FRONT_PORT=4242
CLIENT_ADDR=10.254.1.2
FRONT_SOCK="$SLO_DIR/front.sock"
FRONT_CFG="$TOP/contrib/haproxy/whoconn.cfg"
DRAIN="$TOP/contrib/haproxy/whoconn-drain"

# front_up - the front's and the client's namespaces and cables, HAProxy.
front_up() {
	ip netns add "$(ns fr)"
	ip netns add "$(ns cl)"
	ip -n "$(ns fr)" link set lo up
	ip -n "$(ns cl)" link set lo up
	ip -n "$(ns sw)" link add vfr type veth peer name eth0 netns "$(ns fr)"
	ip -n "$(ns sw)" link set vfr master br0 up
	ip -n "$(ns fr)" addr add 10.254.0.100/24 dev eth0
	ip -n "$(ns fr)" link set eth0 up
	ip -n "$(ns fr)" link add eth1 type veth peer name eth0 netns "$(ns cl)"
	ip -n "$(ns fr)" addr add "$FRONT_ADDR/24" dev eth1
	ip -n "$(ns fr)" link set eth1 up
	ip -n "$(ns cl)" addr add "$CLIENT_ADDR/24" dev eth0
	ip -n "$(ns cl)" link set eth0 up
	ip netns exec "$(ns fr)" env WHOCONN_HAPROXY_LOG=stderr WHOCONN_HAPROXY_ADMIN="$FRONT_SOCK" \
		WHOCONN_FRONT="$FRONT_ADDR:$FRONT_PORT" WHOCONN_S1="$(addr 1):$WC_PORT" \
		WHOCONN_S2="$(addr 2):$WC_PORT" WHOCONN_S3="$(addr 3):$WC_PORT" \
		haproxy -f "$FRONT_CFG" -db >"$SLO_DIR/haproxy.log" 2>&1 &
	echo $! >"$SLO_DIR/haproxy.pid"
}

# admin COMMAND - HAProxy's runtime API.
admin() { echo "$*" | socat -t 10 - "UNIX-CONNECT:$FRONT_SOCK"; }

# front_status N - whoconn/sN's status in the front (UP, DOWN, MAINT, ...).
front_status() {
	admin "show stat" 2>/dev/null | awk -F, -v s="s$1" '$1 == "whoconn" && $2 == s { print $18 }'
}

# wait_all_up SECONDS - until the front has all three servers UP (a
# condition, bounded for a slow, busy machine).  Asked every 100 ms: each
# ask is a socat process and a "show stat", work the servers under test
# share the machine with; the front's own checks run every 200 ms while a
# state changes, so asking more often learns nothing sooner.
wait_all_up() {
	local end=$((SECONDS + $1)) n ok
	while [ $SECONDS -lt "$end" ]; do
		ok=1
		for n in 1 2 3; do [ "$(front_status "$n")" = UP ] || ok=0; done
		[ $ok = 1 ] && return 0
		sleep 0.1
	done
	echo "slo: front: not all servers UP after $1 s: $(admin 'show stat' | cut -d, -f1,2,18 | tr '\n' ' ')" >&2
	return 1
}

# busiest - the server (1-3) with the most sessions at the front now (its
# held connections, mostly); the lowest number of those tied.
busiest() {
	admin "show stat" | awk -F, '$1 == "whoconn" && $2 ~ /^s[1-3]$/ { print $5, substr($2, 2) }' |
		sort -k1,1nr -k2,2n | awk 'NR == 1 { print $2 }'
}

slo_up() {
	cluster_up || return 1
	front_up
	wait_all_up 60
}

slo_down() {
	local n pids
	for n in cl fr; do
		ip netns list | grep -q "^$(ns "$n")\b" || continue
		pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
	done
	net_down
	for n in cl fr; do ip netns del "$(ns "$n")" 2>/dev/null || true; done
}
