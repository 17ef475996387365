#!/bin/sh
# Installs what the tests, the demo and the benchmark use: iproute2 (ip, ss),
# runc, crun, containerd, docker.io, podman, busybox-static, qemu, and the
# CNI plugins and flock of the CRI suite. As root on Debian/Ubuntu it
# installs what is missing with apt-get; elsewhere it names what is missing
# and leaves the machine alone. scripts/cri-deps.sh builds the rest of the
# CRI suite's tools (crictl, containerd 2) with Go.
set -eu

need=""
check() { command -v "$1" >/dev/null 2>&1 || need="$need $2"; }
check ip iproute2
check ss iproute2
check runc runc
check crun crun
check containerd containerd
check dockerd docker.io
check podman podman
# Container rootfs in the tests is a static busybox; a dynamic one (package
# busybox) would not run inside them.
if ! command -v busybox >/dev/null 2>&1 || ldd "$(command -v busybox)" >/dev/null 2>&1; then
	need="$need busybox-static"
fi
check qemu-system-x86_64 qemu-system-x86
check cpio cpio
check xz xz-utils
check sysctl procps
check /usr/bin/time time
check flock util-linux
# The CRI suite's pods get their network from the bridge and host-local
# CNI plugins.
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need="$need containernetworking-plugins"
# The metrics scrape test runs its own prometheus and node_exporter.
check prometheus prometheus
check promtool prometheus
check prometheus-node-exporter prometheus-node-exporter
[ -z "$need" ] && exit 0

need=$(echo $need | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing $need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
else
	echo "deps: missing packages:$need" >&2
	echo "deps: install them (Debian/Ubuntu: sudo apt-get install$need); tests that need them will skip" >&2
fi
# Their packaged services would hold ports 9090 and 9100; the tests start
# their own instances, so the freshly installed services are stopped.
case "$need" in *prometheus*)
	if [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then
		systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
	fi;;
esac
