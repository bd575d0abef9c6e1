#!/usr/bin/env bats
# The protocol over stdin/stdout, one rule or one malformed input per test.
# Sessions run over a pipe, exactly as inetd-style launchers run whoconn.

load helpers

UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

@test "WHY answers 42" {
	run -0 stdio 'WHY\n'
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "42" ]
}

@test "WHO answers 1 when the asker is the only client" {
	run -0 stdio 'WHO\n'
	[ "${lines[0]}" = "1" ]
	[ "${#lines[@]}" -eq 1 ]
}

@test "WHERE answers a lowercase RFC 4122 UUID of 36 characters" {
	run -0 stdio 'WHERE\n'
	[ "${#lines[@]}" -eq 1 ]
	[ "${#lines[0]}" -eq 36 ]
	[[ "${lines[0]}" =~ $UUID_RE ]]
}

@test "WHERE is the same on every connection" {
	run -0 stdio 'WHERE\n'
	first="${lines[0]}"
	run -0 stdio 'WHERE\n'
	[ "${lines[0]}" = "$first" ]
}

@test "WHERE does not reveal the raw machine id" {
	run -0 stdio 'WHERE\n'
	raw=$(tr -d '\n' </etc/machine-id)
	[ "$(echo "${lines[0]}" | tr -d -)" != "$raw" ]
}

@test "WHERE answers the configured server id, lowercased" {
	run -0 stdio 'WHERE\n' WHOCONN_SERVER_ID=6B2F0ED4-5A91-4C37-A81D-93C47E05B26F
	[ "${lines[0]}" = "6b2f0ed4-5a91-4c37-a81d-93c47e05b26f" ]
}

@test "commands are case-insensitive" {
	run -0 stdio 'why\nWhY\nwho\n'
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "42" ]
	[ "${lines[2]}" = "1" ]
}

@test "spaces and tabs around a command are ignored" {
	run -0 stdio ' \t WHY \t \n'
	[ "${lines[0]}" = "42" ]
	[ "${#lines[@]}" -eq 1 ]
}

@test "a CR right before the LF is ignored" {
	run -0 stdio 'WHY\r\n'
	[ "$output" = "42" ]
}

@test "a CR inside a line is part of the command" {
	run -0 stdio 'WH\rY\n'
	[ "$output" = "ERR unknown command" ]
}

@test "blank lines get no reply" {
	run -0 stdio '\n\r\n \t \nWHY\n\n'
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "42" ]
}

@test "thousands of blank lines get no reply and do not end the session" {
	input=$(printf '\\n%.0s' $(seq 5000))
	run -0 stdio "${input}WHY\n"
	[ "$output" = "42" ]
}

@test "pipelined commands are answered in order, one line each" {
	run -0 stdio 'WHY\nWHO\nHELP\nWHY\nnope\nWHY\n'
	[ "${#lines[@]}" -eq 6 ]
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "1" ]
	[ "${lines[2]}" = "WHO WHERE WHY HELP QUIT" ]
	[ "${lines[3]}" = "42" ]
	[ "${lines[4]}" = "ERR unknown command" ]
	[ "${lines[5]}" = "42" ]
}

@test "every reply ends in LF" {
	run -0 --separate-stderr bash -c "printf 'WHY\nWHO\n' | WHOCONN_DB=$BATS_TEST_TMPDIR/r.db $WHOCONN | od -An -c | tr -s ' '"
	[[ "$output" == *"4 2 \\n 1 \\n"* ]]
}

@test "an unknown command gets ERR and the connection stays open" {
	run -0 stdio 'HELLO\nWHY\n'
	[ "${lines[0]}" = "ERR unknown command" ]
	[ "${lines[1]}" = "42" ]
}

@test "a command with an argument gets ERR and the connection stays open" {
	run -0 stdio 'WHO am i\nWHY\n'
	[ "${lines[0]}" = "ERR WHO takes no arguments" ]
	[ "${lines[1]}" = "42" ]
}

@test "a prefix of a command is an unknown command" {
	run -0 stdio 'WH\nWHOO\n'
	[ "${lines[0]}" = "ERR unknown command" ]
	[ "${lines[1]}" = "ERR unknown command" ]
}

@test "HELP lists the commands on one line" {
	run -0 stdio 'HELP\n'
	[ "$output" = "WHO WHERE WHY HELP QUIT" ]
}

@test "QUIT answers BYE and nothing after it is answered" {
	run -0 stdio 'QUIT\nWHY\n'
	[ "$output" = "BYE" ]
}

@test "a line of exactly 1024 bytes is read as a request" {
	line=$(printf 'x%.0s' $(seq 1024))
	run -0 stdio "${line}\nWHY\n"
	[ "${lines[0]}" = "ERR unknown command" ]
	[ "${lines[1]}" = "42" ]
}

@test "a line of 1024 bytes followed by CR LF is read as a request" {
	line=$(printf 'x%.0s' $(seq 1024))
	run -0 stdio "${line}\r\nWHY\n"
	[ "${lines[0]}" = "ERR unknown command" ]
	[ "${lines[1]}" = "42" ]
}

@test "a line of 1025 bytes gets ERR line too long and ends the session" {
	line=$(printf 'x%.0s' $(seq 1025))
	run -65 stdio "${line}\nWHY\n"
	[ "$output" = "ERR line too long" ]
}

@test "a line without LF that outgrows the limit is cut off before it ends" {
	run -65 --separate-stderr bash -c "head -c 100000 /dev/zero | tr '\\0' x | WHOCONN_DB=$BATS_TEST_TMPDIR/r.db $WHOCONN"
	[ "$output" = "ERR line too long" ]
}

@test "a NUL byte gets ERR invalid byte and ends the session" {
	run -65 stdio 'WH\0Y\nWHY\n'
	[ "$output" = "ERR invalid byte" ]
}

@test "a byte of 0x80 or above gets ERR invalid byte and ends the session" {
	run -65 stdio 'WHY\xc3\xa9\nWHY\n'
	[ "$output" = "ERR invalid byte" ]
}

@test "a control character other than TAB CR LF gets ERR invalid byte" {
	run -65 stdio 'WHY\x01\n'
	[ "$output" = "ERR invalid byte" ]
}

@test "DEL (0x7f) gets ERR invalid byte" {
	run -65 stdio '\x7f\n'
	[ "$output" = "ERR invalid byte" ]
}

@test "lines before an invalid byte are answered first" {
	run -65 stdio 'WHY\nWHO\n\xff'
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "1" ]
	[ "${lines[2]}" = "ERR invalid byte" ]
	[ "${#lines[@]}" -eq 3 ]
}

@test "a final line without LF is answered when input ends" {
	run -0 stdio 'WHO\nWHY'
	[ "${lines[0]}" = "1" ]
	[ "${lines[1]}" = "42" ]
}

@test "a final blank line without LF gets no reply" {
	run -0 stdio 'WHY\n  '
	[ "$output" = "42" ]
}

@test "empty input ends the session with status 0 and no output" {
	run -0 stdio ''
	[ "$output" = "" ]
}

@test "diagnostics go to stderr, never to stdout" {
	run -0 --separate-stderr bash -c "printf 'WHY\nWHO\n' | WHOCONN_DB=/nonexistent/dir/r.db $WHOCONN"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "ERR registry unavailable: No such file or directory" ]
	[[ "${stderr_lines[0]}" == *"registry register: /nonexistent/dir/r.db: No such file or directory"* ]]
	[[ "${stderr_lines[1]}" == *"end=client-closed"* ]]
}

@test "when the connection is also stderr (inetd, xinetd), nothing but replies reach it" {
	python3 - "$WHOCONN" "$BATS_TEST_TMPDIR/r.db" >"$BATS_TEST_TMPDIR/got" <<-'EOF'
	import os, socket, subprocess, sys
	a, b = socket.socketpair()
	env = dict(os.environ, WHOCONN_DB="/nonexistent/dir/r.db")
	p = subprocess.Popen([sys.argv[1]], stdin=b, stdout=b, stderr=b, env=env)
	b.close()
	a.sendall(b"WHO\nWHY\n")
	a.shutdown(socket.SHUT_WR)
	data = b""
	while True:
	    c = a.recv(4096)
	    if not c:
	        break
	    data += c
	p.wait()
	sys.stdout.write(data.decode())
	EOF
	run -0 cat "$BATS_TEST_TMPDIR/got"
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]}" = "ERR registry unavailable: No such file or directory" ]
	[ "${lines[1]}" = "42" ]
}

@test "a final unterminated line over the limit gets ERR line too long at end of input" {
	line=$(printf 'x%.0s' $(seq 1025))
	run -65 stdio "WHY\n${line}"
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "ERR line too long" ]
}

@test "a final unterminated line of 1024 bytes and a CR is read as a request" {
	line=$(printf 'x%.0s' $(seq 1024))
	run -0 stdio "${line}\r"
	[ "$output" = "ERR unknown command" ]
}

@test "a TAB between a command and an argument is an argument too" {
	run -0 stdio 'WHO\tx\nWHY\n'
	[ "${lines[0]}" = "ERR WHO takes no arguments" ]
	[ "${lines[1]}" = "42" ]
}

@test "WHERE is the machine id made app-specific with whoconn's application id" {
	command -v systemd-id128 >/dev/null || skip "needs systemd-id128 (package systemd)"
	app=$(sed -n 's/^    SD_ID128_MAKE(\(.*\))$/\1/p' "$TOP/whoconn.h" | tr -d ,)
	[ "${#app}" -eq 32 ]
	run -0 systemd-id128 machine-id --uuid -a "$app"
	want="$output"
	run -0 stdio 'WHERE\n'
	[ "$output" = "$want" ]
}

@test "the session log line tells commands, errors and why it ended" {
	run -0 stdio 'WHY\nnope\n\n'
	grep -E 'peer=stdin duration_ms=[0-9]+ commands=2 errors=1 end=client-closed' "$BATS_TEST_TMPDIR/log"
}

@test "peer bytes quoted in the log are made printable and cut short" {
	run -65 stdio "$(printf 'A%.0s' $(seq 40))\\x01\\n"
	grep -F 'closing: invalid-byte after "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA..."' "$BATS_TEST_TMPDIR/log"
	run -65 stdio 'ab\\\x1b\n'
	grep -F 'after "ab\x5c\x1b"' "$BATS_TEST_TMPDIR/log"
}
