#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian 12 machine, as root. Idempotent:
# a second run installs nothing that is already there.
#
#   hack/install-deps.sh run    what building and running berthd needs (make run):
#                               its Debian packages and crictl; a minute or two
#   hack/install-deps.sh test   that and the test toolchain (make test, make deps):
#                               busybox and the registry for the test images,
#                               QEMU, a kernel and debootstrap for the VM tests,
#                               critest and staticcheck; about ten minutes cold
#
# No argument means test (everything).
set -euo pipefail

profile=${1:-test}
case $profile in
run | test) ;;
*)
	echo "usage: $0 [run|test]" >&2
	exit 2
	;;
esac

CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
BIN=${BERTH_TOOLS_BIN:-/usr/local/bin}
export PATH=$PATH:/usr/local/go/bin

log() { echo "install-deps: $*" >&2; }

# Package groups, one apt-get run per group so that each says what it is
# for; apt's own lines (Get:, Unpacking, Setting up) show the progress.
# profile|what for|packages
groups=(
	"run|node tools|iptables iproute2 util-linux procps psmisc kmod"
	"run|CNI plugins (/usr/lib/cni: bridge, host-local, portmap, loopback)|containernetworking-plugins"
	"run|the cgo build of seccomp support and the static berth-mon|libseccomp-dev pkg-config gcc libc6-dev"
	"test|the test images and their registry|busybox docker-registry"
	"test|the node e2e stand-in images (agnhost's curl, bash and nc)|curl bash netcat-openbsd"
	"test|the cgroup v2 VMs (QEMU, Debian's kernel, debootstrap)|qemu-system-x86 linux-image-amd64 debootstrap cpio e2fsprogs"
	"test|container checkpoint (CRIU; optional at run time, CheckpointContainer needs it)|criu"
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

updated=
for g in "${groups[@]}"; do
	IFS='|' read -r gprofile what pkgs <<<"$g"
	[ "$profile" = test ] || [ "$gprofile" = run ] || continue
	missing=()
	for p in $pkgs; do
		installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || continue
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "$updated" ]; then
		log "apt-get update"
		apt-get update -q
		updated=1
	fi
	log "installing $what: ${missing[*]}"
	start=$(date +%s)
	apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
	log "installed ${missing[*]} in $(($(date +%s) - start))s"
done
# The registry package starts a service where an init system runs; the tests
# start their own.
if [ -n "$updated" ] && command -v service >/dev/null && [ -e /etc/init.d/docker-registry ]; then
	service docker-registry stop >/dev/null 2>&1 || true
fi

if ! command -v go >/dev/null; then
	log "Go is missing: install Go 1.24 or newer at /usr/local/go"
	exit 1
fi

have_version() { [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "${2#v}"; }

# cri-tools puts its version into the binaries at link time (its Makefile:
# -X .../pkg/version.Version without the v); without it they say "unknown".
CRI_TOOLS_LDFLAGS="-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"

# A marker file records the version built.
if [ ! -x "$BIN/crictl" ] || [ "$(cat "$BIN/.crictl-version" 2>/dev/null)" != "$CRI_TOOLS_VERSION" ]; then
	log "building crictl $CRI_TOOLS_VERSION from the Go module proxy (a minute or two cold)"
	GOBIN=$BIN go install -ldflags "$CRI_TOOLS_LDFLAGS" "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
	echo "$CRI_TOOLS_VERSION" >"$BIN/.crictl-version"
fi

if [ "$profile" = test ]; then
	# critest is a Ginkgo test binary: built with go test -c from the module
	# source. The marker records the version and that it carries it.
	want="$CRI_TOOLS_VERSION ldflags"
	if [ ! -x "$BIN/critest" ] || [ "$(cat "$BIN/.critest-version" 2>/dev/null)" != "$want" ]; then
		log "building critest $CRI_TOOLS_VERSION (go test -c of sigs.k8s.io/cri-tools; a few minutes cold)"
		src=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		(cd "$src" && go test -c -ldflags "$CRI_TOOLS_LDFLAGS" -o "$BIN/critest" ./cmd/critest)
		echo "$want" >"$BIN/.critest-version"
	fi

	if ! have_version "$BIN/staticcheck" "$STATICCHECK_VERSION"; then
		log "building staticcheck $STATICCHECK_VERSION (a minute cold)"
		GOBIN=$BIN go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	fi
fi
log "done ($profile)"
