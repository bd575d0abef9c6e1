#!/usr/bin/env bats
# The PROXY protocol v2 (issue 17, item 3; docs/front-door.md): whoconn
# --proxy-protocol v2 over a real socket (systemd-socket-activate, as
# whoconn-proxy.socket serves), fed headers crafted from the specification
# (tests/proxyhdr.py: one malformed input per test) and the ones Debian's
# HAProxy sends with send-proxy-v2, through the shipped whoconn.cfg.  A
# proxied server and a plain one share one registry for the whole file, as
# whoconn-proxy.socket and whoconn.socket do.

load helpers

HDR="$TOP/tests/proxyhdr.py"
CFG="$TOP/contrib/haproxy/whoconn.cfg"

# serve NAME [-E VAR=VALUE...] - whoconn on a free port for the whole file,
# registry shared; its port in $BATS_FILE_TMPDIR/NAME.port, its log in
# NAME.log.
serve() {
	local name=$1 port
	shift
	port=$(free_port)
	(
		systemd-socket-activate -l "127.0.0.1:$port" --inetd -a \
			-E WHOCONN_DB="$BATS_FILE_TMPDIR/registry.db" "$@" "$WHOCONN" \
			2>>"$BATS_FILE_TMPDIR/$name.log" 3>&- &
		echo $! >"$BATS_FILE_TMPDIR/$name.pid"
	)
	echo "$port" >"$BATS_FILE_TMPDIR/$name.port"
	wait_until "$name listening on $port" nc -z 127.0.0.1 "$port"
}

unserve() {
	local f="$BATS_FILE_TMPDIR/$1.pid" pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	pkill -KILL -P "$pid" 2>/dev/null || true
	kill "$pid" 2>/dev/null || true
	rm -f "$f"
}

setup_file() {
	serve proxied -E WHOCONN_PROXY_PROTOCOL=v2
	serve direct
	# the header's deadline is the idle timeout when that is shorter
	serve quick -E WHOCONN_PROXY_PROTOCOL=v2 -E WHOCONN_IDLE_TIMEOUT=1
}

teardown_file() {
	stop_haproxy
	unserve proxied
	unserve direct
	unserve quick
}

# Each test reads only what the servers logged since it began: a port of an
# earlier test's connection may come round again.
setup() {
	local f
	for f in "$BATS_FILE_TMPDIR"/*.log; do
		wc -c <"$f" >"$BATS_TEST_TMPDIR/$(basename "$f").start"
	done
}

# since LOG - what LOG got since the test began.
since() {
	local start=0
	[ -f "$BATS_TEST_TMPDIR/$(basename "$1").start" ] && start=$(cat "$BATS_TEST_TMPDIR/$(basename "$1").start")
	tail -c +$((start + 1)) "$1"
}

port_of() {
	cat "$BATS_FILE_TMPDIR/$1.port"
}

# send [proxied|direct|quick] KIND [--then TEXT] [...] - one connection with a crafted
# header (proxyhdr.py send); its output in $output, the connection's own
# port (what whoconn sees as its peer) in $FROM.
send() {
	local server=proxied
	case "$1" in proxied | direct | quick) server=$1; shift ;; esac
	run -0 python3 "$HDR" send "$(port_of $server)" "$@"
	FROM=${lines[0]#-- from 127.0.0.1:}
	LOGFILE="$BATS_FILE_TMPDIR/$server.log"
}

# logged PATTERN - waits for the server's entry for connection $FROM (the
# line naming 127.0.0.1:$FROM as peer or proxy), then checks it against the
# extended regex PATTERN, whole line.  The entry is written once the
# session is over, after the client saw the close.
logged() {
	local re="(peer|proxy)=127\\.0\\.0\\.1:$FROM "
	wait_until "the log entry of 127.0.0.1:$FROM" eval 'since "$LOGFILE" | grep -qE "$re"'
	ENTRY=$(since "$LOGFILE" | grep -E "$re" | sed -E 's/^whoconn\[[0-9]+\]: //')
	echo "entry: $ENTRY"
	[[ "$ENTRY" =~ ^$1$ ]]
}

# refused - $output is one "ERR invalid PROXY v2 header" and a close, and
# the log says why, quoting REASON.
refused() {
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[1]}" = "ERR invalid PROXY v2 header" ]
	[ "${lines[2]}" = "-- eof" ]
	logged "peer=127\\.0\\.0\\.1:$FROM duration_ms=[0-9]+ commands=0 errors=1 end=proxy-header"
	since "$LOGFILE" | grep -qF "closing: invalid PROXY v2 header ($1)"
}

# ---- headers that are accepted -------------------------------------------

@test "an IPv4 client's header with requests in the same segment: the requests are answered, the log names the client and the balancer" {
	send v4 --then 'WHY\nQUIT\n'
	[ "${lines[1]}" = "42" ]
	[ "${lines[2]}" = "BYE" ]
	[ "${lines[3]}" = "-- eof" ]
	logged "peer=203\\.0\\.113\\.7:51234 proxy=127\\.0\\.0\\.1:$FROM header=client duration_ms=[0-9]+ commands=2 errors=0 end=quit"
}

@test "an IPv6 client's header: the log names it in brackets" {
	send v6 --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=\\[2001:db8::7\\]:51236 proxy=127\\.0\\.0\\.1:$FROM header=client duration_ms=[0-9]+ commands=1 errors=0 end=client-closed"
}

@test "an IPv4 client in IPv6 form (::ffff:a.b.c.d) is logged as a.b.c.d, as systemd names a direct one" {
	send v4-mapped --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=203\\.0\\.113\\.9:51239 proxy=127\\.0\\.0\\.1:$FROM header=client .*"
}

@test "a LOCAL header (a balancer's health check) is accepted and logged as the balancer itself" {
	send local --then 'WHO\nQUIT\n'
	[[ "${lines[1]}" =~ ^[0-9]+$ ]]
	[ "${lines[2]}" = "BYE" ]
	logged "peer=127\\.0\\.0\\.1:$FROM proxy=127\\.0\\.0\\.1:$FROM header=local duration_ms=[0-9]+ commands=2 errors=0 end=quit"
}

@test "a LOCAL header's addresses, if any, are ignored" {
	send local-with-addresses --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=127\\.0\\.0\\.1:$FROM proxy=127\\.0\\.0\\.1:$FROM header=local .*"
}

@test "a PROXY header of family UNSPEC (the balancer does not know the client) is accepted and logged as the balancer" {
	send unspec --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=127\\.0\\.0\\.1:$FROM proxy=127\\.0\\.0\\.1:$FROM header=unspec .*"
}

@test "TLVs after the addresses (ALPN, authority, padding) are skipped" {
	send v4-tlvs --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=203\\.0\\.113\\.7:51234 proxy=127\\.0\\.0\\.1:$FROM header=client .*"
}

@test "the longest header accepted (1024 bytes after the fixed part) is read whole, with the request after it" {
	send longest --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	logged "peer=203\\.0\\.113\\.7:51234 .* commands=1 errors=0 end=client-closed"
}

@test "a header that arrives one byte at a time is read whole" {
	send v4 --then 'WHY\n' --trickle
	[ "${lines[1]}" = "42" ]
	logged "peer=203\\.0\\.113\\.7:51234 proxy=127\\.0\\.0\\.1:$FROM .* commands=1 errors=0 end=client-closed"
}

@test "after the header, a protocol violation is logged with the real client's address" {
	send v4 --then 'WHY\n\x01\n'
	[ "${lines[1]}" = "42" ]
	[ "${lines[2]}" = "ERR invalid byte" ]
	logged "peer=203\\.0\\.113\\.7:51234 proxy=127\\.0\\.0\\.1:$FROM header=client .* end=invalid-byte"
	since "$LOGFILE" | grep -qxE 'whoconn\[[0-9]+\]: peer=203\.0\.113\.7:51234 closing: invalid-byte after "\\x01"'
}

@test "WHO counts proxied connections exactly, together with direct ones on the plain socket" {
	# two proxied connections held open, then a direct one asks
	run -0 python3 "$HDR" count "$(port_of proxied)" "$(port_of direct)"
	[ "${lines[0]}" = "1" ]
	[ "${lines[1]}" = "2" ]
	[ "${lines[2]}" = "3" ]
}

# ---- headers that are refused: one ERR, then the close ---------------------

@test "a header cut short by the peer's close is refused" {
	send truncated
	refused "cut short by the end of input"
}

@test "a header that stops coming is refused when its time is up (here the 1 s idle timeout)" {
	send quick truncated --hold
	refused "incomplete when its time was up"
}

@test "a header longer than 1024 bytes after the fixed part is refused on its length field, before the rest arrives" {
	send oversized
	refused "longer than PROXY_V2_LEN_MAX (1024 bytes after the fixed part)"
}

@test "a wrong signature is refused" {
	send bad-signature --then 'WHY\n'
	refused "no PROXY v2 signature"
}

@test "a PROXY v1 text header is refused, and the log says it is v1" {
	send v1 --then 'WHY\n'
	refused "a PROXY v1 (text) header: only v2 is accepted"
}

@test "an unknown address family is refused" {
	send unknown-family --then 'WHY\n'
	refused "unknown address family"
}

@test "a header naming AF_UNIX addresses is refused" {
	send unix --then 'WHY\n'
	refused "AF_UNIX addresses are not supported"
}

@test "a header naming a datagram transport is refused" {
	send datagram --then 'WHY\n'
	refused "not TCP (datagram or unspecified transport)"
}

@test "a version other than 2 is refused" {
	send version-1 --then 'WHY\n'
	refused "not version 2"
}

@test "a command other than LOCAL or PROXY is refused" {
	send unknown-command --then 'WHY\n'
	refused "unknown command"
}

@test "a length too short for the family's addresses is refused" {
	send short-addresses --then 'WHY\n'
	refused "too short for its addresses"
}

@test "a TLV that runs past the header's end is refused" {
	send bad-tlv --then 'WHY\n'
	refused "a TLV longer than the header"
}

@test "a plain client on the proxied socket gets the ERR at once, on its first byte, not after a timeout" {
	send plain --then 'WHY\n' --hold
	refused "no PROXY v2 signature"
}

@test "a connection closed before any byte is an ordinary close, with nothing to answer" {
	send plain
	[ "${lines[1]}" = "-- eof" ]
	logged "peer=127\\.0\\.0\\.1:$FROM duration_ms=[0-9]+ commands=0 errors=0 end=client-closed"
}

@test "the plain socket does not read a PROXY header: its bytes are invalid input there, as any binary" {
	send direct v4 --then 'WHY\n'
	[ "${lines[1]}" = "ERR invalid byte" ]
	logged "peer=127\\.0\\.0\\.1:$FROM duration_ms=[0-9]+ commands=0 errors=1 end=invalid-byte"
}

@test "--proxy-protocol and WHOCONN_PROXY_PROTOCOL take off or v2, and nothing else" {
	run -64 --separate-stderr "$WHOCONN" --proxy-protocol v1
	[ "$stderr" = 'whoconn: --proxy-protocol: "v1" is neither off nor v2' ]
	run -64 --separate-stderr env WHOCONN_PROXY_PROTOCOL=yes "$WHOCONN"
	[ "$stderr" = 'whoconn: WHOCONN_PROXY_PROTOCOL: "yes" is neither off nor v2' ]
	# the option wins over the environment, as every setting does
	run -0 --separate-stderr sh -c 'printf "WHY\n" | "$1" --db "$2" --proxy-protocol off' \
		sh "$WHOCONN" "$BATS_TEST_TMPDIR/registry.db"
	[ "$output" = "42" ]
}

# ---- Debian's HAProxy, send-proxy-v2 ------------------------------------

# HAProxy with the shipped whoconn.cfg and WHOCONN_SEND_PROXY set, its three
# servers all the proxied whoconn; started by the first test that needs it.
start_haproxy() {
	# check-asan feeds peer bytes to the sanitized build; HAProxy's are the
	# crafted "v4" and "local" headers above, byte for byte (checked by the
	# plain pass), and its checks would start six sanitized processes a
	# second for the rest of the file
	[ -z "${WHOCONN_SANITIZED:-}" ] || skip "HAProxy's headers are the crafted v4 and local ones, run sanitized above"
	command -v haproxy >/dev/null || skip "needs haproxy (make check installs it: mk/front.mk)"
	command -v socat >/dev/null || skip "needs socat (make check installs it: mk/front.mk)"
	[ -f "$BATS_FILE_TMPDIR/haproxy.pid" ] && return 0
	local s="127.0.0.1:$(port_of proxied)"
	FRONT_PORT=$(free_port)
	echo "$FRONT_PORT" >"$BATS_FILE_TMPDIR/front.port"
	env WHOCONN_SEND_PROXY=1 WHOCONN_HAPROXY_LOG=stderr \
		WHOCONN_HAPROXY_ADMIN="$BATS_FILE_TMPDIR/admin.sock" WHOCONN_FRONT="127.0.0.1:$FRONT_PORT" \
		WHOCONN_S1="$s" WHOCONN_S2="$s" WHOCONN_S3="$s" \
		haproxy -f "$CFG" -db >"$BATS_FILE_TMPDIR/haproxy.log" 2>&1 3>&- &
	echo $! >"$BATS_FILE_TMPDIR/haproxy.pid"
	for srv in s1 s2 s3; do
		wait_until "whoconn/$srv UP" up "$srv" || { cat "$BATS_FILE_TMPDIR/haproxy.log" >&2; return 1; }
	done
}

up() {
	echo "show stat" | socat -t 10 - "UNIX-CONNECT:$BATS_FILE_TMPDIR/admin.sock" |
		awk -F, -v s="$1" '$1 == "whoconn" && $2 == s { print $18 }' | grep -qx UP
}

stop_haproxy() {
	local f="$BATS_FILE_TMPDIR/haproxy.pid"
	[ -f "$f" ] || return 0
	kill "$(cat "$f")" 2>/dev/null || true
	wait_until "haproxy stopped" dead "$(cat "$f")" || true
	rm -f "$f"
}

@test "through HAProxy's send-proxy-v2, whoconn logs the real client's address and port, and HAProxy's as proxy=" {
	start_haproxy
	# a plain client of the front: no header of its own
	run -0 python3 "$HDR" send "$(cat "$BATS_FILE_TMPDIR/front.port")" plain --then 'WHY\nQUIT\n'
	client=${lines[0]#-- from 127.0.0.1:}
	[ "${lines[1]}" = "42" ]
	[ "${lines[2]}" = "BYE" ]
	[ "${lines[3]}" = "-- eof" ]
	LOGFILE="$BATS_FILE_TMPDIR/proxied.log"
	wait_until "the entry of client port $client" eval 'since "$LOGFILE" | grep -F " header=client " | grep -qF "peer=127.0.0.1:$client "'
	run -0 eval 'since "$LOGFILE" | grep -F " header=client " | grep -F "peer=127.0.0.1:$client "'
	echo "$output"
	[ "${#lines[@]}" -eq 1 ]
	[[ "${lines[0]}" =~ ^whoconn\[[0-9]+\]:\ peer=127\.0\.0\.1:$client\ proxy=127\.0\.0\.1:[0-9]+\ header=client\ duration_ms=[0-9]+\ commands=2\ errors=0\ end=quit$ ]]
}

@test "HAProxy's health checks over send-proxy-v2 are LOCAL headers: accepted, both requests answered, logged as the balancer" {
	start_haproxy
	LOGFILE="$BATS_FILE_TMPDIR/proxied.log"
	# checks run every 500 ms per server; three that ended as HAProxy means
	# them to, with QUIT (on a loaded machine a check may time out before
	# its process has answered: HAProxy then resets it, end=reset)
	wait_until "three checks ended by QUIT" eval '[ "$(since "$LOGFILE" | grep " header=local " | grep -c " end=quit$")" -ge 3 ]'
	run -0 eval 'since "$LOGFILE" | grep " header=local "'
	for l in "${lines[@]}"; do
		[[ "$l" =~ \ header=local\ duration_ms=[0-9]+\ commands=2\ errors=0\ end=(quit|reset)$ ]]
		if [[ "$l" =~ ^whoconn\[[0-9]+\]:\ peer=127\.0\.0\.1:([0-9]+)\ proxy=127\.0\.0\.1:([0-9]+)\  ]]; then
			[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
		else # reset before its process could ask the kernel who it was
			[[ "$l" =~ ^whoconn\[[0-9]+\]:\ peer=stdin\ proxy=stdin\ .*\ end=reset$ ]]
		fi
	done
	# and not one refused: every header HAProxy sent was accepted
	run -1 eval 'since "$LOGFILE" | grep -F "invalid PROXY v2 header"'
	for srv in s1 s2 s3; do up $srv; done
}
