# Three whoconn servers on one machine for tests/cluster.bats.
#
# The hosts (network namespaces, a switch, an etcd member and the agent in
# each) are scripts/cluster-hosts.bash's, which make run-cluster uses too;
# here each host also runs whoconn behind systemd-socket-activate on
# 127.0.0.1:7000 inside its namespace, so that killing a host kills its
# clients too.  All three share /etc/machine-id, so each gets a distinct
# WHOCONN_SERVER_ID instead (as containers or VMs sharing an image would
# need to).

load helpers
source "$TOP/scripts/cluster-hosts.bash"

CL_NS="wcc$$"
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

dir() { echo "$BATS_TEST_TMPDIR/s$1"; }

# ---- TLS and authentication (CL_TLS=1, CL_AUTH=1) --------------------------
#
# With CL_TLS=1 the members speak TLS to clients and to each other and ask
# every client for a certificate (--client-cert-auth), and the agents use
# https:// endpoints with a client certificate.  With CL_AUTH=1 too, etcd's
# authentication is on and each agent logs in as its own user, whose role
# may write only its own key (docs/cluster.md, "Securing etcd").
CL_TLS=""
CL_AUTH=""
pki() { echo "$BATS_TEST_TMPDIR/pki"; }
scheme() { if [ -n "$CL_TLS" ]; then echo https; else echo http; fi; }

# make_pki - a CA, a certificate per member (server and peer), one client
# certificate per agent, and a second CA that signed none of them.
make_pki() {
	local d n
	d=$(pki)
	mkdir -p "$d"
	ossl() { openssl "$@" 2>>"$d/openssl.log"; }
	for ca in ca wrong-ca; do
		ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj "/CN=whoconn test $ca" -keyout "$d/$ca.key" -out "$d/$ca.pem"
	done
	for n in 1 2 3; do
		ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=etcd-s$n" \
			-keyout "$d/s$n.key" -out "$d/s$n.csr"
		printf 'subjectAltName=IP:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
			"$(addr "$n")" >"$d/s$n.ext"
		ossl x509 -req -in "$d/s$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -extfile "$d/s$n.ext" -out "$d/s$n.pem"
		# no CN in an agent's: with authentication on, etcd refuses a
		# gateway request whose client certificate has one (the gateway
		# has no CN-based authentication), so agents log in by password
		ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=whoconn-s$n" \
			-keyout "$d/agent$n.key" -out "$d/agent$n.csr"
		printf 'extendedKeyUsage=clientAuth\n' >"$d/agent$n.ext"
		ossl x509 -req -in "$d/agent$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -extfile "$d/agent$n.ext" -out "$d/agent$n.pem"
	done
	# what the test itself uses as etcdctl (root when authentication is on)
	cp "$d/agent1.pem" "$d/admin.pem"
	cp "$d/agent1.key" "$d/admin.key"
}

# ectl N ARGS... - etcdctl in host N against its own member, or ECTL_EPS
# (TLS and root login as the cluster runs).
ectl() {
	local n="$1" d
	shift
	d=$(pki)
	if [ -n "$CL_TLS" ]; then
		set -- --cacert "$d/ca.pem" --cert "$d/admin.pem" --key "$d/admin.key" "$@"
	fi
	if [ -n "$CL_AUTH" ] && [ -e "$d/auth-on" ]; then
		set -- --user root:root-pw "$@"
	fi
	in_ns "$n" etcdctl --endpoints "${ECTL_EPS:-$(scheme)://127.0.0.1:2379}" "$@"
}

# auth_setup - root, and one user and role per server: read the whole
# prefix, write only its own key.  Then authentication on.
auth_setup() {
	local n k
	ectl 1 user add root:root-pw >/dev/null
	ectl 1 role add root >/dev/null
	ectl 1 user grant-role root root >/dev/null
	for n in 1 2 3; do
		k="/whoconn/v1/count/${CL_IDS[$n]}"
		ectl 1 role add "whoconn-s$n" >/dev/null
		ectl 1 role grant-permission "whoconn-s$n" --prefix=true read /whoconn/v1/count/ >/dev/null
		ectl 1 role grant-permission "whoconn-s$n" readwrite "$k" >/dev/null
		ectl 1 user add "whoconn-s$n:pw-s$n" >/dev/null
		ectl 1 user grant-role "whoconn-s$n" "whoconn-s$n" >/dev/null
		printf 'pw-s%s\n' "$n" >"$(pki)/password$n"
	done
	ectl 1 auth enable >/dev/null
	touch "$(pki)/auth-on"
}

etcd_start() {
	local n="$1" d tls=()
	d=$(pki)
	if [ -n "$CL_TLS" ]; then
		tls=(--cert-file "$d/s$n.pem" --key-file "$d/s$n.key"
			--client-cert-auth --trusted-ca-file "$d/ca.pem"
			--peer-cert-file "$d/s$n.pem" --peer-key-file "$d/s$n.key"
			--peer-client-cert-auth --peer-trusted-ca-file "$d/ca.pem")
	fi
	cl_etcd_start "$n" "${tls[@]}"
}

etcd_kill() {
	kill -KILL "$(cat "$(dir "$1")/etcd.pid")" 2>/dev/null || true
	wait "$(cat "$(dir "$1")/etcd.pid")" 2>/dev/null || true
}

# sync_start N [NAME=VALUE...] - the agent of host N; the settings given
# override the suite's (e.g. WHOCONN_ETCD_CA_FILE=... for a wrong one).
sync_start() {
	local n="$1" d extra=()
	shift
	d=$(pki)
	if [ -n "$CL_TLS" ]; then
		extra=(WHOCONN_ETCD_CA_FILE="$d/ca.pem" WHOCONN_ETCD_CERT_FILE="$d/agent$n.pem"
			WHOCONN_ETCD_KEY_FILE="$d/agent$n.key")
	fi
	if [ -n "$CL_AUTH" ]; then
		extra+=(WHOCONN_ETCD_USER="whoconn-s$n" WHOCONN_ETCD_PASSWORD_FILE="$d/password$n")
	fi
	cl_sync_start "$n" "${extra[@]}" "$@"
}

# sync_log N - what host N's agent logged, without the "whoconn-sync[PID]: ".
sync_log() { sed 's/^whoconn-sync\[[0-9]*\]: //' "$(dir "$1")/sync.log"; }

# WC_LISTEN: the address whoconn listens on in its host; 0.0.0.0 for a
# front door in another namespace (bench/slo/topology.bash).
WC_LISTEN=127.0.0.1

# host_bin N - the whoconn program host N serves: its own installed copy,
# dir N/bin/whoconn, where one was installed (the SLO harness does, so that
# its rolling upgrade can replace the file as a package does), else
# $WHOCONN.  The activator executes this path for every connection.
host_bin() {
	local b
	b="$(dir "$1")/bin/whoconn"
	if [ -x "$b" ]; then echo "$b"; else echo "$WHOCONN"; fi
}

wc_start() {
	local n="$1"
	ip netns exec "$(ns "$n")" systemd-socket-activate -l "$WC_LISTEN:$WC_PORT" --inetd -a \
		-E WHOCONN_DB="$(dir "$n")/registry.db" -E WHOCONN_SERVER_ID="${CL_IDS[$n]}" \
		"$(host_bin "$n")" >>"$(dir "$n")/whoconn.log" 2>&1 &
	echo $! >"$(dir "$n")/wc.pid"
	for _ in $(seq 1200); do # a condition: 60 s for a slow, busy machine
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

keys() { ectl "$1" get --prefix /whoconn/ --keys-only 2>/dev/null | grep -c . || true; }

# cluster_up - three servers, each publishing its count (a condition: 60 s
# max, for a slow, busy machine; convergence bounds are the tests' own).
cluster_up() {
	net_up
	[ -z "$CL_TLS" ] || make_pki
	for n in 1 2 3; do mkdir -p "$(dir "$n")"; etcd_start "$n"; done
	if [ -n "$CL_AUTH" ]; then
		for _ in $(seq 1200); do ectl 1 endpoint health >/dev/null 2>&1 && break; sleep 0.05; done
		auth_setup
	fi
	for n in 1 2 3; do sync_start "$n"; wc_start "$n"; done
	for _ in $(seq 1200); do
		[ "$(keys 1)" = 3 ] && return 0
		sleep 0.05
	done
	echo "cluster did not form: $(keys 1) keys" >&2
	for n in 1 2 3; do echo "--- host $n"; tail -5 "$(dir "$n")/etcd.log" "$(dir "$n")/sync.log"; done >&2
	return 1
}

# leader [N] - the host (1-3) of the etcd leader, asked from host N.  An
# endpoint that does not answer in time (a member still starting) makes
# etcdctl fail as a whole: ask again, for up to 5 s, so that a test never
# takes "no answer" for "not the leader".
leader_once() {
	ECTL_EPS="$(scheme)://$(addr 1):2379,$(scheme)://$(addr 2):2379,$(scheme)://$(addr 3):2379" ectl "${1:-1}" \
		endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(s["Endpoint"].split(".")[3].split(":")[0])
        break'
}

leader() {
	local l
	for _ in $(seq 25); do
		l=$(leader_once "$@" || true)
		[ -n "$l" ] && { echo "$l"; return 0; }
		sleep 0.2
	done
	return 1
}

# cl_hold N COUNT - COUNT clients held open on host N until the test ends.
cl_hold() {
	local ready="$BATS_TEST_TMPDIR/ready.$1.$RANDOM"
	ip netns exec "$(ns "$1")" python3 "$CLIENT" --port $WC_PORT hold "$2" --ready "$ready" &
	for _ in $(seq 1200); do # a condition: 60 s
		[ -e "$ready" ] && return 0
		sleep 0.05
	done
	echo "hold on host $1: connections not open in time" >&2
	return 1
}

# ask N - one session on host N asking WHO, WHERE, WHY; the client gives up
# after ASK_SECONDS without a reply, and prints how the connection ended.
# whoconn never waits on etcd (it reads only its registry; the agent's etcd
# calls time out at 1 s and never hold the registry's lock), so a server
# cut off from etcd answers as fast as any other: the bound catches a hang,
# and leaves a loaded machine the hundreds of ms a process start can take
# (1 s, which this used to be, timed out at load 150).
ASK_SECONDS=5
ask() {
	in_ns "$1" python3 "$CLIENT" --port $WC_PORT send 'WHO\nWHERE\nWHY\n' --timeout $ASK_SECONDS 2>&1
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
