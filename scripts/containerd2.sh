#!/bin/sh
# Builds containerd 2.x and its runc shim from the Go module proxy into
# $SOCKREAP_CI_CACHE/containerd-$VERSION (default /var/cache/sockreap-ci), for
# the CRI suite's containerd 2 daemon. `go install` refuses containerd's
# module because of its exclude directives, so the binaries are built from a
# scratch module that requires it. Skips when the binaries are there.
set -eu

VERSION=${CONTAINERD2_VERSION:-2.2.0}
CACHE=${SOCKREAP_CI_CACHE:-/var/cache/sockreap-ci}
OUT=$CACHE/containerd-$VERSION
GO=${GO:-go}

if [ -x "$OUT/containerd" ] && [ -x "$OUT/containerd-shim-runc-v2" ]; then
	exit 0
fi
if ! command -v "$GO" >/dev/null 2>&1; then
	echo "containerd2: $GO not found; install Go to build containerd $VERSION" >&2
	exit 1
fi

echo "containerd2: building containerd $VERSION into $OUT (a few minutes)"
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
GO
"$GO" mod init sockreap-ci/containerd2 >/dev/null 2>&1
"$GO" get "github.com/containerd/containerd/v2@v$VERSION" >/dev/null
"$GO" mod tidy >/dev/null 2>&1 || "$GO" mod tidy
mkdir -p bin
pkg=github.com/containerd/containerd/v2
ldflags="-s -w -X $pkg/version.Version=v$VERSION -X $pkg/version.Package=github.com/containerd/containerd/v2"
for cmd in containerd containerd-shim-runc-v2; do
	CGO_ENABLED=0 "$GO" build -mod=mod -trimpath -tags no_btrfs \
		-ldflags "$ldflags" -o "bin/$cmd" "$pkg/cmd/$cmd"
done
mkdir -p "$OUT.tmp"
mv bin/containerd bin/containerd-shim-runc-v2 "$OUT.tmp/"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
echo "containerd2: $("$OUT/containerd" --version)"
