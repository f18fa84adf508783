#!/usr/bin/env bash
# Runs Kubernetes' node e2e suite (e2e_node.test, test/e2e_node of the
# version test/e2enode/go.mod names) against a berthd of its own, with the
# real kubelet and the suite's own API server, and writes a JUnit report and
# a one-line summary "N passed, N failed, N skipped" to _output/node-e2e/.
#
# Nothing here may touch the host's processes or cgroups: the suite's
# "services mode" (e2e_node.test --run-services-mode: etcd and the API server,
# nothing else) runs in one process, the kubelet is started by this script
# with its own config (no systemd-run, no systemCgroups=/system, which would
# move every host process; failCgroupV1: false on a cgroup v1 host), and the
# tests run with --start-services=false. berthd gets its own socket, root,
# state, registry config (the stand-in images of testimages.NodeE2ERefs
# under their real names) and CNI bridge and subnet. Everything the run made
# is removed at the end, and what was left is reported.
#
# Knobs (environment):
#   NODE_E2E_FOCUS   ginkgo focus regexp (default '\[NodeConformance\]')
#   NODE_E2E_SKIP    skip regexp (default '\[Flaky\]|\[Slow\]|\[Serial\]'), plus
#                    every regexp of test/e2enode/skip.txt (NODE_E2E_SKIP_FILE; "" = none)
#   NODE_E2E_PROCS   parallel ginkgo processes (default 4)
#   NODE_E2E_CGROUP_ROOT  the kubelet's cgroupRoot (default /berth-node-e2e)
#   NODE_E2E_TIMEOUT ginkgo suite timeout (default 90m)
#   NODE_E2E_OUT     output dir (default _output/node-e2e)
#   NODE_E2E_CACHE   where hack/build-e2e-node.sh keeps its binaries
#                    (default /var/cache/berth/node-e2e)
#   BERTH_BIN_DIR    berthd and berth-shim (default ./bin, make build)
#   BERTH_KUBELET    the kubelet (default _output/kubelet/kubelet, built by
#                    hack/build-kubelet.sh when missing)
#   NODE_E2E_DRY_RUN=1  list the specs the focus and skips select, run nothing
set -uo pipefail
export PATH=$PATH:/usr/local/go/bin:/usr/local/bin:/usr/sbin:/sbin

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${NODE_E2E_CACHE:-/var/cache/berth/node-e2e}
out=${NODE_E2E_OUT:-$root/_output/node-e2e}
bindir=${BERTH_BIN_DIR:-$root/bin}
kubelet=${BERTH_KUBELET:-$root/_output/kubelet/kubelet}
focus=${NODE_E2E_FOCUS:-'\[NodeConformance\]'}
skip=${NODE_E2E_SKIP-'\[Flaky\]|\[Slow\]|\[Serial\]'}
skipfile=${NODE_E2E_SKIP_FILE-$root/test/e2enode/skip.txt}
procs=${NODE_E2E_PROCS:-4}
timeout=${NODE_E2E_TIMEOUT:-90m}

# The run's own network: not berth0/10.88.0.0/16 (the default config), not
# critest's (bc*, 10.150-198.x.0/24) nor the integration tests' (10.200-249).
bridge=bne2e0
subnet=10.140.0.0/24
# The kubelet's fixed ports; the suite's API server listens on 6443.
ports=(6443 10250 10255 10248)
# Not "/": the host's /kubepods may be another kubelet's (the machine is
# shared). NODE_E2E_CGROUP_ROOT=/ runs the Kubelet Cgroup Manager specs,
# which look for /kubepods (see test/e2enode/skip.txt).
cgroup_root=${NODE_E2E_CGROUP_ROOT:-/berth-node-e2e}
kubelet_sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { echo "node-e2e: $*" >&2; }
die() { log "$*"; exit 1; }

# --- build (cached) ---
bash "$root/hack/build-e2e-node.sh" || die "building the suite failed"
if [ -z "${BERTH_KUBELET:-}" ]; then
	bash "$root/hack/build-kubelet.sh" || die "building the kubelet failed"
fi
[ -x "$kubelet" ] || die "no kubelet at $kubelet"
[ -x "$bindir/berthd" ] && [ -x "$bindir/berth-shim" ] || die "no berthd/berth-shim in $bindir (make build)"
# e2e_node.test looks for the kubelet beside itself (the [Serial] specs
# that restart it); the runner starts it, but keep the two together.
ln -sfn "$kubelet" "$cache/kubelet"

mkdir -p "$out"
skips=()
[ -n "$skip" ] && skips+=(--skip="$skip")
if [ -n "$skipfile" ] && [ -f "$skipfile" ]; then
	# "<regexp>  # <reason>" per line, as test/critest/skip.txt
	while IFS= read -r line; do
		re=${line%%  #*}
		re=${re%"${re##*[![:space:]]}"}
		case $re in '' | '#'*) continue ;; esac
		skips+=(--skip="$re")
	done <"$skipfile"
fi

if [ "${NODE_E2E_DRY_RUN:-}" = 1 ]; then
	"$cache/ginkgo" --dry-run -v --no-color --focus="$focus" "${skips[@]}" "$cache/e2e_node.test" -- \
		--prepull-images=false 2>&1 | grep -E '^\[It\]|^•|Ran [0-9]+' || true
	exit 0
fi

# --- one run at a time, on free ports ---
exec 9>/run/berth-node-e2e.lock
flock -n 9 || die "another node e2e run holds /run/berth-node-e2e.lock"
for p in "${ports[@]}"; do
	if ss -Hltn "sport = :$p" | grep -q .; then
		die "port $p is in use (the suite's API server and the kubelet need 6443, 10250, 10255, 10248)"
	fi
done
ip link show "$bridge" >/dev/null 2>&1 && die "bridge $bridge exists: a run did not clean up (ip link del $bridge)"

work=$(mktemp -d /tmp/berth-node-e2e.XXXXXX)
chmod 755 "$work"
log "work dir $work, output $out"
pids=()
made=() # host paths this run created, removed at the end
for p in /var/lib/kubelet /var/log/pods /var/log/containers /var/run/kubernetes; do
	[ -e "$p" ] || made+=("$p")
done
# Specs look for the kubelet's files at fixed paths (/var/lib/kubelet/pods,
# /var/log/pods, /var/log/containers): the kubelet keeps its defaults, and
# what this run adds to them goes again.
kubelet_root=/var/lib/kubelet
snapshot_dirs=(/var/lib/kubelet /var/log/pods /var/log/containers)
declare -A logs_before
for d in "${snapshot_dirs[@]}"; do
	logs_before[$d]=$(ls -A "$d" 2>/dev/null)
done
declare -A sysctls
for s in "${kubelet_sysctls[@]}"; do sysctls[$s]=$(cat "/proc/sys/$s"); done

stop_pid() { # pid name: SIGTERM, then SIGKILL after 30s
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "$2 (pid $pid) did not stop on SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

leftovers() {
	local left=()
	[ -n "$(ls -A "$work/berth-root" 2>/dev/null)" ] && true # removed below
	if ip link show "$bridge" >/dev/null 2>&1; then left+=("bridge $bridge"); fi
	if ip -o link show type veth 2>/dev/null | grep -q "master $bridge "; then left+=("veths on $bridge"); fi
	if iptables-save 2>/dev/null | grep -qF -e "$bridge" -e "${subnet%/*}"; then left+=("iptables rules of $bridge/$subnet"); fi
	if grep -qF -e " $work" -e " /var/lib/kubelet" /proc/self/mountinfo; then left+=("mounts under $work or /var/lib/kubelet"); fi
	if ls -d /sys/fs/cgroup/*"${cgroup_root%/}"/kubepods >/dev/null 2>&1; then left+=("cgroups ${cgroup_root%/}/kubepods"); fi
	if [ ${#left[@]} -gt 0 ]; then
		log "LEFT BEHIND: ${left[*]}"
		return 1
	fi
	return 0
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up"
	[ -n "${ginkgo_pid:-}" ] && stop_pid "$ginkgo_pid" ginkgo
	[ -n "${kubelet_pid:-}" ] && stop_pid "$kubelet_pid" kubelet
	if [ -n "${berthd_pid:-}" ] && kill -0 "$berthd_pid" 2>/dev/null; then
		# What the kubelet left: every pod berthd has (its own instance).
		crictl -r "unix://$work/berth.sock" -i "unix://$work/berth.sock" --timeout 60s rmp -fa >/dev/null 2>&1 || log "crictl rmp -fa failed"
		crictl -r "unix://$work/berth.sock" -i "unix://$work/berth.sock" --timeout 60s rmi -a >/dev/null 2>&1 || true
	fi
	[ -n "${berthd_pid:-}" ] && stop_pid "$berthd_pid" berthd
	[ -n "${services_pid:-}" ] && stop_pid "$services_pid" "e2e services"
	[ -n "${registry_pid:-}" ] && stop_pid "$registry_pid" registry
	# Mounts of the kubelet's root (volumes) and of berthd's, deepest first.
	awk -v w="$work" -v k="$kubelet_root" '$5 == w || index($5, w "/") == 1 || $5 == k || index($5, k "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || log "umount $m failed"
	done
	# The kubelet's tree, and the root made for it (never a hierarchy's root).
	trees=(/sys/fs/cgroup/*"${cgroup_root%/}"/kubepods)
	[ "$cgroup_root" != / ] && trees+=(/sys/fs/cgroup/*"$cgroup_root")
	for c in "${trees[@]}"; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	ip link del "$bridge" 2>/dev/null
	for s in "${kubelet_sysctls[@]}"; do echo "${sysctls[$s]}" >"/proc/sys/$s" 2>/dev/null; done
	for d in "${snapshot_dirs[@]}"; do
		[ -d "$d" ] || continue
		ls -A "$d" | grep -vxF -f <(echo "${logs_before[$d]}") | while read -r e; do rm -rf "${d:?}/$e"; done
	done
	for ((i = ${#made[@]} - 1; i >= 0; i--)); do rm -rf "${made[$i]}"; done
	rm -f /tmp/insecure_test_key*
	cp "$work"/logs/*.log "$out"/ 2>/dev/null
	leftovers || rc=1
	rm -rf "$work"
	rm -f "$cache/kubelet"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/logs" "$work/net.d" "$work/ipam" "$work/svc" "$work/tests" "$work/manifests"
rm -f "$out"/*.log "$out"/junit*.xml "$out"/report.json "$out"/summary.txt

# --- the stand-in images under their real names ---
(cd "$root" && go build -o "$work/testimages" ./hack/testimages) || die "build hack/testimages"
setsid "$work/testimages" serve -node-e2e-agnhost "$cache/agnhost" -hosts-dir "$work/certs.d" \
	-addr-file "$work/registry.addr" -blob-dir "$work/blobs" </dev/null >"$work/logs/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 1800); do
	[ -s "$work/registry.addr" ] && break
	kill -0 "$registry_pid" 2>/dev/null || die "registry failed: $(cat "$work/logs/registry.log")"
	sleep 0.2
done
[ -s "$work/registry.addr" ] || die "registry not serving after 6 minutes"
log "registry on $(cat "$work/registry.addr")"

# --- berthd ---
cat >"$work/net.d/10-node-e2e.conflist" <<EOF
{"cniVersion":"1.0.0","name":"$bridge","plugins":[
 {"type":"bridge","bridge":"$bridge","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$subnet"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$work/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}},
 {"type":"loopback"}]}
EOF
# The suite runs registry.k8s.io/pause:3.10.2 as an ordinary pod image and
# expects the runtime to keep it (the kubelet's image GC must not take it).
# The PodOverhead spec runs a RuntimeClass of handler "test-handler", which
# containerd's and CRI-O's CI configure as a second name of their runtime.
cat >"$work/berthd.toml" <<EOF
pinned_images = ["registry.k8s.io/pause:3.10.2"]
runtime_handlers = ["test-handler"]
EOF
"$bindir/berthd" --config "$work/berthd.toml" --listen "unix://$work/berth.sock" --root "$work/berth-root" \
	--state "$work/berth-state" --cni-conf-dir "$work/net.d" --cni-bin-dir /usr/lib/cni \
	--registry-config-dir "$work/certs.d" --v 2 </dev/null >"$work/logs/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 300); do
	[ -S "$work/berth.sock" ] && break
	kill -0 "$berthd_pid" 2>/dev/null || die "berthd failed: $(tail -20 "$work/logs/berthd.log")"
	sleep 0.2
done
[ -S "$work/berth.sock" ] || die "berthd not serving after 60s"

# --- the suite's services: etcd and the API server on 127.0.0.1:6443 ---
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
node=$(hostname | tr 'A-Z' 'a-z')
(cd "$work/svc" && exec "$cache/e2e_node.test" --run-services-mode --bearer-token="$token" \
	--node-name="$node" --report-dir="$work/svc" </dev/null >"$work/logs/services.log" 2>&1) &
services_pid=$!
for _ in $(seq 1 600); do
	curl -skf -H "Authorization: Bearer $token" https://127.0.0.1:6443/healthz >/dev/null 2>&1 && break
	kill -0 "$services_pid" 2>/dev/null || die "e2e services failed: $(tail -30 "$work/logs/services.log")"
	sleep 0.5
done
curl -skf -H "Authorization: Bearer $token" https://127.0.0.1:6443/healthz >/dev/null || die "API server not healthy after 5 minutes"

# --- the kubelet, started here: its cgroups under $cgroup_root only ---
for h in /sys/fs/cgroup/*/; do
	[ "$cgroup_root" = / ] && break
	h=${h%/}
	case $(basename "$h") in unified) continue ;; esac
	[ -L "$h" ] && continue
	mkdir -p "$h$cgroup_root"
	if [ "$(basename "$h")" = cpuset ]; then
		cat "$h/cpuset.cpus" >"$h$cgroup_root/cpuset.cpus"
		cat "$h/cpuset.mems" >"$h$cgroup_root/cpuset.mems"
	fi
done
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
users:
- name: kubelet
  user:
    token: $token
clusters:
- cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
  name: local
contexts:
- context:
    cluster: local
    user: kubelet
  name: local-context
current-context: local-context
EOF
# test/e2e_node/jenkins/default-kubelet-config.yaml and what the suite's
# own startKubelet sets, less systemCgroups/kubeletCgroups/runtimeCgroups.
cat >"$work/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
podCIDR: $subnet
containerRuntimeEndpoint: unix://$work/berth.sock
imageServiceEndpoint: unix://$work/berth.sock
staticPodPath: $work/manifests
volumeStatsAggPeriod: 10s
fileCheckFrequency: 10s
serializeImagePulls: false
evictionPressureTransitionPeriod: 30s
evictionHard:
  memory.available: 250Mi
  nodefs.available: 5%
  nodefs.inodesFree: 5%
evictionMinimumReclaim:
  nodefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
readOnlyPort: 10255
EOF
"$kubelet" --config "$work/kubelet.yaml" \
	--kubeconfig "$work/kubeconfig" --root-dir "$kubelet_root" --hostname-override "$node" \
	--v 2 </dev/null >"$work/logs/kubelet.log" 2>&1 &
kubelet_pid=$!
for _ in $(seq 1 600); do
	curl -sf http://127.0.0.1:10248/healthz >/dev/null 2>&1 && break
	kill -0 "$kubelet_pid" 2>/dev/null || die "kubelet failed: $(tail -30 "$work/logs/kubelet.log")"
	sleep 0.5
done

# --- the tests ---
log "running focus '$focus' with ${#skips[@]} skips, $procs processes"
start=$(date +%s)
(cd "$work/tests" && exec "$cache/ginkgo" -p --procs="$procs" --timeout="$timeout" --no-color \
	--focus="$focus" "${skips[@]}" \
	--junit-report=junit.xml --json-report=report.json --output-dir="$out" \
	"$cache/e2e_node.test" -- \
	--start-services=false --bearer-token="$token" --node-name="$node" \
	--container-runtime-endpoint="unix://$work/berth.sock" --image-service-endpoint="unix://$work/berth.sock" \
	--prepull-images=false --report-dir="$work/tests" \
	--kubelet-config-file="$work/kubelet.yaml") >"$out/ginkgo.log" 2>&1 &
ginkgo_pid=$!
wait "$ginkgo_pid"
ginkgo_rc=$?
ginkgo_pid=
elapsed=$(($(date +%s) - start))
log "ginkgo exited $ginkgo_rc after ${elapsed}s"
(cd "$root/test/e2enode" && go run ./summary -focus "$focus" -skip "$skip" -v "$out/report.json") >"$out/failures.txt" 2>&1
summary=$(tail -1 "$out/failures.txt")
grep -q '^[0-9]* passed' <<<"$summary" || summary="no report (ginkgo exit $ginkgo_rc)"
sed -i '$d' "$out/failures.txt"
echo "$summary" >"$out/summary.txt"
cat "$out/failures.txt" >&2
log "$summary in ${elapsed}s"
[ "$ginkgo_rc" = 0 ]
