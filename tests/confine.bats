#!/usr/bin/env bats
# Confinement, proved by behaviour outside systemd too: tests/confine-probe
# links whoconn's own lib/confine.c, confines itself exactly as a connection
# process does (for the registry $WHOCONN_DB) and then tries what must be
# denied.  tests/systemd.bats runs the same probe as whoconn@.service's
# ExecStart=, with the unit's settings on top.

load helpers

bats_require_minimum_version 1.5.0

PROBE="$TOP/tests/confine-probe"

setup() {
	[ -x "$PROBE" ] || skip "tests/confine-probe is not built (make check builds it)"
	mkdir -p "$BATS_TEST_TMPDIR/reg"
	run -0 --separate-stderr env WHOCONN_DB="$BATS_TEST_TMPDIR/reg/registry.db" "$PROBE"
}

# Whether the kernel offers Landlock, asked of the kernel itself (its ABI
# version), not of the probe: a probe whose confinement broke must fail.
landlock_or_skip() {
	python3 -c 'import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
# landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION), x86_64
sys.exit(0 if libc.syscall(444, None, 0, 1) >= 1 else 1)' ||
		skip "this kernel or container offers no Landlock: unix permissions are the only fence"
}

@test "a confined connection process may create files and directories in the registry directory" {
	[ "${lines[0]}" = "create a file in the registry directory: allowed" ]
	[ "${lines[1]}" = "mkdir in the registry directory: allowed" ]
}

@test "a confined connection process may not write anywhere else" {
	landlock_or_skip
	[ "${lines[2]}" = "mkdir /tmp/whoconn-probe.dir: denied (Permission denied)" ]
	[ "${lines[3]}" = "create /tmp/whoconn-probe: denied (Permission denied)" ]
	[ "${lines[4]}" = "create /var/tmp/whoconn-probe: denied (Permission denied)" ]
	[ "${lines[5]}" = "create /dev/shm/whoconn-probe: denied (Permission denied)" ]
}

@test "a confined connection process cannot fork" {
	[ "${lines[6]}" = "fork: denied (Operation not permitted)" ]
}

@test "a confined connection process cannot open network sockets, only journald's datagram socket" {
	[ "${lines[7]}" = "open an AF_INET socket: denied (Operation not permitted)" ]
	[ "${lines[8]}" = "open an AF_INET6 socket: denied (Operation not permitted)" ]
	[ "${lines[9]}" = "open an AF_UNIX stream socket: denied (Operation not permitted)" ]
	[ "${lines[10]}" = "open an AF_UNIX datagram socket (for journald): allowed" ]
	[ "${lines[11]}" = "open an AF_NETLINK socket: denied (Operation not permitted)" ]
}

@test "a confined connection process cannot become root, and has set no-new-privileges itself" {
	[ "${lines[12]}" = "setuid(0): denied (Operation not permitted)" ]
	# what whoconn@.service's NoNewPrivileges= did until issue 20
	[ "${lines[13]}" = "no new privileges (NoNewPrivs): 1" ]
}

@test "a confined connection process can still read what WHERE needs" {
	[ "${lines[15]}" = "read /etc/machine-id: allowed" ]
}

@test "a confined connection process cannot make memory executable (what MemoryDenyWriteExecute= would do)" {
	[ "${lines[16]}" = "map writable and executable memory: denied (Operation not permitted)" ]
	[ "${lines[17]}" = "make memory executable: denied (Operation not permitted)" ]
}

@test "a confined connection process cannot execute programs" {
	[ "${lines[18]}" = "execute /bin/true: denied (Operation not permitted)" ]
	[ "${#lines[@]}" -eq 19 ]
}
