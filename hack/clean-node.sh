#!/usr/bin/env bash
# Resets a node that ran berthd (make clean-node): removes what berthd and
# make run leave when no pod remains, and refuses while any pod exists.
#
# Refuses (exit 1, saying why) while berthd runs on the state dir (it is
# asked over crictl which pods remain; with none, stop it first), and, with
# berthd stopped, while its database holds a pod, a pod dir is left in the
# state dir or a berth-shim of that state dir runs. Otherwise removes:
#   - mounts below the state and root dirs, then both dirs
#     (/run/berth, /var/lib/berth: socket, pins, database, images, layers)
#   - the bridge of the default network (berth0) and host-local's
#     allocations for it (/var/lib/cni/networks/berth0)
#   - iptables rules the CNI plugins made for that network (their comment
#     names it) and the CNI-* chains those rules jump to
#   - berthd's masquerade of that network (cni/masquerade.go): the chain
#     BERTH-MASQ-<sha256 of the name> in nat (iptables and ip6tables) and
#     POSTROUTING's jumps to it
#   - /etc/cni/net.d/10-berth.conflist (make run's) and 99-berth.conflist
#     (make install's and the package's), each only when it is berth's
#     default network to the byte: the file hack/setup-default.sh writes,
#     or the installed template <datadir>/berth/99-berth.conflist. An
#     edited one, or another add-on's of the same name, stays.
#   - /etc/berth and /etc/berth/certs.d when empty (a config stays)
#
# Knobs (defaults as berthd's and make run's): BERTH_ROOT, BERTH_STATE,
# BERTH_LISTEN, BERTH_CNI_CONF_DIR, BERTH_CNI_BRIDGE, BERTH_CNI_SUBNET,
# BERTH_CNI_IPAM_DIR, BERTH_ETC, BERTH_CNI_TEMPLATES (the installed
# templates, space-separated; default those of make install and the package).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/local/bin

root=${BERTH_ROOT:-/var/lib/berth}
state=${BERTH_STATE:-/run/berth}
endpoint=${BERTH_LISTEN:-unix://$state/berth.sock}
case $endpoint in unix://*) ;; *) endpoint=unix://$endpoint ;; esac
conf_dir=${BERTH_CNI_CONF_DIR:-/etc/cni/net.d}
bridge=${BERTH_CNI_BRIDGE:-berth0}
ipam_dir=${BERTH_CNI_IPAM_DIR:-/var/lib/cni/networks}
etc=${BERTH_ETC:-/etc/berth}
read -ra templates <<<"${BERTH_CNI_TEMPLATES:-/usr/local/share/berth/99-berth.conflist /usr/share/berth/99-berth.conflist}"

log() { echo "clean-node: $*" >&2; }
refuse() {
	log "refused: $*"
	log "nothing was removed"
	exit 1
}

# A running berthd holds the lock of its state dir (cmd/berthd lockStateDir).
lock=$state/berthd.lock
if [ -e "$lock" ] && ! flock -n "$lock" true; then
	errs=$(mktemp)
	trap 'rm -f "$errs"' EXIT
	if ! pods=$(crictl --runtime-endpoint "$endpoint" --timeout 30s pods -q 2>"$errs"); then
		refuse "berthd runs on $state (its lock is held) but does not answer on $endpoint: $(grep -v 'level=warning' "$errs")"
	fi
	if [ -n "$pods" ]; then
		n=$(wc -l <<<"$pods")
		refuse "berthd runs on $state with $n pod(s): $(tr '\n' ' ' <<<"$pods")
  remove them first (crictl --runtime-endpoint $endpoint rmp -fa), stop berthd, and run this again"
	fi
	refuse "berthd runs on $state with no pod: stop it, and run this again"
fi

# berthd is not running: its database and state dir tell what pods exist.
reasons=()
if [ -e "$root/berth.db" ]; then
	if ! recs=$(go run ./hack/nodepods "$root" 2>&1); then
		refuse "cannot read the pods of $root/berth.db: $recs"
	fi
	if [ -n "$recs" ]; then
		reasons+=("the database $root/berth.db holds $(wc -l <<<"$recs") pod(s):
$(sed 's/^/    /' <<<"$recs")")
	fi
fi
shopt -s nullglob
podDirs=("$state"/pods/*)
if ((${#podDirs[@]})); then
	reasons+=("$state/pods holds ${#podDirs[@]} pod dir(s): ${podDirs[*]}")
fi
shims=()
for c in /proc/[0-9]*/cmdline; do
	cmd=$(tr '\0' ' ' 2>/dev/null <"$c") || continue
	# An idle pod's shim runs as berth-mon (same pid, same --state-dir).
	case $cmd in *berth-shim*"$state/"* | *berth-mon*"$state/"*) shims+=("$(basename "$(dirname "$c")")") ;; esac
done
if ((${#shims[@]})); then
	reasons+=("berth-shim processes of $state run: pids ${shims[*]}")
fi
if ((${#reasons[@]})); then
	printf -v msg '%s\n  ' "${reasons[@]}"
	refuse "pods remain:
  ${msg}start berthd, remove them (crictl rmp -fa: berthd releases their network on the way), stop it, and run this again"
fi

# Mounts below the dirs (pins, rootfs, shm), deepest first.
for dir in "$state" "$root"; do
	[ -d "$dir" ] || continue
	real=$(realpath "$dir")
	awk -v d="$real" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		log "unmount $m"
		umount "$m" || umount -l "$m"
	done
	log "remove $dir"
	rm -rf --one-file-system "$dir"
done

if ip link show "$bridge" type bridge >/dev/null 2>&1; then
	log "remove bridge $bridge"
	ip link del "$bridge"
fi
if [ -d "$ipam_dir/$bridge" ]; then
	log "remove host-local allocations $ipam_dir/$bridge"
	rm -rf "$ipam_dir/$bridge"
fi

# The bridge plugin (ipMasq) and portmap comment their rules with the
# network's name: name: "berth0" id: "<container>". The chains those rules
# jump to are the pods' own (CNI-<hash>, CNI-DN-<hash>); portmap's shared
# CNI-HOSTPORT-* chains serve every CNI network and stay.
network_rules() {
	iptables -w -t "$1" -S | grep -F -- "name: \\\"$bridge\\\" id:" || true
}
for table in nat filter; do
	chains=()
	while read -r rule; do
		[ -n "$rule" ] || continue
		# iptables -S quotes the comment as the shell does; eval runs it
		# only when it holds nothing a shell would expand.
		if [[ $rule == *[\$\`\;\&\|\<\>\(\)]* ]]; then
			log "skip iptables rule with unexpected characters: $rule"
			continue
		fi
		target=$(sed -n 's/.* -j \(CNI-[A-Za-z0-9-]*\).*/\1/p' <<<"$rule")
		case $target in CNI-HOSTPORT-* | "") ;; *) chains+=("$target") ;; esac
		log "iptables -t $table ${rule/#-A/-D}"
		eval "iptables -w -t $table ${rule/#-A/-D}"
	done <<<"$(network_rules "$table")"
	for c in ${chains[@]+"${chains[@]}"}; do
		iptables -w -t "$table" -F "$c" 2>/dev/null && iptables -w -t "$table" -X "$c" 2>/dev/null &&
			log "iptables -t $table: removed chain $c"
	done
done

# berthd's masquerade (cni/masquerade.go): one chain per network, named by
# the first 16 hex digits of the name's sha256, jumped to from POSTROUTING.
masq_chain=BERTH-MASQ-$(printf %s "$bridge" | sha256sum | cut -c1-16)
for ipt in iptables ip6tables; do
	command -v "$ipt" >/dev/null || continue
	"$ipt" -w -t nat -S "$masq_chain" >/dev/null 2>&1 || continue
	while read -r rule; do
		[ -n "$rule" ] || continue
		if [[ $rule == *[\$\`\;\&\|\<\>\(\)]* ]]; then
			log "skip $ipt rule with unexpected characters: $rule"
			continue
		fi
		log "$ipt -t nat ${rule/#-A/-D}"
		eval "$ipt -w -t nat ${rule/#-A/-D}"
	done <<<"$("$ipt" -w -t nat -S POSTROUTING | grep -E -- "-j $masq_chain( |\$)" || true)"
	"$ipt" -w -t nat -F "$masq_chain" && "$ipt" -w -t nat -X "$masq_chain" &&
		log "$ipt -t nat: removed chain $masq_chain"
done

default_cni=$(mktemp)
trap 'rm -f "$default_cni"' EXIT
BERTH_CNI_BRIDGE=$bridge bash hack/setup-default.sh --print-cni >"$default_cni"
# is_berths tells whether a file is berth's default network as berth wrote it.
is_berths() {
	cmp -s "$1" "$default_cni" && return 0
	local t
	for t in ${templates[@]+"${templates[@]}"}; do
		[ -f "$t" ] && cmp -s "$1" "$t" && return 0
	done
	return 1
}
for name in 10-berth.conflist 99-berth.conflist; do
	conf=$conf_dir/$name
	[ -f "$conf" ] || continue
	if is_berths "$conf"; then
		log "remove $conf"
		rm -f "$conf"
	else
		log "keep $conf: it is not berth's default network as hack/setup-default.sh or make install writes it (edited, or another add-on's)"
	fi
done

for d in "$etc/certs.d" "$etc"; do
	if [ -d "$d" ]; then
		if rmdir "$d" 2>/dev/null; then
			log "remove empty $d"
		else
			log "keep $d: not empty (registry config or config.toml)"
		fi
	fi
done
log "done"
