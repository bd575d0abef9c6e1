#!/usr/bin/env bats
# lib/etcd, the agent's etcd client, against a real etcd: KV, leases, the
# watch stream, login, failover, and the error paths (refused login,
# expired token, no leader, compacted watch, a member that goes away
# during a watch).  tests/etcd-check runs the client's operations and
# prints one line per result (its header comment has the list).
#
# One etcd member serves the whole file, on free loopback ports, with
# authentication on and simple tokens that expire after 1 s idle; the
# members that a test kills are its own.  Each test uses keys of its own.

load helpers

CHECK="$TOP/tests/etcd-check"
# Bounds, generous for a slow machine: an etcd member answers within
# ETCD_READY_S of its start; a killed member is gone within WAIT_S; a
# condition a test waits for comes within wait_until's bound
# (tests/helpers.bash; tests/etcd-check's own waits give up after 20 s).
ETCD_READY_S=30
WAIT_S=25

# member_start NAME MEMBERS... - one etcd member of a cluster of MEMBERS,
# in the background, for at most 300 s; their ports are in
# $BATS_FILE_TMPDIR (cluster_start).
member_start() {
	local name="$1" d="$BATS_FILE_TMPDIR"
	shift
	local peers=() m
	for m in "$@"; do peers+=("$m=http://127.0.0.1:$(cat "$d/$m.peer")"); done
	local IFS=,
	# in a subshell: not a job of the test's shell, which would report its
	# end (timeout re-raises the member's SIGKILL)
	(timeout -s KILL 300 etcd --name "$name" --data-dir "$d/$name.data" \
		--listen-client-urls "http://127.0.0.1:$(cat "$d/$name.client")" \
		--advertise-client-urls "http://127.0.0.1:$(cat "$d/$name.client")" \
		--listen-peer-urls "http://127.0.0.1:$(cat "$d/$name.peer")" \
		--initial-advertise-peer-urls "http://127.0.0.1:$(cat "$d/$name.peer")" \
		--initial-cluster "${peers[*]}" --initial-cluster-token "${peers[0]}-$$" \
		--heartbeat-interval=100 --election-timeout=1000 --auth-token-ttl=1 \
		--log-level=warn --logger=zap >>"$d/$name.log" 2>&1 3>&- &
	echo $! >"$d/$name.pid")
}

# url NAME - the member's client URL.
url() { echo "http://127.0.0.1:$(cat "$BATS_FILE_TMPDIR/$1.client")"; }

# cluster_start NAME... - starts a cluster of these members (no waiting).
cluster_start() {
	local m
	for m in "$@"; do
		free_port >"$BATS_FILE_TMPDIR/$m.client"
		free_port >"$BATS_FILE_TMPDIR/$m.peer"
	done
	for m in "$@"; do member_start "$m" "$@"; done
}

# members_ready NAME... - until each member answers a read (as no user:
# before authentication is on), for at most ETCD_READY_S in all.
members_ready() {
	local m
	local end=$((SECONDS + ETCD_READY_S))
	for m in "$@"; do
		while [ $SECONDS -lt $end ]; do
			etcdctl --endpoints "$(url "$m")" --command-timeout=1s get x >/dev/null 2>&1 && continue 2
			sleep 0.2
		done
		echo "etcd member $m did not answer within $ETCD_READY_S s" >&2
		tail -5 "$BATS_FILE_TMPDIR/$m.log" >&2
		return 1
	done
}

# member_kill NAME - the member dies at once (SIGKILL), and is waited for.
member_kill() {
	local t
	t=$(cat "$BATS_FILE_TMPDIR/$1.pid" 2>/dev/null) || return 0
	pkill -KILL -P "$t" 2>/dev/null || true
	for _ in $(seq $((WAIT_S * 10))); do kill -0 "$t" 2>/dev/null || return 0; sleep 0.1; done
	echo "etcd member $1 did not stop" >&2
	return 1
}

setup_file() {
	command -v etcd >/dev/null || skip "etcd not installed (Debian package etcd-server)"
	command -v etcdctl >/dev/null || skip "etcdctl not installed (Debian package etcd-client)"
	make -C "$TOP" -s tests/etcd-check >&2
	# the members all tests share (main), and those that one test kills
	# (nl1 and nl2: no leader; kw: killed during a watch), started together
	cluster_start main
	cluster_start nl1 nl2
	cluster_start kw
	members_ready main nl1 nl2 kw
	# root may do everything; the tests log in as root
	local e=(etcdctl --endpoints "$(url main)")
	"${e[@]}" user add root:root-pw >/dev/null
	"${e[@]}" role add root >/dev/null
	"${e[@]}" user grant-role root root >/dev/null
	"${e[@]}" auth enable >/dev/null
	printf 'root-pw\n' >"$BATS_FILE_TMPDIR/root-pw"
	printf 'not-the-password\n' >"$BATS_FILE_TMPDIR/wrong-pw"
}

teardown_file() {
	local m
	for m in main nl1 nl2 kw; do member_kill "$m"; done
}

setup() {
	K="/etcd-bats/$BATS_TEST_NUMBER/"
}

teardown() {
	if [ -n "${FAKE_PID:-}" ]; then kill "$FAKE_PID" 2>/dev/null || true; fi
	if [ -n "${WATCH_PID:-}" ]; then kill "$WATCH_PID" 2>/dev/null || true; fi
}

# check OP... - tests/etcd-check as root on the shared member.
check() {
	"$CHECK" --endpoints "$(url main)" --user root --password-file "$BATS_FILE_TMPDIR/root-pw" "$@"
}

# revision - the shared member's store revision now.
revision() {
	check rev / | sed -n 's/^revision: //p'
}

@test "a put is read back by key and by prefix, and counted" {
	run -0 check put "${K}a" 1 put "${K}b" two get "${K}a" prefix "$K" count "$K" get "${K}none"
	[ "${#lines[@]}" -eq 6 ]
	[ "${lines[0]}" = "put: ok" ]
	[ "${lines[1]}" = "put: ok" ]
	[ "${lines[2]}" = "${K}a 1" ]
	[ "${lines[3]}" = "${K}a 1" ]
	[ "${lines[4]}" = "${K}b two" ]
	[ "${lines[5]}" = "count: 2" ]
}

@test "a key on a lease lives while the lease is kept alive and goes with it when it is revoked" {
	run -1 check grant 60 put "${K}l" x keepalive get "${K}l" revoke get "${K}l" keepalive
	[ "${#lines[@]}" -eq 6 ]
	[ "${lines[0]}" = "grant: ok" ]
	[ "${lines[1]}" = "put: ok" ]
	[ "${lines[2]}" = "keepalive: ok" ]
	[ "${lines[3]}" = "${K}l x" ]
	[ "${lines[4]}" = "revoke: ok" ]
	# etcd no longer knows the lease: the key went with it, and a keepalive says so
	[ "${lines[5]}" = "keepalive: ENOLINK: lease lost" ]
}

@test "the watch stream replays every put and delete from the revision asked, and is synced" {
	local rev
	rev=$(revision)
	[ -n "$rev" ]
	run -0 check put "${K}a" 1 put "${K}b" 2 grant 60 put "${K}c" 3 revoke
	[ "${lines[4]}" = "revoke: ok" ]
	run -0 check watch "$K" $((rev + 1)) 4
	[ "${#lines[@]}" -eq 5 ]
	[ "${lines[0]}" = "put ${K}a 1" ]
	[ "${lines[1]}" = "put ${K}b 2" ]
	[ "${lines[2]}" = "put ${K}c 3" ]
	[ "${lines[3]}" = "delete ${K}c" ]
	[ "${lines[4]}" = "watch: 4 events, synced" ]
}

@test "a watch from a revision etcd has compacted ends at once with ESTALE" {
	local rev
	run -0 check put "${K}a" 1 put "${K}a" 2 put "${K}a" 3
	rev=$(revision)
	run -0 etcdctl --endpoints "$(url main)" --user root:root-pw compact "$rev"
	[ "$output" = "compacted revision $rev" ]
	run -1 check watch "$K" $((rev - 2)) 1
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "watch: ended: ESTALE" ]
	# from the compaction on, the stream works
	run -0 check put "${K}a" 4 watch "$K" "$rev" 2
	[ "${lines[1]}" = "put ${K}a 3" ]
	[ "${lines[2]}" = "put ${K}a 4" ]
	[ "${lines[3]}" = "watch: 2 events, synced" ]
}

@test "a login with a wrong password is refused, in etcd's words, and nothing is written" {
	run -1 "$CHECK" --endpoints "$(url main)" --user root --password-file "$BATS_FILE_TMPDIR/wrong-pw" \
		put "${K}a" 1 get "${K}a"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "put: EREMOTEIO: refused the request (HTTP 400: etcdserver: authentication failed, invalid user ID or password)" ]
	[ "${lines[1]}" = "get: EREMOTEIO: refused the request (HTTP 400: etcdserver: authentication failed, invalid user ID or password)" ]
	run -0 check count "$K"
	[ "$output" = "count: 0" ]
}

@test "without a login, etcd with authentication on refuses every call" {
	run -1 "$CHECK" --endpoints "$(url main)" put "${K}a" 1
	[ "$output" = "put: EREMOTEIO: refused the request (HTTP 400: etcdserver: user name is empty)" ]
}

@test "an expired token is replaced by a new login, and the call goes through" {
	local out="$BATS_TEST_TMPDIR/check.out" go="$BATS_TEST_TMPDIR/expired"
	check put "${K}a" 1 wait "$go" put "${K}a" 2 get "${K}a" >"$out" &
	WATCH_PID=$!
	wait_until "the first put" grep -q "put: ok" "$out"
	# A token taken after the client's expires no earlier than the client's
	# (both idle): once etcd refuses it, the client's is gone too.  Each use
	# renews a token, so it is tried after ever longer idle times.
	python3 - "$(url main)" "$go" <<-'EOF'
		import json, sys, time, urllib.request, urllib.error
		url, go = sys.argv[1], sys.argv[2]
		def post(path, body, token=None):
		    req = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST")
		    if token:
		        req.add_header("Authorization", token)
		    with urllib.request.urlopen(req, timeout=5) as r:
		        return json.load(r)
		token = post("/v3/auth/authenticate", {"name": "root", "password": "root-pw"})["token"]
		for idle in (1.5, 2.5, 4, 6, 8):
		    time.sleep(idle)
		    try:
		        post("/v3/kv/range", {"key": "eA=="}, token)
		    except urllib.error.HTTPError as e:
		        if e.code == 401:
		            open(go, "w").close()
		            sys.exit(0)
		sys.exit("the token did not expire")
	EOF
	wait "$WATCH_PID"
	WATCH_PID=""
	run cat "$out"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = "put: ok" ]
	[ "${lines[1]}" = "put: ok" ]
	[ "${lines[2]}" = "${K}a 2" ]
}

@test "a member that lost the only other member of its cluster refuses at once: no leader" {
	run -0 "$CHECK" --endpoints "$(url nl1)" put /nl/a 1
	[ "$output" = "put: ok" ]
	member_kill nl2
	# until the survivor knows it has no leader (its calls time out before)
	no_leader() { "$CHECK" --endpoints "$(url nl1)" count /nl/ | grep -q "no leader"; }
	wait_until "no leader on nl1" no_leader
	run -1 "$CHECK" --endpoints "$(url nl1)" count /nl/ put /nl/a 2
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "count: EREMOTEIO: refused the request (HTTP 503: etcdserver: no leader)" ]
	[ "${lines[1]}" = "put: EREMOTEIO: refused the request (HTTP 503: etcdserver: no leader)" ]
}

@test "a member killed during a watch ends the stream, after the events it sent" {
	local out="$BATS_TEST_TMPDIR/watch.out"
	run -0 "$CHECK" --endpoints "$(url kw)" put /kw/a 1 put /kw/b 2
	[ "${lines[1]}" = "put: ok" ]
	"$CHECK" --endpoints "$(url kw)" watch /kw/ 1 100 >"$out" &
	WATCH_PID=$!
	wait_until "the watch's events" grep -q "put /kw/b 2" "$out"
	member_kill kw
	local rc=0
	wait "$WATCH_PID" || rc=$?
	WATCH_PID=""
	[ "$rc" = 1 ]
	run cat "$out"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = "put /kw/a 1" ]
	[ "${lines[1]}" = "put /kw/b 2" ]
	[[ "${lines[2]}" == "watch: ended: ECONNRESET: the stream ended ("*")" ]]
}

@test "a member that closes the stream in the middle of an event: the event cut short is never delivered" {
	# A fake gateway: the watch is created, one event, then half of the
	# next one, and the connection closes.
	local port="$BATS_TEST_TMPDIR/port"
	python3 - "$port" <<-'EOF' &
		import socket, sys
		s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(25)
		open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
		import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
		c, _ = s.accept(); c.settimeout(25)
		req = b""
		while b"\r\n\r\n" not in req:
		    req += c.recv(4096)
		def chunk(b): c.sendall(b"%x\r\n%s\r\n" % (len(b), b))
		c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk(b'{"result":{"header":{"revision":"3"},"created":true}}\n')
		chunk(b'{"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"L2svYQ==","value":"MQ==","mod_revision":"2"}}]}}\n')
		chunk(b'{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L2svYg==","val')
		c.close()
	EOF
	FAKE_PID=$!
	wait_until "the fake gateway" test -e "$port"
	run -1 "$CHECK" --endpoints "http://127.0.0.1:$(cat "$port")" watch /k/ 1 2
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "put /k/a 1" ]
	[ "${lines[1]}" = "watch: ended: ECONNRESET: the stream ended (transfer closed with outstanding read data remaining)" ]
}

@test "a call to a dead endpoint fails as not reachable, and failover moves to the next one, round the list" {
	local dead
	dead=$(free_port)
	run -1 "$CHECK" --endpoints "http://127.0.0.1:$dead,$(url main)" --user root \
		--password-file "$BATS_FILE_TMPDIR/root-pw" put "${K}a" 1 failover put "${K}a" 1 get "${K}a" failover
	[ "${#lines[@]}" -eq 5 ]
	[[ "${lines[0]}" == "put: ECONNREFUSED: not reachable (Failed to connect to 127.0.0.1 port $dead after "*" ms: Couldn't connect to server)" ]]
	[ "${lines[1]}" = "endpoint: $(url main)" ]
	[ "${lines[2]}" = "put: ok" ]
	[ "${lines[3]}" = "${K}a 1" ]
	[ "${lines[4]}" = "endpoint: http://127.0.0.1:$dead" ]
}
