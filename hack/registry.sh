#!/usr/bin/env bash
# Starts or stops a local registry with berth's test images in the background,
# for make run / critest / bench by hand: the images of test/framework/testimages
# (critest's under their own references, berth.test/bench/big, fixtures) on
# 127.0.0.1, and a containerd-format hosts.toml dir that sends pulls of
# docker.io, registry.k8s.io, gcr.io, k8s.gcr.io, public.ecr.aws, quay.io and
# berth.test there. Give that dir to berthd: --registry-config-dir DIR.
#
#   hack/registry.sh start    # prints the address and the hosts dir
#   hack/registry.sh env      # BERTH_REGISTRY_ADDR=... BERTH_REGISTRY_HOSTS_DIR=...
#   hack/registry.sh stop     # stops it and removes its dir
#
# BERTH_REGISTRY_DIR (default /tmp/berth-registry) holds the pid, address,
# log and hosts dir; BERTH_REGISTRY_ADDR (default 127.0.0.1:0, a free port)
# is where it listens.
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin

cd "$(dirname "$0")/.."
dir=${BERTH_REGISTRY_DIR:-/tmp/berth-registry}
listen=${BERTH_REGISTRY_ADDR:-127.0.0.1:0}

running() { [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

print_env() {
	echo "BERTH_REGISTRY_ADDR=$(cat "$dir/addr")"
	echo "BERTH_REGISTRY_HOSTS_DIR=$dir/certs.d"
}

start() {
	if running && [ -s "$dir/addr" ]; then
		echo "registry: already running (pid $(cat "$dir/pid"))" >&2
		print_env
		return
	fi
	mkdir -p "$dir"
	rm -f "$dir/addr" "$dir/pid"
	go build -o "$dir/testimages" ./hack/testimages
	# Builds the images first when _output/testimages has none for this tree.
	mkdir -p "$dir/blobs"
	setsid "$dir/testimages" serve -addr "$listen" -hosts-dir "$dir/certs.d" -addr-file "$dir/addr" -blob-dir "$dir/blobs" \
		</dev/null >"$dir/log" 2>&1 &
	echo $! >"$dir/pid"
	for _ in $(seq 1 600); do
		if [ -s "$dir/addr" ]; then
			echo "registry: serving on $(cat "$dir/addr"), hosts.toml dir $dir/certs.d" >&2
			print_env
			return
		fi
		if ! running; then
			echo "registry: failed to start:" >&2
			cat "$dir/log" >&2
			exit 1
		fi
		sleep 0.2
	done
	echo "registry: not serving after 120s, see $dir/log" >&2
	exit 1
}

stop() {
	if running; then
		pid=$(cat "$dir/pid")
		kill -TERM "$pid"
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid"
		fi
	fi
	rm -rf "$dir"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env)
	running || { echo "registry: not running" >&2; exit 1; }
	print_env
	;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
