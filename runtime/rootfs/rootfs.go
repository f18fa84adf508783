// Package rootfs mounts a container's root filesystem: an overlay of the
// image's layer directories with the container's own upper and work dirs.
package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Layers are the directories of one overlay mount.
type Layers struct {
	Lower []string // image layers, lowest (base) first
	Upper string   // the container's writable layer
	Work  string   // overlay's scratch dir, same filesystem as Upper
	// IDMap, when set, shows the layers through a pod's user namespace
	// (see idmap.go).
	IDMap *IDMap
}

func (l Layers) check() error {
	if len(l.Lower) == 0 {
		return errors.New("no lower layer")
	}
	if l.Upper == "" || l.Work == "" {
		return errors.New("upper and work dirs are required")
	}
	for _, d := range append([]string{l.Upper, l.Work}, l.Lower...) {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("layer dir %q is not absolute", d)
		}
		// The legacy option string uses ':' and ',' as separators.
		if strings.ContainsAny(d, ":,") {
			return fmt.Errorf("layer dir %q holds ':' or ','", d)
		}
	}
	return nil
}

// Mount mounts the overlay on target (an existing directory), creating the
// upper and work dirs if missing.
func Mount(target string, l Layers) error {
	if err := l.check(); err != nil {
		return fmt.Errorf("mount rootfs on %s: %w", target, err)
	}
	for _, d := range []string{l.Upper, l.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mount rootfs on %s: %w", target, err)
		}
	}
	var err error
	if l.IDMap != nil {
		err = mountIDMapped(target, l)
	} else {
		err = mountOverlay(target, l)
	}
	if err != nil {
		return fmt.Errorf("mount rootfs on %s: %w", target, err)
	}
	return nil
}

func mountOverlay(target string, l Layers) error {
	err := mountFsconfig(target, l)
	if err != nil && fallbackOK(err) {
		err = mountLegacy(target, l)
	}
	return err
}

// fallbackOK says whether the new mount API failed for want of kernel
// support (no fsopen, or no "lowerdir+" before Linux 6.8) rather than for a
// reason the old API would meet too.
func fallbackOK(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// mountFsconfig passes each layer in its own fsconfig call, so the number
// of layers is not limited by the one-page option string of mount(2).
func mountFsconfig(target string, l Layers) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	// "lowerdir+" appends below the layers given so far: topmost first.
	for i := len(l.Lower) - 1; i >= 0; i-- {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l.Lower[i]); err != nil {
			return fmt.Errorf("overlay lowerdir+ %s: %w", l.Lower[i], err)
		}
	}
	if err := unix.FsconfigSetString(fd, "upperdir", l.Upper); err != nil {
		return fmt.Errorf("overlay upperdir: %w", err)
	}
	if err := unix.FsconfigSetString(fd, "workdir", l.Work); err != nil {
		return fmt.Errorf("overlay workdir: %w", err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move overlay to %s: %w", target, err)
	}
	return nil
}

// The kernel reads mount(2) data of at most one page.
var pageSize = os.Getpagesize()

func mountLegacy(target string, l Layers) error {
	lowers := make([]string, len(l.Lower))
	for i, d := range l.Lower {
		lowers[len(l.Lower)-1-i] = d
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + l.Upper + ",workdir=" + l.Work
	if len(opts) < pageSize {
		if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
		return nil
	}
	return mountRelative(target, lowers, l)
}

// mountRelative shortens the options by naming the lower dirs relative to
// their common parent, from a thread whose working directory is that parent
// (the thread gets its own fs context so the rest of the process keeps its
// working directory; the thread is discarded afterwards).
func mountRelative(target string, lowers []string, l Layers) error {
	parent := filepath.Dir(lowers[0])
	rel := make([]string, len(lowers))
	for i, d := range lowers {
		if filepath.Dir(d) != parent {
			return fmt.Errorf("%d layers give mount options over %d bytes and do not share a parent dir", len(lowers), pageSize)
		}
		rel[i] = filepath.Base(d)
	}
	opts := "lowerdir=" + strings.Join(rel, ":") + ",upperdir=" + l.Upper + ",workdir=" + l.Work
	if len(opts) >= pageSize {
		return fmt.Errorf("%d layers give mount options over %d bytes", len(lowers), pageSize)
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs context: %w", err)
			return
		}
		if err := unix.Chdir(parent); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", parent, err)
			return
		}
		if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
			errc <- fmt.Errorf("mount overlay: %w", err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// Unmount unmounts target, retrying while it is busy for a short while.
// A target that is not mounted is no error.
func Unmount(target string) error {
	if err := removeIDMapLeftovers(target); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); derr == nil {
				return nil
			}
			return fmt.Errorf("unmount rootfs %s: %w", target, err)
		default:
			return fmt.Errorf("unmount rootfs %s: %w", target, err)
		}
	}
}

// Remove unmounts target and removes the container's upper and work dirs.
func Remove(target string, l Layers) error {
	if err := Unmount(target); err != nil {
		return err
	}
	for _, d := range []string{l.Upper, l.Work} {
		if d == "" {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return nil
}
