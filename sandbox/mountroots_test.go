package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// mountRoots finds what mountinfo finds below a dir: a tmpfs on a nested
// dir, a file bind mount, a mount inside a mount (which it leaves to the
// outer one's detach), and nothing once they are unmounted.
func TestMountRoots(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	shm := filepath.Join(dir, "a", "shm")
	pin := filepath.Join(dir, "pin")
	inner := filepath.Join(shm, "inner")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pin, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", shm, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(shm, unix.MNT_DETACH) })
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("/proc/self/ns/net", pin, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })

	got, err := mountRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{shm, pin}; !slices.Equal(got, want) {
		t.Errorf("mountRoots = %v, want %v", got, want)
	}
	all, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Errorf("mountinfo below %s: %v, want 3", dir, all)
	}
	for _, p := range got {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := mountRoots(dir); err != nil || len(got) != 0 {
		t.Errorf("after the detach: %v, %v", got, err)
	}
	if all, _ := mountsUnder(dir); len(all) != 0 {
		t.Errorf("mountinfo after the detach: %v", all)
	}
	if got, err := mountRoots(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing dir: %v, %v", got, err)
	}
}
