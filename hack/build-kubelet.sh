#!/usr/bin/env bash
# Builds the upstream kubelet (module test/kubelet: k8s.io/kubernetes at the
# version its go.mod names, from the Go module proxy) into
# _output/kubelet/kubelet, for the tests that drive berth with the real
# kubelet. A cold build takes minutes; the binary is rebuilt only when the
# module, its main or the Go version changed (a stamp file records them).
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/test/kubelet
out=${BERTH_KUBELET_OUT:-$root/_output/kubelet}
version=$(awk '$1 == "require" { $1 = ""; $0 = $0 } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
if [ -z "$version" ]; then
	echo "build-kubelet: no k8s.io/kubernetes version in $mod/go.mod" >&2
	exit 1
fi

stamp=$( (cat "$mod/go.mod" "$mod/go.sum" "$mod/kubeletbin/main.go" "$0"; go version) | sha256sum | cut -d' ' -f1)
if [ -x "$out/kubelet" ] && [ "$(cat "$out/kubelet.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

mkdir -p "$out"
minor=${version#v1.}
minor=${minor%%.*}
echo "build-kubelet: building kubelet $version (a cold build takes several minutes)" >&2
start=$(date +%s)
(cd "$mod" && go build -trimpath \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
	-o "$out/kubelet.tmp" ./kubeletbin)
mv "$out/kubelet.tmp" "$out/kubelet"
echo "$stamp" >"$out/kubelet.stamp"
echo "build-kubelet: kubelet $version built in $(($(date +%s) - start))s" >&2
