#!/usr/bin/env bats
# Cluster mode: three servers, each its own host (network namespace) with
# an etcd member, whoconn-sync and whoconn, under faults.  Each scenario
# asserts on every server.  The lease TTL is 2 s and the staleness bound
# 3 s here (CL_TTL, CL_STALENESS); DESIGN.md explains both.
#
# Measured times go to $WHOCONN_CLUSTER_TIMES when set (bench/cluster.sh).

load cluster-helpers

setup() {
	CLUSTER=""
}

teardown() {
	if [ -n "$CLUSTER" ]; then
		if [ -n "${BATS_TEST_COMPLETED:-}" ]; then :; else
			for n in 1 2 3; do
				echo "--- host $n sync.log"; tail -20 "$(dir "$n")/sync.log" 2>/dev/null
				echo "--- host $n registry: peer rows, local rows, now"
				sqlite3 "$(dir "$n")/registry.db" 'SELECT * FROM peer; SELECT count(*) FROM conn' 2>&1
				cut -d' ' -f1 /proc/uptime
				echo "--- etcd as seen from host $n"
				ectl "$n" --command-timeout=1s \
					get --prefix /whoconn/ 2>&1 | tail -6
			done >&3 2>/dev/null || true
		fi
		net_down
	fi
}

up() {
	cluster_skip_unless_able
	CLUSTER=1
	cluster_up
}

# check_reply HOST OUTPUT - checks a whole ask reply (count, the host's
# id, 42, then EOF, not a timeout) and prints the count.
check_reply() {
	local host="$1" out="$2"
	local -a l
	mapfile -t l <<<"$out"
	if [ "${#l[@]}" -ne 4 ] || ! [[ "${l[0]}" =~ ^[0-9]+$ ]] || [ "${l[1]}" != "${CL_IDS[$host]}" ] ||
		[ "${l[2]}" != 42 ] || [ "${l[3]}" != "end=eof" ]; then
		echo "host $host answered: $out" >&2
		return 1
	fi
	echo "${l[0]}"
}

# ---- configuration (no root needed) -------------------------------------

@test "whoconn-sync without endpoints says cluster mode is not configured" {
	run -64 env -u WHOCONN_ETCD_ENDPOINTS "$WHOCONN_SYNC"
	[ "${lines[0]}" = "whoconn-sync: no etcd endpoints (WHOCONN_ETCD_ENDPOINTS, --endpoints): cluster mode is not configured; see /etc/whoconn/cluster.conf" ]
}

@test "whoconn-sync refuses an endpoint that is not an http URL" {
	run -64 env WHOCONN_ETCD_ENDPOINTS=10.0.0.1:2379 "$WHOCONN_SYNC"
	[ "${lines[0]}" = 'whoconn-sync: etcd endpoints "10.0.0.1:2379": each must be http://HOST:PORT or https://HOST:PORT, comma-separated, without a path' ]
}

@test "whoconn-sync refuses an endpoint with a path" {
	run -64 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379/v3
	[ "${lines[0]}" = 'whoconn-sync: etcd endpoints "http://127.0.0.1:2379/v3": each must be http://HOST:PORT or https://HOST:PORT, comma-separated, without a path' ]
}

@test "whoconn-sync refuses more than nine endpoints" {
	run -64 "$WHOCONN_SYNC" --endpoints "$(printf 'http://h%d:1,' $(seq 10))"
	[[ "${lines[0]}" == *": too many (at most 9) or too long" ]]
}

@test "whoconn-sync refuses a lease TTL under etcd's minimum of 2 s" {
	run -64 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379 --lease-ttl 1
	[ "${lines[0]}" = 'whoconn-sync: lease TTL "1" is not a number of seconds from 2 to 60' ]
}

@test "whoconn-sync refuses a lease TTL that is not a number" {
	run -64 env WHOCONN_LEASE_TTL=3s "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379
	[ "${lines[0]}" = 'whoconn-sync: lease TTL "3s" is not a number of seconds from 2 to 60' ]
}

@test "whoconn-sync refuses a staleness bound shorter than the lease TTL" {
	run -64 env WHOCONN_STALENESS=4 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379 --lease-ttl 5
	[ "${lines[0]}" = 'whoconn-sync: staleness bound "4" is not a number of seconds from the lease TTL (5) to 3600' ]
}

@test "whoconn-sync refuses a server id that is not a UUID" {
	run -64 env WHOCONN_SERVER_ID=server-1 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379
	[ "${lines[0]}" = 'whoconn-sync: server id "server-1" is not a UUID' ]
}

@test "whoconn-sync refuses a CA file it cannot read, naming the setting" {
	run -64 env WHOCONN_ETCD_CA_FILE=/nonexistent/ca.pem "$WHOCONN_SYNC" --endpoints https://127.0.0.1:2379
	[ "${lines[0]}" = 'whoconn-sync: CA file (WHOCONN_ETCD_CA_FILE) "/nonexistent/ca.pem": No such file or directory' ]
	[ "${#lines[@]}" -eq 1 ]
}

@test "whoconn-sync refuses a CA file that is not a PEM certificate" {
	echo "not a certificate" >"$BATS_TEST_TMPDIR/ca.pem"
	run -64 "$WHOCONN_SYNC" --endpoints https://127.0.0.1:2379 --ca-file "$BATS_TEST_TMPDIR/ca.pem"
	[ "${lines[0]}" = "whoconn-sync: CA file (WHOCONN_ETCD_CA_FILE) \"$BATS_TEST_TMPDIR/ca.pem\": not a PEM certificate" ]
}

@test "whoconn-sync refuses TLS settings with an http endpoint" {
	run -64 env WHOCONN_ETCD_CA_FILE=/etc/ssl/certs/ca-certificates.crt "$WHOCONN_SYNC" \
		--endpoints https://127.0.0.1:2379,http://10.0.0.2:2379
	[ "${lines[0]}" = 'whoconn-sync: the TLS settings (WHOCONN_ETCD_CA_FILE, WHOCONN_ETCD_CERT_FILE) need https:// endpoints, and "http://10.0.0.2:2379" is not one' ]
}

@test "whoconn-sync refuses a client certificate without its key" {
	run -64 env WHOCONN_ETCD_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$WHOCONN_SYNC" \
		--endpoints https://127.0.0.1:2379
	[ "${lines[0]}" = 'whoconn-sync: a client certificate (WHOCONN_ETCD_CERT_FILE) needs its key (WHOCONN_ETCD_KEY_FILE), and a key its certificate' ]
}

@test "whoconn-sync refuses a client key that does not belong to the certificate" {
	command -v openssl >/dev/null || skip "needs openssl"
	local d=$BATS_TEST_TMPDIR
	for k in a b; do
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
			-subj "/O=$k" -keyout "$d/$k.key" -out "$d/$k.pem" 2>/dev/null
	done
	run -64 "$WHOCONN_SYNC" --endpoints https://127.0.0.1:2379 --cert-file "$d/a.pem" --key-file "$d/b.key"
	[ "${lines[0]}" = "whoconn-sync: client key (WHOCONN_ETCD_KEY_FILE) \"$d/b.key\" does not belong to the client certificate (WHOCONN_ETCD_CERT_FILE) \"$d/a.pem\"" ]
	run -64 "$WHOCONN_SYNC" --endpoints https://127.0.0.1:2379 --cert-file "$d/a.pem" --key-file "$d/a.pem"
	[ "${lines[0]}" = "whoconn-sync: client key (WHOCONN_ETCD_KEY_FILE) \"$d/a.pem\": not an unencrypted PEM private key" ]
}

@test "whoconn-sync refuses an etcd user without a readable, non-empty password file" {
	run -64 env WHOCONN_ETCD_USER=whoconn-s1 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379
	[ "${lines[0]}" = 'whoconn-sync: an etcd user (WHOCONN_ETCD_USER) needs its password file (WHOCONN_ETCD_PASSWORD_FILE), and a password file its user' ]
	run -64 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379 --user whoconn-s1 --password-file /nonexistent
	[ "${lines[0]}" = 'whoconn-sync: password file (WHOCONN_ETCD_PASSWORD_FILE) "/nonexistent": No such file or directory' ]
	: >"$BATS_TEST_TMPDIR/pw"
	run -64 "$WHOCONN_SYNC" --endpoints http://127.0.0.1:2379 --user whoconn-s1 --password-file "$BATS_TEST_TMPDIR/pw"
	[ "${lines[0]}" = "whoconn-sync: password file (WHOCONN_ETCD_PASSWORD_FILE) \"$BATS_TEST_TMPDIR/pw\": empty" ]
}

@test "whoconn-sync keeps the registry usable and reports ready while etcd is unreachable" {
	# Nothing listens on port 9 of a fresh namespace: etcd is down at boot.
	cluster_skip_unless_able
	CLUSTER=1
	net_up
	mkdir -p "$(dir 1)"
	local sock="$BATS_TEST_TMPDIR/notify.sock"
	python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(3)
seen = set(); end = time.monotonic() + 3
while time.monotonic() < end and not {"READY=1", "WATCHDOG=1"} <= seen:
    try: seen |= set(s.recv(4096).decode().split("\n"))
    except socket.timeout: break
print(" ".join(sorted(x for x in seen if x in ("READY=1", "WATCHDOG=1"))))' "$sock" >"$BATS_TEST_TMPDIR/notify.out" &
	local listener=$!
	for _ in $(seq 1200); do [ -S "$sock" ] && break; sleep 0.05; done
	ip netns exec "$(ns 1)" env NOTIFY_SOCKET="$sock" WHOCONN_ETCD_ENDPOINTS=http://127.0.0.1:9 \
		WHOCONN_SERVER_ID="${CL_IDS[1]}" WHOCONN_DB="$(dir 1)/registry.db" \
		"$WHOCONN_SYNC" 2>"$(dir 1)/sync.log" &
	wait $listener
	run cat "$BATS_TEST_TMPDIR/notify.out"
	[ "${lines[0]}" = "READY=1 WATCHDOG=1" ]
	wc_start 1
	run -0 ask 1
	[ "${lines[0]}" = 1 ]
	[ "${lines[1]}" = "${CL_IDS[1]}" ]
	[ "${lines[2]}" = 42 ]
	run grep -c "etcd lease grant at http://127.0.0.1:9: not reachable" "$(dir 1)/sync.log"
	[ "${lines[0]}" = 1 ]
}

# ---- three servers ---------------------------------------------------------

@test "three servers report three different WHERE ids" {
	up
	for n in 1 2 3; do
		run -0 ask "$n"
		[ "${lines[1]}" = "${CL_IDS[$n]}" ]
	done
	[ "${CL_IDS[1]}" != "${CL_IDS[2]}" ] && [ "${CL_IDS[2]}" != "${CL_IDS[3]}" ] &&
		[ "${CL_IDS[1]}" != "${CL_IDS[3]}" ]
}

@test "clients spread over three servers: every WHO equals the total within 1 s" {
	up
	cl_hold 1 2
	cl_hold 2 3
	local t0=$EPOCHREALTIME pids=() n
	cl_hold 3 4
	# 9 held clients, plus the asker itself; from the last clients' connect
	for n in 1 2 3; do
		timed_wait convergence "$t0" "$n" 10 1.0 >"$BATS_TEST_TMPDIR/conv.$n" &
		pids+=($!)
	done
	waits "${pids[@]}" || { cat "$BATS_TEST_TMPDIR"/conv.*; false; }
	for n in 1 2 3; do
		run cat "$BATS_TEST_TMPDIR/conv.$n"
		[[ "${lines[0]}" =~ ^10\ after\ [0-9.]+s$ ]]
	done
}

@test "a client leaving is seen by every server within 1 s" {
	up
	cl_hold 1 2
	local h1=$!
	cl_hold 2 3
	for n in 1 2 3; do run -0 wait_who "$n" 6 60; done # a condition: published
	kill "$h1"
	for n in 1 2 3; do
		run -0 wait_who "$n" 4 1.0
		[[ "${lines[0]}" == "4 after "* ]]
	done
}

# kill_and_check VICTIM BOUND-SECONDS NAME
kill_and_check() {
	local v="$1" bound="$2" name="$3" n others=()
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	for n in 1 2 3; do run -0 wait_who "$n" 10 60; done # a condition: all held clients published
	for n in 1 2 3; do [ "$n" = "$v" ] || others+=("$n"); done
	local held=$((9 - (v == 1 ? 2 : v == 2 ? 3 : 4))) pids=() t0=$EPOCHREALTIME
	server_kill "$v"
	for n in "${others[@]}"; do
		timed_wait "$name" "$t0" "$n" $((held + 1)) "$bound" >"$BATS_TEST_TMPDIR/fail.$n" &
		pids+=($!)
	done
	waits "${pids[@]}" || { cat "$BATS_TEST_TMPDIR"/fail.*; false; }
	for n in "${others[@]}"; do
		run cat "$BATS_TEST_TMPDIR/fail.$n"
		[[ "${lines[0]}" =~ ^$((held + 1))\ after\ [0-9.]+s$ ]]
		# and it keeps serving every command
		run -0 ask "$n"
		run -0 check_reply "$n" "$output"
		[ "${lines[0]}" = $((held + 1)) ]
	done
}

@test "a server killed outright: the others drop its clients within lease TTL + 1 s" {
	up
	local l v
	l=$(leader 1)
	[ -n "$l" ]
	v=$(( l == 3 ? 2 : 3 )) # a follower: the leader case is the next test
	kill_and_check "$v" $((CL_TTL + 1)) failover-follower
}

@test "the server of the etcd leader killed: the others drop its clients within TTL + election + 1 s" {
	up
	local v
	v=$(leader 1)
	[ -n "$v" ]
	# A new leader renews every lease for a full TTL when it takes over
	# (etcd's lessor Promote), so the dead server's lease outlives it by
	# the election (up to 2 election timeouts = 2 s here) plus one TTL.
	kill_and_check "$v" $((CL_TTL + 2 + 1)) failover-leader
}

@test "one server partitioned: the majority stays exact, the isolated one answers within its staleness bound" {
	up
	local l v n
	l=$(leader 1)
	[ -n "$l" ]
	v=$(( l == 3 ? 2 : 3 ))
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	for n in 1 2 3; do run -0 wait_who "$n" 10 60; done # a condition: all held clients published
	local mine=$(( v == 2 ? 3 : 4 )) pids=() t0=$EPOCHREALTIME
	partition "$v"
	# the isolated server answers everything at once, from what it knows:
	# all 10 while its last confirmation (at most 1 s before the partition:
	# keepalives go every TTL/3) is within the staleness bound; a
	# busy machine can take longer than that to start the asking client
	# (seen under a CPU hog), and then its own clients alone are right too
	run -0 ask "$v"
	local answered=$EPOCHREALTIME
	run -0 check_reply "$v" "$output"
	if awk -v a="$t0" -v b="$answered" -v s="$CL_STALENESS" 'BEGIN { exit !(b - a < s - 1) }'; then
		[ "${lines[0]}" = 10 ]
	else
		[ "${lines[0]}" = 10 ] || [ "${lines[0]}" = $((mine + 1)) ]
	fi
	# the majority drops the isolated server's clients after its lease TTL;
	# the isolated one counts only its own once its staleness bound is over
	for n in 1 2 3; do
		if [ "$n" = "$v" ]; then
			timed_wait partition-isolated-alone "$t0" "$n" $((mine + 1)) $((CL_STALENESS + 1))
		else
			timed_wait partition-majority "$t0" "$n" $((10 - mine)) $((CL_TTL + 1))
		fi >"$BATS_TEST_TMPDIR/part.$n" &
		pids+=($!)
	done
	waits "${pids[@]}" || { cat "$BATS_TEST_TMPDIR"/part.*; false; }
	for n in 1 2 3; do
		run -0 ask "$n"
		run -0 check_reply "$n" "$output"
		if [ "$n" = "$v" ]; then [ "${lines[0]}" = $((mine + 1)) ]; else [ "${lines[0]}" = $((10 - mine)) ]; fi
	done
	# healed: all converge to the exact total again
	pids=()
	t0=$EPOCHREALTIME
	heal "$v"
	for n in 1 2 3; do timed_wait partition-heal "$t0" "$n" 10 5.0 & pids+=($!); done
	waits "${pids[@]}"
}

@test "etcd quorum lost: every running server still answers every command at once" {
	up
	local n i
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	for n in 1 2 3; do run -0 wait_who "$n" 10 60; done # a condition: all held clients published
	etcd_kill 2
	etcd_kill 3
	# every command on every server, answered within the client's 1 s,
	# across the whole staleness bound and past it
	local t_end=$((SECONDS + CL_STALENESS + 2))
	while [ $SECONDS -lt $t_end ]; do
		for n in 1 2 3; do
			run -0 ask "$n"
			run -0 check_reply "$n" "$output"
		done
		sleep 0.2
	done
	# past the bound, each counts its own clients (and the asker) only
	run -0 wait_who 1 3 0.5
	run -0 wait_who 2 4 0.5
	run -0 wait_who 3 5 0.5
}

@test "everything restored: all servers converge to the exact total" {
	up
	local n
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	for n in 1 2 3; do run -0 wait_who "$n" 10 60; done # a condition: all held clients published
	# host 3 dies outright and host 2's etcd with it: no quorum left
	server_kill 3
	etcd_kill 2
	run -0 wait_who 1 3 $((CL_STALENESS + 1))
	run -0 wait_who 2 4 $((CL_STALENESS + 1))
	# everything back: etcd members, host 3's agent, whoconn and clients
	local pids=() t0=$EPOCHREALTIME
	etcd_start 2
	etcd_start 3
	sync_start 3
	wc_start 3
	cl_hold 3 4
	for n in 1 2 3; do timed_wait restore "$t0" "$n" 10 10.0 & pids+=($!); done
	waits "${pids[@]}"
}

# ---- planned stops -----------------------------------------------------------

@test "stopping an agent with SIGTERM revokes its lease: the other servers drop its clients within 1 s" {
	up
	local n pids=()
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	for n in 1 2 3; do run -0 wait_who "$n" 10 60; done # a condition: all held clients published
	local t0=$EPOCHREALTIME
	kill -TERM "$(cat "$(dir 2)/sync.pid")"
	for n in 1 3; do
		timed_wait planned-stop "$t0" "$n" 7 1.0 >"$BATS_TEST_TMPDIR/stop.$n" &
		pids+=($!)
	done
	waits "${pids[@]}" || { cat "$BATS_TEST_TMPDIR"/stop.*; false; }
	for n in 1 3; do
		run cat "$BATS_TEST_TMPDIR/stop.$n"
		[[ "${lines[0]}" =~ ^7\ after\ 0\.[0-9]+s$ ]]
	done
	waits "$(cat "$(dir 2)/sync.pid")"
	run -0 sync_log 2
	[ "${lines[-1]}" = "stopping on signal 15; lease revoked, the other servers no longer count this server's clients" ]
	[ "$(keys 1)" = 2 ]
}

@test "an agent stopped while cut off from etcd exits within the etcd call timeout and says its lease was not revoked" {
	up
	partition 2
	# past the member's election timeout: it knows it has lost its leader
	run -0 wait_who 2 1 $((CL_STALENESS + 1))
	local pid t0 took
	pid=$(cat "$(dir 2)/sync.pid")
	t0=$EPOCHREALTIME
	kill -TERM "$pid"
	local rc=0
	wait "$pid" || rc=$?
	took=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	echo "stopped after $took s, status $rc"
	[ "$rc" = 0 ]
	# the call in progress (1 s at most) and the revoke (1 s at most)
	[ "$(awk -v t="$took" 'BEGIN { print (t <= 2.5) ? "bounded" : "too slow" }')" = bounded ]
	run -0 sync_log 2
	[[ "${lines[-1]}" == "stopping on signal 15; lease not revoked ("*"): the other servers drop this server's clients after the lease TTL (2 s)" ]]
}

# ---- TLS, client certificates, etcd users --------------------------------------

@test "with TLS, client certificates and one etcd user per server, every WHO equals the total within 1 s" {
	CL_TLS=1 CL_AUTH=1
	up
	local t0 pids=() n
	cl_hold 1 2
	cl_hold 2 3
	t0=$EPOCHREALTIME
	cl_hold 3 4
	# 9 held clients, plus the asker itself; from the last clients' connect
	for n in 1 2 3; do
		timed_wait tls-convergence "$t0" "$n" 10 1.0 >"$BATS_TEST_TMPDIR/conv.$n" &
		pids+=($!)
	done
	waits "${pids[@]}" || { cat "$BATS_TEST_TMPDIR"/conv.*; false; }
	# the agents connected with their certificates and logged in: no failure logged
	for n in 1 2 3; do
		run -0 sync_log "$n"
		[ "${#lines[@]}" -eq 1 ]
		[ "${lines[0]}" = "server ${CL_IDS[$n]}, registry $(dir "$n")/registry.db, etcd https://127.0.0.1:2379 and others, lease TTL 2 s, staleness bound 3 s, client certificate $(pki)/agent$n.pem, etcd user whoconn-s$n" ]
	done
	# a planned stop revokes the lease under the agent's own role too
	kill -TERM "$(cat "$(dir 3)/sync.pid")"
	run -0 wait_who 1 6 1.0
	run -0 sync_log 3
	[ "${lines[-1]}" = "stopping on signal 15; lease revoked, the other servers no longer count this server's clients" ]
}

@test "with etcd users, a server may read every count but write only its own key" {
	CL_TLS=1 CL_AUTH=1
	up
	local d k2
	d=$(pki)
	k2="/whoconn/v1/count/${CL_IDS[2]}"
	as_s1() { in_ns 1 etcdctl --endpoints https://127.0.0.1:2379 --cacert "$d/ca.pem" \
		--cert "$d/agent1.pem" --key "$d/agent1.key" --user whoconn-s1:pw-s1 "$@"; }
	run -0 as_s1 get --prefix /whoconn/v1/count/ --keys-only
	[ "$(grep -c . <<<"$output")" = 3 ]
	run -1 --separate-stderr as_s1 put "$k2" 1000
	[ "${stderr_lines[-1]}" = "Error: etcdserver: permission denied" ]
	run -1 --separate-stderr as_s1 del "$k2"
	[ "${stderr_lines[-1]}" = "Error: etcdserver: permission denied" ]
	run -1 --separate-stderr as_s1 put /whoconn/v1/count/aaaaaaaa-0009-4000-8000-000000000009 1000
	[ "${stderr_lines[-1]}" = "Error: etcdserver: permission denied" ]
	# (etcdctl prints a lease ID as 16 hex digits: one in 16 starts with 0)
	# nor revoke another server's lease (a revoke needs write permission
	# on the keys attached to it); keeping it alive is not checked by etcd
	local lease2
	lease2=$(as_s1 get "$k2" -w json | python3 -c 'import json, sys; print("%016x" % json.load(sys.stdin)["kvs"][0]["lease"])')
	run -1 --separate-stderr as_s1 lease revoke "$lease2"
	[ "${stderr_lines[-1]}" = "Error: failed to revoke lease (etcdserver: permission denied)" ]
	run -0 as_s1 lease keep-alive --once "$lease2"
	[[ "$output" == "lease $lease2 keepalived with TTL("[12]")" ]]
	# its own key, yes
	run -0 as_s1 put "/whoconn/v1/count/${CL_IDS[1]}" 0
	[ "$output" = OK ]
	# an agent with a wrong password says so, and its server answers from local data
	kill -TERM "$(cat "$(dir 3)/sync.pid")"
	waits "$(cat "$(dir 3)/sync.pid")"
	echo wrong >"$d/wrong-password"
	: >"$(dir 3)/sync.log"
	sync_start 3 WHOCONN_ETCD_PASSWORD_FILE="$d/wrong-password"
	for _ in $(seq 1200); do [ "$(sync_log 3 | wc -l)" -ge 2 ] && break; sleep 0.05; done
	run -0 sync_log 3
	printf '%s\n' "${lines[@]}"
	[ "${lines[1]}" = "etcd lease grant at https://127.0.0.1:2379: refused the request (HTTP 400: etcdserver: authentication failed, invalid user ID or password); this server keeps counting its peers for at most 3 s after the last confirmation" ]
	run -0 wait_who 3 1 $((CL_STALENESS + 1))
}

@test "with TLS, agents with a wrong CA or no client certificate cannot publish, say why, and their servers answer from local data" {
	cluster_skip_unless_able
	CLUSTER=1 CL_TLS=1
	local d n
	net_up
	make_pki
	d=$(pki)
	for n in 1 2 3; do mkdir -p "$(dir "$n")"; etcd_start "$n"; done
	# etcd ready first, so that the agents' first failure is the certificate
	for _ in $(seq 1200); do ectl 1 endpoint health >/dev/null 2>&1 && break; sleep 0.05; done
	sync_start 1
	sync_start 2 WHOCONN_ETCD_CA_FILE="$d/wrong-ca.pem"
	sync_start 3 WHOCONN_ETCD_CERT_FILE= WHOCONN_ETCD_KEY_FILE=
	for n in 1 2 3; do wc_start "$n"; done
	cl_hold 1 2
	cl_hold 2 3
	cl_hold 3 4
	# host 1 publishes and sees nobody else; hosts 2 and 3 count their own
	run -0 wait_who 1 3 60 # conditions: each count published or local
	run -0 wait_who 2 4 60
	run -0 wait_who 3 5 60
	[ "$(keys 1)" = 1 ]
	for n in 2 3; do
		run -0 ask "$n"
		run -0 check_reply "$n" "$output"
	done
	# one line each, saying why; the rest is libcurl's and OpenSSL's words
	run -0 sync_log 2
	printf '%s\n' "${lines[@]}"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[1]}" = "etcd lease grant at https://127.0.0.1:2379: TLS failed: SSL certificate problem: unable to get local issuer certificate; this server keeps counting its peers for at most 3 s after the last confirmation" ]
	# A member refuses a missing certificate after the handshake or during
	# it (then the socket is just closed, worded otherwise by libcurl): one
	# line, for one of the members, says it; no line is a success.
	run -0 sync_log 3
	printf '%s\n' "${lines[@]}"
	local said=0
	for l in "${lines[@]:1}"; do
		[[ "$l" == "etcd "*" at https://"*": "*"; this server keeps counting its peers for at most 3 s after the last confirmation" ]]
		[[ "$l" == "etcd "*" at https://"*": TLS failed: OpenSSL SSL_read: "*"alert bad certificate"*"; this server"* ]] && said=$((said + 1))
	done
	[ "$said" = 1 ]
}
