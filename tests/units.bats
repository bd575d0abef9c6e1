#!/usr/bin/env bats
# The systemd units as shipped: they verify cleanly and carry the settings
# that keep the service up (see README, "Decisions").

load helpers

setup() {
	mkdir -p "$BATS_TEST_TMPDIR/units"
	for u in whoconn.socket whoconn@.service whoconn-proxy.socket whoconn-proxy@.service; do
		sed -e "s|@BINDIR@|$TOP|g" "$TOP/units/$u.in" >"$BATS_TEST_TMPDIR/units/$u"
	done
}

@test "the units pass systemd-analyze verify" {
	cd "$BATS_TEST_TMPDIR/units"
	run -0 --separate-stderr systemd-analyze verify --man=no ./whoconn.socket ./whoconn@.service \
		./whoconn-proxy.socket ./whoconn-proxy@.service
	[ "$stderr" = "" ]
}

@test "the PROXY socket listens on 127.0.0.1:4243, lets only loopback in, and its service reads the header by option" {
	run -0 grep -x 'ListenStream=127.0.0.1:4243' "$TOP/units/whoconn-proxy.socket.in"
	run -0 grep -x 'Accept=yes' "$TOP/units/whoconn-proxy.socket.in"
	run -0 grep -x 'IPAddressDeny=any' "$TOP/units/whoconn-proxy.socket.in"
	run -0 grep -x 'IPAddressAllow=localhost' "$TOP/units/whoconn-proxy.socket.in"
	run -0 grep '^ExecStart=' "$TOP/units/whoconn-proxy@.service.in"
	[ "$output" = "ExecStart=@BINDIR@/whoconn --proxy-protocol v2" ]
	# and only it: the plain service never reads a header
	run -0 grep '^ExecStart=' "$TOP/units/whoconn@.service.in"
	[ "$output" = "ExecStart=@BINDIR@/whoconn" ]
}

@test "the PROXY service is the plain one but for its description and the option" {
	run -0 diff <(grep -vE '^(#|Description=|ExecStart=)' "$TOP/units/whoconn@.service.in") \
		<(grep -vE '^(#|Description=|ExecStart=)' "$TOP/units/whoconn-proxy@.service.in")
}

@test "the socket accepts each connection in its own process on port 4242" {
	run -0 grep -x 'Accept=yes' "$TOP/units/whoconn.socket.in"
	run -0 grep -x 'ListenStream=4242' "$TOP/units/whoconn.socket.in"
}

@test "the socket raises MaxConnections above the default of 64 and disables the trigger limit" {
	run -0 grep -x 'MaxConnections=1024' "$TOP/units/whoconn.socket.in"
	run -0 grep -x 'TriggerLimitIntervalSec=0' "$TOP/units/whoconn.socket.in"
}

@test "the service sends stderr to the journal, never to the client" {
	run -0 grep -x 'StandardError=journal' "$TOP/units/whoconn@.service.in"
}

@test "the registry directory is made once by tmpfiles.d, whoconn's and mode 0700, never by a connection's unit" {
	# an instance with RuntimeDirectory= and no RuntimeDirectoryPreserve=yes
	# would delete it under every other connection; tests/systemd.bats
	# proves the directory outlives the instances
	run -0 grep -v '^#' "$TOP/units/whoconn.tmpfiles"
	[ "$output" = "d /run/whoconn 0700 whoconn whoconn -" ]
	run -1 grep '^RuntimeDirectory' "$TOP/units/whoconn@.service.in"
}

@test "make install puts the binary and units under DESTDIR with paths substituted" {
	run -0 make -C "$TOP" --no-print-directory install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/usr
	[ -x "$BATS_TEST_TMPDIR/root/usr/bin/whoconn" ]
	run -0 grep -x 'ExecStart=/usr/bin/whoconn' "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn@.service"
	[ -f "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn.socket" ]
	[ -f "$BATS_TEST_TMPDIR/root/usr/lib/sysusers.d/whoconn.conf" ]
	run -0 grep -x 'ExecStart=/usr/bin/whoconn --proxy-protocol v2' \
		"$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-proxy@.service"
	[ -f "$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-proxy.socket" ]
	cmp "$TOP/units/whoconn.tmpfiles" "$BATS_TEST_TMPDIR/root/usr/lib/tmpfiles.d/whoconn.conf"
}

@test "make install substitutes the agent unit's paths and installs the cluster.md its Documentation= names" {
	run -0 make -C "$TOP" --no-print-directory install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/opt/wc
	local u="$BATS_TEST_TMPDIR/root/opt/wc/lib/systemd/system/whoconn-sync.service"
	run -0 grep -E '^(ExecStart|Documentation)=' "$u"
	[ "${lines[0]}" = "Documentation=man:whoconn-sync(8) man:whoconn(8) file:///opt/wc/share/doc/whoconn/cluster.md" ]
	[ "${lines[1]}" = "ExecStart=/opt/wc/bin/whoconn-sync" ]
	cmp "$TOP/docs/cluster.md" "$BATS_TEST_TMPDIR/root/opt/wc/share/doc/whoconn/cluster.md"
	run -1 grep -E '@[A-Z]+@' "$u"
}

@test "systemd-analyze security rates the installed whoconn-sync.service at an exposure of 1.5 or less" {
	run -0 make -C "$TOP" --no-print-directory install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/usr
	run -0 systemd-analyze security --offline=true --threshold=15 \
		"$BATS_TEST_TMPDIR/root/usr/lib/systemd/system/whoconn-sync.service"
	run -0 awk '/Overall exposure level/ { print $(NF-2) }' <<<"$output"
	echo "exposure: $output"
	[ "$(awk -v x="$output" 'BEGIN { print (x <= 1.5) ? "ok" : "too exposed" }')" = ok ]
}
