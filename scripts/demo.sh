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
#   4. a runc container whose process leaves the same orphan: after
#      `runc delete` its namespace lingers;
#   5. the same container with the sockreap hooks (configure runc): the
#      poststop hook drains the namespace and it is gone at delete.
set -euo pipefail
export LC_ALL=C

HOOK=${HOOK:-bin/sockreap-hook}
LINGER_WAIT=${LINGER_WAIT:-8} # seconds we watch A linger without sockreap
FREE_WAIT=${FREE_WAIT:-5}     # seconds A may take to go with sockreap
PORT=8080
ID=$$

WORK=""
CONTAINERS=() # runc containers not yet deleted
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
	for c in "${CONTAINERS[@]}"; do
		runc delete --force "$c" >/dev/null 2>&1
	done
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		# A peer's RST frees an orphan that a failed run left behind, so
		# that no namespace outlives the demo in the kernel either.
		ip netns exec "$ns" ss -K -t -a >/dev/null 2>&1
		ip netns del "$ns" 2>/dev/null
	done
	if [ -n "$WORK" ]; then
		# The hooks make their pins directory a mount point, as ip netns
		# does for /run/netns.
		umount "$WORK/state/pins" 2>/dev/null
		rm -rf "$WORK"
	fi
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
	for tool in ip ss sysctl go nsenter; do
		command -v "$tool" >/dev/null || fail "$tool not found (make deps installs iproute2 and procps)"
	done
	[ -x "$HOOK" ] || fail "$HOOK not found: run make build"
	"$HOOK" drain --help >/dev/null 2>&1 || fail "$HOOK has no working drain command"
	WORK=$(mktemp -d /tmp/sockreap-demo.XXXXXX)
	# A demonstration is not the node's work: keep it out of the node's
	# metrics (node_exporter's textfile directory) and its config file.
	printf 'metrics_dir = ""\n' >"$WORK/config.toml"
	export SOCKREAP_CONFIG="$WORK/config.toml"
	CGO_ENABLED=0 go build -o "$WORK/demo" ./test/demo || fail "building the socket helper ./test/demo failed"
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
	wait_listening "$WORK/peer$n.log" "$B"
	show <"$WORK/peer$n.log"
	local i

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

# --- steps 4 and 5: real runc containers ------------------------------------------

# run_container N HOOKS: a runc container (busybox rootfs, the demo client
# as its process) whose fresh netns is wired to a non-reading peer in netns
# B; the client fills the window and exits, the container stops with an
# orphan in its netns. With HOOKS=yes the bundle gets the sockreap hooks
# (configure runc). Sets CTR, B, LINK_B, BUNDLE.
run_container() {
	local n=$1 hooks=$2
	CTR="srdemo${ID}-c${n}" B="srdemo${ID}-${n}b" BUNDLE="$WORK/bundle$n"
	LINK_B="srd${ID}${n}b"
	local link_c="srd${ID}${n}c"
	ADDR_A="192.0.2.$((4 * n + 1))" ADDR_B="192.0.2.$((4 * n + 2))"

	mkdir -p "$BUNDLE"/rootfs/{bin,proc,dev,sys,tmp}
	cp /bin/busybox "$BUNDLE/rootfs/bin/busybox"
	ln -s busybox "$BUNDLE/rootfs/bin/sh"
	cp "$WORK/demo" "$BUNDLE/rootfs/bin/demo"
	runc spec --bundle "$BUNDLE"
	"$WORK/demo" spec "$BUNDLE/config.json" /bin/demo client "$ADDR_B:$PORT"
	if [ "$hooks" = yes ]; then
		say "\$ sockreap-hook configure runc --bundle $BUNDLE"
		"$HOOK" configure runc --bundle "$BUNDLE" --state-dir "$WORK/state" --log "$WORK/hook.log" --config "$WORK/config.toml" | show
	fi

	ip netns add "$B" && NAMESPACES+=("$B")
	ip -n "$B" link set lo up

	runc create --bundle "$BUNDLE" "$CTR" </dev/null >"$WORK/ctr$n.log" 2>&1 ||
		fail "runc create $CTR failed: $(cat "$WORK/ctr$n.log")"
	CONTAINERS+=("$CTR")
	local pid
	pid=$(runc state "$CTR" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
	ip -n "$B" link add "$LINK_B" type veth peer name "$link_c" netns "$pid"
	ip -n "$B" addr add "$ADDR_B/30" dev "$LINK_B"
	ip -n "$B" link set "$LINK_B" up
	nsenter --net="/proc/$pid/ns/net" ip addr add "$ADDR_A/30" dev "$link_c"
	nsenter --net="/proc/$pid/ns/net" ip link set "$link_c" up
	nsenter --net="/proc/$pid/ns/net" ip link set lo up
	ip netns exec "$B" "$WORK/demo" peer "$ADDR_B:$PORT" >"$WORK/peer$n.log" 2>&1 &
	PIDS+=($!)
	wait_listening "$WORK/peer$n.log" "$B"
	say "container $CTR (netns of pid $pid, $ADDR_A) <-- veth --> netns $B ($ADDR_B, a peer that never reads)"
	runc start "$CTR"
	local i
	for i in $(seq 200); do
		[ "$(runc state "$CTR" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')" = stopped ] && break
		sleep 0.05
	done
	show <"$WORK/ctr$n.log"
	say "the container's process has exited; runc state says: $(runc state "$CTR" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')"
}

RUNC_WITHOUT="" RUNC_WITH=""
case_runc_without_hooks() {
	step "4. A runc container without the hooks"
	run_container 3 no
	local t0 t
	t0=$(now_us)
	runc delete "$CTR" && forget_container "$CTR"
	say "runc delete $CTR returned after $(secs_since "$t0") s"
	if t=$(wait_link_gone "$B" "$LINK_B" "$LINGER_WAIT"); then
		fail "the container's netns died ${t} s after runc delete without sockreap: the story does not hold"
	fi
	say "after ${LINGER_WAIT} s the deleted container's namespace is still alive ($LINK_B is still in $B):"
	ip -n "$B" -br link show "$LINK_B" | show
	RUNC_WITHOUT="netns still alive ${LINGER_WAIT} s after runc delete"
	say "Cleaning up: the peer in $B resets the connection..."
	ip netns exec "$B" ss -K -t dst "$ADDR_A" >/dev/null
	wait_link_gone "$B" "$LINK_B" "$FREE_WAIT" >/dev/null || fail "the namespace stayed after the peer's RST"
}

case_runc_with_hooks() {
	step "5. A runc container with the sockreap hooks"
	run_container 4 yes
	say "sockreap-hook pins --state-dir $WORK/state:"
	"$HOOK" pins --state-dir "$WORK/state" | show
	local t0 t del_s
	t0=$(now_us)
	runc delete "$CTR" && forget_container "$CTR"
	del_s=$(secs_since "$t0")
	say "runc delete $CTR returned after ${del_s} s (the poststop hook drained the namespace)"
	if t=$(wait_link_gone "$B" "$LINK_B" "$FREE_WAIT"); then
		say "the container's namespace was gone ${t} s after runc delete returned ($LINK_B left $B)"
	else
		fail "the container's netns is still alive ${FREE_WAIT} s after runc delete with the hooks; log: $(tail -n 2 "$WORK/hook.log")"
	fi
	say "the hook's log line for poststop:"
	grep '"stage":"poststop"' "$WORK/hook.log" | tail -n 1 | show
	RUNC_WITH="runc delete ${del_s} s, netns gone ${t} s after it"
}

forget_container() {
	local keep=() c
	for c in "${CONTAINERS[@]}"; do [ "$c" = "$1" ] || keep+=("$c"); done
	CONTAINERS=("${keep[@]}")
}

# wait_listening LOG NS: waits until the peer whose output goes to LOG listens.
wait_listening() {
	local i
	for i in $(seq 100); do
		grep -q listening "$1" && return 0
		sleep 0.05
	done
	fail "the peer in $2 did not start: $(cat "$1")"
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
	if command -v runc >/dev/null; then
		case_runc_without_hooks
		case_runc_with_hooks
	else
		say "runc not found (apt-get install runc): skipping the container steps"
	fi
	step "Result"
	say "plain netns, without sockreap: $LINGER_RESULT"
	say "plain netns, with sockreap:    $FREE_RESULT"
	if [ -n "$RUNC_WITH" ]; then
		say "runc container, without hooks: $RUNC_WITHOUT"
		say "runc container, with hooks:    $RUNC_WITH"
	fi
}

main "$@"
