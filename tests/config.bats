#!/usr/bin/env bats
# Configuration: environment variables, options, and the errors for bad
# values.  A bad value is an error with exit status 64, never a default.

load helpers

@test "--help prints the usage on stdout and exits 0" {
	run -0 "$WHOCONN" --help
	[ "${lines[0]}" = "usage: whoconn [--db PATH] [--idle-timeout SECONDS] [--server-id UUID]" ]
	[ "${lines[1]}" = "               [--proxy-protocol off | v2]" ]
	[ "${lines[2]}" = "       whoconn --help | --version" ]
}

@test "--version prints the version and exits 0" {
	run -0 "$WHOCONN" --version
	[[ "$output" =~ ^whoconn\ [0-9]+\.[0-9]+\.[0-9]+\ \(SQLite\ 3\.[0-9.]+\)$ ]]
}

@test "an unknown option is an error with status 64 and the usage on stderr" {
	run -64 --separate-stderr "$WHOCONN" --bogus
	[ "$output" = "" ]
	[ "${stderr_lines[0]}" = "whoconn: unknown or incomplete option: --bogus" ]
}

@test "an option without its value is an error with status 64" {
	run -64 --separate-stderr "$WHOCONN" --idle-timeout
	[ "${stderr_lines[0]}" = "whoconn: unknown or incomplete option: --idle-timeout" ]
}

@test "a stray argument is an error with status 64" {
	run -64 --separate-stderr "$WHOCONN" extra
	[ "$stderr" = "whoconn: unexpected argument: extra" ]
}

@test "WHOCONN_IDLE_TIMEOUT of 0 is refused" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=0 "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_IDLE_TIMEOUT: "0" is not a number of seconds from 1 to 86400' ]
}

@test "WHOCONN_IDLE_TIMEOUT above 86400 is refused" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=86401 "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_IDLE_TIMEOUT: "86401" is not a number of seconds from 1 to 86400' ]
}

@test "WHOCONN_IDLE_TIMEOUT with trailing garbage is refused" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=10s "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_IDLE_TIMEOUT: "10s" is not a number of seconds from 1 to 86400' ]
}

@test "a negative or signed idle timeout is refused" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=-5 "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_IDLE_TIMEOUT: "-5" is not a number of seconds from 1 to 86400' ]
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=+5 "$WHOCONN" </dev/null
}

@test "an empty WHOCONN_IDLE_TIMEOUT is refused" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT= "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_IDLE_TIMEOUT: "" is not a number of seconds from 1 to 86400' ]
}

@test "a huge idle timeout that overflows is refused" {
	run -64 --separate-stderr "$WHOCONN" --idle-timeout 99999999999999999999999 </dev/null
	[ "$stderr" = 'whoconn: --idle-timeout: "99999999999999999999999" is not a number of seconds from 1 to 86400' ]
}

@test "--idle-timeout overrides WHOCONN_IDLE_TIMEOUT" {
	run -64 --separate-stderr env WHOCONN_IDLE_TIMEOUT=5 "$WHOCONN" --idle-timeout 0 </dev/null
	[[ "$stderr" == 'whoconn: --idle-timeout: "0"'* ]]
	run -0 --separate-stderr env WHOCONN_IDLE_TIMEOUT=0 WHOCONN_DB="$BATS_TEST_TMPDIR/r.db" "$WHOCONN" --idle-timeout 5 </dev/null
}

@test "a WHOCONN_SERVER_ID that is not a UUID is refused" {
	run -64 --separate-stderr env WHOCONN_SERVER_ID=server-1 "$WHOCONN" </dev/null
	[ "$stderr" = 'whoconn: WHOCONN_SERVER_ID: "server-1" is not a UUID (like 6b2f0ed4-5a91-4c37-a81d-93c47e05b26f)' ]
}

@test "a server id with a bad character or length is refused" {
	run -64 --separate-stderr "$WHOCONN" --server-id 6b2f0ed4-5a91-4c37-a81d-93c47e05b26g </dev/null
	[[ "$stderr" == 'whoconn: --server-id: "6b2f0ed4-5a91-4c37-a81d-93c47e05b26g" is not a UUID'* ]]
	run -64 --separate-stderr "$WHOCONN" --server-id 6b2f0ed4-5a91-4c37-a81d-93c47e05b26f0 </dev/null
	run -64 --separate-stderr "$WHOCONN" --server-id 6b2f0ed45a914c37a81d93c47e05b26f </dev/null
}

@test "--server-id overrides WHOCONN_SERVER_ID" {
	run -0 bash -c "printf 'WHERE\n' | WHOCONN_SERVER_ID=bad WHOCONN_DB=$BATS_TEST_TMPDIR/r.db $WHOCONN --server-id 00000000-0000-4000-8000-000000000001 2>/dev/null"
	[ "$output" = "00000000-0000-4000-8000-000000000001" ]
}

@test "an empty WHOCONN_DB is refused" {
	run -64 --separate-stderr env WHOCONN_DB= "$WHOCONN" </dev/null
	[ "$stderr" = "whoconn: the registry path (--db, WHOCONN_DB) is empty" ]
}

@test "--db overrides WHOCONN_DB" {
	run -0 bash -c "printf 'WHO\n' | WHOCONN_DB=/nonexistent/x.db $WHOCONN --db $BATS_TEST_TMPDIR/r.db 2>/dev/null"
	[ "$output" = 1 ]
	[ -f "$BATS_TEST_TMPDIR/r.db" ]
}

@test "WHOCONN_IDLE_TIMEOUT sets the idle timeout" {
	start_server -E WHOCONN_IDLE_TIMEOUT=1
	# at least 1 s after the connect, and a close long before the 60 s
	# default (the server's timer starts when its process has started: how
	# much after the connect depends on the machine)
	run -0 client idle --max-seconds 20
	[[ "$output" =~ ^\'\'\ eof\ after\  ]]
	at_least 1
	stop_server
}
