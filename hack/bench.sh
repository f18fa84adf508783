#!/usr/bin/env bash
# make bench: starts berthd on temp dirs (unless BENCH_ENDPOINT names a running
# runtime), runs the CRI benchmarks against it, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
endpoint=${BENCH_ENDPOINT:-}
args=()
if [ -z "$endpoint" ]; then
	dir=$(mktemp -d /tmp/berth-bench-XXXX)
	# Metrics on a free local port: the churn benchmark reads berthd's
	# goroutine count there.
	port=""
	for _ in $(seq 20); do
		p=$((20000 + RANDOM % 40000))
		if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
	done
	if [ -n "$port" ]; then
		echo "metrics_address = \"127.0.0.1:$port\"" >"$dir/config.toml"
		args+=(-berthd-metrics "http://127.0.0.1:$port/metrics")
	else
		: >"$dir/config.toml"
	fi
	# BENCH_CONFIG: more config.toml lines, e.g. shim_idle_monitor = "0"
	# to measure the Go shim without its hand-off to berth-mon.
	[ -n "${BENCH_CONFIG:-}" ] && printf '%s\n' "$BENCH_CONFIG" >>"$dir/config.toml"
	bridge=""
	if [ -z "${BENCH_CNI_CONF_DIR:-}" ]; then
		# A bridge network of its own (name and subnet unique to this run;
		# a /22 for the scale benchmark's 250+ pods).
		bridge="bb-${dir##*-}"
		mkdir -p "$dir/net.d"
		sed -e "s|@BRIDGE@|$bridge|g" -e "s|@SUBNET@|10.199.$((RANDOM % 64 * 4)).0/22|" \
			-e "s|@IPAMDIR@|$dir/ipam|" hack/cni-default.conflist >"$dir/net.d/10-bench.conflist"
		# BENCH_NO_NAT=1: the same bridge without any masquerade (neither
		# berthd's per subnet nor the bridge plugin's per pod).
		if [ -n "${BENCH_NO_NAT:-}" ]; then
			sed -i -e '/"berthMasquerade"/d' -e 's|"ipMasq": true|"ipMasq": false|' "$dir/net.d/10-bench.conflist"
		fi
	fi
	pid=""
	cleanup() {
		set +e # every step runs, whatever the one before gave
		# The scale benchmark restarts berthd: the pidfile has the one running.
		[ -s "$dir/berthd.pid" ] && pid=$(cat "$dir/berthd.pid")
		# A removed pod's network is released after RemovePodSandbox
		# returned (docs/design.md, State): with hundreds removed at the end
		# of scale, berthd stopped at once left their netns pins, veths and
		# NAT rules. Wait while the pins go away (until none is left, or
		# none has gone for 10 s).
		local prev=-1 moved=$SECONDS n
		while [ -n "$pid" ] && [ -d "$dir/state/ns" ]; do
			n=$(find "$dir/state/ns" -mindepth 1 -maxdepth 1 | wc -l)
			[ "$n" -eq 0 ] && break
			[ "$n" -ne "$prev" ] && moved=$SECONDS
			[ $((SECONDS - moved)) -ge 10 ] && break
			prev=$n
			sleep 0.1
		done
		if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
			for _ in $(seq 300); do
				[ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null || break
				sleep 0.1
			done
			wait "$pid" 2>/dev/null
		fi
		[ -n "$bridge" ] && ip link del "$bridge" 2>/dev/null
		# berthd's masquerade of the bench network (cni/masquerade.go) stays
		# after it stops: its jump and chain go here.
		if [ -n "$bridge" ]; then
			local chain
			chain=BERTH-MASQ-$(printf %s "$bridge" | sha256sum | cut -c1-16)
			while iptables -w -t nat -D POSTROUTING -m comment --comment "berth masquerade of network $bridge" -j "$chain" 2>/dev/null; do :; done
			iptables -w -t nat -F "$chain" 2>/dev/null && iptables -w -t nat -X "$chain" 2>/dev/null
		fi
		BERTH_REGISTRY_DIR="$dir/registry" bash hack/registry.sh stop 2>/dev/null
		[ -n "${BENCH_KEEP_LOG:-}" ] && cp "$dir/berthd.log" "$BENCH_KEEP_LOG"
		# Pods a failed run left (berthd gone before it removed them) still
		# have their rootfs and pins mounted here: removing through them
		# would delete inside containers. Leave it all and say so.
		if grep -q " $dir/" /proc/self/mountinfo; then
			echo "bench: pods left mounted under $dir; not removed (stop their shims, unmount, then remove it)" >&2
		else
			rm -rf "$dir"
		fi
	}
	trap cleanup EXIT
	regdir=${BENCH_REGISTRY_CONFIG_DIR:-}
	if [ -z "$regdir" ]; then
		# The test images (the pull benchmark's among them) from a private local registry.
		BERTH_REGISTRY_DIR="$dir/registry" bash hack/registry.sh start >/dev/null
		regdir="$dir/registry/certs.d"
	fi
	./bin/berthd --listen "unix://$dir/berth.sock" --root "$dir/root" --state "$dir/state" \
		--config "$dir/config.toml" --cni-conf-dir "${BENCH_CNI_CONF_DIR:-$dir/net.d}" \
		--registry-config-dir "$regdir" ${BENCH_BERTHD_ARGS:-} 2>"$dir/berthd.log" &
	pid=$!
	echo "$pid" >"$dir/berthd.pid"
	args+=(-berthd-pidfile "$dir/berthd.pid")
	endpoint="unix://$dir/berth.sock"
	for _ in $(seq 100); do [ -S "$dir/berth.sock" ] && break; sleep 0.1; done
fi
go run ./test/bench -endpoint "$endpoint" ${args[@]+"${args[@]}"} "$@"
