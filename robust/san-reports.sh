#!/bin/sh
# san-reports.sh DIR - fails if DIR holds any sanitizer report, printing it.
# One kind is expected and skipped: socket.bats kills a connection process
# with SIGSEGV (kill -SEGV) while it waits in ppoll(); ASan cannot tell a
# signal sent by kill() from a crash and reports it.  Such a report is
# recognised by its stack: the SEGV in ppoll() called from session_run().
set -eu
bad=0 skipped=0
for f in "$1"/*; do
	[ -e "$f" ] || continue
	if grep -q 'ERROR: AddressSanitizer: SEGV on unknown address' "$f" &&
	   grep -Eq '#0 0x[0-9a-f]+ in ppoll ' "$f" &&
	   grep -Eq '#2 0x[0-9a-f]+ in session_run ' "$f" &&
	   [ "$(grep -c 'ERROR:' "$f")" -eq 1 ]; then
		skipped=$((skipped + 1))
		continue
	fi
	echo "sanitizer report $f:" >&2
	cat "$f" >&2
	bad=$((bad + 1))
done
echo "sanitizer reports: $bad, skipped (SIGSEGV sent by a test): $skipped"
[ "$bad" -eq 0 ]
