#!/usr/bin/env bash
# Builds the root disk of the systemd test VM: a minimal Debian (debootstrap
# from the host's apt mirror) with systemd as PID 1 and D-Bus, as an ext4
# image in $VM_CACHE (common.sh; outside the checkout). Built once: the image
# name holds the hash of this script, so only a change here rebuilds it
# (minutes). The job, its units and the kernel modules
# come from the initramfs and the host at boot. Prints the image path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"

SUITE=${BERTH_VM_SUITE:-bookworm}
# containernetworking-plugins: berth's package depends on it, and test/vm
# installs that package in the guest (its /usr/lib/cni is the host's still);
# criu: the checkpoint/restore round trip runs in the guests
PACKAGES=systemd,systemd-sysv,dbus,kmod,iproute2,iptables,procps,util-linux,mount,libseccomp2,psmisc,containernetworking-plugins,criu
# free space for what the tests write outside /tmp (the file is sparse)
FREE_MB=4096

key=$( { cat "$HERE/build-rootfs.sh"; echo "$SUITE"; } | sha256sum | cut -c1-12)
img=$VM_CACHE/debian-$SUITE-$key.img
mkdir -p "$VM_CACHE"
exec 9>"$VM_CACHE/.rootfs.lock"
flock 9
if [ -s "$img" ]; then
	touch "$img"
	echo "$img"
	exit 0
fi
command -v debootstrap >/dev/null || { vm_log "debootstrap missing: make deps"; exit 1; }

mirror=${BERTH_VM_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$( {
		grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
		grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}'
	} | grep -v -e security -e updates | grep -E '/debian/?$' | head -n1 || true)
fi
[ -n "$mirror" ] || { vm_log "no Debian mirror in the apt sources: set BERTH_VM_MIRROR"; exit 1; }

root=$(mktemp -d "$VM_CACHE/rootfs.XXXXXX")
trap 'rm -rf "$root" "$img.tmp"' EXIT
vm_log "debootstrap $SUITE from $mirror for $img (once; a few minutes)"
t0=$(date +%s)
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >"$VM_CACHE/debootstrap.log" 2>&1; then
	tail -n 30 "$VM_CACHE/debootstrap.log" >&2
	exit 1
fi

echo vm >"$root/etc/hostname"
printf '127.0.0.1 localhost vm\n::1 localhost ip6-localhost\n' >"$root/etc/hosts"
chroot "$root" passwd -d root >/dev/null
# A fixed machine ID: an empty one means a first boot, which presets
# every unit (slow under emulation); the VM is thrown away after each run.
echo 6265727468766d000000000000000001 >"$root/etc/machine-id"
# The init mounted the root read-write already: no fsck or remount, and
# without udev no device unit would ever show up for them to wait for.
: >"$root/etc/fstab"
# Nothing to wait for, log in to, keep up to date or hot-plug in a test VM:
# every program started under TCG costs tens of milliseconds.
for u in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
	e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-timesyncd.service \
	getty@tty1.service serial-getty@ttyS0.service console-getty.service getty.target \
	systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
	systemd-udevd-control.socket systemd-udevd-kernel.socket systemd-hwdb-update.service \
	systemd-random-seed.service systemd-journal-flush.service systemd-update-utmp.service \
	systemd-update-utmp-runlevel.service systemd-firstboot.service systemd-logind.service \
	ldconfig.service systemd-pstore.service modprobe@drm.service; do
	ln -sf /dev/null "$root/etc/systemd/system/$u"
done
mkdir -p "$root/etc/systemd/system-generators"
for g in "$root"/lib/systemd/system-generators/*; do
	ln -sf /dev/null "$root/etc/systemd/system-generators/${g##*/}"
done
# /tmp on tmpfs: overlay upper dirs and the tests' temp dirs live in RAM
cp "$root/usr/share/systemd/tmp.mount" "$root/etc/systemd/system/tmp.mount"
mkdir -p "$root/etc/systemd/system/local-fs.target.wants"
ln -sf ../tmp.mount "$root/etc/systemd/system/local-fs.target.wants/tmp.mount"
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/volatile.conf"
mkdir -p "$root/ctl" "$root/usr/local/sbin"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

size=$(du -sm "$root" | cut -f1)
mke2fs -q -t ext4 -L vmroot -d "$root" "$img.tmp" "$((size + size / 4 + FREE_MB))M"
mv "$img.tmp" "$img"
# Images of other inputs (other checkouts' commits) unused for a month go.
find "$VM_CACHE" -maxdepth 1 -name 'debian-*.img' -mtime +30 -delete 2>/dev/null || true
vm_log "root image $img: $size MiB of files, built in $(($(date +%s) - t0))s"
echo "$img"
