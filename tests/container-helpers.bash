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
# its systemd is up; exports NSPAWN_PID and LEADER (the container's PID 1).
# Both waits are helpers.bash's wait_until (bounded for a slow, busy machine).
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
	wait_until "the container's PID 1" container_leader ||
		{ cat "$BATS_FILE_TMPDIR/nspawn.log" >&2; return 1; }
	export LEADER
	wait_until "the container's systemd to finish booting" container_booted
}

# container_leader - sets LEADER to the container's PID 1, once there is one.
container_leader() {
	LEADER=$(pgrep -P "$NSPAWN_PID" -x systemd) && [ -n "$LEADER" ]
}

# container_booted - the container's systemd is up ("degraded" is fine: some
# host units make no sense in a container).
container_booted() {
	local state
	state=$(nsenter -t "$LEADER" -a systemctl is-system-running 2>/dev/null)
	[ "$state" = running ] || [ "$state" = degraded ]
}

# container_stop - powers the container off (nspawn asks its PID 1), and
# kills nspawn if it has not gone within wait_until's bound.
container_stop() {
	[ -n "${NSPAWN_PID:-}" ] || return 0
	kill "$NSPAWN_PID" 2>/dev/null || true
	wait_until "the container to power off" container_gone || kill -KILL "$NSPAWN_PID" 2>/dev/null || true
}

# container_gone - nspawn has exited.
container_gone() {
	! kill -0 "$NSPAWN_PID" 2>/dev/null
}

# inside CMD... - runs CMD inside the container.
inside() {
	nsenter -t "$LEADER" -a "$@"
}

# inside_sh SCRIPT - a shell script inside the container.
inside_sh() {
	nsenter -t "$LEADER" -a sh -ec "$1"
}
