#!/usr/bin/env bash
# Builds what `make node-e2e` runs, from module test/e2enode (k8s.io/kubernetes
# at the version its go.mod names, from the Go module proxy):
#   e2e_node.test  the node e2e suite (go test -c k8s.io/kubernetes/test/e2e_node)
#   agnhost        the agnhost test image's binary (static), for its stand-in
#   ginkgo         the ginkgo CLI of the suite's own ginkgo version, for -p
# into a cache dir OUTSIDE the checkout (CI works in a fresh clone each time
# and a cold e2e_node.test build takes most of an hour on a busy 2-core
# machine). Each binary is rebuilt only when the module or the Go version
# changed: a stamp file beside it records them.
#
# BERTH_NODE_E2E_CACHE  the cache dir (default /var/cache/berth/node-e2e)
# Usage: build-e2e-node.sh [e2e_node.test|agnhost|ginkgo]...  (default: all)
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/test/e2enode
out=${BERTH_NODE_E2E_CACHE:-/var/cache/berth/node-e2e}
version=$(awk '$1 == "require" { $1 = ""; $0 = $0 } $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
if [ -z "$version" ]; then
	echo "build-e2e-node: no k8s.io/kubernetes version in $mod/go.mod" >&2
	exit 1
fi
minor=${version#v1.}
minor=${minor%%.*}
# -trimpath as hack/build-kubelet.sh uses it, so that the packages the
# kubelet build compiled come from the Go build cache.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
agnhost_version=${BERTH_AGNHOST_VERSION:-2.66.1}

build() {
	local name=$1 stamp
	stamp=$( (cat "$mod/go.mod" "$mod/go.sum"; go version; echo "$name $ldflags $agnhost_version") | sha256sum | cut -d' ' -f1)
	if [ -x "$out/$name" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$stamp" ]; then
		return 0
	fi
	mkdir -p "$out"
	echo "build-e2e-node: building $name of kubernetes $version" >&2
	local start
	start=$(date +%s)
	case $name in
	e2e_node.test)
		# a cold build takes ~50 min on a busy 2-core machine
		(cd "$mod" && go test -c -vet=off -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" k8s.io/kubernetes/test/e2e_node) ;;
	agnhost)
		# the real image's binary is static too
		(cd "$mod" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=$agnhost_version" -o "$out/$name.tmp" k8s.io/kubernetes/test/images/agnhost) ;;
	ginkgo)
		(cd "$mod" && go build -trimpath -o "$out/$name.tmp" github.com/onsi/ginkgo/v2/ginkgo) ;;
	*)
		echo "build-e2e-node: unknown target $name" >&2
		return 1 ;;
	esac
	mv "$out/$name.tmp" "$out/$name"
	echo "$stamp" >"$out/$name.stamp"
	echo "build-e2e-node: $name built in $(($(date +%s) - start))s" >&2
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(e2e_node.test agnhost ginkgo)
for t in "${targets[@]}"; do
	build "$t"
done
