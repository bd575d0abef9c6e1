# cluster-hosts.bash - three whoconn "hosts" on one machine, sourced by
# scripts/run-cluster (make run-cluster) and tests/cluster-helpers.bash
# (tests/cluster.bats).  Needs root (network namespaces).
#
# Each host is a network namespace of its own, with one veth cable to a
# bridge in a fourth namespace (the "switch"), address 10.254.0.N/24 on
# its eth0.  Nothing is created in the root namespace: the addresses and
# etcd's ports 2379/2380 exist only inside the namespaces, so concurrent
# runs and the host's own etcd never collide.  In each host run an etcd
# member (cl_etcd_start) and the whoconn-sync agent (cl_sync_start).
#
# The caller sets, before calling anything:
#   CL_NS         the namespaces' prefix: hosts CL_NS-1 .. CL_NS-3, switch CL_NS-sw
#   CL_IDS        the servers' ids, indexed 1-3: hosts sharing /etc/machine-id
#                 need distinct WHOCONN_SERVER_IDs
#   WHOCONN_SYNC  the agent's binary
#   CL_TTL, CL_STALENESS  the agents' lease TTL and staleness bound, seconds
#                 (empty: whoconn-sync's defaults)
# and defines dir N (host N's directory: etcd data, registry, logs, pid
# files).  scheme prints http; a caller speaking TLS redefines it after
# sourcing this file, and passes the certificates' options and settings.

ns() { echo "$CL_NS-$1"; } # namespace of host N (1-3), or "sw"
# Foreground only: a function sent to the background runs in a subshell,
# whose PID ($!) is not the command's; background starts call ip directly.
in_ns() {
	local n="$1"
	shift
	ip netns exec "$(ns "$n")" "$@"
}
addr() { echo "10.254.0.$1"; }
scheme() { echo http; }

net_up() {
	ip netns add "$(ns sw)"
	ip -n "$(ns sw)" link add br0 type bridge
	ip -n "$(ns sw)" link set br0 up
	for n in 1 2 3; do
		ip netns add "$(ns "$n")"
		ip -n "$(ns "$n")" link set lo up
		ip -n "$(ns sw)" link add "v$n" type veth peer name eth0 netns "$(ns "$n")"
		ip -n "$(ns sw)" link set "v$n" master br0 up
		ip -n "$(ns "$n")" addr add "$(addr "$n")/24" dev eth0
		ip -n "$(ns "$n")" link set eth0 up
	done
}

# net_down - kills every process left in the namespaces, removes them.
net_down() {
	local n pids
	for n in 1 2 3 sw; do
		ip netns list | grep -q "^$(ns "$n")\b" || continue
		pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
	done
	sleep 0.1
	for n in 1 2 3 sw; do
		ip netns del "$(ns "$n")" 2>/dev/null || true
	done
}

# cl_etcd_start N [ETCD-OPTION...] - host N's etcd member in the background,
# listening for clients on 10.254.0.N and 127.0.0.1 (port 2379); its PID in
# dir N/etcd.pid, its log in dir N/etcd.log.
cl_etcd_start() {
	local n="$1" s
	shift
	s=$(scheme)
	local cluster="s1=$s://$(addr 1):2380,s2=$s://$(addr 2):2380,s3=$s://$(addr 3):2380"
	mkdir -p "$(dir "$n")"
	# pre-vote: a member rejoining after a partition does not disrupt the
	# cluster's leader; compaction bounds the history a watch can ask for.
	ip netns exec "$(ns "$n")" etcd --name "s$n" --data-dir "$(dir "$n")/etcd" "$@" \
		--listen-client-urls "$s://$(addr "$n"):2379,$s://127.0.0.1:2379" \
		--advertise-client-urls "$s://$(addr "$n"):2379" \
		--listen-peer-urls "$s://$(addr "$n"):2380" \
		--initial-advertise-peer-urls "$s://$(addr "$n"):2380" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "$CL_NS" \
		--pre-vote=true --auto-compaction-mode=revision --auto-compaction-retention=1000 \
		--heartbeat-interval=100 --election-timeout=1000 \
		--log-level=warn --logger=zap >>"$(dir "$n")/etcd.log" 2>&1 &
	echo $! >"$(dir "$n")/etcd.pid"
}

# cl_sync_start N [NAME=VALUE...] - host N's agent in the background, its
# own member first in the endpoint list, the registry dir N/registry.db;
# the settings given override these.  PID in dir N/sync.pid, log in
# dir N/sync.log.
cl_sync_start() {
	local n="$1" s m eps extra=()
	shift
	s=$(scheme)
	eps="$s://127.0.0.1:2379"
	for m in 1 2 3; do [ "$m" = "$n" ] || eps="$eps,$s://$(addr "$m"):2379"; done
	[ -z "${CL_TTL:-}" ] || extra+=(WHOCONN_LEASE_TTL="$CL_TTL")
	[ -z "${CL_STALENESS:-}" ] || extra+=(WHOCONN_STALENESS="$CL_STALENESS")
	ip netns exec "$(ns "$n")" env WHOCONN_ETCD_ENDPOINTS="$eps" "${extra[@]}" \
		WHOCONN_SERVER_ID="${CL_IDS[$n]}" WHOCONN_DB="$(dir "$n")/registry.db" "$@" \
		"$WHOCONN_SYNC" >>"$(dir "$n")/sync.log" 2>&1 &
	echo $! >"$(dir "$n")/sync.pid"
}
