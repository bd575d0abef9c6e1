#!/usr/bin/env bats
# The documentation points only at what exists: every relative link in a
# tracked markdown file resolves to a file (and every #anchor to a heading,
# by GitHub's slug rules), and every `make TARGET` named in the markdown
# files and the man pages is a target the Makefile knows (make's own
# database, `make -pRrq`).  So docs cannot point at what was moved.  The
# checks are tests/doccheck.py; each problem is one FILE:LINE line.

load helpers

# Targets the documentation may name before the Makefile has them, one per
# line, each with the reason.  Remove a line once its target has landed.
ALLOWED_TARGETS=(
)

CHECK="$TOP/tests/doccheck.py"

# doc_files GLOB... - the tracked files matching the globs, relative to $TOP
# (every file under $TOP when this is not a git checkout).
doc_files() {
	if git -C "$TOP" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$TOP" ls-files -- "$@"
	else
		local g args=()
		for g in "$@"; do args+=(-o -path "./$g"); done
		(cd "$TOP" && find . -path ./build -prune "${args[@]}" -type f -print | sed 's|^\./||')
	fi
}

@test "every relative link in a markdown file resolves to a file that exists" {
	cd "$TOP"
	mapfile -t md < <(doc_files '*.md')
	[ "${#md[@]}" -ge 5 ] || { echo "found only ${#md[@]} markdown files: ${md[*]}"; return 1; }
	run python3 "$CHECK" links "${md[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "" ]
}

@test "every make target named in the markdown files and the man pages is one the Makefile knows" {
	cd "$TOP"
	mapfile -t docs < <(doc_files '*.md' 'man/*.8')
	allow=()
	for t in "${ALLOWED_TARGETS[@]}"; do allow+=(--allow "$t"); done
	run python3 "$CHECK" targets "${allow[@]}" --makefile Makefile "${docs[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "" ]
}

@test "anchors are GitHub's slugs: lowercase, spaces to '-', punctuation but '-' and '_' dropped" {
	run -0 python3 "$CHECK" slug 'Soak (`make soak`, `tests/soak.py`)' \
		'1. The problem' 'CAP, and the promise made instead' 'The `peer.updated_ms` column' \
		'Decisions and why' 'whoconn cluster mode — design' '[Links](x.md) and more'
	echo "$output"
	[ "${lines[0]}" = "soak-make-soak-testssoakpy" ]
	[ "${lines[1]}" = "1-the-problem" ]
	[ "${lines[2]}" = "cap-and-the-promise-made-instead" ]
	[ "${lines[3]}" = "the-peerupdated_ms-column" ]
	[ "${lines[4]}" = "decisions-and-why" ]
	[ "${lines[5]}" = "whoconn-cluster-mode--design" ]
	[ "${lines[6]}" = "links-and-more" ]
	[ "${#lines[@]}" -eq 7 ]
}

@test "a missing file, a missing heading and an unknown make target are each reported with their line" {
	cd "$BATS_TEST_TMPDIR"
	mkdir docs
	printf 'all:\n\ttrue\nreal: ; true\n%%.o: %%.c\n\ttrue\n' >Makefile
	cat >docs/a.md <<-'EOF'
		# A
		## Same
		## Same
		[ok](../README.md) [ok](b.md#b-two) [ok](#same-1) [web](https://example.com/x)
		[gone](missing.md) and [no heading](b.md#nowhere)
		`make real x.o allowed-later` and `make bogus`, and prose that could make sense
		```
		[not a link in code](nowhere.md)
		sudo make install   # in a fence
		```
		<!-- [not a link in a comment](nowhere.md) -->
	EOF
	printf '# B\n## B two\n' >docs/b.md
	: >README.md
	printf '.Sh EXAMPLES\n.Dl make real\n.Dl make gone-too\nYou make it.\n' >x.8
	run -1 python3 "$CHECK" links docs/a.md docs/b.md
	echo "$output"
	[ "${lines[0]}" = "docs/a.md:5: link missing.md: no such file: docs/missing.md" ]
	[ "${lines[1]}" = "docs/a.md:5: link b.md#nowhere: no heading with anchor #nowhere in docs/b.md" ]
	[ "${#lines[@]}" -eq 2 ]
	run -1 python3 "$CHECK" targets --allow allowed-later --makefile Makefile docs/a.md x.8
	echo "$output"
	[ "${lines[0]}" = "docs/a.md:6: make bogus: no such target in Makefile" ]
	[ "${lines[1]}" = "docs/a.md:9: make install: no such target in Makefile" ]
	[ "${lines[2]}" = "x.8:3: make gone-too: no such target in Makefile" ]
	[ "${#lines[@]}" -eq 3 ]
}
