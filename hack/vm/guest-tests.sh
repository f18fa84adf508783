#!/bin/sh
# guest-tests.sh MANIFEST: runs inside the test VM (test.sh boots it). Each
# manifest line is "NAME<TAB>DIR<TAB>RUN": the test binary NAME next to the
# manifest, run in its package dir DIR (as go test does) with -test.run RUN,
# or "script:PATH" run with sh. Prints a verdict per line and exits 1 when
# any failed.
manifest=$1
bindir=$(dirname "$manifest")
# no manifest must not read as nothing failed
[ -r "$manifest" ] || { echo "=== vm: FAILED: cannot read the manifest $manifest"; exit 1; }
tab=$(printf '\t')
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
now() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v s="$1" -v e="$(now)" 'BEGIN{printf "%.1f", e-s}'; }

echo "vm: $(nproc) CPUs, $(awk '/MemTotal/{printf "%d MiB", $2/1024}' /proc/meminfo), cgroup $(stat -f -c %T /sys/fs/cgroup), PID 1 $(cat /proc/1/comm)"
failed=
t0=$(now)
while IFS="$tab" read -r name dir run; do
	t=$(now)
	case "$name" in
	script:*)
		echo "=== vm: running ${name#script:}"
		sh "${name#script:}" </dev/null
		rc=$?
		;;
	*)
		v=
		if [ "${BERTH_VM_VERBOSE:-1}" = 1 ] || [ "$name" = test_vm.test ]; then v=-test.v; fi
		echo "=== vm: running $name${run:+ -test.run '$run'}"
		(cd "$dir" && exec "$bindir/$name" -test.timeout="${BERTH_VM_TEST_TIMEOUT:-30m}" ${run:+-test.run="$run"} $v) </dev/null
		rc=$?
		;;
	esac
	if [ $rc = 0 ]; then
		echo "=== vm: PASS $name ($(took "$t")s)"
	else
		echo "=== vm: FAIL $name (status $rc, $(took "$t")s)"
		failed="$failed $name"
	fi
done <"$manifest"
if [ -n "$failed" ]; then
	echo "=== vm: FAILED:$failed ($(took "$t0")s in tests)"
	exit 1
fi
echo "=== vm: all passed ($(took "$t0")s in tests)"
