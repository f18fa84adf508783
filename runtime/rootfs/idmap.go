package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/userns"
)

// IDMap is the user namespace a pod's containers run in. Overlay itself
// cannot be id-mapped, but its layers can (Linux 5.19): the image's files,
// owned by the node's root, show as owned by the namespace's root, and the
// upper dir is given to that root, so the container's root owns its files
// as in any container, with no copy or chown of the image.
type IDMap struct {
	UserNS string // the namespace's file (the pod's pin)
	// UID and GID are the node's ids of the namespace's root.
	UID, GID uint32
}

// mountIDMapped mounts id-mapped, read-only copies of the lower layers
// next to target, the overlay over them, and removes the copies again: the
// overlay keeps private clones of its layers' mounts.
func mountIDMapped(target string, l Layers) (err error) {
	ns, err := os.Open(l.IDMap.UserNS)
	if err != nil {
		return fmt.Errorf("open user namespace: %w", err)
	}
	defer ns.Close()
	tmp := idmapDir(target)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	var mounted []string
	defer func() {
		for _, p := range mounted {
			if uerr := unix.Unmount(p, unix.MNT_DETACH); uerr != nil {
				err = errors.Join(err, fmt.Errorf("unmount %s: %w", p, uerr))
			}
		}
		// Only empty dirs go: never through a mount left behind.
		for _, p := range mounted {
			_ = os.Remove(p)
		}
		_ = os.Remove(tmp)
	}()
	mapped := l
	mapped.IDMap = nil
	mapped.Lower = make([]string, len(l.Lower))
	for i, dir := range l.Lower {
		p := filepath.Join(tmp, strconv.Itoa(i))
		if err := os.Mkdir(p, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		f, err := userns.IDMapped(dir, int(ns.Fd()), false, true)
		if err != nil {
			_ = os.Remove(p)
			return err
		}
		err = unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH)
		f.Close()
		if err != nil {
			_ = os.Remove(p)
			return fmt.Errorf("attach id-mapped layer %s: %w", dir, err)
		}
		mounted = append(mounted, p)
		mapped.Lower[i] = p
	}
	if err := os.Chown(l.Upper, int(l.IDMap.UID), int(l.IDMap.GID)); err != nil {
		return fmt.Errorf("give the upper dir to the user namespace's root: %w", err)
	}
	return mountOverlay(target, mapped)
}

// idmapDir is where mountIDMapped attaches the layers' copies for a while.
func idmapDir(target string) string {
	return filepath.Join(filepath.Dir(target), ".idmap-"+filepath.Base(target))
}

// removeIDMapLeftovers detaches the layer copies a crash left attached
// (between their attach and the overlay's mount), so that nothing removes
// through them: they are read-only, but the image's layers.
func removeIDMapLeftovers(target string) error {
	tmp := idmapDir(target)
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
		_ = os.Remove(p)
	}
	return os.Remove(tmp)
}
