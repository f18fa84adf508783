#!/usr/bin/env bash
# install.sh: installs berth for make install and stages it for make deb.
#
#   DESTDIR     staging root (default none: the live system)
#   PREFIX      /usr/local (make install) or /usr (the package)
#   BINDIR      $PREFIX/bin: berthd, berth-shim and berth-mon (beside each other)
#   UNITDIR     $PREFIX/lib/systemd/system (systemd reads /usr/local/lib/systemd/system too)
#   DATADIR     $PREFIX/share: berth/99-berth.conflist, the default CNI network
#   SYSCONFDIR  /etc (not below PREFIX, as containerd's and CRI-O's config)
#   CNI_CONF_DIR /etc/cni/net.d
#   BIN         where the built binaries are (bin/ of the checkout)
#
# install.sh [--package]: with --package only the package's files are
# staged (binaries, unit, the default CNI network under DATADIR); the
# package's postinst writes the config and the CNI network on the node.
# Without it, also what the postinst writes, by the same rule
# (hack/install/deb/postinst, node-config):
#   - $SYSCONFDIR/berth/config.toml, `berthd config default`, only when
#     there is none (an existing one is never touched);
#   - $CNI_CONF_DIR/99-berth.conflist, only when that dir holds no network
#     config at all. It sorts after the configs network add-ons write
#     (05-cilium, 10-calico, 10-flannel), so one installed later is used.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BINDIR=${BINDIR:-$PREFIX/bin}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
DATADIR=${DATADIR:-$PREFIX/share}
SYSCONFDIR=${SYSCONFDIR:-/etc}
CNI_CONF_DIR=${CNI_CONF_DIR:-/etc/cni/net.d}
BIN=${BIN:-$REPO/bin}
package=0
[ "${1:-}" = --package ] && package=1

log() { echo "install: $*" >&2; }
for b in berthd berth-shim berth-mon; do
	[ -x "$BIN/$b" ] || { log "$BIN/$b missing: make build"; exit 1; }
done

install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$UNITDIR" "$DESTDIR$DATADIR/berth"
# berth-mon beside berth-shim: an idle shim execs it (docs/design.md).
install -m 0755 "$BIN/berthd" "$BIN/berth-shim" "$BIN/berth-mon" "$DESTDIR$BINDIR/"
sed "s|@BINDIR@|$BINDIR|g" "$HERE/berth.service.in" >"$DESTDIR$UNITDIR/berth.service"
chmod 0644 "$DESTDIR$UNITDIR/berth.service"
# make run's default network (the same file hack/setup-default.sh writes)
bash "$REPO/hack/setup-default.sh" --print-cni >"$DESTDIR$DATADIR/berth/99-berth.conflist"
chmod 0644 "$DESTDIR$DATADIR/berth/99-berth.conflist"
log "installed $DESTDIR$BINDIR/berthd, $DESTDIR$BINDIR/berth-shim, $DESTDIR$BINDIR/berth-mon, $DESTDIR$UNITDIR/berth.service"
[ $package = 1 ] && exit 0

# What the package's postinst does on the node, by the same script.
DESTDIR=$DESTDIR SYSCONFDIR=$SYSCONFDIR CNI_CONF_DIR=$CNI_CONF_DIR \
	BERTHD=$BIN/berthd CNI_DEFAULT=$DESTDIR$DATADIR/berth/99-berth.conflist \
	sh "$HERE/deb/node-config"
if [ -z "$DESTDIR" ]; then
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		log "start it with: systemctl enable --now berth"
	fi
fi
