#!/usr/bin/env bash
# Prepares the node for `make run`: the directories berthd uses by default and,
# when /etc/cni/net.d holds no network config, a default one: a bridge
# (berth0, 10.88.0.0/16, NAT to the outside) with host-local IPAM on that
# static range (not the kubelet's pod CIDR: see README), portmap
# for hostPorts and loopback, from hack/cni-default.conflist. The NAT is
# berthd's, one rule per subnet ("berthMasquerade": true in the list; the
# bridge plugin's per-pod "ipMasq" is off: cni/masquerade.go). The plugins are
# Debian's containernetworking-plugins in /usr/lib/cni (hack/install-deps.sh).
#
#   setup-default.sh --print-cni   prints that config and changes nothing
#                                  (hack/clean-node.sh: is the file berth's own?)
set -euo pipefail
cd "$(dirname "$0")/.."
conf_dir=${BERTH_CNI_CONF_DIR:-/etc/cni/net.d}
default_cni() {
	sed -e "s|@BRIDGE@|${BERTH_CNI_BRIDGE:-berth0}|g" -e "s|@SUBNET@|${BERTH_CNI_SUBNET:-10.88.0.0/16}|" \
		-e "s|@IPAMDIR@|/var/lib/cni/networks|" hack/cni-default.conflist
}
if [ "${1:-}" = --print-cni ]; then
	default_cni
	exit 0
fi
mkdir -p /etc/berth /etc/berth/certs.d /var/lib/berth /run/berth "$conf_dir"
shopt -s nullglob
existing=("$conf_dir"/*.conf "$conf_dir"/*.conflist "$conf_dir"/*.json)
if ((${#existing[@]} == 0)); then
	default_cni >"$conf_dir/10-berth.conflist"
	echo "setup-default: wrote $conf_dir/10-berth.conflist" >&2
fi
