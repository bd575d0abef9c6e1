#!/bin/bash
# bench/run.sh - the whoconn benchmark (issues 4 and 12): whoconn side by
# side with its anchors under the same launchers, interleaved so that the
# noise of a shared machine hits all alike; ratios are the headline.
# Anchors: bench/trivial (the exec limit: touches nothing), bench/naive (the
# design card done the obvious way: the peer to beat) and, under a real
# systemd, a bare and a twin unit.
#
#   bench/run.sh [--smoke] [--parts 1,2,3,4,5[,6]] [--out DIR]
#
# Parts: 1 systemd-socket-activate, sequential and parallel clients:
#          whoconn vs trivial vs naive
#        2 a real systemd (Accept=yes) in a throwaway systemd-nspawn container:
#          shipped units vs a bare unit pair vs a twin unit
#        3 10,000 held connections: WHO exact, WHO latency, PSS per process
#          (whoconn, naive, trivial)
#        4 instructions per connection (callgrind) and CPU per spawn
#          (whoconn, naive, trivial)
#        5 the same binaries under xinetd and ucspi-tcp's tcpserver
#        6 (only when asked) the unit's [Service] settings one at a time
#          against a bare unit, in a container like part 2 (U_ROUNDS=16,
#          U_SECS=2, U_CLIENTS=2; U_STRACE=N system calls per variant over
#          N connections; U_NSS_FILES=1 users and groups from files only)
# Writes DIR/RESULTS.md, DIR/plot.png, DIR/results.tsv (every number, one per
# line: part variant key value) and DIR/raw/ (every tool's own output).
# Every load run is bounded in count and seconds and talks to 127.0.0.1;
# everything started is stopped on exit, by PID.
# --smoke runs every part for a second or two with tiny counts: make check
# uses it, with bench/check-smoke, to prove the harness still works.
set -euo pipefail

ARGS="$*"
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/bench
WHOCONN=${WHOCONN_BIN:-$TOP/whoconn}
TRIVIAL=$B/trivial
NAIVE=$B/naive
WCLOAD=$B/wcload
SMOKE=0
PARTS=1,2,3,4,5
OUT=$B
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) SMOKE=1 ;;
	--parts) PARTS=$2; shift ;;
	--out) OUT=$2; shift ;;
	*) echo "usage: bench/run.sh [--smoke] [--parts 1,2,3,4,5[,6]] [--out DIR]" >&2; exit 2 ;;
	esac
	shift
done

# Sizes of each part: the full run, then the smoke.  Seconds are per run.
if [ $SMOKE = 1 ]; then
	CONC="1 2"; ROUNDS=1; SECS=1; MAXN=400
	SD_CONC="2"; SD_ROUNDS=1; SD_SECS=1
	HOLD_N=${HOLD_N:-40}; HOLD_K=20
	SPAWN_N=20; PEER_ROUNDS=1; PEER_SECS=1
else
	CONC="1 2 4 8 16"; ROUNDS=3; SECS=2; MAXN=100000
	SD_CONC="1 2 8 16"; SD_ROUNDS=3; SD_SECS=3
	HOLD_N=${HOLD_N:-10000}; HOLD_K=500
	SPAWN_N=500; PEER_ROUNDS=3; PEER_SECS=2
fi

mkdir -p "$OUT/raw"
RAW=$OUT/raw
TSV=$OUT/results.tsv
: >"$TSV"
WORK=$(mktemp -d /dev/shm/whoconn-bench.XXXXXX) # tmpfs, like /run in production
PIDS=()
NSPAWN_PID=

log() { echo "bench: $*" >&2; }
has_part() { case ",$PARTS," in *",$1,"*) return 0 ;; esac; return 1; }
# record PART VARIANT KEY VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$TSV"; }
# get PART VARIANT KEY - a recorded value, or "-"
get() { awk -F'\t' -v p="$1" -v v="$2" -v k="$3" '$1==p&&$2==v&&$3==k{x=$4} END{print (x==""?"-":x)}' "$TSV"; }
# kv KEY LINE - the value of KEY=... in a wcload result line
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "-"} else if(NR%2){print a[(NR+1)/2]} else {printf "%.1f\n",(a[NR/2]+a[NR/2+1])/2}}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if(a=="-"||b=="-"||b==0) print "-"; else printf "%.3f\n", a/b}'; }

free_port() {
	"$TOP/tests/free-port"
}

wait_port() {
	for _ in $(seq 200); do
		nc -z 127.0.0.1 "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	log "nothing listens on 127.0.0.1:$1"
	return 1
}

# stop PID - stops a launcher we started and the connection processes it left
stop_pid() {
	local p=$1
	kill "$p" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		pkill -KILL -P "$p" 2>/dev/null || true
		stop_pid "$p"
	done
	if [ -n "$NSPAWN_PID" ]; then stop_nspawn; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# sa PORT PROGRAM DB [-E NAME=VALUE...] - serves PROGRAM with
# systemd-socket-activate; sets LPID
sa() {
	local port=$1 prog=$2 db=$3
	shift 3
	systemd-socket-activate -l "127.0.0.1:$port" --inetd -a -E WHOCONN_DB="$db" "$@" "$prog" \
		2>>"$RAW/launcher.log" &
	LPID=$!
	PIDS+=("$LPID")
	wait_port "$port"
	warm "$port"
}

# warm PORT - one WHO first, so the registry file exists before any load, as
# it does in production after the first connection (concurrent first WHOs on
# a new file can race: bench/NOTES.md)
warm() {
	"$WCLOAD" rate -p "$1" -c 1 -n 1 -t 5 >/dev/null 2>>"$RAW/wcload.err" || true
}

# rate PORT CLIENTS SECONDS [LINE] - one bounded wcload run (request LINE,
# default WHO); prints its result line
rate() {
	local line
	# wcload prints its results even when some sessions failed (exit 1):
	# keep them, the errors are counted and reported
	line=$("$WCLOAD" rate -p "$1" -c "$2" -t "$3" -n "$MAXN" -m "${4:-WHO}" 2>>"$RAW/wcload.err") ||
		log "wcload rate against port $1: $(tail -1 "$RAW/wcload.err")"
	[ -n "$line" ] || line="clients=$2 sessions=0 errors=1 rate=0 p50_us=0 p99_us=0"
	echo "$line"
}

# interleave PART TAG CLIENTS SECONDS ROUNDS NAME:PORT[:LINE]... - runs each
# variant in turn, ROUNDS times; records medians.
interleave() {
	local part=$1 tag=$2 c=$3 secs=$4 rounds=$5
	shift 5
	local r v name port line
	for r in $(seq "$rounds"); do
		for v in "$@"; do
			IFS=: read -r name port req <<<"$v"
			line=$(rate "$port" "$c" "$secs" "${req:-WHO}")
			echo "part=$part tag=$tag round=$r variant=$name $line" >>"$RAW/rates.txt"
			for k in rate p50_us p99_us errors sessions; do
				echo "$(kv "$k" "$line")" >>"$WORK/$part.$tag.$name.$k"
			done
		done
	done
	for v in "$@"; do
		name=${v%%:*}
		for k in rate p50_us p99_us; do
			record "$part" "$tag.$name" "$k" "$(median <"$WORK/$part.$tag.$name.$k")"
		done
		record "$part" "$tag.$name" errors "$(awk '{s+=$1} END{print s+0}' "$WORK/$part.$tag.$name.errors")"
		record "$part" "$tag.$name" sessions "$(awk '{s+=$1} END{print s+0}' "$WORK/$part.$tag.$name.sessions")"
	done
}

# paired PART TAG A B - median over rounds of rate(A)/rate(B), same round
paired() {
	paste "$WORK/$1.$2.$3.rate" "$WORK/$1.$2.$4.rate" |
		awk '$2>0{print $1/$2}' | median | awk '{if($1=="-")print "-"; else printf "%.3f\n",$1}'
}

# ---- part 1: same activator, whoconn vs trivial ------------------------
part1() {
	local pw pt pn
	log "part 1: systemd-socket-activate, whoconn vs trivial vs naive, clients: $CONC"
	pw=$(free_port); sa "$pw" "$WHOCONN" "$WORK/p1.db"; local lw=$LPID
	pt=$(free_port); sa "$pt" "$TRIVIAL" "$WORK/p1t.db"; local lt=$LPID
	pn=$(free_port); sa "$pn" "$NAIVE" "$WORK/p1n.db"; local ln=$LPID
	for c in $CONC; do
		# whoconn-why: the same binary asked WHY, which never opens the
		# registry: splits whoconn's cost into binary and registry
		interleave 1 "c$c" "$c" "$SECS" "$ROUNDS" "whoconn:$pw" "trivial:$pt" "whoconn-why:$pw:WHY" "naive:$pn"
		record 1 "c$c" ratio "$(paired 1 "c$c" whoconn trivial)"
		record 1 "c$c" why_ratio "$(paired 1 "c$c" whoconn-why trivial)"
		record 1 "c$c" naive_ratio "$(paired 1 "c$c" whoconn naive)"
		record 1 "c$c" naive_vs_trivial "$(paired 1 "c$c" naive trivial)"
	done
	stop_pid "$lw"; stop_pid "$lt"; stop_pid "$ln"
}

# ---- part 2: a real systemd in a throwaway container -------------------
stop_nspawn() {
	kill -TERM "$NSPAWN_PID" 2>/dev/null || true # nspawn asks PID 1 to power off
	for _ in $(seq 200); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$NSPAWN_PID" 2>/dev/null || true
	wait "$NSPAWN_PID" 2>/dev/null || true
	NSPAWN_PID=
}

inside() { nsenter -t "$CPID" -a "$@"; }

# boot_container PART STAGE - boots the host's own OS (throw-away /usr
# overlay, volatile root) with STAGE at /opt/wcbench, installs its whoconn
# and trivial into /usr/local/bin, the whoconn user, and its units/ into
# /etc/systemd/system; sets CPID and NSPAWN_PID; records PART boot ok
boot_container() {
	local part=$1 st=$2 s
	systemd-nspawn -q --register=no --keep-unit --directory=/ --volatile=yes \
		--overlay=/usr::/usr --bind-ro="$st:/opt/wcbench" --boot -- systemd.firstboot=off \
		>"$RAW/nspawn.log" 2>&1 &
	NSPAWN_PID=$!
	CPID=
	for _ in $(seq 300); do
		CPID=$(pgrep -P "$NSPAWN_PID" | head -1 || true)
		if [ -n "$CPID" ]; then
			s=$(inside systemctl is-system-running 2>/dev/null || true)
			case $s in running | degraded) break ;; esac
		fi
		sleep 0.1
	done
	if [ -z "$CPID" ]; then log "container did not boot"; record "$part" boot ok no; stop_nspawn; return 1; fi
	record "$part" boot ok yes
	inside sh -ec '
		install -m 0755 /opt/wcbench/whoconn /opt/wcbench/trivial /usr/local/bin/
		if [ -d /opt/wcbench/bin ]; then install -m 0755 /opt/wcbench/bin/* /usr/local/bin/; fi
		install -m 0644 /opt/wcbench/units/whoconn.sysusers /usr/lib/sysusers.d/whoconn.conf
		install -m 0644 /opt/wcbench/units/whoconn.tmpfiles /usr/lib/tmpfiles.d/whoconn.conf
		systemd-sysusers
		systemd-tmpfiles --create whoconn.conf
		cp -r /opt/wcbench/units/*.socket /opt/wcbench/units/*.service /opt/wcbench/units/*.socket.d /etc/systemd/system/
		# U_NSS_FILES=1: users and groups from the files alone (no nss-systemd)
		# (the volatile container has no /etc/nsswitch.conf of its own, so
		# the built-in default of glibc applies unless this writes one)
		if [ "${U_NSS_FILES:-0}" = 1 ]; then
			printf "%s: files\n" passwd group shadow gshadow >/etc/nsswitch.conf
		fi
		# part 6 variants naming the user by number (allocated just now)
		sed -i -e "s/@UID@/$(id -u whoconn)/; s/@GID@/$(id -g whoconn)/" /etc/systemd/system/*.service
		systemctl daemon-reload'
}

part2() {
	local st=$WORK/stage pw pb ptw
	log "part 2: real systemd (Accept=yes) in systemd-nspawn"
	mkdir -p "$st/units"
	cp "$WHOCONN" "$st/whoconn"; cp "$TRIVIAL" "$st/trivial"
	pw=$(free_port); pb=$(free_port); ptw=$(free_port)
	# the shipped units, as `make install` would write them for /usr/local
	sed -e 's|@BINDIR@|/usr/local/bin|g' "$TOP/units/whoconn@.service.in" >"$st/units/whoconn@.service"
	cp "$TOP/units/whoconn.socket.in" "$st/units/whoconn.socket"
	cp "$TOP/units/whoconn.sysusers" "$st/units/whoconn.sysusers"
	cp "$TOP/units/whoconn.tmpfiles" "$st/units/whoconn.tmpfiles"
	# bare: the same [Socket] section, a [Service] with nothing but trivial
	cp "$TOP/units/whoconn.socket.in" "$st/units/bare.socket"
	printf '[Service]\nExecStart=/usr/local/bin/trivial\nStandardInput=socket\n' >"$st/units/bare@.service"
	# twin: the very same [Service] settings as shipped, running trivial
	sed -e 's|@BINDIR@/whoconn|/usr/local/bin/trivial|' "$TOP/units/whoconn@.service.in" >"$st/units/twin@.service"
	cp "$TOP/units/whoconn.socket.in" "$st/units/twin.socket"
	# one drop-in per socket: a free port instead of 4242, and room to work
	for u in whoconn:$pw bare:$pb twin:$ptw; do
		mkdir -p "$st/units/${u%%:*}.socket.d"
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\nMaxConnections=4096\nMaxConnectionsPerSource=4096\n' \
			"${u#*:}" >"$st/units/${u%%:*}.socket.d/bench.conf"
	done
	cp -r "$st/units" "$RAW/part2-units"
	if ! boot_container 2 "$st"; then return 0; fi
	inside systemctl start whoconn.socket bare.socket twin.socket
	inside systemctl show -p MaxConnections,Listen whoconn.socket bare.socket twin.socket >"$RAW/part2-sockets.txt"
	for p in $pw $pb $ptw; do wait_port "$p"; done
	for c in $SD_CONC; do
		interleave 2 "c$c" "$c" "$SD_SECS" "$SD_ROUNDS" "whoconn:$pw" "bare:$pb" "twin:$ptw"
		record 2 "c$c" shipped_vs_bare "$(paired 2 "c$c" whoconn bare)"
		record 2 "c$c" whoconn_vs_twin "$(paired 2 "c$c" whoconn twin)"
		record 2 "c$c" twin_vs_bare "$(paired 2 "c$c" twin bare)"
	done
	inside journalctl -q -u 'whoconn@*' -p warning --no-pager >"$RAW/part2-journal-warnings.txt" 2>&1 || true
	record 2 journal warnings "$(wc -l <"$RAW/part2-journal-warnings.txt")"
	stop_nspawn
}

# ---- part 6: the unit's settings one at a time (not in the default run) --
# Every variant runs trivial behind the shipped [Socket] section: bare (only
# ExecStart= and StandardInput=socket) plus one setting of the shipped
# whoconn@.service, each on its own port; twin is the shipped [Service],
# twin-noX the same without X (what removing X would save), bare2 a second
# bare unit (the noise floor of the method).  Each round runs every variant once,
# in an order rotated by one each round, and a variant's figure is the
# median over rounds of its rate divided by bare's in the same round, with
# the distribution-free ~95% interval of that median (order statistics).
# Rates are noisy on a shared machine; the steadier figure is the CPU time
# the whole container spent per connection (PID 1, the connection processes
# it reaped, journald, ...), divided by bare's in the same round.
U_VARIANTS=(
	"bare|"
	"bare2|"
	"stderr|StandardError=journal"
	"user|User=whoconn\nGroup=whoconn"
	"user-num|User=@UID@\nGroup=@GID@"
	"rtdir|RuntimeDirectory=whoconn\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes"
	"user-rtdir|User=whoconn\nGroup=whoconn\nRuntimeDirectory=whoconn\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes"
	"user-num-rtdir|User=@UID@\nGroup=@GID@\nRuntimeDirectory=whoconn\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes"
	"nnp-caps|NoNewPrivileges=yes\nCapabilityBoundingSet="
	"raf|RestrictAddressFamilies=AF_UNIX"
	"umask|UMask=0077"
	"exit-collect|SuccessExitStatus=65 74 75 76\n[Unit]\nCollectMode=inactive-or-failed"
	"twin|@twin"
	"twin-noraf|@twin RestrictAddressFamilies"
	"twin-nostderr|@twin StandardError"
	"twin-nouser|@twin User Group"
	"twin-nortdir|@twin RuntimeDirectory"
	"twin-nonnp-caps|@twin NoNewPrivileges CapabilityBoundingSet"
	"twin-noumask|@twin UMask"
	"twin-nosec|@twin RestrictAddressFamilies NoNewPrivileges CapabilityBoundingSet"
	"twin-nosec-nortdir|@twin RestrictAddressFamilies NoNewPrivileges CapabilityBoundingSet RuntimeDirectory"
	"twin-nortdir-nnp-caps|@twin RuntimeDirectory NoNewPrivileges CapabilityBoundingSet"
	"twin-nortdir-nnp-caps-nostderr|@twin RuntimeDirectory NoNewPrivileges CapabilityBoundingSet StandardError"
	"wc-ship|@ship whoconn"
	"issue12|StandardOutput=socket\nStandardError=journal\nSuccessExitStatus=65 74 75 76\nUser=whoconn\nGroup=whoconn\nRuntimeDirectory=whoconn\nRuntimeDirectoryMode=0700\nRuntimeDirectoryPreserve=yes\nNoNewPrivileges=yes\nCapabilityBoundingSet=\nUMask=0077\n[Unit]\nCollectMode=inactive-or-failed"
)
# U_MORE="NAME|SETTINGS;..." adds variants (experiments, e.g. "@ship" with
# a program of U_BINS)
if [ -n "${U_MORE:-}" ]; then
	IFS=';' read -ra _m <<<"$U_MORE"
	U_VARIANTS+=("${_m[@]}")
fi
# U_ONLY="bare bare2 twin ..." runs only the variants named (bare always)
if [ -n "${U_ONLY:-}" ]; then
	_u=()
	for _v in "${U_VARIANTS[@]}"; do
		case " bare ${U_ONLY} " in *" ${_v%%|*} "*) _u+=("$_v") ;; esac
	done
	U_VARIANTS=("${_u[@]}")
fi

# container_cpu_us - CPU time (user+sys, µs) used so far by the processes of
# the container: every process in CPID's PID namespace, plus what they
# reaped (PID 1 reaps each connection process, so its children's time is
# every finished connection's, exec set-up included)
container_cpu_us() {
	local ns p
	ns=$(readlink "/proc/$CPID/ns/pid")
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ]; then cat "$p/stat" 2>/dev/null || true; fi
	done | sed 's/.*) //' | awk -v hz="$(getconf CLK_TCK)" '{t+=$12+$13+$14+$15} END{printf "%.0f\n", t*1000000/hz}'
}

# ratio_stats FILE - median and ~95% interval (order statistics) of the
# numbers in FILE: prints "median lo hi n"
ratio_stats() {
	sort -g "$1" | awk '{a[NR]=$1} END{
		n=NR; if(n==0){print "- - - 0"; exit}
		m=(n%2)?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2
		k=int((n-1.96*sqrt(n))/2); if(k<1)k=1
		printf "%.3f %.3f %.3f %d\n", m, a[k], a[n-k+1], n}'
}

# part6_strace N - where each variant's extra work goes: the system calls of
# PID 1 (and the connection processes it forks, up to their exec) and of
# journald over N sequential connections, strace -c per variant
# (U_STRACE=N; counts, not times, are the figure: strace slows everything)
part6_strace() {
	local n=$1 v jd sp
	jd=$(pgrep --ns "$CPID" --nslist pid -x systemd-journal | head -1 || true)
	for v in "${ports[@]}"; do
		strace -f -c -o "$RAW/part6-strace-${v%%:*}.txt" -p "$CPID" ${jd:+-p "$jd"} 2>/dev/null &
		sp=$!
		sleep 1 # strace attaches to every thread of PID 1
		"$WCLOAD" rate -p "${v#*:}" -c 1 -n "$n" -t 60 >>"$RAW/part6-strace-sessions.txt" 2>>"$RAW/wcload.err" || true
		sleep 1 # the last instance exits and is collected
		kill -INT "$sp" 2>/dev/null || true
		wait "$sp" 2>/dev/null || true
	done
}

part6() {
	local st=$WORK/stage6 v name set port c=${U_CLIENTS:-2} rounds=${U_ROUNDS:-16} secs=${U_SECS:-2}
	local -a order=() ports=()
	log "part 6: unit settings one at a time, $rounds rounds of $secs s, $c clients"
	mkdir -p "$st/units"
	cp "$WHOCONN" "$st/whoconn"; cp "$TRIVIAL" "$st/trivial"
	cp "$TOP/units/whoconn.sysusers" "$st/units/whoconn.sysusers"
	cp "$TOP/units/whoconn.tmpfiles" "$st/units/whoconn.tmpfiles"
	# U_BINS="PATH..." - more programs for @ship variants, by file name
	if [ -n "${U_BINS:-}" ]; then mkdir -p "$st/bin"; cp $U_BINS "$st/bin/"; fi
	for v in "${U_VARIANTS[@]}"; do
		name=${v%%|*}; set=${v#*|}
		port=$(free_port)
		ports+=("$name:$port")
		cp "$TOP/units/whoconn.socket.in" "$st/units/u-$name.socket"
		mkdir -p "$st/units/u-$name.socket.d"
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\nMaxConnections=4096\nMaxConnectionsPerSource=4096\n' \
			"$port" >"$st/units/u-$name.socket.d/bench.conf"
		case $set in
		@ship*) # the shipped [Service] running PROGRAM (whoconn, or one of
			# U_BINS), without the settings named: "@ship PROGRAM SETTING..."
			local del=() k prog
			read -r prog _ <<<"${set#@ship }"
			for k in $(cut -d' ' -f3- <<<"$set"); do del+=(-e "/^$k/d"); done
			sed -e "s|@BINDIR@/whoconn|/usr/local/bin/$prog|" "${del[@]}" "$TOP/units/whoconn@.service.in" ;;
		@twin*) # the shipped [Service] without the settings named
			local del=() k
			for k in ${set#@twin}; do del+=(-e "/^$k/d"); done
			sed -e 's|@BINDIR@/whoconn|/usr/local/bin/trivial|' "${del[@]}" "$TOP/units/whoconn@.service.in" ;;
		*) printf '[Service]\nExecStart=/usr/local/bin/trivial\nStandardInput=socket\n%b\n' "$set" ;;
		esac >"$st/units/u-$name@.service"
	done
	cp -r "$st/units" "$RAW/part6-units"
	if ! boot_container 6 "$st"; then return 0; fi
	# shellcheck disable=SC2046
	inside systemctl start $(for v in "${ports[@]}"; do echo "u-${v%%:*}.socket"; done)
	for v in "${ports[@]}"; do wait_port "${v#*:}"; warm "${v#*:}"; done
	[ "${U_STRACE:-0}" -gt 0 ] && part6_strace "${U_STRACE}"
	order=("${ports[@]}")
	for r in $(seq "$rounds"); do
		for v in "${order[@]}"; do
			name=${v%%:*}
			cpu0=$(container_cpu_us)
			line=$(rate "${v#*:}" "$c" "$secs")
			sleep 0.5 # the last connections exit and are reaped
			cpu1=$(container_cpu_us)
			n=$(kv sessions "$line")
			cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$n" 'BEGIN{if(n>0) printf "%.1f\n", (b-a)/n; else print 0}')
			echo "part=6 round=$r variant=$name $line cpu_us=$cpu" >>"$RAW/rates.txt"
			for k in rate errors sessions; do echo "$(kv "$k" "$line")" >>"$WORK/6.$name.$k"; done
			echo "$cpu" >>"$WORK/6.$name.cpu"
		done
		order=("${order[@]:1}" "${order[0]}") # rotate: no variant always follows another
	done
	for v in "${ports[@]}"; do
		name=${v%%:*}
		record 6 "$name" rate "$(median <"$WORK/6.$name.rate")"
		record 6 "$name" errors "$(awk '{s+=$1} END{print s+0}' "$WORK/6.$name.errors")"
		record 6 "$name" sessions "$(awk '{s+=$1} END{print s+0}' "$WORK/6.$name.sessions")"
		paste "$WORK/6.$name.rate" "$WORK/6.bare.rate" | awk '$2>0{print $1/$2}' >"$WORK/6.$name.vs_bare"
		read -r med lo hi n < <(ratio_stats "$WORK/6.$name.vs_bare")
		record 6 "$name" vs_bare "$med"; record 6 "$name" vs_bare_lo "$lo"
		record 6 "$name" vs_bare_hi "$hi"; record 6 "$name" rounds "$n"
		record 6 "$name" cpu_us "$(median <"$WORK/6.$name.cpu")"
		paste "$WORK/6.$name.cpu" "$WORK/6.bare.cpu" | awk '$2>0{print $1/$2}' >"$WORK/6.$name.cpu_vs_bare"
		read -r med lo hi n < <(ratio_stats "$WORK/6.$name.cpu_vs_bare")
		record 6 "$name" cpu_vs_bare "$med"; record 6 "$name" cpu_vs_bare_lo "$lo"
		record 6 "$name" cpu_vs_bare_hi "$hi"
	done
	# the shipped [Service] less some settings, against the shipped one
	for v in "${ports[@]}"; do
		name=${v%%:*}
		case $name in twin-no*) ;; *) continue ;; esac
		[ -s "$WORK/6.twin.cpu" ] || continue
		paste "$WORK/6.$name.rate" "$WORK/6.twin.rate" | awk '$2>0{print $1/$2}' >"$WORK/6.$name.vs_twin"
		read -r med lo hi n < <(ratio_stats "$WORK/6.$name.vs_twin")
		record 6 "$name" vs_twin "$med"; record 6 "$name" vs_twin_lo "$lo"; record 6 "$name" vs_twin_hi "$hi"
		paste "$WORK/6.$name.cpu" "$WORK/6.twin.cpu" | awk '$2>0{print $1/$2}' >"$WORK/6.$name.cpu_vs_twin"
		read -r med lo hi n < <(ratio_stats "$WORK/6.$name.cpu_vs_twin")
		record 6 "$name" cpu_vs_twin "$med"; record 6 "$name" cpu_vs_twin_lo "$lo"; record 6 "$name" cpu_vs_twin_hi "$hi"
	done
	inside systemd-analyze security --no-pager u-twin@x.service >"$RAW/part6-security-twin.txt" 2>&1 || true
	inside systemd-analyze security --no-pager u-twin-noraf@x.service >"$RAW/part6-security-twin-noraf.txt" 2>&1 || true
	stop_nspawn
}

# ---- part 3: held connections -------------------------------------------
# pss_avg PARENT - prints the average Pss (KiB) over the children of PARENT
# and their number
pss_avg() {
	local sum=0 n=0 v
	for p in $(pgrep -P "$1"); do
		v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		[ -n "$v" ] || continue
		sum=$((sum + v)); n=$((n + 1))
	done
	awk -v s=$sum -v n=$n 'BEGIN{if(n) printf "%.1f %d\n", s/n, n; else print "- 0"}'
}

hold_one() { # NAME PROGRAM WHOFLAG [N]
	local name=$1 prog=$2 who=$3 n=${4:-$HOLD_N} port ready line pss
	# held connections stay silent longer than the default idle timeout
	port=$(free_port); sa "$port" "$prog" "$WORK/p3$name.db" -E WHOCONN_IDLE_TIMEOUT=900; local l=$LPID
	ready=$WORK/ready.$name
	"$WCLOAD" hold -p "$port" -n "$n" -t 240 -k "$HOLD_K" -m WHY -r "$ready" $who \
		>"$WORK/hold.$name" 2>>"$RAW/wcload.err" &
	local h=$!
	PIDS+=("$h")
	for _ in $(seq 2400); do [ -e "$ready" ] || ! kill -0 "$h" 2>/dev/null && break; sleep 0.1; done
	line=$(cat "$WORK/hold.$name")
	echo "$name $line" >>"$RAW/hold.txt"
	read -r pss nproc < <(pss_avg "$l")
	record 3 "$name" processes "$nproc"
	record 3 "$name" pss_kib "$pss"
	for k in held open_seconds who_held who_fresh who_exact who_held_p50_us who_held_p99_us \
		who_fresh_p50_us who_fresh_p99_us status; do
		v=$(kv "$k" "$line"); [ -n "$v" ] && record 3 "$name" "$k" "$v"
	done
	stop_pid "$h"
	# held processes see EOF and exit (whoconn unregisters): bounded wait
	for _ in $(seq 1200); do [ -z "$(pgrep -P "$l" | head -1)" ] && break; sleep 0.1; done
	record 3 "$name" leftover "$(pgrep -P "$l" | wc -l)"
	stop_pid "$l"
}

part3() {
	local hard
	log "part 3: $HOLD_N held connections"
	hard=$(ulimit -Hn)
	record 3 limits nofile_hard "$hard"
	record 3 limits pid_max "$(cat /proc/sys/kernel/pid_max)"
	record 3 limits threads_max "$(cat /proc/sys/kernel/threads-max)"
	if [ "$hard" -lt $((HOLD_N + 64)) ] || [ "$(cat /proc/sys/kernel/pid_max)" -lt $((HOLD_N * 2 + 1000)) ]; then
		log "part 3: limits too low for $HOLD_N held connections (nofile hard $hard)"
		record 3 limits ok no
		return 0
	fi
	record 3 limits ok yes
	hold_one whoconn "$WHOCONN" -W
	# naive inserts its row at start, so its WHO is exact too
	# (NAIVE_HOLD_N holds it at another count)
	hold_one naive "$NAIVE" -W "${NAIVE_HOLD_N:-$HOLD_N}"
	hold_one trivial "$TRIVIAL" ""
}

# ---- part 4: instructions per connection --------------------------------
# cg_session NAME PROGRAM [DB] - one connect-WHO-close session of PROGRAM
# under callgrind, launched by systemd-socket-activate like any connection.
cg_session() {
	local name=$1 prog=$2 db=${3:-$WORK/p4.db} port out=$WORK/cg.$1 ann=$RAW/callgrind-$1.txt
	port=$(free_port)
	systemd-socket-activate -l "127.0.0.1:$port" --inetd -a -E WHOCONN_DB="$db" \
		/usr/bin/valgrind --tool=callgrind --callgrind-out-file="$out" "$prog" \
		2>>"$RAW/launcher.log" &
	local l=$!
	PIDS+=("$l")
	wait_port "$port"
	"$WCLOAD" rate -p "$port" -c 1 -n 1 -t 30 >>"$RAW/callgrind-sessions.txt" 2>>"$RAW/wcload.err" || true
	for _ in $(seq 300); do [ -s "$out" ] && [ -z "$(pgrep -P "$l" | head -1)" ] && break; sleep 0.1; done
	stop_pid "$l"
	if [ ! -s "$out" ]; then record 4 "$name" instructions -; return 0; fi
	callgrind_annotate --inclusive=yes --threshold=100 "$out" >"$ann" 2>/dev/null || true
	local total
	total=$(awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}' "$ann")
	record 4 "$name" instructions "$total"
	# inclusive cost of the phases that matter (0 when absent); FN1,FN2:
	# the first of them that ran (naive calls the v2 and plain entry points)
	for f in _dl_start:loader main:main sqlite3_open_v2,sqlite3_open:open \
		sqlite3_prepare_v3,sqlite3_prepare_v2:prepare \
		sqlite3_exec:exec sqlite3_step:step reg_sweep:sweep sqlite3_close:close; do
		v=$(awk -v fns="${f%%:*}" 'BEGIN{k=split(fns,want,",")}
			{n=$0; sub(/^[ 0-9,]+\([ 0-9.%]+\)  /,"",n); sub(/ \[.*/,"",n); sub(/.*:/,"",n)
			 for(i=1;i<=k;i++) if(n==want[i] && !(i in got)){x=$1; gsub(",","",x); got[i]=x}}
			END{for(i=1;i<=k;i++) if(i in got){print got[i]; exit}}' "$ann")
		record 4 "$name" "incl_${f#*:}" "${v:-0}"
	done
}

part4() {
	log "part 4: callgrind, one WHO session each; CPU per spawn"
	# a warm registry, as under load: it exists and was swept just now
	printf 'WHO\n' | WHOCONN_DB="$WORK/p4.db" "$WHOCONN" >/dev/null 2>&1 || true
	# naive's registry is its own file (another schema), warm as well
	printf 'WHO\n' | WHOCONN_DB="$WORK/p4n.db" "$NAIVE" >/dev/null 2>&1 || true
	# valgrind cannot run under whoconn's seccomp filter: the same program
	# built without confinement (whose syscalls callgrind does not count)
	cg_session whoconn "${WHOCONN_NOCONFINE:-$TOP/whoconn-noconfine}"
	cg_session naive "$NAIVE" "$WORK/p4n.db"
	cg_session trivial "$TRIVIAL"
	local w t
	w=$(get 4 whoconn instructions); t=$(get 4 trivial instructions)
	record 4 whoconn instructions_ratio "$(ratio "$w" "$t")"
	record 4 whoconn instructions_no_sweep \
		"$(awk -v a="$w" -v b="$(get 4 whoconn incl_sweep)" 'BEGIN{if(a=="-")print "-"; else print a-b}')"
	record 4 naive instructions_ratio "$(ratio "$(get 4 naive instructions)" "$t")"
	record 4 whoconn instructions_vs_naive "$(ratio "$w" "$(get 4 naive instructions)")"
	# CPU time per spawn, interleaved: no launcher, no network
	local r
	for r in $(seq "$PEER_ROUNDS"); do
		for v in trivial:$TRIVIAL:WHY whoconn-why:$WHOCONN:WHY whoconn-who:$WHOCONN:WHO naive-who:$NAIVE:WHO; do
			IFS=: read -r name prog req <<<"$v"
			line=$(WHOCONN_DB="$WORK/p4s${name%%-*}.db" "$WCLOAD" spawn -n "$SPAWN_N" -m "$req" -- "$prog" 2>>"$RAW/wcload.err" || true)
			echo "round=$r variant=$name $line" >>"$RAW/spawn.txt"
			for k in cpu_us minflt reply_p50_us errors; do echo "$(kv "$k" "$line")" >>"$WORK/spawn.$name.$k"; done
		done
	done
	for name in trivial whoconn-why whoconn-who naive-who; do
		for k in cpu_us minflt reply_p50_us; do record 4 "spawn.$name" "$k" "$(median <"$WORK/spawn.$name.$k")"; done
		record 4 "spawn.$name" errors "$(awk '{s+=$1} END{print s+0}' "$WORK/spawn.$name.errors")"
	done
}

# ---- part 5: peers of the model -----------------------------------------
xinetd_start() { # PORT PROGRAM DB - sets LPID
	local conf=$WORK/xinetd.$1.conf
	cat >"$conf" <<-EOF
	defaults
	{
	}
	service wcbench$1
	{
		type        = UNLISTED
		id          = wcbench$1
		socket_type = stream
		protocol    = tcp
		wait        = no
		user        = root
		bind        = 127.0.0.1
		port        = $1
		server      = $2
		env         = WHOCONN_DB=$3
		instances   = UNLIMITED
		per_source  = UNLIMITED
		cps         = 1000000 1
		log_type    = FILE $RAW/xinetd.log
		log_on_success =
		log_on_failure = HOST
	}
	EOF
	xinetd -dontfork -f "$conf" -pidfile "$WORK/xinetd.$1.pid" 2>>"$RAW/launcher.log" &
	LPID=$!
	PIDS+=("$LPID")
	wait_port "$1"
	warm "$1"
}

tcpserver_start() { # PORT PROGRAM DB - sets LPID
	WHOCONN_DB=$3 tcpserver -RHl0 -c 20000 -b 4096 127.0.0.1 "$1" "$2" 2>>"$RAW/launcher.log" &
	LPID=$!
	PIDS+=("$LPID")
	wait_port "$1"
	warm "$1"
}

part5() {
	local vs=() started=()
	log "part 5: xinetd and tcpserver"
	for l in sa xinetd tcpserver; do
		for prog in whoconn trivial; do
			local port bin
			port=$(free_port)
			[ $prog = whoconn ] && bin=$WHOCONN || bin=$TRIVIAL
			case $l in
			sa) sa "$port" "$bin" "$WORK/p5$l.db" ;;
			xinetd) xinetd_start "$port" "$bin" "$WORK/p5$l.db" ;;
			tcpserver) tcpserver_start "$port" "$bin" "$WORK/p5$l.db" ;;
			esac
			started+=("$LPID")
			vs+=("$l-$prog:$port")
		done
	done
	interleave 5 c2 2 "$PEER_SECS" "$PEER_ROUNDS" "${vs[@]}"
	for l in sa xinetd tcpserver; do
		record 5 "$l" ratio "$(paired 5 c2 "$l-whoconn" "$l-trivial")"
	done
	for p in "${started[@]}"; do stop_pid "$p"; done
}

# ---- report ---------------------------------------------------------------
plot() {
	local dat=$WORK/plot.dat
	for c in $CONC; do
		echo "$c $(get 1 "c$c.whoconn" rate) $(get 1 "c$c.trivial" rate)" \
			"$(get 1 "c$c.whoconn" p99_us) $(get 1 "c$c.trivial" p99_us)" \
			"$(get 1 "c$c.whoconn-why" rate) $(get 1 "c$c.whoconn-why" p99_us)"
	done >"$dat"
	cp "$dat" "$RAW/plot.dat"
	gnuplot <<-EOF 2>>"$RAW/gnuplot.log"
	set terminal pngcairo size 1000,420 font "sans,10"
	set output "$OUT/plot.png"
	set multiplot layout 1,2 title "whoconn vs trivial under systemd-socket-activate ($(hostname), $(date -u +%F))"
	set logscale x 2
	set xlabel "concurrent clients"
	set grid
	set key top left
	set ylabel "connections/s"
	set yrange [0:*]
	plot "$dat" using 1:2 with linespoints lw 2 title "whoconn", \
	     "$dat" using 1:3 with linespoints lw 2 title "trivial", \
	     "$dat" using 1:6 with linespoints lw 1 dt 2 title "whoconn, WHY (no registry)"
	set ylabel "p99 latency (ms)"
	plot "$dat" using 1:(\$4/1000) with linespoints lw 2 title "whoconn", \
	     "$dat" using 1:(\$5/1000) with linespoints lw 2 title "trivial", \
	     "$dat" using 1:(\$7/1000) with linespoints lw 1 dt 2 title "whoconn, WHY (no registry)"
	unset multiplot
	EOF
}

verdict() { # VALUE OP LIMIT
	awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN{
		if (v=="-"||v==""||l=="-"||l=="") {print "not measured"; exit}
		ok = (op==">=") ? (v+0>=l+0) : (v+0<=l+0)
		print ok ? "**met**" : "**missed**" }'
}

# target_conc "LIST" - the concurrencies of LIST that issue 12's targets name
target_conc() {
	local c
	for c in $1; do case " 1 2 8 16 " in *" $c "*) echo "$c" ;; esac; done
}

report() {
	local md=$OUT/RESULTS.md c
	{
		echo "# whoconn benchmark results"
		echo
		echo "Written by \`bench/run.sh\` ($( [ $SMOKE = 1 ] && echo "smoke run" || echo "full run")); do not edit by hand."
		echo "Command: \`$CMDLINE\` at commit \`$(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$TOP" diff --quiet 2>/dev/null || echo "+dirty")\`."
		echo
		echo "| machine | |"
		echo "| --- | --- |"
		echo "| date (UTC) | $(date -u '+%F %T') |"
		echo "| CPU | $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores |"
		echo "| memory | $(free -m | awk '/^Mem:/{print $2" MiB"}') |"
		echo "| kernel | $(uname -r) |"
		echo "| OS | $(. /etc/os-release; echo "$PRETTY_NAME") |"
		echo "| load average at start / end | $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) |"
		echo "| whoconn | $(stat -c %s "$WHOCONN") bytes; shared objects: $(ldd "$WHOCONN" | awk '/=>/{printf "%s ", $1}') |"
		echo
		echo "The machine is shared (other jobs run during the benchmark), so each"
		echo "comparison runs its variants in turn, round after round, and the ratio is"
		echo "the median over rounds of the paired per-round ratios. Rates are medians of"
		echo "rounds, latency is connect to reply line, in ms."
		if has_part 1; then
			echo
			echo "## 1. Same activator: \`systemd-socket-activate --inetd -a\`"
			echo
			echo "Each client: connect, \`WHO\`, read the reply line, close; $ROUNDS round(s) of ${SECS} s per variant and concurrency."
			echo
			echo '*whoconn WHY* is the same whoconn asked `WHY` instead: it registers and'
			echo "unregisters as for \`WHO\` (every connection does, before its first reply) but"
			echo "never reads the count, so the two rows differ by the count statement alone."
			echo '*naive* (`bench/naive.c`) is the design card done the obvious way: shared'
			echo 'libsqlite3, `INSERT` of its PID at start, `SELECT count(*)`, `DELETE` at EOF.'
			echo
			echo "| clients | whoconn conn/s | trivial conn/s | ratio | whoconn WHY conn/s | WHY ratio | naive conn/s | whoconn/naive | naive/trivial | whoconn p50 | whoconn p99 | trivial p50 | trivial p99 | naive p50 | naive p99 | errors |"
			echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for c in $CONC; do
				echo "| $c | $(get 1 "c$c.whoconn" rate) | $(get 1 "c$c.trivial" rate) | $(get 1 "c$c" ratio) |" \
					"$(get 1 "c$c.whoconn-why" rate) | $(get 1 "c$c" why_ratio) |" \
					"$(get 1 "c$c.naive" rate) | $(get 1 "c$c" naive_ratio) | $(get 1 "c$c" naive_vs_trivial) |" \
					"$(ms "$(get 1 "c$c.whoconn" p50_us)") | $(ms "$(get 1 "c$c.whoconn" p99_us)") |" \
					"$(ms "$(get 1 "c$c.trivial" p50_us)") | $(ms "$(get 1 "c$c.trivial" p99_us)") |" \
					"$(ms "$(get 1 "c$c.naive" p50_us)") | $(ms "$(get 1 "c$c.naive" p99_us)") |" \
					"$(( $(get 1 "c$c.whoconn" errors) + $(get 1 "c$c.trivial" errors) + $(get 1 "c$c.whoconn-why" errors) + $(get 1 "c$c.naive" errors) )) |"
			done
			echo
			echo "![rate and p99 against concurrency](plot.png)"
		fi
		if has_part 2; then
			echo
			echo "## 2. A real systemd, \`Accept=yes\` (systemd-nspawn, booted)"
			echo
			echo "Three socket units with the shipped \`[Socket]\` section and a drop-in for"
			echo "the port and \`MaxConnections=4096\`/\`MaxConnectionsPerSource=4096\`:"
			echo "*shipped* = \`whoconn@.service\` as shipped; *bare* = \`[Service]\` with only"
			echo "\`ExecStart=trivial\` and \`StandardInput=socket\`; *twin* = the shipped"
			echo "\`[Service]\` running trivial. Units as run: \`raw/part2-units/\`."
			echo
			if [ "$(get 2 boot ok)" != yes ]; then echo "The container did not boot: see raw/nspawn.log."; fi
			echo "| clients | shipped conn/s | bare conn/s | twin conn/s | shipped/bare | whoconn/twin | twin/bare | shipped p50 / p99 | bare p50 / p99 | twin p50 / p99 | errors |"
			echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for c in $SD_CONC; do
				echo "| $c | $(get 2 "c$c.whoconn" rate) | $(get 2 "c$c.bare" rate) | $(get 2 "c$c.twin" rate) |" \
					"$(get 2 "c$c" shipped_vs_bare) | $(get 2 "c$c" whoconn_vs_twin) | $(get 2 "c$c" twin_vs_bare) |" \
					"$(ms "$(get 2 "c$c.whoconn" p50_us)") / $(ms "$(get 2 "c$c.whoconn" p99_us)") |" \
					"$(ms "$(get 2 "c$c.bare" p50_us)") / $(ms "$(get 2 "c$c.bare" p99_us)") |" \
					"$(ms "$(get 2 "c$c.twin" p50_us)") / $(ms "$(get 2 "c$c.twin" p99_us)") |" \
					"$(( $(get 2 "c$c.whoconn" errors) + $(get 2 "c$c.bare" errors) + $(get 2 "c$c.twin" errors) )) |"
			done
			echo
			echo "Warnings logged by whoconn in the container's journal: $(get 2 journal warnings)."
		fi
		if has_part 3; then
			echo
			echo "## 3. $HOLD_N held connections (\`systemd-socket-activate\`)"
			echo
			echo "\`wcload hold\` opens the connections (each answered one \`WHY\` first, so each"
			echo "process is up, and a connection registers before its first reply), waits 1 s as a"
			echo "margin, then asks"
			echo "\`WHO\` on a held connection (must be N) and on a fresh one (must be N+1), then"
			echo "times $HOLD_K \`WHO\`s on held connections and $HOLD_K fresh connect-\`WHO\`-close"
			echo "sessions. PSS is \`Pss:\` of \`/proc/PID/smaps_rollup\`, averaged over every"
			echo "connection process. Limits: the client raises its own \`RLIMIT_NOFILE\` to N+64"
			echo "(hard limit here $(get 3 limits nofile_hard)); \`kernel.pid_max\` = $(get 3 limits pid_max) must exceed the"
			echo "processes (N, plus N more if two runs overlapped); \`systemd-socket-activate\` has no"
			echo "connection cap (under systemd, \`MaxConnections=\` and \`MaxConnectionsPerSource=\`"
			echo "of the socket, 1024 and 512 as shipped, would have to be raised)."
			echo
			echo "| program | processes | PSS KiB/process | WHO held / fresh | exact | WHO held p50 / p99 | WHO fresh p50 / p99 | open time s |"
			echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for n in whoconn naive trivial; do
				echo "| $n | $(get 3 $n processes) | $(get 3 $n pss_kib) | $(get 3 $n who_held) / $(get 3 $n who_fresh) |" \
					"$(get 3 $n who_exact) | $(ms "$(get 3 $n who_held_p50_us)") / $(ms "$(get 3 $n who_held_p99_us)") |" \
					"$(ms "$(get 3 $n who_fresh_p50_us)") / $(ms "$(get 3 $n who_fresh_p99_us)") | $(get 3 $n open_seconds) |"
			done
		fi
		if has_part 4; then
			echo
			echo "## 4. Work per connection"
			echo
			echo "Instructions (valgrind callgrind, \`Ir\`) of the connection process for one"
			echo "connect-\`WHO\`-close session under \`systemd-socket-activate\`, registry warm."
			echo "Inclusive counts per phase; *sweep* is the dead-row sweep that at most one"
			echo "connection per 0.5 s runs (after its reply). Full listings: \`raw/callgrind-*.txt\`."
			echo
			echo "| program | instructions | ratio to trivial | without sweep | loader | main | open | prepare | exec | step | sweep | close |"
			echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for n in whoconn naive trivial; do
				case $n in
				whoconn) r=$(get 4 whoconn instructions_ratio); x=$(get 4 whoconn instructions_no_sweep) ;;
				naive) r=$(get 4 naive instructions_ratio); x=$(get 4 naive instructions) ;;
				*) r=1; x=$(get 4 $n instructions) ;;
				esac
				echo "| $n | $(get 4 $n instructions) | $r | $x |" \
					"$(get 4 $n incl_loader) | $(get 4 $n incl_main) | $(get 4 $n incl_open) | $(get 4 $n incl_prepare) |" \
					"$(get 4 $n incl_exec) | $(get 4 $n incl_step) | $(get 4 $n incl_sweep) | $(get 4 $n incl_close) |"
			done
			echo
			echo "CPU time (user+sys, from \`wait4\`) per run of the program over a socketpair, no"
			echo "launcher: \`wcload spawn -n $SPAWN_N\`, medians of $PEER_ROUNDS interleaved round(s)."
			echo
			echo "| variant | CPU µs/connection | minor faults | reply p50 ms |"
			echo "| --- | ---: | ---: | ---: |"
			for n in trivial whoconn-why whoconn-who naive-who; do
				echo "| $n | $(get 4 "spawn.$n" cpu_us) | $(get 4 "spawn.$n" minflt) | $(ms "$(get 4 "spawn.$n" reply_p50_us)") |"
			done
		fi
		if has_part 5; then
			echo
			echo "## 5. Launchers: systemd-socket-activate, xinetd, tcpserver"
			echo
			echo "2 clients, $PEER_ROUNDS round(s) of ${PEER_SECS} s; all six servers interleaved."
			echo "\`xinetd -dontfork\` with our config (cps unlimited), \`tcpserver -RHl0 -c 20000\`."
			echo
			echo "| launcher | whoconn conn/s | trivial conn/s | ratio | whoconn p50 / p99 | trivial p50 / p99 |"
			echo "| --- | ---: | ---: | ---: | ---: | ---: |"
			for l in sa xinetd tcpserver; do
				echo "| $( [ $l = sa ] && echo systemd-socket-activate || echo $l) | $(get 5 "c2.$l-whoconn" rate) |" \
					"$(get 5 "c2.$l-trivial" rate) | $(get 5 $l ratio) |" \
					"$(ms "$(get 5 "c2.$l-whoconn" p50_us)") / $(ms "$(get 5 "c2.$l-whoconn" p99_us)") |" \
					"$(ms "$(get 5 "c2.$l-trivial" p50_us)") / $(ms "$(get 5 "c2.$l-trivial" p99_us)") |"
			done
		fi
		if has_part 6; then
			echo
			echo "## 6. The unit's settings one at a time (real systemd, trivial program)"
			echo
			echo "Each variant is the *bare* unit (\`ExecStart=trivial\`, \`StandardInput=socket\`)"
			echo "plus the named settings of the shipped \`whoconn@.service\`, behind the shipped"
			echo "\`[Socket]\`; *twin* is the shipped \`[Service]\`; *bare2* is bare again (the noise"
			echo "floor). $(get 6 bare rounds) rounds of ${U_SECS:-2} s at ${U_CLIENTS:-2} clients, variants in an order"
			echo "rotated each round; ratio = median over rounds of rate / bare's rate in the same"
			echo "round, with its ~95% interval (order statistics). CPU is the whole container's"
			echo "(PID 1, the connection processes it reaped, journald, ...) per connection, and"
			echo "its ratio to bare's in the same round is the steadier figure on a shared"
			echo "machine. Units as run: \`raw/part6-units/\`."
			echo
			echo "| variant | settings | conn/s | rate / bare | 95% interval | CPU µs/conn | CPU / bare | 95% interval | errors |"
			echo "| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: |"
			for v in "${U_VARIANTS[@]}"; do
				n=${v%%|*}; set=${v#*|}
				case $set in @twin) set="shipped [Service]" ;; @twin*) set="shipped [Service] without ${set#@twin }" ;; "") set="-" ;; esac
				echo "| $n | $(printf '%b' "$set" | tr '\n' ' ' | sed 's/ *$//; s/\[Unit\] //') | $(get 6 "$n" rate) |" \
					"$(get 6 "$n" vs_bare) | $(get 6 "$n" vs_bare_lo)–$(get 6 "$n" vs_bare_hi) |" \
					"$(get 6 "$n" cpu_us) | $(get 6 "$n" cpu_vs_bare) | $(get 6 "$n" cpu_vs_bare_lo)–$(get 6 "$n" cpu_vs_bare_hi) |" \
					"$(get 6 "$n" errors) |"
			done
			echo
			echo "The shipped \`[Service]\` less some settings, against the shipped one (paired per round):"
			echo
			echo "| variant | rate / twin | 95% interval | CPU / twin | 95% interval |"
			echo "| --- | ---: | --- | ---: | --- |"
			for v in "${U_VARIANTS[@]}"; do
				n=${v%%|*}
				case $n in twin-no*) ;; *) continue ;; esac
				echo "| $n | $(get 6 "$n" vs_twin) | $(get 6 "$n" vs_twin_lo)–$(get 6 "$n" vs_twin_hi) |" \
					"$(get 6 "$n" cpu_vs_twin) | $(get 6 "$n" cpu_vs_twin_lo)–$(get 6 "$n" cpu_vs_twin_hi) |"
			done
			echo
			echo "\`systemd-analyze security\` in the container: twin $(sed -n 's/.*Overall exposure level for [^:]*: //p' "$RAW/part6-security-twin.txt" 2>/dev/null),"
			echo "twin-noraf $(sed -n 's/.*Overall exposure level for [^:]*: //p' "$RAW/part6-security-twin-noraf.txt" 2>/dev/null)."
		fi
		echo
		echo "## Targets (issue 20; issue 12's, where lower, in brackets)"
		echo
		echo "Rate targets are medians of the paired per-round ratios, at 1, 2, 8 and 16"
		echo "clients (those of this run); exactness is never traded for any of them."
		echo
		echo "| target | measured | verdict |"
		echo "| --- | ---: | --- |"
		if has_part 1; then
			for c in $(target_conc "$CONC"); do
				echo "| same activator, $c client(s): whoconn ≥ 1.3 × naive | $(get 1 "c$c" naive_ratio) | $(verdict "$(get 1 "c$c" naive_ratio)" '>=' 1.3) |"
			done
			for c in $(target_conc "$CONC"); do
				echo "| same activator, $c client(s): whoconn ≥ 0.8 × trivial (0.6) | $(get 1 "c$c" ratio) | $(verdict "$(get 1 "c$c" ratio)" '>=' 0.8) |"
			done
		fi
		if has_part 2; then
			for c in $(target_conc "$SD_CONC"); do
				echo "| real systemd, $c client(s): shipped units ≥ 0.85 × bare (0.8) | $(get 2 "c$c" shipped_vs_bare) | $(verdict "$(get 2 "c$c" shipped_vs_bare)" '>=' 0.85) |"
			done
			for c in $(target_conc "$SD_CONC"); do
				echo "| real systemd, $c client(s): whoconn ≥ 0.9 × twin | $(get 2 "c$c" whoconn_vs_twin) | $(verdict "$(get 2 "c$c" whoconn_vs_twin)" '>=' 0.9) |"
			done
		fi
		if has_part 3; then
			echo "| PSS per held connection ≤ 128 KiB (180) | $(get 3 whoconn pss_kib) | $(verdict "$(get 3 whoconn pss_kib)" '<=' 128) |"
			echo "| PSS per held connection ≤ naive's ($(get 3 naive pss_kib) KiB at $(get 3 naive processes) held) | $(get 3 whoconn pss_kib) | $(verdict "$(get 3 whoconn pss_kib)" '<=' "$(get 3 naive pss_kib)") |"
			echo "| $HOLD_N held: WHO exact | $(get 3 whoconn who_exact) | $( [ "$(get 3 whoconn who_exact)" = yes ] && echo '**met**' || echo '**missed**') |"
			echo "| $HOLD_N held: p99 of WHO on a held connection ≤ 5 ms | $(ms "$(get 3 whoconn who_held_p99_us)") | $(verdict "$(get 3 whoconn who_held_p99_us)" '<=' 5000) |"
		fi
		if [ -s "$B/NOTES.md" ] && [ $SMOKE = 0 ]; then
			echo
			cat "$B/NOTES.md"
		fi
		# cluster mode's times come from `make bench-cluster` (tests/cluster
		# machinery, root): carried here so that all results are in one place
		if [ -s "$B/cluster-RESULTS.md" ] && [ $SMOKE = 0 ]; then
			echo
			sed -e '1s/^# /## /' -e '2,$s/^## /### /' "$B/cluster-RESULTS.md"
		fi
	} >"$md"
}

ms() { awk -v u="$1" 'BEGIN{if(u=="-"||u=="") print "-"; else printf "%.2f\n", u/1000}'; }

CMDLINE="bench/run.sh${ARGS:+ $ARGS}"
[ -n "${BENCH_CMD:-}" ] && CMDLINE=$BENCH_CMD
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for f in "$WHOCONN" "$TRIVIAL" "$WCLOAD"; do
	[ -x "$f" ] || { log "missing $f: run make bench (or make bench/wcload bench/trivial)"; exit 1; }
done
: >"$RAW/rates.txt"; : >"$RAW/wcload.err"; : >"$RAW/launcher.log"
: >"$RAW/hold.txt"; : >"$RAW/spawn.txt"; : >"$RAW/callgrind-sessions.txt"
has_part 1 && part1
has_part 4 && part4
has_part 5 && part5
has_part 2 && part2
has_part 3 && part3
has_part 6 && part6
has_part 1 && plot
report
log "wrote $OUT/RESULTS.md"
