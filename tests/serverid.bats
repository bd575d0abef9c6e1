#!/usr/bin/env bats
# serverid.c derives WHERE's server id without libsystemd: it must equal
# sd_id128_get_machine_app_specific() of the installed libsystemd, value and
# error alike (serverid.h).  tests/serverid-check prints both and exits 0
# when they agree; synthetic machine ids are bound over /etc/machine-id in a
# private mount namespace of the check alone, so these tests need root.

load helpers

CHECK="$TOP/tests/serverid-check"

setup_file() {
	make -C "$TOP" -s tests/serverid-check >&2
}

need_root() {
	[ "$(id -u)" = 0 ] || skip "needs root: a private mount namespace to replace /etc/machine-id"
}

# agree [ARGS...] - runs the check; both lines must name the same result
agree() {
	run "$CHECK" "$@"
	if [ "$status" = 77 ]; then skip "${lines[0]}"; fi
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 2 ]
	[ "${lines[0]#serverid: }" = "${lines[1]#libsystemd: }" ]
}

# with_machine_id CONTENT [ARGS...] - agree, with CONTENT (printf %b) as
# /etc/machine-id
with_machine_id() {
	local content=$1
	shift
	printf '%b' "$content" >"$BATS_TEST_TMPDIR/machine-id"
	agree --machine-id-file "$BATS_TEST_TMPDIR/machine-id" "$@"
}

@test "the server id equals libsystemd's for this machine's /etc/machine-id" {
	[ -s /etc/machine-id ] || skip "this machine has no /etc/machine-id"
	agree
	[[ "${lines[0]}" =~ ^serverid:\ [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
}

@test "the server id equals libsystemd's for other application ids" {
	[ -s /etc/machine-id ] || skip "this machine has no /etc/machine-id"
	for app in 00000000000000000000000000000000 ffffffffffffffffffffffffffffffff \
		0123456789abcdef0123456789abcdef; do
		agree --app-id "$app"
	done
}

@test "the server id equals libsystemd's for synthetic machine ids, with and without LF, in either case" {
	need_root
	for id in 0123456789abcdef0123456789abcdef ffffffffffffffffffffffffffffffff \
		00000000000000000000000000000001 5c2a8e07b1d94f0e9a3b6d2c7e14f6a9; do
		with_machine_id "$id\n"
		first=${lines[0]}
		with_machine_id "$id"
		[ "${lines[0]}" = "$first" ]
		with_machine_id "$(tr a-f A-F <<<"$id")\n"
		[ "${lines[0]}" = "$first" ]
	done
}

@test "different machine ids give different server ids" {
	need_root
	with_machine_id "0123456789abcdef0123456789abcdef\n"
	a=${lines[0]}
	with_machine_id "0123456789abcdef0123456789abcdee\n"
	[ "${lines[0]}" != "$a" ]
}

@test "a missing /etc/machine-id is -ENOENT, as in libsystemd" {
	need_root
	agree --no-machine-id
	[ "${lines[0]}" = "serverid: -ENOENT" ]
}

@test "a directory in place of /etc/machine-id is -EISDIR, as in libsystemd" {
	need_root
	agree --machine-id-dir
	[ "${lines[0]}" = "serverid: -EISDIR" ]
}

@test "an empty or all-zero machine id is -ENOMEDIUM, as in libsystemd" {
	need_root
	with_machine_id ""
	[ "${lines[0]}" = "serverid: -ENOMEDIUM" ]
	with_machine_id "00000000000000000000000000000000\n"
	[ "${lines[0]}" = "serverid: -ENOMEDIUM" ]
}

@test "an uninitialized machine id (first boot) is -ENOPKG, as in libsystemd" {
	need_root
	with_machine_id "uninitialized\n"
	[ "${lines[0]}" = "serverid: -ENOPKG" ]
	with_machine_id "uninitialized"
	[ "${lines[0]}" = "serverid: -ENOPKG" ]
}

@test "an invalid machine id is -EINVAL, as in libsystemd" {
	need_root
	for bad in "uninitializeX\n" "01234567-89ab-cdef-0123-456789abcdef\n" \
		"0123456789abcdef0123456789abcde\n" "0123456789abcdef0123456789abcdef\r\n" \
		"0123456789abcdef0123456789abcdefX" "0123456789abcdef0123456789abcdeg\n" \
		"0123456789abcdef0123456789abcdef\n\n" " 123456789abcdef0123456789abcdef\n" \
		"$(printf 'a%.0s' $(seq 50))"; do
		with_machine_id "$bad"
		[ "${lines[0]}" = "serverid: -EINVAL" ]
	done
}

@test "the derivation is HMAC-SHA256 keyed by the machine id over the app id, made a v4 UUID" {
	# an independent HMAC-SHA256 (Python's hmac) of the same bytes
	for pair in "0123456789abcdef0123456789abcdef 6b2f0ed45a914c37a81d93c47e05b26f" \
		"ffffffffffffffffffffffffffffffff 00000000000000000000000000000000" \
		"5c2a8e07b1d94f0e9a3b6d2c7e14f6a9 0123456789abcdef0123456789abcdef"; do
		set -- $pair
		want=$(python3 -c '
import hmac, hashlib, sys, uuid
b = bytearray(hmac.new(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), hashlib.sha256).digest()[:16])
b[6] = (b[6] & 0x0f) | 0x40
b[8] = (b[8] & 0x3f) | 0x80
print(uuid.UUID(bytes=bytes(b)))' "$1" "$2")
		run -0 "$CHECK" --app-specific "$1" "$2"
		[ "$output" = "serverid: $want" ]
	done
}
