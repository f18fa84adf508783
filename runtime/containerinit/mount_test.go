package containerinit

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want mountOpts
	}{
		{[]string{"nosuid", "noexec", "nodev"}, mountOpts{flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV}},
		{[]string{"rbind", "rprivate", "ro"}, mountOpts{flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, bind: true, propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC}}},
		{[]string{"bind", "rslave", "rw"}, mountOpts{flags: unix.MS_BIND, clear: unix.MS_RDONLY, bind: true, propagation: []uintptr{unix.MS_SLAVE | unix.MS_REC}}},
		{[]string{"rbind", "rshared", "ro", "rro"}, mountOpts{flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, bind: true, recursiveRO: true, propagation: []uintptr{unix.MS_SHARED | unix.MS_REC}}},
		{[]string{"nosuid", "mode=755", "size=65536k", "strictatime"}, mountOpts{flags: unix.MS_NOSUID | unix.MS_STRICTATIME, data: []string{"mode=755", "size=65536k"}}},
		{[]string{"ro", "rw"}, mountOpts{clear: unix.MS_RDONLY}},
	} {
		if got := parseMountOptions(tc.opts); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: got %+v, want %+v", tc.opts, got, tc.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"A=1", "PATH=/nonexistent:" + bin}
	if p, err := lookPath("tool", env); err != nil || p != filepath.Join(bin, "tool") {
		t.Errorf("tool: %q %v", p, err)
	}
	if p, err := lookPath(filepath.Join(bin, "tool"), nil); err != nil || p != filepath.Join(bin, "tool") {
		t.Errorf("absolute: %q %v", p, err)
	}
	// Even root needs one execute bit.
	if _, err := lookPath("data", env); err == nil {
		t.Error("a file without execute bit was found")
	}
	for _, bad := range []string{"missing", bin, filepath.Join(bin, "missing")} {
		if _, err := lookPath(bad, env); err == nil {
			t.Errorf("%s: found", bad)
		}
	}
}
