package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The pod's files replace what is at their path: a symlink planted there
// (or at the old temp name, hosts.tmp) is never written through.
func TestPodFilesDoNotFollowSymlinks(t *testing.T) {
	root := t.TempDir()
	pod := filepath.Join(root, "pod")
	if err := os.Mkdir(pod, 0o711); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hosts", "resolv.conf.tmp", "hostname"} {
		if err := os.Symlink(victim, filepath.Join(pod, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writePodFiles(pod, "web", []string{"10.0.0.2"}, &DNSConfig{Servers: []string{"10.96.0.10"}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "host\n" {
		t.Errorf("the symlinks' target was written: %q", b)
	}
	for _, name := range []string{"hosts", "hostname", "resolv.conf"} {
		fi, err := os.Lstat(filepath.Join(pod, name))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v %v", name, fi, err)
		}
	}
}

func TestMountShmRefusesASymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	elsewhere := filepath.Join(root, "elsewhere")
	pod := filepath.Join(root, "pod")
	for _, d := range []string{elsewhere, pod} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(elsewhere, filepath.Join(pod, "shm")); err != nil {
		t.Fatal(err)
	}
	if err := mountShm(filepath.Join(pod, "shm")); err == nil {
		_ = unix.Unmount(filepath.Join(pod, "shm"), unix.MNT_DETACH)
		t.Fatal("mounted through a symlink")
	}
	var a, b unix.Stat_t
	if unix.Stat(elsewhere, &a) == nil && unix.Stat(root, &b) == nil && a.Dev != b.Dev {
		_ = unix.Unmount(elsewhere, unix.MNT_DETACH)
		t.Fatal("a tmpfs was mounted on the symlink's target")
	}
	// The real thing still works.
	shm := filepath.Join(root, "pod2", "shm")
	if err := os.Mkdir(filepath.Dir(shm), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := mountShm(shm); err != nil {
		t.Fatal(err)
	}
	defer unmountRemove(shm)
	var st unix.Statfs_t
	if err := unix.Statfs(shm, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("shm is no tmpfs: %v %x", err, st.Type)
	}
}
