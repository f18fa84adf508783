package containerinit

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// bindDevice binds the node's device only when what is at its path is that
// device, and binds the very file it checked.
func TestBindDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	dir, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dir)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	null := specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}
	if err := bindDevice(dir, "null", null, unix.S_IFCHR); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(root, "null"), unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "null"), &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("bound file: rdev %x, %v", st.Rdev, err)
	}
	// A host file at the device's path (a symlink to it, say) is refused.
	link := filepath.Join(t.TempDir(), "dev-x")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	fake := specs.LinuxDevice{Path: link, Type: "c", Major: 1, Minor: 3}
	if err := bindDevice(dir, "x", fake, unix.S_IFCHR); err == nil {
		_ = unix.Unmount(filepath.Join(root, "x"), unix.MNT_DETACH)
		t.Fatal("a host file was bound as a device")
	}
}
