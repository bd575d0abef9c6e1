#!/usr/bin/env bats
# whoconn-metrics, the Prometheus endpoint: its HTTP handling over a real
# socket (systemd-socket-activate, one process per connection as under
# whoconn-metrics.socket), the counters after real whoconn sessions, the
# exposition format as promtool sees it, and a real Prometheus scrape.

load helpers

METRICS="${WHOCONN_METRICS_BIN:-$TOP/whoconn-metrics}"

setup() {
	[ -x "$METRICS" ] || skip "whoconn-metrics is not built (make whoconn-metrics)"
	DB="$BATS_TEST_TMPDIR/registry.db"
}

teardown() {
	stop_server
	if [ -n "${PROM_PID:-}" ]; then kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; fi
	if [ -n "${METRICS_PID:-}" ]; then
		pkill -KILL -P "$METRICS_PID" 2>/dev/null || true
		kill "$METRICS_PID" 2>/dev/null || true
		wait "$METRICS_PID" 2>/dev/null || true
	fi
}

# start_metrics [-E NAME=VALUE...] - serves whoconn-metrics for registry $DB
# on a free loopback port (MPORT, METRICS_PID).
start_metrics() {
	MPORT=$(free_port)
	systemd-socket-activate -l "127.0.0.1:$MPORT" --inetd -a \
		-E WHOCONN_DB="$DB" "$@" "$METRICS" 2>>"$BATS_TEST_TMPDIR/metrics.log" &
	METRICS_PID=$!
	for _ in $(seq 100); do
		nc -z 127.0.0.1 "$MPORT" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "whoconn-metrics did not start listening on $MPORT" >&2
	return 1
}

# http REQUEST [wcclient send options] - sends the bytes (escapes allowed)
# to the metrics port; prints the answer with CRs removed, then end=.
http() {
	python3 "$CLIENT" --port "$MPORT" send "$@" >"$BATS_TEST_TMPDIR/http.out" 2>&1 || return
	tr -d '\r' <"$BATS_TEST_TMPDIR/http.out"
}

# scrape - the body of GET /metrics, straight from the program over a pipe.
scrape() {
	printf 'GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n' |
		env WHOCONN_DB="$DB" "$METRICS" 2>>"$BATS_TEST_TMPDIR/metrics.log" | sed -e '1,/^\r$/d'
}

# metric LINE-PREFIX - the value of the sample whose name{labels} is given.
metric() {
	scrape | awk -v k="$1" '$1 == k { print $2; found = 1 } END { exit !found }'
}

# sessions_done - until every whoconn connection process has exited, i.e.
# added its session to the counters.
sessions_done() { wait_for_children 0; }

# with_updated_ms - adds the optional peer.updated_ms column to the registry
# $DB (created by a WHO session first), as the cluster agent does.
# with_updated_ms - a registry whose peer table has updated_ms (the schema
# has it; whoconn-sync adds it to older files).
with_updated_ms() {
	printf 'WHO\n' | WHOCONN_DB="$DB" "$WHOCONN" >/dev/null 2>&1
}

boottime_ms() { python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000))'; }

# expect_error CODE REASON - $output is exactly that error answer.
expect_error() {
	local body="$1 $2"
	[ "${lines[0]}" = "HTTP/1.1 $1 $2" ]
	[ "${lines[1]}" = "Content-Type: text/plain; charset=utf-8" ]
	[ "${lines[2]}" = "Content-Length: $((${#body} + 1))" ]
	[ "${lines[3]}" = "Cache-Control: no-store" ]
	[ "${lines[4]}" = "Connection: close" ]
	[ "${lines[5]}" = "" ]
	[ "${lines[6]}" = "$body" ]
	[ "${lines[7]}" = "end=eof" ]
	[ "${#lines[@]}" -eq 9 ] # --keep-empty-lines counts the last LF as an empty line
}

# ---- HTTP ---------------------------------------------------------------

@test "GET /metrics answers 200 in the Prometheus text format, with its length, and closes" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
	[ "${lines[1]}" = "Content-Type: text/plain; version=0.0.4; charset=utf-8" ]
	[[ "${lines[2]}" =~ ^Content-Length:\ ([0-9]+)$ ]]
	[ "${lines[3]}" = "Cache-Control: no-store" ]
	[ "${lines[4]}" = "Connection: close" ]
	[ "${lines[5]}" = "" ]
	[ "${lines[6]}" = "# HELP whoconn_build_info Version of whoconn-metrics, always 1." ]
	[ "${lines[-2]}" = "end=eof" ]
	body=$(sed -e '1,/^\r$/d' "$BATS_TEST_TMPDIR/http.out" | sed -e '/^end=eof$/d')
	[ "$(printf '%s\n' "$body" | wc -c)" -eq "${BASH_REMATCH[1]}" ]
}

@test "HEAD /metrics answers the same header and no body" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	get_length="${lines[2]}"
	run -0 --keep-empty-lines http 'HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
	[ "${lines[1]}" = "Content-Type: text/plain; version=0.0.4; charset=utf-8" ]
	[ "${lines[2]}" = "$get_length" ]
	[ "${lines[4]}" = "Connection: close" ]
	[ "${lines[5]}" = "" ]
	[ "${lines[6]}" = "end=eof" ]
	[ "${#lines[@]}" -eq 8 ]
}

@test "an HTTP/1.0 request without Host is answered" {
	start_metrics
	run -0 http 'GET /metrics HTTP/1.0\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "a request with bare LF line ends is answered" {
	start_metrics
	run -0 http 'GET /metrics HTTP/1.1\nHost: h\n\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "an empty line before the request line is ignored" {
	start_metrics
	run -0 http '\r\nGET /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "a query string after /metrics is ignored" {
	start_metrics
	run -0 http 'GET /metrics?name[]=whoconn_connections HTTP/1.1\r\nHost: h\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "an absolute-form target without a path gets 404 Not Found" {
	start_metrics
	run -0 --keep-empty-lines http 'GET http://127.0.0.1:9242 HTTP/1.1\r\nHost: 127.0.0.1:9242\r\n\r\n'
	expect_error 404 "Not Found"
}

@test "an absolute-form target for /metrics is answered" {
	start_metrics
	run -0 http 'GET http://127.0.0.1:9242/metrics HTTP/1.1\r\nHost: 127.0.0.1:9242\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "the answer arrives although the client keeps its side open" {
	start_metrics
	run -0 http 'GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n' --keep-open
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
	[ "${lines[-1]}" = "end=eof" ]
}

@test "another path gets 404 Not Found" {
	start_metrics
	run -0 --keep-empty-lines http 'GET / HTTP/1.1\r\nHost: h\r\n\r\n'
	expect_error 404 "Not Found"
	run -0 --keep-empty-lines http 'GET /metricsx HTTP/1.1\r\nHost: h\r\n\r\n'
	expect_error 404 "Not Found"
}

@test "HEAD of another path gets 404 with no body" {
	start_metrics
	run -0 --keep-empty-lines http 'HEAD /nothing HTTP/1.1\r\nHost: h\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 404 Not Found" ]
	[ "${lines[2]}" = "Content-Length: 14" ]
	[ "${lines[5]}" = "" ]
	[ "${lines[6]}" = "end=eof" ]
	[ "${#lines[@]}" -eq 8 ]
}

@test "POST /metrics gets 405 Method Not Allowed naming GET and HEAD in Allow" {
	start_metrics
	run -0 --keep-empty-lines http 'POST /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 405 Method Not Allowed" ]
	[ "${lines[1]}" = "Content-Type: text/plain; charset=utf-8" ]
	[ "${lines[2]}" = "Content-Length: 23" ]
	[ "${lines[3]}" = "Allow: GET, HEAD" ]
	[ "${lines[4]}" = "Cache-Control: no-store" ]
	[ "${lines[5]}" = "Connection: close" ]
	[ "${lines[6]}" = "" ]
	[ "${lines[7]}" = "405 Method Not Allowed" ]
	[ "${lines[8]}" = "end=eof" ]
}

@test "a lowercase method is another method and gets 405" {
	start_metrics
	run -0 http 'get /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	[ "${lines[0]}" = "HTTP/1.1 405 Method Not Allowed" ]
}

@test "a request line without a version gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a request line with a double space gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET  /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a malformed version gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.10\r\nHost: h\r\n\r\n'
	expect_error 400 "Bad Request"
	run -0 --keep-empty-lines http 'GET /metrics http/1.1\r\nHost: h\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a method that is not a token gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'G(T /metrics HTTP/1.1\r\nHost: h\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "an HTTP/1.1 request without Host gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a request with two Host fields gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a header line without a colon gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "whitespace before a field's colon gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost : h\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a folded header line gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a NUL byte in the request gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\x00\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a byte above 0x7e in the request gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /m\xe9trics HTTP/1.1\r\nHost: h\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "an invalid Content-Length gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n'
	expect_error 400 "Bad Request"
}

@test "a connection closed inside the request head gets 400 Bad Request" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\n'
	expect_error 400 "Bad Request"
}

@test "a connection closed without a byte gets no answer" {
	start_metrics
	run -0 --keep-empty-lines http ''
	[ "${lines[0]}" = "end=eof" ]
	[ "${#lines[@]}" -eq 2 ]
}

@test "a request head not complete within the request timeout gets 408 Request Timeout" {
	start_metrics -E WHOCONN_METRICS_TIMEOUT=1
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\n' --keep-open
	expect_error 408 "Request Timeout"
}

@test "a request trickled byte by byte is cut at the deadline, not kept alive by each byte" {
	start_metrics -E WHOCONN_METRICS_TIMEOUT=1
	run -0 python3 "$CLIENT" --port "$MPORT" trickle --interval 0.2 --max-seconds 10
	[[ "$output" =~ ^closed\ after\ 1\.[0-9]s$ ]]
}

@test "a request head longer than 8 KiB gets 431 Request Header Fields Too Large" {
	start_metrics
	long=$(printf 'a%.0s' $(seq 8200))
	run -0 --keep-empty-lines http "GET /metrics HTTP/1.1\\r\\nHost: h\\r\\nX-Long: $long\\r\\n\\r\\n"
	expect_error 431 "Request Header Fields Too Large"
}

@test "a request head of exactly 8 KiB is answered" {
	start_metrics
	start='GET /metrics HTTP/1.1\r\nHost: h\r\nX-Fill: '
	fill=$(printf 'a%.0s' $(seq $((8192 - 40 - 4))))
	req="$start$fill\\r\\n\\r\\n"
	[ "$(printf "$req" | wc -c)" -eq 8192 ]
	run -0 http "$req"
	[ "${lines[0]}" = "HTTP/1.1 200 OK" ]
}

@test "more than 64 header fields get 431 Request Header Fields Too Large" {
	start_metrics
	fields=$(for i in $(seq 65); do printf 'X-F%d: v\\r\\n' "$i"; done)
	run -0 --keep-empty-lines http "GET /metrics HTTP/1.1\\r\\nHost: h\\r\\n$fields\\r\\n"
	expect_error 431 "Request Header Fields Too Large"
}

@test "a GET with a body gets 413 Content Too Large" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello'
	expect_error 413 "Content Too Large"
}

@test "a GET with Transfer-Encoding gets 413 Content Too Large" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
	expect_error 413 "Content Too Large"
}

@test "HTTP/2.0 gets 505 HTTP Version Not Supported" {
	start_metrics
	run -0 --keep-empty-lines http 'GET /metrics HTTP/2.0\r\nHost: h\r\n\r\n'
	expect_error 505 "HTTP Version Not Supported"
}

@test "an HTTP error is logged once with its cause, and nothing but HTTP reaches the client" {
	start_metrics
	run -0 http 'GET /nope HTTP/1.1\r\nHost: h\r\n\r\n'
	# logged after the answer: wait for the line, then count
	wait_until "the 404 logged" grep -q 'answered 404' "$BATS_TEST_TMPDIR/metrics.log"
	run -0 grep -c 'answered 404: no such path' "$BATS_TEST_TMPDIR/metrics.log"
	[ "$output" = 1 ]
}

# ---- options --------------------------------------------------------------

@test "a request timeout out of range is refused with exit status 64" {
	run -64 env WHOCONN_DB="$DB" "$METRICS" --request-timeout 0
	[ "$output" = 'whoconn-metrics: --request-timeout: "0" is not a number of seconds from 1 to 60' ]
	run -64 env WHOCONN_METRICS_TIMEOUT=61 WHOCONN_DB="$DB" "$METRICS"
	[ "$output" = 'whoconn-metrics: WHOCONN_METRICS_TIMEOUT: "61" is not a number of seconds from 1 to 60' ]
}

@test "--version names the program and its version" {
	run -0 "$METRICS" --version
	[[ "$output" =~ ^whoconn-metrics\ [0-9]+\.[0-9]+\.[0-9]+\ \(SQLite\ 3\. ]]
}

@test "the default registry is registry.db in \$RUNTIME_DIRECTORY, as for whoconn" {
	printf 'WHY\n' | RUNTIME_DIRECTORY="$BATS_TEST_TMPDIR" "$WHOCONN" >/dev/null 2>&1
	run -0 bash -c "printf 'GET /metrics HTTP/1.0\r\n\r\n' | RUNTIME_DIRECTORY=$BATS_TEST_TMPDIR $METRICS"
	[[ "$output" == *"whoconn_connections_accepted_total 1"* ]]
}

# ---- the metrics ------------------------------------------------------------

@test "promtool check metrics accepts the output, peers included" {
	command -v promtool >/dev/null || skip "promtool missing (Debian package prometheus; make check installs it)"
	start_server
	run -0 client send 'WHY\nWHO\nbogus\n'
	sessions_done
	with_updated_ms
	now=$(boottime_ms)
	sqlite3 "$DB" "INSERT INTO peer VALUES('6b2f0ed4-5a91-4c37-a81d-93c47e05b26f', 7, $((now + 10000)), $now),
		('0f0f0f0f-5a91-4c37-a81d-93c47e05b26f', 2, $((now - 1000)), $((now - 20000)))"
	scrape >"$BATS_TEST_TMPDIR/metrics.txt"
	run -0 promtool check metrics <"$BATS_TEST_TMPDIR/metrics.txt"
	[ "$output" = "" ]
}

@test "a fresh registry shows zero connections and zero counters, and is up" {
	run -0 metric whoconn_registry_up
	[ "$output" = 1 ]
	run -0 metric whoconn_connections
	[ "$output" = 0 ]
	run -0 metric whoconn_connections_accepted_total
	[ "$output" = 0 ]
	run -0 metric 'whoconn_connection_duration_seconds_count'
	[ "$output" = 0 ]
	run -0 metric 'whoconn_build_info{version="0.1.0",sqlite_version="'"$(sqlite3 --version | cut -d' ' -f1)"'"}'
	[ "$output" = 1 ]
}

# baseline - after start_server: its readiness probe (nc -z) was a session
# too; sets BASE_ACCEPTED, BASE_CLOSED (client-closed) and BASE_COUNT.
baseline() {
	sessions_done
	BASE_ACCEPTED=$(metric whoconn_connections_accepted_total)
	BASE_CLOSED=$(metric 'whoconn_disconnects_total{reason="client-closed"}')
	BASE_COUNT=$(metric whoconn_connection_duration_seconds_count)
}

@test "sessions move the accepted, command, error and disconnect counters" {
	start_server
	baseline
	run -0 client send 'WHY\nWHO\nFOO\nWHO x\n\n'
	run -0 client send 'where\nQUIT\n'
	run -0 client send "$(printf 'x%.0s' $(seq 1100))\\n"
	run -0 client send 'WHY\n\x01'
	sessions_done
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_connections_accepted_total $((BASE_ACCEPTED + 4))" "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="WHY"} 2' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="WHO"} 2' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="WHERE"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="QUIT"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="HELP"} 0' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="unknown"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="unknown-command"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="arguments"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="line-too-long"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="invalid-byte"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="registry"} 0' "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_disconnects_total{reason=\"client-closed\"} $((BASE_CLOSED + 1))" "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="quit"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="line-too-long"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="invalid-byte"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="idle-timeout"} 0' "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_connection_duration_seconds_count $((BASE_COUNT + 4))" "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_connection_duration_seconds_bucket{le=\"+Inf\"} $((BASE_COUNT + 4))" "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_registry_errors_total 0' "$BATS_TEST_TMPDIR/m"
}

@test "a refused PROXY header counts as proxy-header, among the errors and the disconnects" {
	start_server -E WHOCONN_PROXY_PROTOCOL=v2
	baseline
	run -0 python3 "$TOP/tests/proxyhdr.py" send "$PORT" v1 --then 'WHY\n'
	[ "${lines[1]}" = "ERR invalid PROXY v2 header" ]
	run -0 python3 "$TOP/tests/proxyhdr.py" send "$PORT" v4 --then 'WHY\n'
	[ "${lines[1]}" = "42" ]
	sessions_done
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="proxy-header"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="proxy-header"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_commands_total{command="WHY"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_disconnects_total{reason=\"client-closed\"} $((BASE_CLOSED + 1))" "$BATS_TEST_TMPDIR/m"
}

@test "a counters file of the first layout (an older whoconn's, before proxy-header) is read, then grown in place by a newer session" {
	# 38 words: magic, accepted, 6 commands, 6 errors, 9 ends, registry
	# errors, 13 buckets, the sum; accepted 7, ends[quit] 5
	python3 - "$DB-metrics" <<-'PY'
	import struct, sys
	w = [0] * 38
	w[0], w[1], w[14 + 2] = 0x32544d434f4857, 7, 5
	open(sys.argv[1], "wb").write(struct.pack("<38Q", *w))
	PY
	run -0 metric whoconn_connections_accepted_total
	[ "$output" = 7 ]
	run -0 metric 'whoconn_disconnects_total{reason="quit"}'
	[ "$output" = 5 ]
	run -0 metric 'whoconn_disconnects_total{reason="proxy-header"}'
	[ "$output" = 0 ]
	printf 'WHY\n' | WHOCONN_PROXY_PROTOCOL=v2 WHOCONN_DB="$DB" "$WHOCONN" 2>/dev/null || true
	[ "$(stat -c %s "$DB-metrics")" -gt 304 ]
	run -0 metric whoconn_connections_accepted_total
	[ "$output" = 8 ]
	run -0 metric 'whoconn_disconnects_total{reason="quit"}'
	[ "$output" = 5 ]
	run -0 metric 'whoconn_disconnects_total{reason="proxy-header"}'
	[ "$output" = 1 ]
}

@test "an idle timeout counts as a disconnect for idle-timeout in the 5 s duration bucket" {
	start_server -E WHOCONN_IDLE_TIMEOUT=2
	baseline
	run -0 client idle --max-seconds 20
	sessions_done
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_disconnects_total{reason="idle-timeout"} 1' "$BATS_TEST_TMPDIR/m"
	# the probe's session took under a second, the idle one 2 s
	grep -x "whoconn_connection_duration_seconds_bucket{le=\"1\"} $BASE_COUNT" "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_connection_duration_seconds_bucket{le=\"5\"} $((BASE_COUNT + 1))" "$BATS_TEST_TMPDIR/m"
	grep -x "whoconn_connection_duration_seconds_bucket{le=\"3600\"} $((BASE_COUNT + 1))" "$BATS_TEST_TMPDIR/m"
	sum=$(awk '$1 == "whoconn_connection_duration_seconds_sum" { print $2 }' "$BATS_TEST_TMPDIR/m")
	awk -v s="$sum" 'BEGIN { exit !(s >= 1.9 && s < 5) }'
}

@test "the duration buckets are cumulative and end in +Inf equal to the count" {
	start_server
	baseline
	for _ in 1 2 3; do client send 'WHY\n' >/dev/null 2>&1; done
	sessions_done
	scrape | awk -v want=$((BASE_COUNT + 3)) '
		/^whoconn_connection_duration_seconds_bucket/ { if ($2 < prev) bad = 1; prev = $2; last = $1; inf = $2 }
		/^whoconn_connection_duration_seconds_count / { count = $2 }
		END { exit !(!bad && last ~ /le="\+Inf"/ && inf == count && count == want) }'
}

@test "whoconn_connections counts held connections and drops a killed one at once" {
	start_server
	hold 3
	run -0 client wait-who 4
	wait_for_children 3 # the asker's process may still be exiting
	run -0 metric whoconn_connections
	[ "$output" = 3 ]
	pid=$(connection_pids | head -1)
	kill -KILL "$pid"
	# "at once": as soon as the process is dead (gone or a zombie)
	wait_until "process $pid dead" dead "$pid"
	run -0 metric whoconn_connections
	[ "$output" = 2 ]
	# the killed process's row is still there until a WHO sweeps it
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = 3 ]
	release
	wait_for_children 0
	run -0 metric whoconn_connections
	[ "$output" = 0 ]
}

@test "a registry that is not SQLite is down, and WHO's failures are counted" {
	printf 'not a database, not at all %.0s' $(seq 100) >"$DB"
	start_server
	# The connection fails to register when its process starts, and again
	# before its reply (a connection retries before each batch of
	# requests): two failed operations, one ERR reply.  The WHO is sent only
	# once the first failure is logged, so there are always two.
	run -0 python3 - "$PORT" "$BATS_TEST_TMPDIR/server.log" <<-'EOF'
	import socket, sys, time
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
	for _ in range(1200):  # a condition: 60 s for a slow, busy machine
	    if "registry register:" in open(sys.argv[2]).read():
	        break
	    time.sleep(0.05)
	s.sendall(b"WHO\n")
	print(s.makefile().readline().strip())
	s.close()
	EOF
	[ "${lines[0]}" = "ERR registry unavailable: registry file is corrupt" ]
	sessions_done
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_registry_up 0' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_errors_total{reason="registry"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_registry_errors_total 2' "$BATS_TEST_TMPDIR/m"
	run -1 grep '^whoconn_connections ' "$BATS_TEST_TMPDIR/m"
	grep -q "registry open: $DB: file is corrupt" "$BATS_TEST_TMPDIR/metrics.log"
}

@test "a SQLite file of another program is down and left untouched" {
	sqlite3 "$DB" 'CREATE TABLE conn(pid INTEGER); PRAGMA application_id=1'
	before=$(sha256sum "$DB")
	run -0 metric whoconn_registry_up
	[ "$output" = 0 ]
	[ "$(sha256sum "$DB")" = "$before" ]
	grep -q "registry open: $DB: file belongs to another program" "$BATS_TEST_TMPDIR/metrics.log"
}

@test "a missing registry directory is down" {
	DB="$BATS_TEST_TMPDIR/missing/registry.db"
	run -0 metric whoconn_registry_up
	[ "$output" = 0 ]
	[ ! -e "$BATS_TEST_TMPDIR/missing" ]
}

@test "a counters file of another format is down and its counters are absent, not zero" {
	head -c 4096 /dev/urandom >"$DB-metrics"
	run -0 metric whoconn_registry_up
	[ "$output" = 0 ]
	run -1 metric whoconn_connections_accepted_total
	run -0 metric whoconn_connections
	[ "$output" = 0 ]
}

@test "cluster peers are counted by state, with each peer's count, expiry and age" {
	with_updated_ms
	now=$(boottime_ms)
	sqlite3 "$DB" "INSERT INTO peer VALUES('aaaa', 5, $((now + 60000)), $((now - 2000))),
		('bbbb', 3, $((now - 5000)), $((now - 40000))), ('cccc', 1, $((now + 60000)), NULL)"
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peers{state="alive"} 2' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peers{state="expired"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peer_connections{peer="aaaa"} 5' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peer_connections{peer="bbbb"} 3' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peer_connections{peer="cccc"} 1' "$BATS_TEST_TMPDIR/m"
	grep -E '^whoconn_peer_expiry_seconds\{peer="bbbb"\} -5\.[0-9]{3}$' "$BATS_TEST_TMPDIR/m"
	grep -E '^whoconn_peer_expiry_seconds\{peer="aaaa"\} 59\.[0-9]{3}$' "$BATS_TEST_TMPDIR/m"
	grep -E '^whoconn_peer_count_age_seconds\{peer="aaaa"\} 2\.[0-9]{3}$' "$BATS_TEST_TMPDIR/m"
	grep -E '^whoconn_peer_count_age_seconds\{peer="bbbb"\} 40\.[0-9]{3}$' "$BATS_TEST_TMPDIR/m"
	run -1 grep 'whoconn_peer_count_age_seconds{peer="cccc"}' "$BATS_TEST_TMPDIR/m"
}

@test "a registry without the updated_ms column still lists its peers, without an age" {
	printf 'WHO\n' | WHOCONN_DB="$DB" "$WHOCONN" >/dev/null 2>&1
	# the peer table of the first schema, before updated_ms
	sqlite3 "$DB" "DROP TABLE peer; CREATE TABLE peer(id TEXT PRIMARY KEY,
		count INTEGER NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID"
	now=$(boottime_ms)
	sqlite3 "$DB" "INSERT INTO peer VALUES('aaaa', 5, $((now + 60000)))"
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peers{state="alive"} 1' "$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peer_connections{peer="aaaa"} 5' "$BATS_TEST_TMPDIR/m"
	run -1 grep 'whoconn_peer_count_age_seconds' "$BATS_TEST_TMPDIR/m"
	# and whoconn itself still counts the peer
	run -0 stdio 'WHO\n'
	[ "$output" = 6 ]
}

@test "a peer id that is not a plain label value is counted but not listed" {
	with_updated_ms
	now=$(boottime_ms)
	sqlite3 "$DB" "INSERT INTO peer VALUES('bad\"id', 5, $((now + 60000)), $now),
		(char(10), 1, $((now + 60000)), $now), ('$(printf 'p%.0s' $(seq 129))', 1, $((now + 60000)), $now)"
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peers{state="alive"} 3' "$BATS_TEST_TMPDIR/m"
	run -1 grep '^whoconn_peer_connections' "$BATS_TEST_TMPDIR/m"
}

@test "at most 256 peers are listed one by one; all are counted" {
	with_updated_ms
	now=$(boottime_ms)
	sqlite3 "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
		INSERT INTO peer SELECT printf('peer-%03d', i), 1, $((now + 60000)), $now FROM n"
	scrape >"$BATS_TEST_TMPDIR/m"
	grep -x 'whoconn_peers{state="alive"} 300' "$BATS_TEST_TMPDIR/m"
	[ "$(grep -c '^whoconn_peer_connections{' "$BATS_TEST_TMPDIR/m")" -eq 256 ]
}

@test "scraping never creates the registry or the counters file" {
	run -0 metric whoconn_registry_up
	[ "$output" = 1 ]
	[ ! -e "$DB" ]
	[ ! -e "$DB-metrics" ]
	[ ! -e "$DB-locks" ]
}

# ---- a real Prometheus ------------------------------------------------------

# promql QUERY - the value of the query's first sample, or "none".
promql() {
	python3 - "$PPORT" "$1" <<'EOF'
import json, sys, urllib.parse, urllib.request
port, query = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:%s/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": query}))
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.load(r)["data"]["result"]
except OSError as e:
    print("none (%s)" % e)
    sys.exit(0)
print(result[0]["value"][1] if result else "none")
EOF
}

# wait_promql QUERY VALUE SECONDS - until the query returns VALUE.  Each is a
# condition (a scrape every 1 s has seen it), bounded at 60 s for a slow machine.
wait_promql() {
	local got
	for _ in $(seq $(($3 * 4))); do
		got=$(promql "$1")
		[ "$got" = "$2" ] && return 0
		sleep 0.25
	done
	echo "$1 = $got, wanted $2 (after $3 s)" >&2
	return 1
}

@test "a real Prometheus scrapes the endpoint and PromQL sees the held connections" {
	command -v prometheus >/dev/null || skip "prometheus missing (Debian package prometheus; make check installs it)"
	start_server
	start_metrics
	PPORT=$(free_port)
	cat >"$BATS_TEST_TMPDIR/prometheus.yml" <<-EOF
		global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
		rule_files: ["$TOP/contrib/prometheus/whoconn.rules.yml"]
		scrape_configs:
		  - job_name: whoconn
		    static_configs: [{targets: ["127.0.0.1:$MPORT"]}]
	EOF
	timeout 600 prometheus --config.file="$BATS_TEST_TMPDIR/prometheus.yml" \
		--storage.tsdb.path="$BATS_TEST_TMPDIR/tsdb" --web.listen-address="127.0.0.1:$PPORT" \
		--log.level=warn 2>>"$BATS_TEST_TMPDIR/prometheus.log" &
	PROM_PID=$!
	hold 4
	run -0 client wait-who 5
	wait_promql 'whoconn_connections{job="whoconn"}' 4 60
	wait_promql 'up{job="whoconn"}' 1 60
	release
	wait_promql 'whoconn_connections{job="whoconn"}' 0 60
	# every session that started has ended, and was counted once
	wait_promql 'sum(whoconn_connections_accepted_total{job="whoconn"}) - sum(whoconn_disconnects_total{job="whoconn"})' 0 60
	run -0 promql 'whoconn_connections_accepted_total{job="whoconn"} >= 5'
	[ "$output" != none ]
	# the shipped rules loaded, and none fires on a healthy service
	run -0 promql 'count(ALERTS{alertstate="firing"})'
	[ "$output" = none ]
	run -0 python3 -c 'import json, sys, urllib.request
groups = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/v1/rules" % sys.argv[1], timeout=5))["data"]["groups"]
print(sum(len(g["rules"]) for g in groups), sum(r.get("health") == "ok" for g in groups for r in g["rules"]))' "$PPORT"
	expected=$(grep -c '^  *- alert:' "$TOP/contrib/prometheus/whoconn.rules.yml")
	[ "$output" = "$expected $expected" ]
}

# ---- units and install ----------------------------------------------------

@test "the metrics units pass systemd-analyze verify" {
	mkdir -p "$BATS_TEST_TMPDIR/units"
	for u in whoconn-metrics.socket whoconn-metrics@.service; do
		sed -e "s|@BINDIR@|$TOP|g" "$TOP/units/$u.in" >"$BATS_TEST_TMPDIR/units/$u"
	done
	cd "$BATS_TEST_TMPDIR/units"
	run -0 --separate-stderr systemd-analyze verify --man=no ./whoconn-metrics.socket ./whoconn-metrics@.service
	[ "$stderr" = "" ]
}

@test "the metrics socket listens on loopback port 9242, one process per connection, never stopping itself" {
	run -0 grep -x 'ListenStream=127.0.0.1:9242' "$TOP/units/whoconn-metrics.socket.in"
	run -0 grep -x 'Accept=yes' "$TOP/units/whoconn-metrics.socket.in"
	run -0 grep -x 'TriggerLimitIntervalSec=0' "$TOP/units/whoconn-metrics.socket.in"
	run -0 grep -x 'MaxConnections=16' "$TOP/units/whoconn-metrics.socket.in"
}

@test "the metrics service runs as whoconn in whoconn's runtime directory, stderr to the journal" {
	f="$TOP/units/whoconn-metrics@.service.in"
	for line in User=whoconn Group=whoconn RuntimeDirectory=whoconn RuntimeDirectoryMode=0700 \
		RuntimeDirectoryPreserve=yes NoNewPrivileges=yes CapabilityBoundingSet= UMask=0077 \
		StandardError=journal; do
		grep -qx "$line" "$f" || { echo "missing: $line" >&2; return 1; }
	done
	# as whoconn's connections: the same user, umask and journal; the
	# directory theirs, made by tmpfiles.d with the same owner and mode
	for line in User=whoconn Group=whoconn UMask=0077 StandardError=journal; do
		grep -qx "$line" "$TOP/units/whoconn@.service.in" || { echo "whoconn@ lacks: $line" >&2; return 1; }
	done
	grep -qx 'd /run/whoconn 0700 whoconn whoconn -' "$TOP/units/whoconn.tmpfiles"
	# whoconn needs AF_UNIX for its journal entry; whoconn-metrics no socket at all
	grep -qx 'RestrictAddressFamilies=none' "$f"
}

@test "make install puts whoconn-metrics and its units under DESTDIR with paths substituted" {
	run -0 make -C "$TOP" --no-print-directory install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/usr
	[ -x "$BATS_TEST_TMPDIR/root/usr/bin/whoconn-metrics" ]
	[ -x "$BATS_TEST_TMPDIR/root/usr/bin/whoconn" ]
	run -0 grep -x 'ExecStart=/usr/bin/whoconn-metrics' "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-metrics@.service"
	[ -f "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-metrics.socket" ]
	[ -f "$BATS_TEST_TMPDIR/root/usr/share/man/man8/whoconn-metrics.8" ]
	run -0 make -C "$TOP" --no-print-directory uninstall DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/usr
	[ ! -e "$BATS_TEST_TMPDIR/root/usr/bin/whoconn-metrics" ]
	[ ! -e "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-metrics.socket" ]
	[ ! -e "$BATS_TEST_TMPDIR/root/usr/share/man/man8/whoconn-metrics.8" ]
}

# ---- the man page ---------------------------------------------------------

# man_section NAME - one section of whoconn-metrics(8), indentation removed.
man_section() {
	mandoc -T ascii "$TOP/man/whoconn-metrics.8" | col -bx |
		awk -v s="$1" '/^[A-Z]/ { on = ($0 == s); next } on' | sed 's/^ *//'
}

@test "whoconn-metrics(8) passes mandoc -T lint without a warning" {
	command -v mandoc >/dev/null || skip "needs mandoc (Debian package mandoc)"
	run -0 mandoc -T lint -W warning "$TOP/man/whoconn-metrics.8"
	[ "$output" = "" ]
}

@test "whoconn-metrics(8) synopsis is the usage of --help, and it names every option, variable and exit status" {
	command -v mandoc >/dev/null || skip "needs mandoc (Debian package mandoc)"
	run -0 "$METRICS" --help
	usage1=${lines[0]#usage: }
	usage2=$(echo "${lines[1]}" | sed 's/^ *//')
	run -0 man_section SYNOPSIS
	[ "${lines[0]}" = "$usage1" ]
	[ "${lines[1]}" = "$usage2" ]
	opts=$(man_section OPTIONS)
	for opt in $("$METRICS" --help | grep -oE '^  --[a-z-]+'); do
		grep -qE "^$opt( |$)" <<<"$opts" || { echo "missing option: $opt"; return 1; }
	done
	grep -qF 'Default: 5, range 1-60.' <<<"$opts"
	env=$(man_section ENVIRONMENT)
	for var in $(settings_of "$TOP/whoconn-metrics.c"); do
		grep -qE "^$var\$" <<<"$env" || { echo "missing variable: $var"; return 1; }
	done
	st=$(man_section "EXIT STATUS")
	for n in $(grep -oE 'WHOCONN_EXIT_[A-Z]+' "$TOP/whoconn-metrics.c" | sort -u); do
		code=$(grep -oE "$n = [0-9]+" "$TOP/whoconn.h" | awk '{print $3}')
		grep -qE "^$code( |$)" <<<"$st" || { echo "missing exit status: $code ($n)"; return 1; }
	done
}
