#!/bin/sh
# Builds what the CRI suite (test/cri) needs beyond Debian's packages into
# $SOCKREAP_CI_CACHE (default /var/cache/sockreap-ci): crictl from the Go
# module proxy into bin/, and containerd 2.x (scripts/containerd2.sh).
# Each is skipped when already there.
set -eu

CACHE=${SOCKREAP_CI_CACHE:-/var/cache/sockreap-ci}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
GO=${GO:-go}
here=$(dirname "$0")

if ! command -v "$GO" >/dev/null 2>&1; then
	echo "cri-deps: $GO not found; the CRI suite will skip (install Go to build crictl and containerd 2)" >&2
	exit 0
fi
if ! mkdir -p "$CACHE/bin" 2>/dev/null || [ ! -w "$CACHE/bin" ]; then
	echo "cri-deps: cannot write $CACHE (run as root: sudo make deps); the CRI suite will skip what is missing" >&2
	exit 0
fi
if [ ! -x "$CACHE/bin/crictl" ]; then
	echo "cri-deps: building crictl $CRICTL_VERSION into $CACHE/bin"
	CGO_ENABLED=0 GOBIN="$CACHE/bin" "$GO" install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
fi
"$here/containerd2.sh"
