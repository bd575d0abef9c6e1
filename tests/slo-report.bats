#!/usr/bin/env bats
# bench/slo/report.py, the SLO harness's judge (docs/slo.md), on runs made
# up here: the gate of make check's check-slo stage must fail on what it is
# for and pass otherwise.  The harness itself runs in check-slo.

load helpers

REPORT="$TOP/bench/slo/report.py"

# fake_run [FAILED [LOST_AT [WHO]]] - a 60 s run in $BATS_TEST_TMPDIR/run:
# 2,400 short sessions (FAILED of them refused), three held connections
# (on servers b and c all along, and on a, lost when a is killed at 10 s),
# one more held connection on c lost at LOST_AT s (none if 0), and the held
# connections' WHO answers WHO (default: the right total, 3 or 2).
fake_run() {
	mkdir -p "$BATS_TEST_TMPDIR/run"
	python3 - "$BATS_TEST_TMPDIR/run" "${1:-0}" "${2:-0}" "${3:-}" <<'PY'
import sys
d, failed, lost_at, who = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t0 = 1000.0
with open(d + "/events.tsv", "w") as f:
    f.write("%.3f\tstart\t-\t-\n" % t0)
    f.write("%.3f\tfault\tkill\t1\n%.3f\trecovered\tkill\t1\n" % (t0 + 10, t0 + 15))
    f.write("%.3f\tend\t-\t-\n" % (t0 + 60))
req, conns = open(d + "/requests.tsv", "w"), open(d + "/conns.tsv", "w")
rid = 0
for i in range(2400):
    rid += 1
    t = t0 + 0.025 * i
    bad = i % 100 == 50 and failed > 0
    if bad:
        failed -= 1
    req.write("%.3f\tshort\tWHY\t%s\t%.3f\t%s\t\t%d\n" % (t, "conn" if bad else "ok", 0.05, "" if bad else "42", rid))
    conns.write("%.3f\tshort\t%.3f\t%.3f\t\t%s\n" % (t, 0 if bad else t + 0.05, t + 0.06, "conn" if bad else "ok"))
held = [("a", t0 + 10.0, "eof"), ("b", t0 + 60, "end"), ("c", t0 + 60, "end")]
if lost_at:
    held.append(("c", t0 + lost_at, "eof"))
for server, close, how in held:
    conns.write("%.3f\theld\t%.3f\t%.3f\t%s\t%s\n" % (t0 + 0.1, t0 + 0.2, close, server, how))
for server, close, how in held[1:3]:
    for k in range(20, 590):
        t = t0 + 0.1 * k
        total = 2 + int(t < t0 + 10) + int(bool(lost_at) and t < t0 + lost_at)
        rid += 1
        req.write("%.3f\theld\tWHO\tok\t0.010\t%s\t%s\t%d\n" % (t, who or total, server, rid))
PY
}

report() {
	python3 "$REPORT" --dir "$BATS_TEST_TMPDIR/run" --out "$BATS_TEST_TMPDIR/run" --ids a,b,c --seconds 60 "$@"
}

@test "the SLO report passes a run where every request was good, with the loss on the killed server charged to it" {
	fake_run
	run -0 report --gate 99.9
	[[ "$output" == *"availability 100.000 %"* ]]
	[[ "$output" == *"held lost on faulted servers 1, elsewhere 0"* ]]
	grep -q '^| kill | 1 | ' "$BATS_TEST_TMPDIR/run/slo-RESULTS.md"
}

@test "the SLO gate fails when availability at the front falls below 99.9 %" {
	fake_run 3
	run -0 report --gate 99.9
	fake_run 20
	run -1 report --gate 99.9
	[[ "$output" == *"FAILED: availability"* ]]
}

@test "the SLO gate fails when a held connection is lost on a server no fault touched" {
	fake_run 0 40
	run -1 report --gate 99.9
	[[ "$output" == *"1 held connections lost on servers no fault touched"* ]]
}

@test "a short session refused once and answered on its retry within 1 s counts only in the retry-once figure" {
	fake_run 1
	printf '%s\tretry\tWHY\tok\t0.050\t42\t\t51\n' 1001.300 >>"$BATS_TEST_TMPDIR/run/requests.tsv"
	run -0 report
	[[ "$output" == *"short 99.958 %, retry once 100.000 %"* ]]
}

@test "a held WHO lost with its connection counts in the retry-once figure only when the new connection answers it within 1 s of its send" {
	fake_run
	local r="$BATS_TEST_TMPDIR/run/requests.tsv"
	# lost at 10.3 s, asked again on the new connection, answered 0.45 s after its send
	printf '%s\theld\tWHO\tconn\t0.400\t\ta\t99001\n' 1009.900 >>"$r"
	printf '%s\theld-retry\tWHO\tok\t0.050\t3\tb\t99001\n' 1010.300 >>"$r"
	# the same, answered 1.2 s after its send: failed all the same
	printf '%s\theld\tWHO\tconn\t0.350\t\ta\t99002\n' 1009.950 >>"$r"
	printf '%s\theld-retry\tWHO\tok\t1.150\t3\tb\t99002\n' 1010.000 >>"$r"
	run -0 report
	# 3,542 requests (2,400 short, 1,142 held WHOs): 2 failed, 1 with a retry
	[[ "$output" == *"availability 99.944 % (2 of 3542 failed;"* ]]
	[[ "$output" == *"held 99.825 %, all retrying once 99.972 %)"* ]]
	grep -q '^| held connections.* WHO, asked once more on the new connection when one is lost | 99.912 % (1 failed) |$' \
		"$BATS_TEST_TMPDIR/run/slo-RESULTS.md"
}

@test "WHO answers off the true total are counted outside the bounds in steady windows" {
	fake_run
	run -0 report
	[[ "$output" == *"WHO in bounds in steady windows 100.00 %"* ]]
	fake_run 0 0 99
	run -0 report
	[[ "$output" == *"WHO in bounds in steady windows 0.00 %"* ]]
}
