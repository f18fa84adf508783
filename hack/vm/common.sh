# Sourced by the hack/vm scripts: where the VM's files live and helpers.
# shellcheck shell=bash

VM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The runs' test binaries and logs (the guest reads them from the checkout).
VM_OUT=${BERTH_VM_OUT:-$VM_REPO/_output/vm}
# Built once and reused, outside the checkout so that a fresh clone (CI) finds
# them: the kernel and initramfs (initramfs-<stamp>/) and the Debian root
# image (debian-<suite>-<hash>.img), each named by the hash of its inputs, so
# checkouts at other commits share the dir without replacing each other's.
VM_CACHE=${BERTH_VM_CACHE:-${BERTH_CACHE_DIR:-/var/cache/berth}/vm}

vm_log() { echo "vm: $*" >&2; }

# The newest Debian kernel installed on the host (linux-image-amd64).
vm_kernel_image() {
	local k
	k=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
	if [ -z "$k" ] || [ ! -d "/lib/modules/${k#/boot/vmlinuz-}" ]; then
		vm_log "no Debian kernel in /boot: run make deps (linux-image-amd64)"
		return 1
	fi
	echo "$k"
}

# vm_extract_vmlinux BZIMAGE OUT: the ELF kernel inside a bzImage (as the
# kernel's scripts/extract-vmlinux finds it); the bzImage itself when that fails.
vm_extract_vmlinux() {
	local img=$1 out=$2 pair magic cmd off
	for pair in '\xfd7zXZ\x00:xz -dc' '\x1f\x8b\x08:gzip -dc' '\x28\xb5\x2f\xfd:zstd -dc'; do
		magic=${pair%%:*}
		cmd=${pair#*:}
		command -v "${cmd%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
			tail -c +$((off + 1)) "$img" | $cmd >"$out" 2>/dev/null || true
			if [ "$(head -c4 "$out" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				return 0
			fi
		done
	done
	vm_log "note: no ELF kernel found in $img, booting the bzImage"
	cp "$img" "$out"
}

# KVM only when the host module drives real hardware virtualisation: a
# /dev/kvm from kvm_pvm (paravirtual nesting, as on this machine kind) runs
# only PVM-enabled guest kernels and a stock kernel hangs at boot.
vm_accel() {
	case "${BERTH_VM_ACCEL:-auto}" in
	kvm | tcg) echo "$BERTH_VM_ACCEL" ;;
	*)
		if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
			echo kvm
		else
			echo tcg
		fi
		;;
	esac
}
