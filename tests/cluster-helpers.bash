# Three whoconn servers on one machine for tests/cluster.bats.
#
# Each server is a network namespace of its own ("host"), with one veth
# cable to a bridge in a fourth namespace (the "switch").  Nothing is
# created in the root namespace: addresses 10.254.0.N, ports 2379/2380
# (etcd) and 7000 (whoconn) exist only inside the test's namespaces, so
# concurrent runs and the host's own etcd never collide.
#
# In each host: an etcd member, whoconn-sync, and whoconn behind
# systemd-socket-activate on 127.0.0.1:7000.  All three share
# /etc/machine-id, so each gets a distinct WHOCONN_SERVER_ID instead (as
# containers or VMs sharing an image would need to).

load helpers

WHOCONN_SYNC="$TOP/whoconn-sync"
WC_PORT=7000
CL_TTL=2          # lease TTL the tests run with, seconds
CL_STALENESS=3    # staleness bound the tests run with, seconds
CL_IDS=(""
	"aaaaaaaa-0001-4000-8000-000000000001"
	"aaaaaaaa-0002-4000-8000-000000000002"
	"aaaaaaaa-0003-4000-8000-000000000003")

# cluster_skip_unless_able - skips (with the reason) where the suite cannot run.
cluster_skip_unless_able() {
	[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
	command -v etcd >/dev/null || skip "etcd not installed (Debian package etcd-server)"
	command -v etcdctl >/dev/null || skip "etcdctl not installed (Debian package etcd-client)"
	command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate missing"
	[ -x "$WHOCONN_SYNC" ] || skip "whoconn-sync not built (make whoconn-sync)"
	ip netns add "wcc-probe-$$" 2>/dev/null || skip "cannot create network namespaces here"
	ip netns del "wcc-probe-$$"
}

ns() { echo "wcc$$-$1"; }            # namespace of host N (1-3), or "sw"
# Foreground only: a function sent to the background runs in a subshell,
# whose PID ($!) is not the command's; background starts call ip directly.
in_ns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }
addr() { echo "10.254.0.$1"; }

net_up() {
	ip netns add "$(ns sw)"
	ip -n "$(ns sw)" link add br0 type bridge
	ip -n "$(ns sw)" link set br0 up
	for n in 1 2 3; do
		ip netns add "$(ns "$n")"
		ip -n "$(ns "$n")" link set lo up
		ip -n "$(ns sw)" link add "v$n" type veth peer name eth0 netns "$(ns "$n")"
		ip -n "$(ns sw)" link set "v$n" master br0 up
		ip -n "$(ns "$n")" addr add "$(addr "$n")/24" dev eth0
		ip -n "$(ns "$n")" link set eth0 up
	done
}

# net_down - kills every process left in the test's namespaces, removes them.
net_down() {
	local n pids
	for n in 1 2 3 sw; do
		ip netns list | grep -q "^$(ns "$n")\b" || continue
		pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
	done
	sleep 0.1
	for n in 1 2 3 sw; do
		ip netns del "$(ns "$n")" 2>/dev/null || true
	done
}

dir() { echo "$BATS_TEST_TMPDIR/s$1"; }

etcd_start() {
	local n="$1" cluster="s1=http://$(addr 1):2380,s2=http://$(addr 2):2380,s3=http://$(addr 3):2380"
	mkdir -p "$(dir "$n")"
	# pre-vote: a member rejoining after a partition does not disrupt the
	# cluster's leader; compaction bounds the history a watch can ask for.
	ip netns exec "$(ns "$n")" etcd --name "s$n" --data-dir "$(dir "$n")/etcd" \
		--listen-client-urls "http://$(addr "$n"):2379,http://127.0.0.1:2379" \
		--advertise-client-urls "http://$(addr "$n"):2379" \
		--listen-peer-urls "http://$(addr "$n"):2380" \
		--initial-advertise-peer-urls "http://$(addr "$n"):2380" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "wcc$$" \
		--pre-vote=true --auto-compaction-mode=revision --auto-compaction-retention=1000 \
		--heartbeat-interval=100 --election-timeout=1000 \
		--log-level=warn --logger=zap >>"$(dir "$n")/etcd.log" 2>&1 &
	echo $! >"$(dir "$n")/etcd.pid"
}

etcd_kill() {
	kill -KILL "$(cat "$(dir "$1")/etcd.pid")" 2>/dev/null || true
	wait "$(cat "$(dir "$1")/etcd.pid")" 2>/dev/null || true
}

sync_start() {
	local n="$1" eps="http://127.0.0.1:2379" m
	for m in 1 2 3; do [ "$m" = "$n" ] || eps="$eps,http://$(addr "$m"):2379"; done
	ip netns exec "$(ns "$n")" env WHOCONN_ETCD_ENDPOINTS="$eps" WHOCONN_LEASE_TTL=$CL_TTL \
		WHOCONN_STALENESS=$CL_STALENESS WHOCONN_SERVER_ID="${CL_IDS[$n]}" \
		WHOCONN_DB="$(dir "$n")/registry.db" \
		"$WHOCONN_SYNC" >>"$(dir "$n")/sync.log" 2>&1 &
	echo $! >"$(dir "$n")/sync.pid"
}

wc_start() {
	local n="$1"
	ip netns exec "$(ns "$n")" systemd-socket-activate -l "127.0.0.1:$WC_PORT" --inetd -a \
		-E WHOCONN_DB="$(dir "$n")/registry.db" -E WHOCONN_SERVER_ID="${CL_IDS[$n]}" \
		"$WHOCONN" >>"$(dir "$n")/whoconn.log" 2>&1 &
	echo $! >"$(dir "$n")/wc.pid"
	for _ in $(seq 100); do
		in_ns "$n" nc -z 127.0.0.1 $WC_PORT 2>/dev/null && return 0
		sleep 0.05
	done
	echo "whoconn on host $n did not listen" >&2
	return 1
}

server_start() {
	mkdir -p "$(dir "$1")"
	etcd_start "$1"
	sync_start "$1"
	wc_start "$1"
}

# server_kill N - everything of host N dies at once: etcd, agent, whoconn,
# and the clients connected to it (they were on that host's network).
server_kill() {
	local pids
	pids=$(ip netns pids "$(ns "$1")")
	[ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
}

partition() { ip -n "$(ns sw)" link set "v$1" nomaster; }
heal() { ip -n "$(ns sw)" link set "v$1" master br0; }

keys() { in_ns "$1" etcdctl --endpoints http://127.0.0.1:2379 get --prefix /whoconn/ --keys-only 2>/dev/null | grep -c . || true; }

# cluster_up - three servers, each publishing its count (5 s max).
cluster_up() {
	net_up
	for n in 1 2 3; do mkdir -p "$(dir "$n")"; etcd_start "$n"; done
	for n in 1 2 3; do sync_start "$n"; wc_start "$n"; done
	for _ in $(seq 100); do
		[ "$(keys 1)" = 3 ] && return 0
		sleep 0.05
	done
	echo "cluster did not form: $(keys 1) keys" >&2
	for n in 1 2 3; do echo "--- host $n"; tail -5 "$(dir "$n")/etcd.log" "$(dir "$n")/sync.log"; done >&2
	return 1
}

# leader - the host (1-3) whose etcd member leads, as seen by host $1.
leader() {
	in_ns "${1:-1}" etcdctl --endpoints "http://$(addr 1):2379,http://$(addr 2):2379,http://$(addr 3):2379" \
		endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(s["Endpoint"].split(".")[3].split(":")[0])
        break'
}

# cl_hold N COUNT - COUNT clients held open on host N until the test ends.
cl_hold() {
	local ready="$BATS_TEST_TMPDIR/ready.$1.$RANDOM"
	ip netns exec "$(ns "$1")" python3 "$CLIENT" --port $WC_PORT hold "$2" --ready "$ready" --max-seconds 120 &
	for _ in $(seq 200); do
		[ -e "$ready" ] && return 0
		sleep 0.05
	done
	echo "hold on host $1: connections not open in time" >&2
	return 1
}

# ask N - one session on host N asking WHO, WHERE, WHY; the client gives up
# after 1 s without a reply, and prints how the connection ended.
ask() {
	in_ns "$1" python3 "$CLIENT" --port $WC_PORT send 'WHO\nWHERE\nWHY\n' --timeout 1 2>&1
}

# wait_who N EXPECTED SECONDS - until host N answers WHO with EXPECTED.
wait_who() {
	in_ns "$1" python3 "$CLIENT" --port $WC_PORT wait-who "$2" --within "$3"
}

# timed_wait NAME T0 N EXPECTED SECONDS - wait_who, then records for
# bench/cluster-RESULTS.md the time from T0 ($EPOCHREALTIME taken right
# before the event) to the first right answer.  It includes starting the
# client (ip netns exec, python: tens of ms): an upper bound.
timed_wait() {
	local name="$1" t0="$2"
	shift 2
	wait_who "$@" || return 1
	awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" \
		'BEGIN { printf "%s %.3f\n", n, b - a }' >>"${WHOCONN_CLUSTER_TIMES:-/dev/null}"
}

# waits PID... - waits for each background job; fails if any failed.
waits() {
	local p rc=0
	for p in "$@"; do wait "$p" || rc=1; done
	return $rc
}
