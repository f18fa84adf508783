package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// makeLayers writes n layers below a long parent dir (so that n of them
// overflow mount(2)'s one-page option string, while their short names
// relative to the parent do not); each has its own file and its version of
// "top".
func makeLayers(t *testing.T, dir string, n int) Layers {
	t.Helper()
	var l Layers
	for i := 0; i < n; i++ {
		d := filepath.Join(dir, "layers-"+strings.Repeat("x", 150), fmt.Sprintf("%03d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "top"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		l.Lower = append(l.Lower, d)
	}
	l.Upper, l.Work = filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	return l
}

func checkMerged(t *testing.T, target string, l Layers) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(target, "top"))
	if err != nil || string(data) != fmt.Sprint(len(l.Lower)-1) {
		t.Fatalf("top = %q %v, want the last layer's", data, err)
	}
	for i := range l.Lower {
		if _, err := os.Stat(filepath.Join(target, fmt.Sprintf("f%d", i))); err != nil {
			t.Fatalf("layer %d missing from the merge: %v", i, err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Upper, "new")); err != nil {
		t.Fatalf("write did not land in the upper dir: %v", err)
	}
}

func TestMountManyLayers(t *testing.T) {
	requireRoot(t)
	for name, mount := range map[string]func(string, Layers) error{
		"fsconfig": Mount,
		"legacy":   mountLegacy,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := makeLayers(t, dir, 80)
			target := filepath.Join(dir, "rootfs")
			for _, d := range []string{target, l.Upper, l.Work} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(strings.Join(l.Lower, ":")); n < os.Getpagesize() {
				t.Fatalf("layer paths are only %d bytes: the test would not cross the page limit", n)
			}
			wd, _ := os.Getwd()
			if err := mount(target, l); err != nil {
				t.Fatal(err)
			}
			if now, _ := os.Getwd(); now != wd {
				t.Errorf("mount changed the process's working dir to %s", now)
			}
			checkMerged(t, target, l)
			if err := Remove(target, l); err != nil {
				t.Fatal(err)
			}
			if mounted(t, target) {
				t.Fatal("still mounted after Remove")
			}
			if _, err := os.Stat(l.Upper); !os.IsNotExist(err) {
				t.Fatalf("upper dir left: %v", err)
			}
		})
	}
}

func mounted(t *testing.T, target string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), " "+target+" ")
}

func TestMountErrors(t *testing.T) {
	for name, l := range map[string]Layers{
		"no lower":       {Upper: "/u", Work: "/w"},
		"no upper":       {Lower: []string{"/l"}, Work: "/w"},
		"relative":       {Lower: []string{"l"}, Upper: "/u", Work: "/w"},
		"colon in path":  {Lower: []string{"/a:b"}, Upper: "/u", Work: "/w"},
		"comma in upper": {Lower: []string{"/l"}, Upper: "/u,x", Work: "/w"},
	} {
		if err := Mount(t.TempDir(), l); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestUnmountNotMounted(t *testing.T) {
	requireRoot(t)
	if err := Unmount(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Fatal(err)
	}
}
