#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian 12 machine, as root. Idempotent:
# a second run installs nothing that is already there.
set -euo pipefail

CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
BIN=${BERTH_TOOLS_BIN:-/usr/local/bin}
export PATH=$PATH:/usr/local/go/bin

log() { echo "install-deps: $*" >&2; }

packages=(
	iptables iproute2 util-linux procps psmisc kmod
	containernetworking-plugins # /usr/lib/cni: bridge, host-local, portmap, loopback
	busybox                     # test images are built from Debian's busybox
	docker-registry             # the local registry the tests pull from
	libseccomp-dev pkg-config gcc
	# make test-vm: QEMU boots Debian's kernel with cgroup v2 only, and a
	# Debian root with systemd made by debootstrap
	qemu-system-x86 linux-image-amd64 debootstrap cpio e2fsprogs
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The registry package starts a service where an init system runs; the
	# tests start their own.
	if command -v service >/dev/null && [ -e /etc/init.d/docker-registry ]; then
		service docker-registry stop >/dev/null 2>&1 || true
	fi
fi

if ! command -v go >/dev/null; then
	log "Go is missing: install Go 1.24 or newer at /usr/local/go"
	exit 1
fi

have_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "${2#v}"; }

# go install leaves crictl's version string empty: a marker file records it.
if [ ! -x "$BIN/crictl" ] || [ "$(cat "$BIN/.crictl-version" 2>/dev/null)" != "$CRI_TOOLS_VERSION" ]; then
	log "crictl $CRI_TOOLS_VERSION"
	GOBIN=$BIN go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
	echo "$CRI_TOOLS_VERSION" >"$BIN/.crictl-version"
fi

# critest is a Ginkgo test binary: built with go test -c from the module source.
if [ ! -x "$BIN/critest" ] || [ "$(cat "$BIN/.critest-version" 2>/dev/null)" != "$CRI_TOOLS_VERSION" ]; then
	log "critest $CRI_TOOLS_VERSION"
	src=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	(cd "$src" && go test -c -o "$BIN/critest" ./cmd/critest)
	echo "$CRI_TOOLS_VERSION" >"$BIN/.critest-version"
fi

if ! have_version "$BIN/staticcheck" "$STATICCHECK_VERSION"; then
	log "staticcheck $STATICCHECK_VERSION"
	GOBIN=$BIN go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
log "done"
