#!/usr/bin/env bats
# whoconn(8) says what the program does: it is lint-clean, and its
# synopsis, options, environment and exit statuses match the program.

load helpers

MAN="$TOP/man/whoconn.8"

setup() {
	command -v mandoc >/dev/null || skip "needs mandoc (Debian package mandoc)"
}

# section NAME - one section of the rendered page, indentation removed.
section() {
	mandoc -T ascii "$MAN" | col -bx |
		awk -v s="$1" '/^[A-Z]/ { on = ($0 == s); next } on' | sed 's/^ *//'
}

@test "the man page passes mandoc -T lint without a warning" {
	run -0 mandoc -T lint -W warning "$MAN"
	[ "$output" = "" ]
}

@test "the man page synopsis is the usage of --help" {
	# every line of the usage, up to its first blank line, is the
	# synopsis's line, in order, and there are no others
	run -0 "$WHOCONN" --help
	usage=$(sed -e '/^$/,$d' -e 's/^usage: //' -e 's/^ *//' <<<"$output")
	run -0 section SYNOPSIS
	synopsis=$(sed -e '/^$/,$d' <<<"$output")
	printf 'usage:\n%s\nsynopsis:\n%s\n' "$usage" "$synopsis"
	[ "$(wc -l <<<"$usage")" -ge 2 ]
	[ "$synopsis" = "$usage" ]
}

@test "every option of --help is described in OPTIONS with its default" {
	run -0 section OPTIONS
	opts=$output
	for opt in $("$WHOCONN" --help | grep -oE '^  --[a-z-]+'); do
		grep -qE "^$opt( |$)" <<<"$opts" || { echo "missing: $opt"; return 1; }
	done
	grep -qF 'Default: 60, range 1-86400.' <<<"$opts"
	grep -qF '/run/whoconn/registry.db' <<<"$opts"
}

@test "every environment variable whoconn reads is in ENVIRONMENT" {
	run -0 section ENVIRONMENT
	env=$output
	for var in $(settings_of "$TOP/whoconn.c"); do
		grep -qE "^$var\$" <<<"$env" || { echo "missing: $var"; return 1; }
	done
}

@test "every exit status of whoconn.h is in EXIT STATUS" {
	run -0 section "EXIT STATUS"
	st=$output
	for n in $(grep -oE 'WHOCONN_EXIT_[A-Z]+ = [0-9]+' "$TOP/whoconn.h" | awk '{print $3}'); do
		grep -qE "^$n( |$)" <<<"$st" || { echo "missing: $n"; return 1; }
	done
}

# sync_section NAME - one section of whoconn-sync(8), indentation removed.
sync_section() {
	mandoc -T ascii "$TOP/man/whoconn-sync.8" | col -bx |
		awk -v s="$1" '/^[A-Z]/ { on = ($0 == s); next } on' | sed 's/^ *//'
}

@test "whoconn-sync(8) passes mandoc -T lint without a warning" {
	run -0 mandoc -T lint -W warning "$TOP/man/whoconn-sync.8"
	[ "$output" = "" ]
}

@test "every option of whoconn-sync --help is in whoconn-sync(8) OPTIONS, with its environment variable" {
	[ -x "$TOP/whoconn-sync" ] || skip "whoconn-sync not built (make whoconn-sync)"
	run -0 sync_section OPTIONS
	opts=$output
	for opt in $("$TOP/whoconn-sync" --help | grep -oE '^  --[a-z-]+'); do
		grep -qE "^$opt( |$)" <<<"$opts" || { echo "missing: $opt"; return 1; }
	done
	for var in $(settings_of "$TOP/lib/sync-config.c"); do
		grep -qF "($var)" <<<"$opts" || { echo "missing: $var"; return 1; }
	done
}

@test "every whoconn-sync setting is in the example cluster.conf and in docs/cluster.md" {
	for var in $(settings_of "$TOP/lib/sync-config.c"); do
		[ "$var" = WHOCONN_DB ] && continue # whoconn's own setting, documented there
		grep -qE "^#?$var=" "$TOP/units/cluster.conf.example" || { echo "not in cluster.conf.example: $var"; return 1; }
		grep -qF "| \`$var\` |" "$TOP/docs/cluster.md" || { echo "not in docs/cluster.md: $var"; return 1; }
	done
}
