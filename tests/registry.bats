#!/usr/bin/env bats
# The SQLite registry: how it is created, how it stays exact, and what WHO
# does when it cannot be opened or written.

load helpers

teardown() {
	stop_server
	if [ -n "${parent:-}" ]; then kill "$parent" 2>/dev/null || true; fi
	if mountpoint -q "$BATS_TEST_TMPDIR/mnt" 2>/dev/null; then umount "$BATS_TEST_TMPDIR/mnt"; fi
}

@test "the registry is created on first use, in WAL mode, readable by its owner only" {
	run -0 stdio 'WHO\n'
	db="$BATS_TEST_TMPDIR/registry.db"
	[ "$(stat -c %a "$db")" = 600 ]
	run -0 sqlite3 "$db" 'PRAGMA journal_mode'
	[ "$output" = "wal" ]
	run -0 sqlite3 "$db" 'PRAGMA application_id'
	[ "$output" = "2003332963" ]
}

@test "a session counts itself while it runs and leaves no row behind when it ends" {
	run -0 stdio 'WHO\n'
	[ "$output" = 1 ]
	run -0 sqlite3 "$BATS_TEST_TMPDIR/registry.db" 'SELECT count(*) FROM conn'
	[ "$output" = 0 ]
}

@test "the default registry is registry.db in \$RUNTIME_DIRECTORY" {
	run -0 bash -c "printf 'WHO\n' | RUNTIME_DIRECTORY=$BATS_TEST_TMPDIR $WHOCONN 2>/dev/null"
	[ "$output" = 1 ]
	[ -f "$BATS_TEST_TMPDIR/registry.db" ]
}

@test "WHY and WHERE answer and WHO answers ERR when the registry directory is missing" {
	run -0 stdio 'WHY\nWHERE\nWHO\n' WHOCONN_DB="$BATS_TEST_TMPDIR/missing/registry.db"
	[ "${lines[0]}" = "42" ]
	[ "${#lines[1]}" -eq 36 ]
	[ "${lines[2]}" = "ERR registry unavailable: No such file or directory" ]
	grep -q "registry register: $BATS_TEST_TMPDIR/missing/registry.db: No such file or directory" "$BATS_TEST_TMPDIR/log"
}

@test "a registry fault is logged once per connection, however often WHO is asked" {
	run -0 stdio 'WHO\nWHO\nWHO\n' WHOCONN_DB="$BATS_TEST_TMPDIR/missing/registry.db"
	[ "${#lines[@]}" -eq 3 ]
	run -0 grep -c '^whoconn\[[0-9]*\]: registry ' "$BATS_TEST_TMPDIR/log"
	[ "$output" = 1 ]
}

@test "counting recovers by itself once a missing directory appears" {
	DB="$BATS_TEST_TMPDIR/later/registry.db" start_server
	hold 3
	run -0 client who
	[ "$output" = "ERR registry unavailable: No such file or directory" ]
	mkdir "$BATS_TEST_TMPDIR/later"
	# held connections retry registering every second (README, "Registry
	# faults"), new ones succeed: a contract bound, one retry period plus
	# margin, measured from a moment after the mkdir
	run -0 client wait-who 4 --within 2.5
}

@test "WHO answers ERR when the registry file is corrupt, and recovers once it is removed" {
	head -c 8192 /dev/urandom >"$BATS_TEST_TMPDIR/registry.db"
	run -0 stdio 'WHY\nWHO\n'
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "ERR registry unavailable: registry file is corrupt" ]
	rm "$BATS_TEST_TMPDIR/registry.db"
	run -0 stdio 'WHO\n'
	[ "$output" = "1" ]
}

@test "a SQLite file of another program is refused and left untouched" {
	db="$BATS_TEST_TMPDIR/registry.db"
	sqlite3 "$db" 'CREATE TABLE precious(x); INSERT INTO precious VALUES(1);'
	sum=$(sha256sum <"$db")
	run -0 stdio 'WHO\n'
	[ "$output" = "ERR registry unavailable: registry file belongs to another program" ]
	[ "$(sha256sum <"$db")" = "$sum" ]
}

@test "WHO answers ERR on a read-only file system and recovers when it is writable again" {
	[ "$(id -u)" -eq 0 ] || skip "needs root to mount a read-only tmpfs"
	mkdir "$BATS_TEST_TMPDIR/mnt"
	mount -t tmpfs -o size=4m tmpfs "$BATS_TEST_TMPDIR/mnt"
	DB="$BATS_TEST_TMPDIR/mnt/registry.db" start_server
	run -0 client who
	[ "$output" = 1 ]
	wait_for_children 0 # nobody has the file open for writing
	mount -o remount,ro "$BATS_TEST_TMPDIR/mnt"
	run -0 client send 'WHY\nWHO\n'
	[ "${lines[0]}" = "42" ]
	[ "${lines[1]}" = "ERR registry unavailable: Read-only file system" ]
	mount -o remount,rw "$BATS_TEST_TMPDIR/mnt"
	hold 2
	run -0 client wait-who 3
}

@test "WHO answers ERR when the registry directory is not writable by the service user" {
	[ "$(id -u)" -eq 0 ] || skip "needs root to run whoconn as another user (nobody)"
	command -v setpriv >/dev/null || skip "needs setpriv (util-linux) to drop root"
	mkdir -m 0555 "$BATS_TEST_TMPDIR/ro"
	chmod 0755 "$BATS_TEST_TMPDIR"
	run -0 bash -c "printf 'WHO\nWHY\n' | setpriv --reuid=65534 --regid=65534 --clear-groups env WHOCONN_DB=$BATS_TEST_TMPDIR/ro/registry.db $WHOCONN 2>/dev/null"
	[ "${lines[0]}" = "ERR registry unavailable: Permission denied" ]
	[ "${lines[1]}" = "42" ]
}

@test "a dead entry whose PID now belongs to another process is not counted" {
	start_server
	run -0 client who # creates the registry
	sleep 30 &
	other=$!
	# as if a whoconn process with this PID had been SIGKILLed earlier:
	# same PID, another start time
	sqlite3 "$DB" "INSERT INTO conn VALUES($other, 0); DELETE FROM meta;"
	run -0 client wait-who 1 --within 0
	run -0 sqlite3 "$DB" "SELECT count(*) FROM conn WHERE pid=$other"
	[ "$output" = 0 ]
	kill "$other"
}

@test "an entry of a process that no longer exists is swept" {
	start_server
	run -0 client who
	sqlite3 "$DB" "INSERT INTO conn VALUES(999999, 0); DELETE FROM meta;"
	run -0 client wait-who 1 --within 0
}

@test "a killed connection process its parent has not reaped yet (a zombie) is not counted" {
	mkfifo "$BATS_TEST_TMPDIR/in"
	exec 5<>"$BATS_TEST_TMPDIR/in" # keeps a writer, so the session never sees EOF
	# the parent execs into sleep and never reaps its whoconn child
	WHOCONN_DB="$BATS_TEST_TMPDIR/registry.db" bash -c \
		"$WHOCONN <$BATS_TEST_TMPDIR/in >$BATS_TEST_TMPDIR/held.out 2>/dev/null & exec sleep 120" 5>&- &
	parent=$!
	# served once, so registered (README, "What WHO counts")
	printf 'WHY\n' >&5
	wait_until "the held session's reply" grep -qx 42 "$BATS_TEST_TMPDIR/held.out"
	run -0 stdio 'WHO\n'
	[ "$output" = 2 ]
	child=$(pgrep -P "$parent")
	kill -KILL "$child"
	wait_until "process $child a zombie" awk '$3 != "Z" { exit 1 }' "/proc/$child/stat"
	sqlite3 "$BATS_TEST_TMPDIR/registry.db" 'DELETE FROM meta' # the next WHO sweeps
	run -0 stdio 'WHO\n'
	[ "$output" = 1 ]
	kill "$parent"
	exec 5>&-
}

@test "peer counts mirrored by the cluster agent add to WHO until they expire" {
	start_server
	run -0 client who
	now=$(python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_BOOTTIME)*1000))')
	sqlite3 "$DB" "INSERT INTO peer(id, count, expires_ms) VALUES('a', 5, $((now + 60000))), ('b', 7, $((now - 1)))"
	run -0 client who
	[ "$output" = 6 ]
}

@test "300 connections registering at the same moment (75 sanitized) are all counted" {
	local n
	n=$(at_scale 300)
	start_server
	hold "$n"
	# all counted, however long the starts take: a rate belongs to make bench
	run -0 client wait-who $((n + 1))
	run -0 sqlite3 "$DB" 'SELECT count(*) FROM conn'
	[ "$output" = "$n" ]
	run grep 'registry' "$BATS_TEST_TMPDIR/server.log"
	[ "$output" = "" ]
}

@test "a dead row that holds the asker's own PID is not counted twice" {
	run -0 stdio 'WHO\n' # creates the registry
	db="$BATS_TEST_TMPDIR/registry.db"
	now=$(python3 -c 'import time; print(int(time.clock_gettime(time.CLOCK_BOOTTIME)*1000))')
	# no sweep is due, and a stale row carries the PID the next session runs as
	run -0 bash -c "sqlite3 $db \"INSERT OR REPLACE INTO meta VALUES('swept', $now); INSERT INTO conn VALUES(\$\$, 0)\"; WHOCONN_DB=$db exec $WHOCONN <<<WHO 2>/dev/null"
	[ "$output" = 1 ]
}

@test "a registry deleted with its -wal left behind is recreated empty, not from the old WAL" {
	db="$BATS_TEST_TMPDIR/registry.db"
	run -0 stdio 'WHO\n'
	# a change that lives only in the WAL, as a process killed before its
	# close (and its checkpoint) leaves it
	sqlite3 "$db" ".dbconfig no_ckpt_on_close on" "INSERT INTO meta VALUES('marker', 1)" >/dev/null
	[ -s "$db-wal" ]
	rm "$db"
	run -0 stdio 'WHO\n'
	[ "$output" = 1 ]
	run -0 sqlite3 "$db" "SELECT count(*) FROM meta WHERE key='marker'"
	[ "$output" = 0 ]
	run -0 sqlite3 "$db" 'PRAGMA integrity_check'
	[ "$output" = ok ]
}

@test "held connections stay counted when the lock directory is removed" {
	start_server
	hold 4
	run -0 client wait-who 5
	rm -rf "$DB-locks"
	# each held process notices (dnotify), takes its lock again in a new
	# file, and no sweep may drop it meanwhile.  The sleeps let time pass
	# (not a condition): each makes a sweep due (> 1 s since the last), and
	# the WHO after it sweeps before replying, so it must still see 5.
	sleep 1.2
	run -0 client wait-who 5 --within 0
	sleep 1.2
	run -0 client wait-who 5 --within 0
}
