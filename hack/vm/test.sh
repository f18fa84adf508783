#!/usr/bin/env bash
# test.sh: builds the test binaries of the packages to test (go test -c; the
# daemon binaries are in bin/, make test-vm builds them) and runs them in each
# VM variant, one boot per variant. Exits non-zero when a test fails, a VM
# does not finish, or the VM checks of test/vm did not pass.
#
#   BERTH_VM_VARIANTS  variants to boot (default "initramfs systemd")
#   BERTH_VM_PKGS      packages to test, each PATTERN or PATTERN:REGEX, where
#                      REGEX is that package's -test.run (default: test/vm,
#                      test/integration and the runtime/ and sandbox/ packages)
#   BERTH_VM_RUN       -test.run for the packages without their own REGEX
#   BERTH_VM_SCRIPTS   scripts of this repo run in the VM after the tests,
#                      each counted like a test binary (e.g. a critest runner)
#   BERTH_VM_TEST_TIMEOUT  -test.timeout of each binary (default 30m)
#   BERTH_VM_VERBOSE   0: no -test.v (default 1)
# and run.sh's BERTH_VM_* knobs (shares, memory, timeout, debug).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"
cd "$VM_REPO"
export PATH=$PATH:/usr/local/go/bin

variants=${BERTH_VM_VARIANTS:-initramfs systemd}
pkgs=${BERTH_VM_PKGS:-./test/vm ./test/integration ./runtime/... ./sandbox/...}
t0=$(date +%s.%N)
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}'; }

# Built before booting, so that a long debootstrap or build is not counted
# as VM time and a failure shows up first.
"$HERE/build-initramfs.sh" || exit 1
case " $variants " in *" systemd "*) "$HERE/build-rootfs.sh" >/dev/null || exit 1 ;; esac

# The guest finds the test images built here (same cache key: the same
# sources, Go and the host's dpkg database, shared in) and never builds them.
if [ -d hack/testimages ]; then
	go run ./hack/testimages build >/dev/null || exit 1
fi
if [ -n "${BERTH_TESTIMAGES_CACHE:-}" ]; then
	export BERTH_VM_SHARES="${BERTH_VM_SHARES:-} $BERTH_TESTIMAGES_CACHE"
	export BERTH_VM_ENV="${BERTH_VM_ENV:-} BERTH_TESTIMAGES_CACHE"
fi

# One dir per run (runs of other checkouts' make test may overlap): the test
# binaries, removed at the end, and the logs, kept for a day.
# (VM_OUT is made here: the builds above write to the cache, not to it.)
mkdir -p "$VM_OUT" || exit 1
find "$VM_OUT" -maxdepth 1 -name 'run.*' -mtime +0 -exec rm -rf {} + 2>/dev/null
tests=$(mktemp -d "$VM_OUT/run.XXXXXX") || { vm_log "cannot make a run dir in $VM_OUT"; exit 1; }
trap 'rm -rf "$tests"/*.test "$tests/deb"' EXIT
: >"$tests/manifest"
build_failed=0
for spec in $pkgs; do
	pattern=${spec%%:*}
	run=${BERTH_VM_RUN:-}
	[ "$pattern" != "$spec" ] && run=${spec#*:}
	# packages without tests (or none matching yet) are no error
	list=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' "$pattern" 2>/dev/null) || true
	while read -r path dir; do
		[ -n "$path" ] || continue
		name=$(echo "${path#github.com/berth-dev/berth/}" | tr / _).test
		# the VM checks always run whole: the verdict below needs them
		[ "$name" = test_vm.test ] && [ "$pattern" = "$spec" ] && r= || r=$run
		if ! go test -c -o "$tests/$name" "$path"; then
			vm_log "cannot build the tests of $path"
			build_failed=1
			continue
		fi
		printf '%s\t%s\t%s\n' "$name" "$dir" "$r" >>"$tests/manifest"
	done <<<"$list"
done
for s in ${BERTH_VM_SCRIPTS:-}; do
	[ -f "$s" ] || { vm_log "no script $s"; build_failed=1; continue; }
	printf '%s\t%s\t\n' "script:$(readlink -f "$s")" "$VM_REPO" >>"$tests/manifest"
done
[ $build_failed = 0 ] || exit 1
# The systemd guest installs berth's Debian package as a node would
# (test/vm's TestInstalledService): built here from bin/ (make deb's script).
case " $variants " in *" systemd "*)
	if grep -q '^test_vm\.test' "$tests/manifest"; then
		BERTH_DEB=$(DEB_OUT="$tests/deb" bash hack/install/build-deb.sh) || exit 1
		export BERTH_DEB BERTH_VM_ENV="${BERTH_VM_ENV:-} BERTH_DEB"
		# and runs the real kubelet on that service: the one
		# hack/build-kubelet.sh keeps in its cache (built there now when
		# missing). A failed build makes the test skip, loudly.
		if BERTH_KUBELET=$(bash hack/build-kubelet.sh 2>"$tests/kubelet-build.log"); then
			export BERTH_KUBELET BERTH_VM_SHARES="${BERTH_VM_SHARES:-} $BERTH_KUBELET"
			export BERTH_VM_ENV="$BERTH_VM_ENV BERTH_KUBELET"
		else
			vm_log "cannot build the kubelet: TestInstalledService/kubelet will skip"
			BERTH_KUBELET_BUILD_ERROR=$(tail -n 30 "$tests/kubelet-build.log")
			export BERTH_KUBELET_BUILD_ERROR BERTH_VM_ENV="$BERTH_VM_ENV BERTH_KUBELET_BUILD_ERROR"
			unset BERTH_KUBELET
		fi
	fi
	;;
esac
# The guest reads the binaries and the manifest at this path: share the run
# dir when it is not inside the repo (BERTH_VM_OUT elsewhere).
case "$(readlink -f "$tests")/" in "$(readlink -f "$VM_REPO")"/*) ;; *) export BERTH_VM_SHARES="${BERTH_VM_SHARES:-} $tests" ;; esac
# Shared libraries the binaries link beyond glibc (libseccomp ...) come from
# the host, bound over the guest's at the same path.
# So do the libraries of the host tools the test images copy (test/framework/
# testimages extraTools: pgrep, ipcs): their bytes are in the images' cache
# key, and a guest whose own copies differ would look for images it cannot
# build (no Go inside).
libs=$(for b in "$tests"/*.test "$VM_REPO"/bin/* /usr/bin/pgrep /usr/bin/ipcs; do [ -x "$b" ] && ldd "$b" 2>/dev/null; done |
	awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
	grep -vE '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux-x86-64)\.so' || true)
export BERTH_VM_SHARES="${BERTH_VM_SHARES:-} $(echo $libs)"
vm_log "test binaries built in $(elapsed "$t0")s: $(cut -f1 "$tests/manifest" | tr '\n' ' ')"

export BERTH_BIN_DIR=$VM_REPO/bin
export BERTH_VM_TEST_TIMEOUT=${BERTH_VM_TEST_TIMEOUT:-30m}
export BERTH_VM_VERBOSE=${BERTH_VM_VERBOSE:-1}
export BERTH_VM_ENV="${BERTH_VM_ENV:-} BERTH_BIN_DIR BERTH_VM_TEST_TIMEOUT BERTH_VM_VERBOSE"
rc=0
summary=()
for v in $variants; do
	log=$tests/$v.log
	vm_log "=== $v variant"
	tv=$(date +%s.%N)
	"$HERE/run.sh" -s "$v" -C "$VM_REPO" -- sh "$HERE/guest-tests.sh" "$tests/manifest" 2>&1 | tee "$log"
	vrc=${PIPESTATUS[0]}
	took=$(elapsed "$tv")
	# every binary and script of the manifest must have run and passed
	if [ "$vrc" = 0 ]; then
		while IFS="$(printf '\t')" read -r name _; do
			grep -qF "=== vm: PASS $name (" "$log" && continue
			vm_log "$v: $name did not run"
			vrc=1
		done <"$tests/manifest"
	fi
	# a guest that skipped the VM checks (no BERTH_VM_VARIANT, say) must not pass
	if [ "$vrc" = 0 ] && grep -q 'test_vm.test' "$tests/manifest" && ! grep -q -- '--- PASS: TestVMCgroupV2' "$log"; then
		vm_log "$v: the cgroup v2 check of test/vm did not pass"
		vrc=1
	fi
	[ "$vrc" = 0 ] || rc=1
	summary+=("$v: $([ "$vrc" = 0 ] && echo PASS || echo "FAIL (status $vrc)") in ${took}s, log $log")
done
vm_log "=== summary (total $(elapsed "$t0")s)"
for s in "${summary[@]}"; do vm_log "$s"; done
exit $rc
