package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-dev/berth/runtime/userns"
)

// The test binary stands in for berth-shim's hold role (userns.Hold runs
// "<binary> hold").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		select {}
	}
	os.Exit(m.Run())
}

func TestMountIDMapped(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	l := makeLayers(t, dir, 3)
	mapping := userns.Mapping{UIDs: []userns.IDMap{{ContainerID: 0, HostID: 300000, Size: 65536}}, GIDs: []userns.IDMap{{ContainerID: 0, HostID: 400000, Size: 65536}}}
	h, err := userns.Hold("/proc/self/exe", mapping, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	l.IDMap = &IDMap{UserNS: h.NSPath("user"), UID: 300000, GID: 400000}
	target := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Mount(target, l); err != nil {
		if strings.Contains(err.Error(), "unsupported") {
			t.Skipf("no id-mapped mounts here: %v", err)
		}
		t.Fatal(err)
	}
	defer Unmount(target)
	// Seen from the node, the layers' root-owned files belong to the
	// namespace's root, as does the overlay's root (the upper dir).
	for _, p := range []string{"f0", "f2", "top", "."} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(target, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 300000 || st.Gid != 400000 {
			t.Errorf("%s owned by %d:%d, want 300000:400000", p, st.Uid, st.Gid)
		}
	}
	if b, err := os.ReadFile(filepath.Join(target, "top")); err != nil || string(b) != "2" {
		t.Errorf("top = %q, %v: want the topmost layer's", b, err)
	}
	// The layers' copies are gone once the overlay is up.
	if _, err := os.Stat(idmapDir(target)); !os.IsNotExist(err) {
		t.Errorf("id-mapped layer copies left: %v", err)
	}
	// The image's files on disk are untouched.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(l.Lower[0], "f0"), &st); err != nil || st.Uid != 0 {
		t.Errorf("layer file owner on disk %d (%v), want 0", st.Uid, err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
}
