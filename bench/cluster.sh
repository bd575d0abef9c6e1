#!/bin/sh
# bench/cluster.sh [RUNS] - runs the timed scenarios of tests/cluster.bats
# RUNS times (default 5) and prints min / median / max of each measured
# time, in seconds, as a Markdown table.  Needs root (network namespaces).
# Each time runs from just before the event to the first right WHO answer
# of a client polling every 20 ms; it includes starting that client
# (ip netns exec + python, tens of ms), so it is an upper bound.  `make bench-cluster`.
set -eu
runs=${1:-5}
top=$(cd "$(dirname "$0")/.." && pwd)
times=$(mktemp)
trap 'rm -f "$times"' EXIT
i=0
failed=0
while [ "$i" -lt "$runs" ]; do
	# a failed scenario is reported, and its times are not recorded
	WHOCONN_CLUSTER_TIMES=$times bats --print-output-on-failure -f 'spread|killed|partitioned|restored' \
		"$top/tests/cluster.bats" >&2 || failed=$((failed + 1))
	i=$((i + 1))
done
echo "runs with a failed scenario: $failed of $runs"
echo
python3 - "$times" "$runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, t = line.split()
    rows.setdefault(name, []).append(float(t))
what = {
    "convergence": "new clients counted by every server (from the last clients' connect)",
    "failover-follower": "killed host (etcd follower) dropped by the others (from the kill)",
    "failover-leader": "killed host (etcd leader) dropped by the others (from the kill)",
    "partition-majority": "isolated host dropped by the majority (from the cut)",
    "partition-isolated-alone": "isolated host counts only its own clients (from the cut)",
    "partition-heal": "exact total on every host (from the heal)",
    "restore": "exact total on every host after quorum loss and a dead host (from the first restart)",
}
print("| scenario | samples | min s | median s | max s |")
print("|---|---|---|---|---|")
for name in what:
    v = rows.get(name)
    if v:
        print("| %s: %s | %d | %.3f | %.3f | %.3f |" % (name, what[name], len(v), min(v), statistics.median(v), max(v)))
print("\n%s runs, lease TTL 2 s, staleness bound 3 s, etcd 3.4 election timeout 1 s." % sys.argv[2])
PY
