#!/usr/bin/env bash
# Builds the guest of the cgroup v2 test VM from the host's own Debian files,
# into $VM_CACHE/initramfs-<stamp>/ (common.sh; the stamp is the hash of this
# script, guest/ and the kernel version, so only a change of those rebuilds):
#   kernel             the kernel, uncompressed (QEMU boots an ELF kernel
#                      through its PVH entry: no BIOS, no in-guest
#                      decompression, about 2 s less under TCG)
#   initramfs.cpio     real dash, coreutils, util-linux, kmod, iproute2,
#                      iptables ... with their libraries at their host
#                      paths (no busybox: its applets would shadow them)
# Usage: build-initramfs.sh [--print-dir]   (--print-dir: that dir, no build)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"

KIMG=$(vm_kernel_image)
KVER=${KIMG#/boot/vmlinuz-}
MODDIR=/lib/modules/$KVER
stamp=$( { echo "$KVER"; cat "$HERE/build-initramfs.sh" "$HERE/common.sh" "$HERE"/guest/*; } | sha256sum | cut -c1-16)
OUT=$VM_CACHE/initramfs-$stamp
if [ "${1:-}" = --print-dir ]; then echo "$OUT"; exit 0; fi

mkdir -p "$VM_CACHE"
exec 9>"$VM_CACHE/.initramfs.lock"
flock 9
if [ -s "$OUT/stamp" ] && [ -s "$OUT/initramfs.cpio" ] && [ -s "$OUT/kernel" ]; then
	touch "$OUT"
	exit 0
fi
# Builds of other inputs unused for a month go.
find "$VM_CACHE" -maxdepth 1 -name 'initramfs-*' -mtime +30 -exec rm -rf {} + 2>/dev/null || true
vm_log "building the initramfs for kernel $KVER into $OUT"
rm -rf "$OUT"
mkdir -p "$OUT"

STAGE=$(mktemp -d "$VM_CACHE/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
# Debian 12 is usr-merged; the guest too, so every host path resolves.
mkdir -p "$STAGE"/usr/{bin,sbin,lib,lib64} "$STAGE"/{etc,proc,sys,dev,run,tmp,root,mnt,newroot,ctl,var/tmp}
ln -s usr/bin "$STAGE/bin"
ln -s usr/sbin "$STAGE/sbin"
ln -s usr/lib "$STAGE/lib"
ln -s usr/lib64 "$STAGE/lib64"
chmod 1777 "$STAGE/tmp" "$STAGE/var/tmp"

# copy_path PATH: the file at PATH (following symlinks) lands at PATH in the
# guest, with every symlink on the way recreated as a symlink.
copy_path() {
	local p=$1 t
	while [ -L "$p" ]; do
		t=$(readlink "$p")
		case "$t" in /*) ;; *) t=$(dirname "$p")/$t ;; esac
		if [ ! -e "$STAGE$p" ] && [ ! -L "$STAGE$p" ]; then
			mkdir -p "$STAGE$(dirname "$p")"
			ln -s "$(readlink "$p")" "$STAGE$p"
		fi
		p=$t
	done
	[ -e "$STAGE$p" ] && return 0
	mkdir -p "$STAGE$(dirname "$p")"
	cp -p "$p" "$STAGE$p"
}
copy_libs() {
	local l
	for l in $(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		copy_path "$l"
	done
}
copy_prog() {
	local src
	src=$(type -P "$1") || { vm_log "note: host program $1 missing, not in the guest"; return 0; }
	copy_path "$src"
	copy_libs "$(readlink -f "$src")"
}

progs=(
	dash sh bash
	$(dpkg -L coreutils | grep -E '^(/usr)?/s?bin/')
	mount umount nsenter unshare switch_root setsid findmnt losetup mountpoint flock
	blkid lsns chroot pivot_root dmesg mknod script
	kmod insmod modprobe lsmod rmmod depmod modinfo
	ip tc bridge ss
	iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore
	iptables-legacy iptables-nft ip6tables-legacy ip6tables-nft
	ps pgrep pkill kill sysctl free top pidof ipcs ipcmk ipcrm
	grep egrep sed awk mawk find xargs tar gzip gunzip zcat xz which hostname stat
	sync timeout env
	busybox dpkg-query ldd
	criu
)
for p in "${progs[@]}"; do copy_prog "$p"; done
# iptables dlopen()s its match and target extensions
xt=/usr/lib/x86_64-linux-gnu/xtables
if [ -d "$xt" ]; then
	mkdir -p "$STAGE$xt"
	cp -a "$xt/." "$STAGE$xt/"
	for so in "$xt"/*.so; do copy_libs "$so"; done
fi
# glibc loads the nss ones for user and host name lookups; berth links libseccomp
for l in /usr/lib/x86_64-linux-gnu/libnss_files.so.2 /usr/lib/x86_64-linux-gnu/libnss_dns.so.2 \
	/usr/lib/x86_64-linux-gnu/libseccomp.so.2; do
	[ -e "$l" ] && copy_path "$l"
done
[ -d /etc/iproute2 ] && cp -a /etc/iproute2 "$STAGE/etc/"

# Kernel modules: only what mounts the 9p shares and the systemd root disk.
# The guest bind-mounts the host's /usr/lib/modules over its own after that,
# so every module loads on demand through modprobe.
for m in virtio_pci virtio_console 9pnet_virtio 9p virtio_blk ext4; do
	modprobe -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | sort -u | while read -r f; do
	mkdir -p "$STAGE$(dirname "$f")"
	cp "$f" "$STAGE$f"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
	cp "$MODDIR/$f" "$STAGE$MODDIR/"
done
depmod -b "$STAGE" "$KVER"

install -m 0755 "$HERE/guest/init" "$STAGE/init"
mkdir -p "$STAGE/usr/share/berth-vm"
install -m 0755 "$HERE/guest/job" "$STAGE/usr/share/berth-vm/job"
install -m 0644 "$HERE"/guest/*.service "$HERE"/guest/*.target "$STAGE/usr/share/berth-vm/"
echo 'root:x:0:0:root:/root:/bin/sh' >"$STAGE/etc/passwd"
echo 'root:x:0:' >"$STAGE/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$STAGE/etc/nsswitch.conf"
printf '127.0.0.1 localhost vm\n::1 localhost ip6-localhost\n' >"$STAGE/etc/hosts"
: >"$STAGE/etc/resolv.conf"
echo vm >"$STAGE/etc/hostname"
: >"$STAGE/etc/machine-id"
ln -s /proc/self/mounts "$STAGE/etc/mtab"
echo "$KVER" >"$STAGE/etc/kernel-version"

# Uncompressed: the host copies it into guest memory for free, while
# inflating it in the guest under TCG costs a second.
(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$OUT/initramfs.cpio.tmp"
mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"

vm_extract_vmlinux "$KIMG" "$OUT/kernel.tmp"
mv "$OUT/kernel.tmp" "$OUT/kernel"
echo "$KVER" >"$OUT/kernel-version"
echo "$stamp" >"$OUT/stamp"
vm_log "initramfs $(du -h "$OUT/initramfs.cpio" | cut -f1), kernel $KVER"
