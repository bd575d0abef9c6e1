# tests/container-helpers.bash - one throw-away systemd for a whole bats file
# (tests/systemd.bats, tests/metrics-systemd.bats): systemd-nspawn boots
# over the host's /usr (an overlay, so `make install` writes to a copy),
# with tmpfs /etc and /var, the source tree read-only at /src and a copy of
# the host's dpkg database, so that `make install` can check dependencies
# and `dpkg -i` leaves the host alone.  The container shares the host's
# network: the suites move every socket to a free 127.0.0.1 port.
# Load after helpers.bash.

# container_skip_unless_able - skips the file where no container can boot.
container_skip_unless_able() {
	[ "$(id -u)" -eq 0 ] || skip "needs root to boot a container with systemd-nspawn"
	command -v systemd-nspawn >/dev/null || skip "needs systemd-nspawn (Debian package systemd-container)"
	command -v nsenter >/dev/null || skip "needs nsenter (util-linux)"
}

# container_boot [NSPAWN-OPTION...] - boots the container and waits until
# its systemd is up ("degraded" is fine: some host units make no sense in
# a container); exports NSPAWN_PID and LEADER (the container's PID 1).
# Bounds are for a slow, busy machine: 60 s for PID 1 to appear, then
# systemd's own wait.
container_boot() {
	cp -a /var/lib/dpkg "$BATS_FILE_TMPDIR/dpkg"
	# nspawn's own filter denies Landlock (unknown to systemd 252): let
	# whoconn use it as it does on a host.
	systemd-nspawn -q --register=no --keep-unit --directory=/ --volatile=yes \
		--overlay=/usr::/usr --bind-ro="$TOP:/src" \
		--bind="$BATS_FILE_TMPDIR/dpkg:/var/lib/dpkg" "$@" \
		--system-call-filter='landlock_create_ruleset landlock_add_rule landlock_restrict_self' \
		--boot -- systemd.firstboot=off \
		</dev/null >"$BATS_FILE_TMPDIR/nspawn.log" 2>&1 3>&- &
	export NSPAWN_PID=$!
	LEADER=""
	for _ in $(seq 1200); do
		LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd || true)
		[ -n "$LEADER" ] && break
		sleep 0.05
	done
	[ -n "$LEADER" ] || { cat "$BATS_FILE_TMPDIR/nspawn.log" >&2; return 1; }
	export LEADER
	local state=""
	for _ in $(seq 100); do
		state=$(timeout 60 nsenter -t "$LEADER" -a systemctl is-system-running --wait 2>/dev/null || true)
		[ "$state" = running ] || [ "$state" = degraded ] && break
		sleep 0.1
	done
	[ "$state" = running ] || [ "$state" = degraded ] ||
		{ echo "the container's systemd did not come up: $state" >&2; return 1; }
}

# container_stop - powers the container off (nspawn asks its PID 1), then
# kills nspawn if it has not gone within 10 s.
container_stop() {
	[ -n "${NSPAWN_PID:-}" ] || return 0
	kill "$NSPAWN_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$NSPAWN_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$NSPAWN_PID" 2>/dev/null || true
}

# inside CMD... - runs CMD inside the container.
inside() {
	nsenter -t "$LEADER" -a "$@"
}

# inside_sh SCRIPT - a shell script inside the container.
inside_sh() {
	nsenter -t "$LEADER" -a sh -ec "$1"
}
