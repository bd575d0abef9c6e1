#!/usr/bin/env bats
# The front door (issue 17, docs/front-door.md): Debian's HAProxy running the
# shipped contrib/haproxy/whoconn.cfg and whoconn-tls.cfg unchanged (the
# addresses come from the environment) in front of three whoconn servers
# (systemd-socket-activate, as make run serves), and the health-check
# recipes (HAProxy tcp-check, check_tcp, the blackbox exporter) against the
# real binary.  The servers, the front and the exporter are started once
# for the file; a test that breaks or stops a server puts it back in
# teardown and waits until the front has it UP again.

load helpers

# Debian's python3 (in DEPS_CHECK), not a version manager's shim that takes
# seconds to start on a busy machine: hold, the loop and the burst are timed
# against the servers, not against the interpreter's start.
PATH=/usr/bin:$PATH

CFG="$TOP/contrib/haproxy/whoconn.cfg"
TLSCFG="$TOP/contrib/haproxy/whoconn-tls.cfg"
DRAIN="$TOP/contrib/haproxy/whoconn-drain"
LATENCY="$TOP/contrib/haproxy/start-latency"
LOOP="$TOP/tests/frontloop.py"
PLUGINS=/usr/lib/nagios/plugins

# The waits below are for conditions (a server UP, a process listening):
# 60 s at most, however slow the machine.
WAIT_STEPS=1200 # x 0.05 s

# sid I - the server id of server I, so that WHERE tells the servers apart.
sid() {
	echo "00000000-0000-4000-8000-00000000000$1"
}

# start_backend I [PORT] - serves whoconn as server sI with its own registry.
start_backend() {
	local i=$1 port=${2:-$(free_port)}
	mkdir -p "$BATS_FILE_TMPDIR/r$i"
	# started from a subshell, so that no shell of bats reports its death
	(
		systemd-socket-activate -l "127.0.0.1:$port" --inetd -a \
			-E WHOCONN_DB="$BATS_FILE_TMPDIR/r$i/registry.db" -E WHOCONN_SERVER_ID="$(sid "$i")" \
			"$WHOCONN" 2>>"$BATS_FILE_TMPDIR/s$i.log" 3>&- &
		echo $! >"$BATS_FILE_TMPDIR/s$i.pid"
	)
	echo "$port" >"$BATS_FILE_TMPDIR/s$i.port"
	for _ in $(seq $WAIT_STEPS); do
		nc -z 127.0.0.1 "$port" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "server s$i did not start listening on $port" >&2
	return 1
}

# kill_backend I - server sI dies: its connection processes, then its
# listening socket, with SIGKILL.
kill_backend() {
	local pid
	pid=$(cat "$BATS_FILE_TMPDIR/s$1.pid")
	pkill -KILL -P "$pid" 2>/dev/null || true
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq $WAIT_STEPS); do
		backend_alive "$1" || return 0
		sleep 0.05
	done
	return 1
}

# backend_alive I - sI's listening process runs (a zombie, not yet reaped by
# the shell that started it, no longer listens).
backend_alive() {
	local st
	st=$(awk '{ print $3 }' "/proc/$(cat "$BATS_FILE_TMPDIR/s$1.pid")/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# launch_front NAME [VAR=VALUE...] - HAProxy with the shipped files, its runtime
# socket at $BATS_FILE_TMPDIR/NAME.sock; wait_front NAME waits until it has
# every server UP.
launch_front() {
	local name=$1
	shift
	env WHOCONN_HAPROXY_LOG=stderr WHOCONN_HAPROXY_ADMIN="$BATS_FILE_TMPDIR/$name.sock" \
		WHOCONN_S1="127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s1.port")" \
		WHOCONN_S2="127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s2.port")" \
		WHOCONN_S3="127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s3.port")" \
		WHOCONN_TLS_CRT="$BATS_FILE_TMPDIR/good.pem" "$@" \
		haproxy -f "$CFG" -f "$TLSCFG" -db >"$BATS_FILE_TMPDIR/$name.log" 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/$name.pid"
}

wait_front() {
	for s in s1 s2 s3; do
		SOCK="$BATS_FILE_TMPDIR/$1.sock" wait_status "$s" UP || return 1
	done
}

stop_front() {
	local f="$BATS_FILE_TMPDIR/$1.pid" pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq $WAIT_STEPS); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	rm -f "$f"
}

# admin COMMAND - a command on the runtime socket $SOCK (the main front's by
# default).
admin() {
	echo "$*" | socat -t 10 - "UNIX-CONNECT:${SOCK:-$BATS_FILE_TMPDIR/front.sock}"
}

# srv_stat SERVER FIELD - one field of "show stat" for whoconn/SERVER, by the
# header's name (status, scur, chkdown, ...).
srv_stat() {
	admin "show stat" | awk -F, -v s="$1" -v f="$2" '
		NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
		$1 == "whoconn" && $2 == s { print $col[f] }'
}

# wait_status SERVER STATUS - until "show stat" shows exactly STATUS.
wait_status() {
	local got=""
	for _ in $(seq $WAIT_STEPS); do
		got=$(srv_stat "$1" status 2>/dev/null) || true
		[ "$got" = "$2" ] && return 0
		sleep 0.05
	done
	echo "whoconn/$1 is '$got', not '$2'" >&2
	return 1
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# certificates for the TLS tests (ECDSA P-256: quick to make): a CA, a server certificate it signed, the
# same signed by a CA the client does not trust, and an expired one.  Made
# afresh for every run; no key is ever committed.
make_certs() {
	local d="$BATS_FILE_TMPDIR/tls"
	mkdir -p "$d/db"
	(
		cd "$d" || exit 1
		for ca in ca otherca; do
			openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $ca.key -out $ca.pem -days 2 \
				-subj "/CN=whoconn test $ca" || exit 1
		done
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr \
			-subj /CN=whoconn.test -addext "subjectAltName=DNS:whoconn.test,IP:127.0.0.1" || exit 1
		: >db/index.txt
		echo 01 >db/serial
		cat >ca.cnf <<-'EOF'
		[ca]
		default_ca = test
		[test]
		database = db/index.txt
		serial = db/serial
		new_certs_dir = db
		default_md = sha256
		policy = any
		copy_extensions = copy
		unique_subject = no
		[any]
		commonName = supplied
		EOF
		openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -days 2 \
			-in srv.csr -out good.crt || exit 1
		openssl ca -batch -config ca.cnf -cert otherca.pem -keyfile otherca.key -days 2 \
			-in srv.csr -out other.crt || exit 1
		openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key \
			-startdate 20200101000000Z -enddate 20200102000000Z -in srv.csr -out expired.crt || exit 1
		for c in good other expired; do cat $c.crt srv.key >"$BATS_FILE_TMPDIR/$c.pem"; done
	) >"$BATS_FILE_TMPDIR/certs.log" 2>&1
}

setup_file() {
	local p
	for p in haproxy socat openssl curl prometheus-blackbox-exporter; do
		command -v $p >/dev/null || skip "needs $p (make check installs it: mk/front.mk)"
	done
	[ -x $PLUGINS/check_tcp ] || skip "needs check_tcp (Debian package monitoring-plugins-basic)"
	make_certs
	for i in 1 2 3; do start_backend $i; done
	export FRONT_PORT TLS_PORT BB_PORT
	FRONT_PORT=$(free_port)
	TLS_PORT=$(free_port)
	launch_front front WHOCONN_FRONT="127.0.0.1:$FRONT_PORT" WHOCONN_FRONT_TLS="127.0.0.1:$TLS_PORT"
	# A second front over the same servers: a per-client cap of 3, and TLS
	# with the expired certificate.
	export CAP_PORT EXPIRED_PORT
	CAP_PORT=$(free_port)
	EXPIRED_PORT=$(free_port)
	launch_front second WHOCONN_FRONT="127.0.0.1:$CAP_PORT" WHOCONN_FRONT_TLS="127.0.0.1:$EXPIRED_PORT" \
		WHOCONN_PER_CLIENT=3 WHOCONN_TLS_CRT="$BATS_FILE_TMPDIR/expired.pem"
	wait_front front
	wait_front second
	# The shipped modules, and one that expects a wrong answer.
	cat "$TOP/contrib/blackbox/whoconn.yml" - >"$BATS_FILE_TMPDIR/blackbox.yml" <<-'EOF'
	  whoconn_wrong:
	    prober: tcp
	    timeout: 5s
	    tcp:
	      query_response:
	        - send: "WHY"
	        - send: "QUIT"
	        - expect: "^43$"
	        - expect: "^BYE$"
	EOF
	BB_PORT=$(free_port)
	prometheus-blackbox-exporter --config.file="$BATS_FILE_TMPDIR/blackbox.yml" \
		--web.listen-address="127.0.0.1:$BB_PORT" >"$BATS_FILE_TMPDIR/blackbox.log" 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/blackbox.pid"
	for _ in $(seq $WAIT_STEPS); do
		curl -sf "http://127.0.0.1:$BB_PORT/metrics" >/dev/null && return 0
		sleep 0.05
	done
	echo "the blackbox exporter did not start" >&2
	return 1
}

teardown_file() {
	local f
	stop_front front
	stop_front second
	f="$BATS_FILE_TMPDIR/blackbox.pid"
	if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
	for i in 1 2 3; do
		[ -f "$BATS_FILE_TMPDIR/s$i.pid" ] && kill_backend $i
	done
	true
}

# Every test leaves the pool as it found it: registries whole, servers
# running and ready.  One look at the runtime socket when nothing was
# touched.
teardown() {
	local fix=0
	if [ -n "${LOOP_PID:-}" ]; then kill "$LOOP_PID" 2>/dev/null || true; wait "$LOOP_PID" 2>/dev/null || true; fi
	if [ -n "${HOLD_PID:-}" ]; then release; fi
	for i in 1 2 3; do
		if [ -d "$BATS_FILE_TMPDIR/r$i.broken" ]; then
			mv "$BATS_FILE_TMPDIR/r$i.broken" "$BATS_FILE_TMPDIR/r$i"
			fix=1
		fi
		if ! backend_alive $i; then
			start_backend $i "$(cat "$BATS_FILE_TMPDIR/s$i.port")"
			fix=1
		fi
	done
	[ $fix = 0 ] && [ "$(admin "show stat" | grep -c '^whoconn,s[123],.*,UP,')" = 3 ] && return 0
	for i in 1 2 3; do admin "set server whoconn/s$i state ready" >/dev/null; done
	for i in 1 2 3; do wait_status s$i UP; done
}

# break_registry I / the teardown repairs it - WHO on sI answers
# "ERR registry unavailable: No such file or directory".
break_registry() {
	mv "$BATS_FILE_TMPDIR/r$1" "$BATS_FILE_TMPDIR/r$1.broken"
}

@test "the shipped configuration, with TLS, is valid for Debian's HAProxy" {
	run -0 env WHOCONN_TLS_CRT="$BATS_FILE_TMPDIR/good.pem" haproxy -c -f "$CFG" -f "$TLSCFG"
	[ "${lines[-1]}" = "Configuration file is valid" ]
}

@test "the fronted socket drop-in raises the per-source cap to MaxConnections, above the balancer's maxconn" {
	local unit="$TOP/units/whoconn.socket.in" dropin="$TOP/contrib/haproxy/whoconn.socket.d/fronted.conf"
	run -0 sed -n 's/^MaxConnections=//p' "$unit"
	local max=$output
	run -0 sed -n 's/^MaxConnectionsPerSource=//p' "$dropin"
	[ "$output" = "$max" ]
	run -0 grep -c '^\[Socket\]$' "$dropin"
	[ "$output" = 1 ]
	run -0 sed -n 's/^ *default-server .* maxconn \([0-9]*\).*/\1/p' "$CFG"
	[ "$output" -lt "$max" ]
}

@test "a session through the front door is answered by one of the servers" {
	run -0 bash -c "printf 'WHY\nWHERE\nQUIT\n' | nc -N 127.0.0.1 $FRONT_PORT"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = 42 ]
	[[ " $(sid 1) $(sid 2) $(sid 3) " == *" ${lines[1]} "* ]]
	[ "${lines[2]}" = BYE ]
}

@test "every health check ends with QUIT: whoconn logs end=quit and exits 0, never a reset" {
	local log="$BATS_FILE_TMPDIR/s3.log" from
	from=$(($(wc -l <"$log") + 1))
	# a condition: five more finished checks (one every 500 ms)
	for _ in $(seq $WAIT_STEPS); do
		[ "$(tail -n +"$from" "$log" | grep -c 'end=')" -ge 5 ] && break
		sleep 0.05
	done
	run -0 bash -c "tail -n +$from '$log' | grep -o 'end=[a-z-]*' | sort | uniq -c | sed 's/^ *//'"
	[[ "$output" =~ ^[0-9]+\ end=quit$ ]]
	run -0 bash -c "tail -n +$from '$log' | grep -o 'died with code [0-9]*' | sort -u"
	[ "$output" = "died with code 0" ]
}

@test "a server whose registry is broken leaves the pool, judged by its answer, not by a timeout, and returns once repaired" {
	break_registry 2
	run -0 bash -c "printf 'WHO\nQUIT\n' | nc -N 127.0.0.1 $(cat "$BATS_FILE_TMPDIR/s2.port")"
	[ "${lines[0]}" = "ERR registry unavailable: No such file or directory" ]
	wait_status s2 DOWN
	# Judged by the answer: the checks fail with L7RSP (invalid response), not
	# L7TOUT.  A condition, not the first check's result: on a machine loaded
	# far past its cores (load average 775 seen here) a process may not even
	# start within the 3 s check timeout, and then a check times out first.
	local st=""
	for _ in $(seq $WAIT_STEPS); do
		st=$(srv_stat s2 check_status)
		[ "${st#\* }" = L7RSP ] && break
		sleep 0.05
	done
	[ "${st#\* }" = L7RSP ]
	run -0 srv_stat s2 last_chk
	[ "$output" = "TCPCHK did not match content (regex) at step 2" ]
	# meanwhile WHO through the front answers a number, from s1 or s3
	for _ in 1 2 3 4 5 6; do
		run -0 bash -c "printf 'WHO\nWHERE\nQUIT\n' | nc -N 127.0.0.1 $FRONT_PORT"
		[[ "${lines[0]}" =~ ^[0-9]+$ ]]
		[ "${lines[1]}" != "$(sid 2)" ]
	done
	mv "$BATS_FILE_TMPDIR/r2.broken" "$BATS_FILE_TMPDIR/r2"
	wait_status s2 UP
}

@test "a server the front marks DOWN has its sessions closed by the front: its held client is told at once, instead of waiting on it" {
	PORT=$FRONT_PORT hold 3 --served --ask-into "$BATS_TEST_TMPDIR/asked"
	[ "$(srv_stat s1 scur) $(srv_stat s2 scur) $(srv_stat s3 scur)" = "1 1 1" ]
	break_registry 2
	wait_status s2 DOWN
	# a condition: the front has ended s2's session (on-marked-down
	# shutdown-sessions); without it the session stays, answering ERR
	for _ in $(seq $WAIT_STEPS); do [ "$(srv_stat s2 scur)" = 0 ] && break; sleep 0.05; done
	[ "$(srv_stat s2 scur)" = 0 ]
	kill -USR1 "$HOLD_PID"
	for _ in $(seq $WAIT_STEPS); do [ -e "$BATS_TEST_TMPDIR/asked" ] && break; sleep 0.05; done
	run -0 sort "$BATS_TEST_TMPDIR/asked"
	[ "${#lines[@]}" = 3 ]
	[[ "${lines[0]}" =~ ^[0-9]+$ ]]
	[[ "${lines[1]}" =~ ^[0-9]+$ ]]
	[[ "${lines[2]}" == "lost: "* ]]
}

@test "a server whose port closes is DOWN within 3 s (0.9 s by configuration), and the front retries elsewhere meanwhile" {
	local count="$BATS_TEST_TMPDIR/count"
	python3 "$LOOP" --port "$FRONT_PORT" --stop "$BATS_TEST_TMPDIR/stop" --count "$count" \
		>"$BATS_TEST_TMPDIR/loop.out" 2>&1 3>&- &
	LOOP_PID=$!
	for _ in $(seq $WAIT_STEPS); do [ -s "$count" ] && break; sleep 0.05; done
	pkill -KILL -P "$(cat "$BATS_FILE_TMPDIR/s1.pid")" || true
	run -0 python3 "$TOP/tests/front-down-after.py" "$(cat "$BATS_FILE_TMPDIR/s1.pid")" \
		"$BATS_FILE_TMPDIR/front.sock" whoconn s1
	[[ "$output" =~ ^down_ms=[0-9]+$ ]]
	[ "${output#down_ms=}" -le 3000 ]
	run -0 grep -m1 -o 'Server whoconn/s1 is DOWN, reason: [^,]*, info: "[^"]*"' "$BATS_FILE_TMPDIR/front.log"
	[ "$output" = 'Server whoconn/s1 is DOWN, reason: Layer4 connection problem, info: "Connection refused at initial connection step of tcp-check"' ]
	touch "$BATS_TEST_TMPDIR/stop"
	wait "$LOOP_PID" || true
	LOOP_PID=""
	cat "$BATS_TEST_TMPDIR/loop.out"
	# Only the session in flight on s1 when it died may fail: a connect to its
	# closed port before the checks caught it is retried on another server.
	[[ "$(tail -1 "$BATS_TEST_TMPDIR/loop.out")" =~ ^sessions=[0-9]+\ failed=[01]$ ]]
}

@test "a burst of 36 connections at once through the front is answered in full and takes no server out" {
	local before
	before="$(srv_stat s1 chkdown) $(srv_stat s2 chkdown) $(srv_stat s3 chkdown)"
	run -0 python3 "$LATENCY" --port "$FRONT_PORT" -n 36 --rounds 2
	[[ "$output" =~ ^n=36\ rounds=2\ ok=72\ failed=0\  ]]
	[ "$(srv_stat s1 chkdown) $(srv_stat s2 chkdown) $(srv_stat s3 chkdown)" = "$before" ]
	[ "$(srv_stat s1 status) $(srv_stat s2 status) $(srv_stat s3 status)" = "UP UP UP" ]
}

# try_session PORT - one WHY: prints the reply, or how the connection ended
# without one (eof, reset).
try_session() {
	python3 - "$1" <<-'EOF'
	import socket, sys
	import errno
	try:
	    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
	    s.sendall(b"WHY\n")
	    s.shutdown(socket.SHUT_WR)
	    data = s.recv(64)
	    print(data.decode().strip() if data else "eof")
	except OSError as e:
	    # the reset can arrive before the send, the shutdown or the read
	    if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
	        print("reset")
	    else:
	        print("error: %s" % e)
	EOF
}

@test "the front caps connections per client address, as the socket unit did per source" {
	PORT=$CAP_PORT hold 3 --served
	run -0 try_session "$CAP_PORT"
	[ "$output" = reset ] || [ "$output" = eof ]
	release
	run -0 try_session "$CAP_PORT"
	[ "$output" = 42 ]
}

@test "TLS at the front: WHY answers 42 through a certificate the client verifies" {
	run -0 --separate-stderr s_client_why "$TLS_PORT" whoconn.test ca.pem
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = 42 ]
	[ "${lines[1]}" = BYE ]
}

# s_client_why PORT NAME CA - WHY and QUIT through TLS, verifying NAME against CA.
s_client_why() {
	printf 'WHY\nQUIT\n' | openssl s_client -connect "127.0.0.1:$1" -servername "$2" \
		-verify_hostname "$2" -CAfile "$BATS_FILE_TMPDIR/tls/$3" -verify_return_error -quiet
}

@test "TLS at the front: a certificate the client cannot verify is refused (another CA, another name, expired)" {
	run -1 --separate-stderr s_client_why "$TLS_PORT" whoconn.test otherca.pem
	[ "$output" = "" ]
	[[ "$stderr" == *"verify error:num=20:unable to get local issuer certificate"* ]]
	run -1 --separate-stderr s_client_why "$TLS_PORT" other.test ca.pem
	[ "$output" = "" ]
	[[ "$stderr" == *"verify error:num=62:hostname mismatch"* ]]
	run -1 --separate-stderr s_client_why "$EXPIRED_PORT" whoconn.test ca.pem
	[ "$output" = "" ]
	[[ "$stderr" == *"verify error:num=10:certificate has expired"* ]]
}

@test "check_tcp recipe: WHY and QUIT in one send, 42 expected: OK, exit 0" {
	run -0 $PLUGINS/check_tcp -H 127.0.0.1 -p "$(cat "$BATS_FILE_TMPDIR/s1.port")" \
		-E -s 'WHY\nQUIT\n' -e 42 -M crit
	[[ "${lines[0]}" == "TCP OK - "* ]]
	[ "${lines[1]%%|*}" = "BYE]" ]
}

@test "check_tcp recipe: a wrong answer is CRITICAL, exit 2, at once rather than after its 20 s timeout" {
	local t0 t1
	t0=$(now_ms)
	run -2 $PLUGINS/check_tcp -H 127.0.0.1 -p "$(cat "$BATS_FILE_TMPDIR/s1.port")" \
		-E -s 'WHY\nQUIT\n' -e 43 -M crit -t 20
	t1=$(now_ms)
	[ "${lines[0]}" = "TCP CRITICAL - Unexpected response from host/socket: 42" ]
	echo "took $((t1 - t0)) ms"
	[ $((t1 - t0)) -lt 10000 ]
}

@test "check_tcp registry recipe (negate): OK while WHO answers a number, CRITICAL on ERR and on a closed port" {
	local port
	port=$(cat "$BATS_FILE_TMPDIR/s3.port")
	registry_check() {
		$PLUGINS/negate -s -o CRITICAL -w OK -c CRITICAL \
			$PLUGINS/check_tcp -H 127.0.0.1 -p "$1" -E -s 'WHO\nQUIT\n' -e ERR -M warn
	}
	run -0 registry_check "$port"
	[[ "${lines[0]}" == "TCP OK - Unexpected response from host/socket: "[0-9]* ]]
	break_registry 3
	run -2 registry_check "$port"
	[[ "${lines[0]}" == "TCP CRITICAL - "*"[ERR registry unavailable: No such file or directory" ]]
	run -2 registry_check "$(free_port)"
	[[ "$output" == *"Connection refused"* ]]
}

@test "blackbox exporter recipe: whoconn_why succeeds" {
	run -0 curl -sf "http://127.0.0.1:$BB_PORT/probe?target=127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s1.port")&module=whoconn_why"
	run -0 awk '$1 == "probe_success" { print $2 }' <<<"$output"
	[ "$output" = 1 ]
}

@test "blackbox exporter recipe: a wrong expectation fails the probe at once, not after its 5 s timeout" {
	run -0 curl -sf "http://127.0.0.1:$BB_PORT/probe?target=127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s1.port")&module=whoconn_wrong"
	run -0 awk '$1 == "probe_success" { s = $2 } $1 == "probe_duration_seconds" { d = $2 } END { print s, (d < 2.5 ? "fast" : "slow " d) }' <<<"$output"
	[ "$output" = "0 fast" ]
}

@test "blackbox exporter recipe: whoconn_who fails while the registry is broken and succeeds once it is repaired" {
	local target="127.0.0.1:$(cat "$BATS_FILE_TMPDIR/s3.port")"
	run -0 curl -sf "http://127.0.0.1:$BB_PORT/probe?target=$target&module=whoconn_who"
	run -0 awk '$1 == "probe_success" { print $2 }' <<<"$output"
	[ "$output" = 1 ]
	break_registry 3
	run -0 curl -sf "http://127.0.0.1:$BB_PORT/probe?target=$target&module=whoconn_who"
	run -0 awk '$1 == "probe_success" { print $2 }' <<<"$output"
	[ "$output" = 0 ]
	mv "$BATS_FILE_TMPDIR/r3.broken" "$BATS_FILE_TMPDIR/r3"
	run -0 curl -sf "http://127.0.0.1:$BB_PORT/probe?target=$target&module=whoconn_who"
	run -0 awk '$1 == "probe_success" { print $2 }' <<<"$output"
	[ "$output" = 1 ]
}

@test "three held connections land on three servers (leastconn), and whoconn-drain stops at its deadline with s1's left" {
	PORT=$FRONT_PORT hold 3 --served
	[ "$(srv_stat s1 scur) $(srv_stat s2 scur) $(srv_stat s3 scur)" = "1 1 1" ]
	run -1 "$DRAIN" -s "$BATS_FILE_TMPDIR/front.sock" -t 1 whoconn/s1
	[ "$output" = "whoconn/s1: deadline of 1 s passed, now in maint: 1 connections left" ]
	run -0 srv_stat s1 status
	[ "$output" = MAINT ]
	release
	run -2 "$DRAIN" -s "$BATS_FILE_TMPDIR/front.sock" whoconn/nosuch
	[ "$output" = "whoconn-drain: no server whoconn/nosuch on $BATS_FILE_TMPDIR/front.sock" ]
}

@test "a planned stop (drain, wait, maint, stop, start, ready) fails no session through the front" {
	local count="$BATS_TEST_TMPDIR/count" n
	# progress: until the loop has done N more sessions
	more_sessions() {
		local from
		from=$(cat "$count")
		for _ in $(seq $WAIT_STEPS); do
			[ "$(cat "$count")" -ge $((from + $1)) ] && return 0
			sleep 0.05
		done
		return 1
	}
	python3 "$LOOP" --port "$FRONT_PORT" --stop "$BATS_TEST_TMPDIR/stop" --count "$count" \
		>"$BATS_TEST_TMPDIR/loop.out" 2>&1 3>&- &
	LOOP_PID=$!
	for _ in $(seq $WAIT_STEPS); do [ -s "$count" ] && break; sleep 0.05; done
	more_sessions 3
	run -0 "$DRAIN" -s "$BATS_FILE_TMPDIR/front.sock" -t 60 whoconn/s1
	[ "$output" = "whoconn/s1: drained, now in maint: 0 connections left" ]
	kill_backend 1
	more_sessions 6
	start_backend 1 "$(cat "$BATS_FILE_TMPDIR/s1.port")"
	admin "set server whoconn/s1 state ready"
	wait_status s1 UP
	n=$(srv_stat s1 stot)
	for _ in $(seq $WAIT_STEPS); do [ "$(srv_stat s1 stot)" -gt "$n" ] && break; sleep 0.05; done
	more_sessions 3
	touch "$BATS_TEST_TMPDIR/stop"
	local st=0
	wait "$LOOP_PID" || st=$?
	LOOP_PID=""
	cat "$BATS_TEST_TMPDIR/loop.out"
	[ "$st" -eq 0 ]
	run -0 tail -1 "$BATS_TEST_TMPDIR/loop.out"
	[[ "$output" =~ ^sessions=[0-9]+\ failed=0$ ]]
	# s1 served sessions again after it came back
	[ "$(srv_stat s1 stot)" -gt "$n" ]
}
