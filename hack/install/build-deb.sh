#!/usr/bin/env bash
# build-deb.sh: make deb. Builds _output/deb/berth_<version>_<arch>.deb
# from bin/ with Debian's dpkg-deb (no debhelper: the package is two static
# Go programs, a unit and maintainer scripts) and prints its path.
#
#   DEB_VERSION  the package version (default 0.0~git<commit time>.<hash>,
#                which grows with each commit, so a newer build upgrades)
#   DEB_OUT      output dir (default _output/deb)
#   DEB_COMPRESS dpkg-deb's -Z (default gzip: seconds, where xz takes minutes
#                of a busy machine for a third less size)
#
# Depends: what berthd and the shim need at run time: libc6 (the newest
# GLIBC symbol version the binaries use), libseccomp2, iptables (berthd's
# masquerade of the default network, the CNI plugins' port maps),
# containernetworking-plugins (/usr/lib/cni).
# Recommends dbus (the systemd cgroup driver talks to systemd over it);
# Suggests criu and qemu-system-x86, which only optional features use.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$REPO/bin}
out=${DEB_OUT:-$REPO/_output/deb}
log() { echo "deb: $*" >&2; }

for t in dpkg-deb objdump; do
	command -v $t >/dev/null || { log "$t missing (dpkg-dev/binutils)"; exit 1; }
done
version=${DEB_VERSION:-}
if [ -z "$version" ]; then
	when=$(git -C "$REPO" log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null || date -u +%Y%m%d%H%M%S)
	hash=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo 0)
	version=0.0~git$when.$hash
	git -C "$REPO" diff --quiet HEAD 2>/dev/null || version+=+dirty
fi
arch=$(dpkg --print-architecture)

stage=$(mktemp -d "${TMPDIR:-/tmp}/berth-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
DESTDIR=$root PREFIX=/usr UNITDIR=/lib/systemd/system BIN=$BIN bash "$HERE/install.sh" --package 2>/dev/null
install -D -m 0755 "$HERE/deb/node-config" "$root/usr/lib/berth/node-config"
install -d -m 0755 "$root/DEBIAN" "$root/usr/share/doc/berth"
for s in postinst prerm postrm; do
	install -m 0755 "$HERE/deb/$s" "$root/DEBIAN/$s"
done
cp "$REPO/README.md" "$root/usr/share/doc/berth/README.md"

# The unit must pass systemd-analyze verify (with ExecStart pointing at the
# staged berthd, which verify wants to find executable).
if command -v systemd-analyze >/dev/null; then
	v=$stage/verify
	mkdir -p "$v"
	sed "s|/usr/bin/berthd|$root/usr/bin/berthd|" "$root/lib/systemd/system/berth.service" >"$v/berth.service"
	if ! msg=$(systemd-analyze verify "$v/berth.service" 2>&1) || [ -n "$msg" ]; then
		log "berth.service does not pass systemd-analyze verify:"
		echo "$msg" >&2
		exit 1
	fi
fi

glibc=$(objdump -T "$root/usr/bin/berthd" "$root/usr/bin/berth-shim" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: berth
Version: $version
Architecture: $arch
Maintainer: berth developers <berth-dev@users.noreply.github.com>
Installed-Size: $size
Depends: libc6${glibc:+ (>= $glibc)}, libseccomp2, iptables, containernetworking-plugins
Recommends: dbus
Suggests: criu, qemu-system-x86
Section: admin
Priority: optional
Homepage: https://github.com/berth-dev/berth
Description: Kubernetes container runtime (CRI)
 berthd serves the Kubernetes CRI v1 API on unix:///run/berth/berth.sock
 for the kubelet and crictl; berth-shim runs each pod's containers with
 berth's own namespace and cgroup runtime. berth.service runs berthd;
 restarting or stopping it stops no pod.
CONTROL

mkdir -p "$out"
rm -f "$out"/berth_*.deb
deb=$out/berth_${version}_$arch.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-gzip}" --build "$root" "$deb" >/dev/null
log "built $deb"
echo "$deb"
