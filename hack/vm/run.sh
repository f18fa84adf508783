#!/usr/bin/env bash
# run.sh [-s initramfs|systemd] [-t SECONDS] [-C DIR] [--] CMD [ARG...]
#
# Boots a throw-away cgroup v2 VM (Debian's kernel with cgroup_no_v1=all,
# under QEMU), runs CMD there as root in DIR (default: the current dir) and
# exits with CMD's exit status; CMD's stdout and stderr come back on stdout.
# 124: timed out; 125: the VM failed before CMD ended.
#
# Variants: initramfs (default): a small initramfs as PID 1, every cgroup
# controller enabled at the root. systemd: a Debian root with systemd as PID 1
# (build-rootfs.sh), CMD runs as a service once the system and D-Bus are up.
#
# Host paths seen inside at the same path: this repo (read-write),
# /usr/local/bin (crictl, critest), /usr/lib/cni, /usr/lib/modules,
# /usr/bin/docker-registry, /usr/bin/busybox, /var/lib/dpkg (read-only), plus
# $BERTH_VM_SHARES (space-separated; PATH or PATH:rw, dirs or files).
# The guest has no network device. Environment: BERTH_VM_ENV (names of
# variables passed in), BERTH_VM_MEM (MiB, 3072), BERTH_VM_CPUS (2),
# BERTH_VM_TIMEOUT (seconds, 3600), BERTH_VM_DEBUG=1 (kernel console on stderr),
# BERTH_VM_SYSTEMD_LOG (systemd's log level, warning), BERTH_VM_ACCEL (auto,
# tcg or kvm).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/common.sh"

variant=${BERTH_VM_VARIANT:-initramfs}
timeout=${BERTH_VM_TIMEOUT:-3600}
cwd=$PWD
while [ $# -gt 0 ]; do
	case "$1" in
	-s) variant=$2 && shift 2 ;;
	-t) timeout=$2 && shift 2 ;;
	-C) cwd=$(cd "$2" && pwd) && shift 2 ;;
	--) shift && break ;;
	-*) sed -n '2,23p' "$0" >&2 && exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { sed -n '2,23p' "$0" >&2; exit 2; }
case "$variant" in initramfs | systemd) ;; *) vm_log "unknown variant $variant" && exit 2 ;; esac
command -v qemu-system-x86_64 >/dev/null || { vm_log "qemu-system-x86_64 missing: make deps"; exit 125; }

"$HERE/build-initramfs.sh" || exit 125
guest=$("$HERE/build-initramfs.sh" --print-dir)
disk=()
append="console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=4 mitigations=off no_timer_check"
if [ "$variant" = systemd ]; then
	img=$("$HERE/build-rootfs.sh") || exit 125
	# snapshot=on: the guest's writes go to a temp file, the image stays clean
	# -device like the scratch disk's below, first: the root is vda.
	disk=(-drive "file=${img//,/,,},if=none,id=root,format=raw,snapshot=on" -device virtio-blk-pci,drive=root)
	append+=" vmroot=/dev/vda systemd.unit=berth-vm.target systemd.show_status=0 systemd.log_level=${BERTH_VM_SYSTEMD_LOG:-warning}"
fi

CTL=$(mktemp -d "${TMPDIR:-/tmp}/berth-vm.XXXXXX")
SCRATCH=$(mktemp "${TMPDIR:-/tmp}/berth-vm-tmp.XXXXXX")
qpid=
cats=()
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	for p in "${cats[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$CTL" "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The guest's /tmp: a sparse ext4 disk of this run (guest/init's mount_tmp),
# so that berth's test dirs take id-mapped mounts on the guest's kernel.
truncate -s 32G "$SCRATCH" && mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=1 "$SCRATCH" || exit 125
disk+=(-drive "file=${SCRATCH//,/,,},if=none,id=scratch,format=raw,cache=unsafe" -device virtio-blk-pci,drive=scratch,serial=berth-tmp)

q() { printf "'%s'" "${1//\'/\'\\\'\'}"; } # sh single quoting
esc() { printf '%s' "${1//,/,,}"; }         # QEMU doubles commas in option values

fsdevs=()
nshare=0
share_dir() { # share_dir HOSTDIR GUESTPATH ro|rw
	local tag=s$nshare ro=
	nshare=$((nshare + 1))
	[ "$3" = ro ] && ro=,readonly=on
	fsdevs+=(-fsdev "local,id=$tag,path=$(esc "$1"),security_model=none,multidevs=remap$ro"
		-device "virtio-9p-pci,fsdev=$tag,mount_tag=$tag")
	echo "dir $tag $2 $3" >>"$CTL/shares"
}
# Read-only paths below /usr come from one share of the host's /usr (every
# 9p device costs boot time): the tools, CNI plugins and kernel modules.
: >"$CTL/shares"
share_dir /usr /.vm/usr ro
declare -A filedirs=()
shares=(/usr/lib/modules /usr/local/bin /usr/lib/cni /usr/bin/docker-registry /usr/bin/busybox /var/lib/dpkg "$VM_REPO:rw" ${BERTH_VM_SHARES:-})
for s in "${shares[@]}"; do
	mode=ro
	case "$s" in *:rw) s=${s%:rw} && mode=rw ;; *:ro) s=${s%:ro} ;; esac
	[ -e "$s" ] || continue
	# the dir is resolved, a file keeps its name (a library's soname link)
	if [ -d "$s" ]; then s=$(readlink -f "$s"); else s=$(readlink -f "$(dirname "$s")")/$(basename "$s"); fi
	if [ $mode = ro ] && [ "${s#/usr/}" != "$s" ]; then
		echo "bind /.vm$s $s" >>"$CTL/shares"
	elif [ -d "$s" ]; then
		share_dir "$s" "$s" "$mode"
	else
		d=$(dirname "$s")
		if [ -z "${filedirs[$d]:-}" ]; then
			filedirs[$d]=/.vm/s$nshare
			share_dir "$d" "${filedirs[$d]}" "$mode"
		fi
		echo "bind ${filedirs[$d]}/$(basename "$s") $s" >>"$CTL/shares"
	fi
done

{
	echo "export HOME=/root TERM=dumb BERTH_VM_VARIANT=$variant"
	for n in ${BERTH_VM_ENV:-}; do [ -n "${!n+x}" ] && echo "export $n=$(q "${!n}")"; done
} >"$CTL/env"
echo "$cwd" >"$CTL/cwd"
{
	printf exec
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
} >"$CTL/cmd"

# Guest output reaches our stdout through a FIFO drained by cat, which
# shares our file descriptor (QEMU's stdio chardev closes at stdin's EOF, a
# virtio console stalls after about 1 MB; a virtio-serial port does not).
mkfifo "$CTL/out.in" "$CTL/out.out"
cat "$CTL/out.out" &
cats+=($!)
if [ "${BERTH_VM_DEBUG:-0}" = 1 ]; then
	mkfifo "$CTL/con.in" "$CTL/con.out"
	cat "$CTL/con.out" >&2 &
	cats+=($!)
	con=(-chardev "pipe,id=con,path=$(esc "$CTL/con")")
else
	con=(-chardev "file,id=con,path=$(esc "$CTL/console.log")")
fi

accel=$(vm_accel)
if [ "$accel" = kvm ]; then
	accelargs=(-accel kvm -cpu host)
else
	accelargs=(-accel tcg,thread=multi,tb-size=256 -cpu max)
fi
start=$(date +%s.%N)
timeout -k 5 "$timeout" qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
	-machine pc -m "${BERTH_VM_MEM:-3072}" -smp "${BERTH_VM_CPUS:-2}" "${accelargs[@]}" \
	-kernel "$guest/kernel" -initrd "$guest/initramfs.cpio" -append "$append" \
	"${con[@]}" -serial chardev:con \
	-chardev "pipe,id=out,path=$(esc "$CTL/out")" \
	-device virtio-serial-pci -device virtserialport,chardev=out,name=out \
	-fsdev "local,id=ctl,path=$(esc "$CTL"),security_model=none" -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl \
	"${fsdevs[@]}" "${disk[@]}" </dev/null &
qpid=$!
wait "$qpid"
qrc=$?
qpid=
# let cat see EOF even when QEMU never opened the FIFO
for f in "$CTL"/*.out; do
	exec 5<>"$f"
	exec 5>&-
done
wait "${cats[@]}" 2>/dev/null
cats=()
vm_log "$variant VM ($accel) ran $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')s"

if [ -s "$CTL/rc" ]; then
	exit "$(cat "$CTL/rc")"
fi
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	vm_log "timed out after ${timeout}s"
	rc=124
else
	vm_log "the VM ended without an exit status (qemu status $qrc)"
	rc=125
fi
if [ -f "$CTL/console.log" ]; then
	echo "--- VM console (last 60 lines) ---" >&2
	tail -n 60 "$CTL/console.log" >&2
fi
exit $rc
