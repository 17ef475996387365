#!/usr/bin/env bash
# make demo: a stuck orphaned TCP connection keeps a deleted network
# namespace alive; sockreap-hook drain frees it at once.
#
# Story, in steps:
#   1. a client in netns A talks over a veth to a peer in netns B that stops
#      reading; the client fills the window and exits, leaving an orphan in
#      FIN-WAIT-1 with unsent data;
#   2. without sockreap: `ip netns del A` returns, but A lives on (its veth
#      end in B is the witness) for as long as the orphan does: minutes;
#   3. with sockreap: the same setup, `sockreap-hook drain` before the
#      delete, and A is gone right away.
# Exits non-zero when the story does not hold on this machine. Everything it
# creates (namespaces, veths, processes, a temp dir) is removed on any exit.
# Addresses are from 192.0.2.0/24; no traffic leaves the machine.
#
# Later steps (runc containers with the sockreap hooks) plug in as further
# case_* functions called from main at the bottom.
set -euo pipefail
export LC_ALL=C

HOOK=${HOOK:-bin/sockreap-hook}
LINGER_WAIT=${LINGER_WAIT:-8} # seconds we watch A linger without sockreap
FREE_WAIT=${FREE_WAIT:-5}     # seconds A may take to go with sockreap
PORT=8080
ID=$$

WORK=""
NAMESPACES=() # created and not yet deleted
PIDS=()       # background processes we started

# --- output -----------------------------------------------------------------

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
step() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
say() { printf '   %s\n' "$*"; }
show() { sed 's/^/   | /'; } # indent command output
fail() {
	printf '\nDEMO FAILED: %s\n' "$*" >&2
	exit 1
}

# --- time ---------------------------------------------------------------------

now_us() { echo "${EPOCHREALTIME/./}"; }
# secs_since T0_US: seconds since T0_US, e.g. 0.042
secs_since() {
	local d=$(($(now_us) - $1))
	printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}

# --- cleanup ------------------------------------------------------------------

cleanup() {
	local rc=$?
	set +e
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		# A peer's RST frees an orphan that a failed run left behind, so
		# that no namespace outlives the demo in the kernel either.
		ip netns exec "$ns" ss -K -t -a >/dev/null 2>&1
		ip netns del "$ns" 2>/dev/null
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

forget_ns() { # the namespace's name is deleted; stop tracking it
	local keep=() ns
	for ns in "${NAMESPACES[@]}"; do [ "$ns" = "$1" ] || keep+=("$ns"); done
	NAMESPACES=("${keep[@]}")
}

# --- step 0: what the demo needs -----------------------------------------------

prereqs() {
	[ "$(id -u)" = 0 ] || fail "needs root (network namespaces): sudo make demo"
	for tool in ip ss sysctl go; do
		command -v "$tool" >/dev/null || fail "$tool not found (make deps installs iproute2 and procps)"
	done
	[ -x "$HOOK" ] || fail "$HOOK not found: run make build"
	"$HOOK" drain --help >/dev/null 2>&1 || fail "$HOOK has no working drain command"
	WORK=$(mktemp -d /tmp/sockreap-demo.XXXXXX)
	go build -o "$WORK/demo" ./test/demo || fail "building the socket helper ./test/demo failed"
}

# --- the stuck connection -------------------------------------------------------

# make_stuck_connection N: fresh netns A and B linked by a veth, a peer in B
# that never reads, and an orphan in A. Sets A, B, LINK_B, ADDR_A, ADDR_B.
make_stuck_connection() {
	local n=$1
	A="srdemo${ID}-${n}a" B="srdemo${ID}-${n}b"
	local link_a="srd${ID}${n}a"
	LINK_B="srd${ID}${n}b"
	ADDR_A="192.0.2.$((4 * n + 1))" ADDR_B="192.0.2.$((4 * n + 2))"

	ip netns add "$A" && NAMESPACES+=("$A")
	ip netns add "$B" && NAMESPACES+=("$B")
	ip -n "$A" link add "$link_a" type veth peer name "$LINK_B" netns "$B"
	ip -n "$A" addr add "$ADDR_A/30" dev "$link_a"
	ip -n "$B" addr add "$ADDR_B/30" dev "$LINK_B"
	for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
	ip -n "$A" link set "$link_a" up
	ip -n "$B" link set "$LINK_B" up
	say "netns $A ($ADDR_A) <-- veth $link_a / $LINK_B --> netns $B ($ADDR_B)"

	ip netns exec "$B" "$WORK/demo" peer "$ADDR_B:$PORT" >"$WORK/peer$n.log" 2>&1 &
	PIDS+=($!)
	local i
	for i in $(seq 100); do
		grep -q listening "$WORK/peer$n.log" && break
		sleep 0.05
	done
	grep -q listening "$WORK/peer$n.log" || fail "the peer in $B did not start: $(cat "$WORK/peer$n.log")"
	show <"$WORK/peer$n.log"

	ip netns exec "$A" "$WORK/demo" client "$ADDR_B:$PORT" | show ||
		fail "the client in $A failed"

	# The orphan: FIN-WAIT-1 with unsent data (Send-Q), probing the
	# closed window (timer persist).
	local orphan=""
	for i in $(seq 100); do
		orphan=$(ip netns exec "$A" ss -tnoH state fin-wait-1)
		[[ $orphan == *persist* ]] && break
		sleep 0.05
	done
	[[ $orphan == *persist* ]] || fail "no orphan probing a zero window in $A; ss shows: ${orphan:-nothing}"
	say "the client process is gone, its socket is not; ss -tno in $A:"
	ip netns exec "$A" ss -tnoa | show
	say "no process left in $A: $(ip netns pids "$A" | wc -l) pids"
}

# --- step 2: without sockreap ------------------------------------------------------

LINGER_RESULT=""
case_without_sockreap() {
	step "2. Without sockreap: delete netns A while the orphan lives"
	make_stuck_connection 1
	local t0
	t0=$(now_us)
	ip netns del "$A" && forget_ns "$A"
	say "ip netns del $A returned after $(secs_since "$t0") s; it only removes the name."
	say "Watching for the namespace to die (witness: its veth peer $LINK_B in $B disappears) for ${LINGER_WAIT} s..."
	local t
	if t=$(wait_link_gone "$B" "$LINK_B" "$LINGER_WAIT"); then
		fail "netns A died ${t} s after deletion without sockreap: no lingering on this kernel, the story does not hold"
	fi
	say "after ${LINGER_WAIT} s the deleted namespace is still alive:"
	ip -n "$B" -br link show "$LINK_B" | show
	say "and the peer in $B still holds a full receive queue from it (ss -tn in $B):"
	ip netns exec "$B" ss -tn | show
	say "With net.ipv4.tcp_orphan_retries=$(sysctl -n net.ipv4.tcp_orphan_retries) (0 means 8) the orphan keeps probing the"
	say "zero window with exponential backoff (up to 120 s apart): it and its namespace linger for minutes."
	LINGER_RESULT="still alive after ${LINGER_WAIT} s (would linger for minutes)"

	say "Cleaning up: the peer in $B resets the connection (ss -K in $B)..."
	ip netns exec "$B" ss -K -t dst "$ADDR_A" >/dev/null
	if t=$(wait_link_gone "$B" "$LINK_B" "$FREE_WAIT"); then
		say "netns A died ${t} s after the RST reached the orphan: the orphan was what held it."
	else
		fail "netns A still alive ${FREE_WAIT} s after the peer's RST"
	fi
}

# --- step 3: with sockreap -----------------------------------------------------------

FREE_RESULT=""
case_with_sockreap() {
	step "3. With sockreap: the same setup, drained before the delete"
	make_stuck_connection 2
	say "\$ $HOOK drain --netns /var/run/netns/$A"
	local t0 rc=0 out drain_s
	t0=$(now_us)
	out=$("$HOOK" drain --netns "/var/run/netns/$A" 2>&1) || rc=$?
	drain_s=$(secs_since "$t0")
	printf '%s\n' "$out" | show
	[ "$rc" = 0 ] || fail "sockreap-hook drain exited $rc: sockets remain in $A"
	say "drain took ${drain_s} s; ss in $A now lists $(ip netns exec "$A" ss -tanH | wc -l) sockets"
	t0=$(now_us)
	ip netns del "$A" && forget_ns "$A"
	local t
	if t=$(wait_link_gone "$B" "$LINK_B" "$FREE_WAIT"); then
		say "ip netns del $A: the namespace died ${t} s later ($LINK_B is gone from $B)."
	else
		fail "netns A still alive ${FREE_WAIT} s after drain and delete"
	fi
	FREE_RESULT="drain ${drain_s} s, namespace gone ${t} s after ip netns del"
}

# wait_link_gone NS LINK SECS: prints the seconds until LINK left NS; fails
# after SECS.
wait_link_gone() {
	local t0
	t0=$(now_us)
	while ip -n "$1" link show "$2" >/dev/null 2>&1; do
		(($(now_us) - t0 < $3 * 1000000)) || return 1
		sleep 0.01
	done
	secs_since "$t0"
}

# --- main ------------------------------------------------------------------------------

main() {
	step "0. Prerequisites"
	prereqs
	say "kernel $(uname -r), $HOOK $("$HOOK" version 2>/dev/null | head -1)"
	step "1. The problem"
	say "A socket that outlives its process (an orphan) holds a reference to its network"
	say "namespace. A peer that stopped reading closes its window, so the orphan can neither"
	say "send its data nor its FIN: it stays in FIN-WAIT-1, and so does its namespace."
	case_without_sockreap
	case_with_sockreap
	step "Result"
	say "without sockreap: $LINGER_RESULT"
	say "with sockreap:    $FREE_RESULT"
}

main "$@"
