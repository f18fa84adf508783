#!/usr/bin/env bash
# Builds the upstream kubelet (module test/kubelet: k8s.io/kubernetes at the
# version its go.mod names, from the Go module proxy) for the tests that
# drive berth with the real kubelet, into
#   ${BERTH_CACHE_DIR:-/var/cache/berth}/kubelet/<stamp>/kubelet
# (or $BERTH_KUBELET_OUT/kubelet): outside the checkout, so that a fresh
# clone (CI) reuses it, and named by the hash of its inputs (the module, its
# main, this script, the Go version), so that checkouts at other commits
# share the dir without replacing each other's. A cold build takes minutes.
#
#   build-kubelet.sh               build unless built, then print the path
#   build-kubelet.sh --print-path  print the path only (make's KUBELET)
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/test/kubelet
version=$(awk '$1 == "require" { $1 = ""; $0 = $0 } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
if [ -z "$version" ]; then
	echo "build-kubelet: no k8s.io/kubernetes version in $mod/go.mod" >&2
	exit 1
fi

stamp=$( (cat "$mod/go.mod" "$mod/go.sum" "$mod/kubeletbin/main.go" "$0"; go version) | sha256sum | cut -c1-16)
cache=${BERTH_CACHE_DIR:-/var/cache/berth}/kubelet
out=${BERTH_KUBELET_OUT:-$cache/$stamp}
if [ "${1:-}" = --print-path ]; then
	echo "$out/kubelet"
	exit 0
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [ -x "$out/kubelet" ] && [ "$(cat "$out/kubelet.stamp" 2>/dev/null)" = "$stamp" ]; then
	touch "$out"
	echo "$out/kubelet"
	exit 0
fi
# Builds of other inputs unused for a month go.
if [ -z "${BERTH_KUBELET_OUT:-}" ]; then
	find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$stamp" -mtime +30 -exec rm -rf {} + 2>/dev/null || true
fi

minor=${version#v1.}
minor=${minor%%.*}
echo "build-kubelet: building kubelet $version into $out (a cold build takes several minutes)" >&2
start=$(date +%s)
(cd "$mod" && go build -trimpath \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
	-o "$out/kubelet.tmp" ./kubeletbin)
mv "$out/kubelet.tmp" "$out/kubelet"
echo "$stamp" >"$out/kubelet.stamp"
echo "build-kubelet: kubelet $version built in $(($(date +%s) - start))s" >&2
echo "$out/kubelet"
