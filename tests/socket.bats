#!/usr/bin/env bats
# The protocol and the registry over a real TCP socket, served by
# systemd-socket-activate exactly as inetd-style launchers serve whoconn.

load helpers

# The default idle timeout (60 s): a suite-wide 3 s made every held
# connection a race against its process's start on a slow, busy machine
# (the first of 25 timed out before the last had started).  The tests of
# the timeouts start their own server with 3 s (idle_server).
setup() { start_server; }
teardown() { stop_server; }

idle_server() {
	stop_server
	start_server -E WHOCONN_IDLE_TIMEOUT=3
}

# logged PATTERN N - server.log has at least N lines matching PATTERN.  A
# session logs after it closed the connection, so a client that saw the end
# waits for the line (wait_until logged ...).
logged() {
	[ "$(grep -cE "$1" "$BATS_TEST_TMPDIR/server.log")" -ge "$2" ]
}

@test "a client over TCP gets one reply line per command" {
	run -0 client send 'WHY\nWHO\nWHERE\n'
	[ "${#lines[@]}" -eq 4 ] # three replies and the end= line on stderr
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "1" ]
	[ "${#lines[2]}" -eq 36 ]
	[ "${lines[3]}" = "end=eof" ]
}

@test "the server sends nothing before the first request" {
	idle_server
	run -0 client idle --max-seconds 20
	# silence until the 3 s idle timeout, then a close without a word
	[[ "$output" =~ ^\'\'\ eof\ after\  ]]
	at_least 3
}

@test "after a half-close every complete line and the final partial one are answered" {
	run -0 client send 'WHY\nWHO\nWHY'
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "1" ]
	[ "${lines[2]}" = "42" ]
	[ "${lines[3]}" = "end=eof" ]
}

@test "a protocol error reply arrives intact even with unread input behind it" {
	run -0 client send "$(printf 'x%.0s' $(seq 1100))\\nWHY\\nWHY\\n"
	[ "${lines[0]}" = "ERR line too long" ]
	[ "${lines[1]}" = "end=eof" ]
}

@test "QUIT's BYE arrives and the server closes with FIN, not RST" {
	run -0 client send 'QUIT\nWHY\nWHY\n' --keep-open
	[ "${lines[0]}" = "BYE" ]
	[ "${lines[1]}" = "end=eof" ]
}

@test "an invalid byte over TCP gets ERR invalid byte and a close" {
	run -0 client send 'WHY\n\x00' --keep-open
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "ERR invalid byte" ]
	[ "${lines[2]}" = "end=eof" ]
}

@test "thousands of pipelined commands on one connection are all answered in order" {
	run -0 client pipeline 20000 --cmd WHY
	[ "$output" = "replies=20000 distinct=42 end=eof" ]
}

@test "thousands of pipelined WHO on one connection all count the asker" {
	run -0 client pipeline 5000 --cmd WHO
	[ "$output" = "replies=5000 distinct=1 end=eof" ]
}

@test "WHO counts every held connection and the asker" {
	hold 25
	run -0 client wait-who 26
	[[ "$output" == "26 after"* ]]
}

@test "WHO stays exact while connections come and go" {
	hold 10
	run -0 client wait-who 11
	first=$HOLD_PID
	hold 5
	run -0 client wait-who 16
	kill "$first"; wait "$first" || true
	run -0 client wait-who 6
	release
	run -0 client wait-who 1
}

# A connection that ends normally removes itself before its process exits
# (README, "What WHO counts"): once the processes are gone their rows are
# gone, before any WHO could have swept them, and WHO is exact at once.
@test "closed connections remove themselves before their processes exit" {
	hold 20
	run -0 client wait-who 21
	wait_for_children 20
	release
	wait_for_children 0
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = 0 ]
	run -0 client wait-who 1 --within 0
}

@test "reset connections remove themselves before their processes exit" {
	hold 20 --reset
	run -0 client wait-who 21
	wait_for_children 20
	release
	wait_for_children 0
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = 0 ]
	run -0 client wait-who 1 --within 0
}

@test "SIGKILLed connection processes stop being counted within a second" {
	hold 12
	run -0 client wait-who 13
	wait_for_children 12
	run -0 client who # a sweep now, so the next one is due in 0.5 s
	kill -KILL $(connection_pids)
	run -0 client wait-who 1 --within 1.2
	# the killed processes never unregistered: the sweep removed their rows
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" -le 1 ]
}

@test "a crashed connection process (SIGSEGV) is not counted forever" {
	hold 3
	run -0 client wait-who 4
	wait_for_children 3
	kill -SEGV $(connection_pids)
	# "within a second" counts from the crash's end: a sanitized process
	# first writes its report, for longer than that on a busy machine
	wait_for_children 0
	run -0 client wait-who 1 --within 1.2
}

@test "a SIGTERMed connection process unregisters and exits with status 76" {
	hold 2
	run -0 client wait-who 3
	wait_for_children 2
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = 2 ]
	kill -TERM $(connection_pids)
	wait_for_children 0
	# no WHO ran since, so no sweep: the rows went because the processes
	# removed them themselves
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = 0 ]
	run -0 grep -c 'died with code 76' "$BATS_TEST_TMPDIR/server.log"
	[ "$output" = 2 ]
	run -0 grep -c 'end=signal' "$BATS_TEST_TMPDIR/server.log"
	[ "$output" = 2 ]
}

@test "a stopped connection process stays counted and lives on after SIGCONT" {
	hold 1
	run -0 client wait-who 2
	wait_for_children 1
	pid=$(connection_pids)
	kill -STOP "$pid"
	sleep 1.2 # past a sweep interval: a stopped process is alive, not swept
	run -0 client wait-who 2 --within 0
	kill -CONT "$pid"
	run -0 client wait-who 2 --within 0
	kill -0 "$pid"
}

@test "300 parallel clients (75 sanitized) are all served" {
	local n
	n=$(at_scale 300)
	run -0 client burst "$n"
	[ "$output" = "ok=$n failed=0" ]
	run -0 client wait-who 1
}

@test "an idle client is disconnected after the idle timeout and unregistered" {
	idle_server
	run -0 client idle --max-seconds 20
	[[ "$output" =~ ^\'\'\ eof\ after\  ]]
	at_least 3
	wait_until "the session's log line" logged 'end=idle-timeout' 1
	run -0 client wait-who 1
}

@test "the idle timeout restarts with each complete line" {
	idle_server
	# the line comes 2 s after the connect (time must pass: the timer is
	# time-based), so the close comes 3 s after it, >= 5 s after the
	# connect; a timer that did not restart would close at ~3 s
	run -0 client idle --send 'WHY\n' --send-after 2 --max-seconds 20
	[[ "$output" =~ ^\'42.n\'\ eof\ after\  ]]
	at_least 5
}

@test "a client trickling bytes without finishing a line is cut off (slowloris)" {
	idle_server
	# a byte every 0.3 s: a timer restarted by bytes would never fire
	run -0 client trickle --interval 0.3 --max-seconds 20
	[[ "$output" =~ ^closed\ after\  ]]
	at_least 3
	wait_until "the session's log line" logged 'end=idle-timeout' 1
}

@test "a client that never reads replies is cut off and unregistered" {
	idle_server
	run -0 client noread --max-seconds 30
	[[ "$output" == "cut off after"* ]]
	wait_until "the session's log line" logged 'end=write-timeout' 1
	run -0 client wait-who 1
}

@test "each finished connection logs one line with the peer address" {
	run -0 client send 'WHY\n'
	run -0 client send 'WHO\n'
	# each process logs after closing the connection: wait for the lines
	wait_until "two session log lines" logged 'end=client-closed' 2
	run -0 grep -cE 'peer=127\.0\.0\.1:[0-9]+ duration_ms=[0-9]+ commands=1 errors=0 end=client-closed' "$BATS_TEST_TMPDIR/server.log"
	[ "$output" -eq 2 ]
}

@test "a registered connection that sends QUIT drops out of WHO at once" {
	hold 3 --send 'WHY\n'
	run -0 client wait-who 4
	run -0 client send 'QUIT\n' --keep-open
	[ "${lines[0]}" = "BYE" ]
	run -0 client wait-who 4 --within 0
}
