#!/bin/bash
# bench/static-experiment.sh [DIR] - what linking whoconn fully static would
# buy (issue 12; bench/NOTES.md items 11 and 12).  In a scratch copy (DIR,
# default a new /tmp directory; nothing in the tree changes) it builds four
# variants of today's whoconn.c:
#   A   as the Makefile builds it (dynamic libc, WHERE by dlopen(libsystemd))
#   B   A with server_id_derive() calling serverid_get() (serverid.o, nettle)
#   S   B linked -static (no PIE)
#   SP  B linked -static-pie (ASLR kept)
# each also without confinement (valgrind cannot run under the filter), then
# prints callgrind instructions of one connect-WHO-close and one
# connect-WHY-close session (systemd-socket-activate, the registry copied
# fresh from one warm template each run, so every run sees the same file),
# of one WHERE over a pipe, `wcload spawn` CPU per run and the rate under
# systemd-socket-activate (127.0.0.1), interleaved rounds, as ratios to A.
# Needs `make whoconn bench/wcload` first.  Bounded: SPAWN_N (300) spawns
# per variant and round, ROUNDS (5) rounds, RATE_SECS (2) s per rate run at
# RATE_CLIENTS ("1 2 8") clients.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
D=${1:-$(mktemp -d /tmp/whoconn-static.XXXXXX)}
ROUNDS=${ROUNDS:-5}
SPAWN_N=${SPAWN_N:-300}
WCLOAD=$TOP/bench/wcload
mkdir -p "$D"
cd "$D"
cp "$TOP"/{whoconn.c,whoconn.h,whoconn-seccomp.h,serverid.c,serverid.h} .

# B's source: WHERE from serverid.c instead of dlopen()
python3 - <<'EOF'
s = open('whoconn.c').read()
start = s.index('static int server_id_derive(char out[UUID_STR_LEN]) {')
end = s.index('/* ---- commands')
s = s[:start] + '''static int server_id_derive(char out[UUID_STR_LEN]) {
    uint8_t id[SERVERID_BYTES];
    int r = serverid_get(WHOCONN_APP_ID.bytes, id);

    if (r < 0)
        return r;
    serverid_to_string(id, out);
    return 0;
}

''' + s[end:]
s = s.replace('#include <uuid/uuid.h>\n', '#include <uuid/uuid.h>\n#include "serverid.h"\n')
open('whoconn-sid.c', 'w').write(s)
EOF

CF="-O2 -g -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -D_FORTIFY_SOURCE=2
    -fstack-protector-strong -DWHOCONN_VERSION=\"0.1.0\" $(pkg-config --cflags uuid)"
DYN="-Wl,-z,relro,-z,now -Wl,--as-needed"
for nc in "" -DWHOCONN_NO_CONFINE; do
	sfx=${nc:+-nc}
	# shellcheck disable=SC2086
	{
		cc $CF -fPIE $nc -pie $DYN -o whoconn-A$sfx whoconn.c \
			-Wl,-Bstatic -lsqlite3 -luuid -Wl,-Bdynamic -lm
		cc $CF -fPIE $nc -pie $DYN -o whoconn-B$sfx whoconn-sid.c serverid.c \
			-Wl,-Bstatic -lsqlite3 -luuid -lnettle -Wl,-Bdynamic -lm
		cc $CF -fno-pie $nc -static -Wl,-z,relro,-z,now -o whoconn-S$sfx whoconn-sid.c serverid.c \
			-lsqlite3 -luuid -lnettle -lm
		cc $CF -fPIE $nc -static-pie -Wl,-z,relro,-z,now -o whoconn-SP$sfx whoconn-sid.c serverid.c \
			-lsqlite3 -luuid -lnettle -lm
	} 2>build.log # the static links warn that SQLite's load_extension uses dlopen
done
VARIANTS="A B S SP"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p tmpl cg
printf 'WHO\n' | WHOCONN_DB=$D/tmpl/registry.db ./whoconn-A-nc >/dev/null 2>&1
sleep 1.2 # older than the sweep interval: every measured WHO sweeps, as part 4's does

# cg NAME PROGRAM LINE - one connect-LINE-close session under callgrind
cg() {
	local name=$1 prog=$2 line=$3 port l out=$D/cg/$1.out
	rm -rf "$D/fresh" && cp -a "$D/tmpl" "$D/fresh"
	port=$(free_port)
	systemd-socket-activate -l "127.0.0.1:$port" --inetd -a -E WHOCONN_DB="$D/fresh/registry.db" \
		valgrind --tool=callgrind --callgrind-out-file="$out" "$prog" 2>>"$D/launcher.log" &
	l=$!
	for _ in $(seq 100); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.05; done
	"$WCLOAD" rate -p "$port" -c 1 -n 1 -t 30 -m "$line" >/dev/null 2>&1 || true
	for _ in $(seq 300); do [ -s "$out" ] && [ -z "$(pgrep -P "$l" | head -1)" ] && break; sleep 0.1; done
	kill "$l"; wait "$l" 2>/dev/null || true
	callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}'
}

echo "callgrind instructions (3 runs each; the count is bimodal, see NOTES item 12):"
for line in WHO WHY; do
	for v in $VARIANTS; do
		printf '  %s %-3s' "$line" "$v"
		for _ in 1 2 3; do printf ' %s' "$(cg "$line-$v" "./whoconn-$v-nc" "$line")"; done
		echo
	done
done
echo "callgrind, one WHERE over a pipe: total, then cmd_where inclusive:"
for v in $VARIANTS; do
	printf 'WHERE\n' | WHOCONN_DB=$D/tmpl/registry.db valgrind --tool=callgrind \
		--callgrind-out-file="$D/cg/where-$v.out" "./whoconn-$v-nc" >/dev/null 2>&1
	callgrind_annotate --inclusive=yes "$D/cg/where-$v.out" 2>/dev/null |
		awk -v v="$v" '/PROGRAM TOTALS/{gsub(",","",$1); t=$1}
			/:cmd_where \[/{gsub(",","",$1); w=$1} END{printf "  WHERE %-3s %s %s\n", v, t, w}'
done

echo "wcload spawn -n $SPAWN_N, $ROUNDS interleaved rounds (confined builds):"
: >spawn.txt
for r in $(seq "$ROUNDS"); do
	for v in $VARIANTS; do
		for m in WHO WHY; do
			echo "round=$r variant=$v-$m $(WHOCONN_DB=$D/sp-$v.db "$WCLOAD" spawn -n "$SPAWN_N" -m "$m" -- "./whoconn-$v")" >>spawn.txt
		done
	done
done
# per-round ratio to A of each variant and request, then medians
awk '{for(i=1;i<=NF;i++){split($i,a,"="); k[a[1]]=a[2]} c[k["round"]" "k["variant"]]=k["cpu_us"]
	f[k["variant"]]+=k["minflt"]; n[k["variant"]]++; e+=k["errors"]; if(k["round"]>R)R=k["round"]}
	END{split("WHO WHY",M," "); split("B S SP",V," ")
	for(m=1;m<=2;m++) for(j=1;j<=3;j++) for(r=1;r<=R;r++)
		printf "%s %s %.4f %.1f %.1f\n", M[m], V[j], c[r" "V[j]"-"M[m]]/c[r" A-"M[m]],
			f[V[j]"-"M[m]]/n[V[j]"-"M[m]], f["A-"M[m]]/n["A-"M[m]]
	print "errors - " e+0 > "/dev/stderr"}' spawn.txt 2>spawn.err | sort -k1,2 -k3g |
	awk '{k=$1" "$2; v[k,++n[k]]=$3; fl[k]=$4" vs A "$5} END{for(k in n){c=n[k]
		med=(c%2)?v[k,(c+1)/2]:(v[k,c/2]+v[k,c/2+1])/2
		printf "  %s/A CPU median %.3f (%.3f..%.3f), minor faults %s\n", k, med, v[k,1], v[k,c], fl[k]}}' | sort
sed 's/^/  /' spawn.err
echo "rate under systemd-socket-activate, connect-WHO-close, $ROUNDS interleaved rounds of ${RATE_SECS:=2} s:"
declare -A port
lpids=()
for v in $VARIANTS; do
	port[$v]=$(free_port)
	mkdir -p "/dev/shm/whoconn-static-$$-$v"
	systemd-socket-activate -l "127.0.0.1:${port[$v]}" --inetd -a \
		-E WHOCONN_DB="/dev/shm/whoconn-static-$$-$v/registry.db" "./whoconn-$v" 2>>"$D/launcher.log" &
	lpids+=($!)
done
for v in $VARIANTS; do
	for _ in $(seq 100); do nc -z 127.0.0.1 "${port[$v]}" 2>/dev/null && break; sleep 0.05; done
	"$WCLOAD" rate -p "${port[$v]}" -c 1 -n 1 -t 5 >/dev/null 2>&1 || true
done
: >rates.txt
for c in ${RATE_CLIENTS:-1 2 8}; do
	for r in $(seq "$ROUNDS"); do
		for v in $VARIANTS; do
			echo "c=$c round=$r v=$v $("$WCLOAD" rate -p "${port[$v]}" -c "$c" -t "$RATE_SECS" -n 100000 2>/dev/null || true)" >>rates.txt
		done
	done
done
for p in "${lpids[@]}"; do kill "$p" 2>/dev/null || true; done
wait "${lpids[@]}" 2>/dev/null || true
rm -rf "/dev/shm/whoconn-static-$$-"*
awk '{for(i=1;i<=NF;i++){split($i,a,"="); k[a[1]]=a[2]} x[k["c"]" "k["round"]" "k["v"]]=k["rate"]; e+=k["errors"]
	C[k["c"]]=1; if(k["round"]>R)R=k["round"]}
	END{for(c in C) for(r=1;r<=R;r++){A=x[c" "r" A"]; if(A>0) printf "%s %s %.4f\n%s %s %.4f\n%s %s %.4f\n",
		c, "B", x[c" "r" B"]/A, c, "S", x[c" "r" S"]/A, c, "SP", x[c" "r" SP"]/A}
	print "errors - " e+0 > "/dev/stderr"}' rates.txt 2>rates.err | sort -k1,1n -k2,2 -k3g |
	awk '{k=$1" clients "$2; v[k,++n[k]]=$3} END{for(k in n){c=n[k]; med=(c%2)?v[k,(c+1)/2]:(v[k,c/2]+v[k,c/2+1])/2
		printf "  %s/A rate median %.3f (%.3f..%.3f)\n", k, med, v[k,1], v[k,c]}}' | sort -n
sed 's/^/  /' rates.err
echo "scratch copy and raw output: $D"
