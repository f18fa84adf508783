package imagetest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Tmpfs is a size-limited file system for tests of a full disk.
type Tmpfs struct{ Dir string }

// MountTmpfs mounts a tmpfs of size bytes on dir (made when missing); it is
// unmounted when the test ends. It needs root.
func MountTmpfs(t testing.TB, dir string, size int64) *Tmpfs {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0711", size)); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return &Tmpfs{Dir: dir}
}

// Resize gives the file system size bytes, keeping what it holds.
func (m *Tmpfs) Resize(t testing.TB, size int64) {
	t.Helper()
	if err := unix.Mount("tmpfs", m.Dir, "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("resize the tmpfs on %s: %v", m.Dir, err)
	}
}
