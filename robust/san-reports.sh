#!/bin/sh
# san-reports.sh DIR - fails if DIR holds any sanitizer report, printing it.
# One kind is expected and skipped: socket.bats kills a connection process
# with SIGSEGV (kill -SEGV) while it waits in ppoll(); ASan cannot tell a
# signal sent by kill() from a crash and reports it.  Such a report is
# recognised by its stack: the SEGV in ppoll() called from session_run().
# A second kind carries no finding at all: a process SIGKILLed while
# LeakSanitizer was stopping its threads at exit (see below).
set -eu
bad=0 skipped=0 killed=0
for f in "$1"/*; do
	[ -e "$f" ] || continue
	if grep -q 'ERROR: AddressSanitizer: SEGV on unknown address' "$f" &&
	   grep -Eq '#0 0x[0-9a-f]+ in ppoll ' "$f" &&
	   grep -Eq '#2 0x[0-9a-f]+ in session_run ' "$f" &&
	   [ "$(grep -c 'ERROR:' "$f")" -eq 1 ]; then
		skipped=$((skipped + 1))
		continue
	fi
	# LeakSanitizer stops the process's threads at exit to scan them; a
	# test's teardown that SIGKILLs the server's children at that moment
	# leaves only this line, and no finding
	if ! grep -q 'ERROR:' "$f" && grep -Eq '^==[0-9]+==Unable to get registers from thread [0-9]+\.$' "$f" &&
	   [ "$(grep -c . "$f")" -eq 1 ]; then
		killed=$((killed + 1))
		continue
	fi
	# An empty file: the process was SIGKILLed (a teardown) after the
	# sanitizer had opened its log, before it wrote a line: no finding.
	# Seen once with both cores kept busy by a CPU hog.
	if [ ! -s "$f" ]; then
		killed=$((killed + 1))
		continue
	fi
	echo "sanitizer report $f:" >&2
	cat "$f" >&2
	bad=$((bad + 1))
done
echo "sanitizer reports: $bad, skipped (SIGSEGV sent by a test): $skipped, (SIGKILLed during the leak check): $killed"
[ "$bad" -eq 0 ]
