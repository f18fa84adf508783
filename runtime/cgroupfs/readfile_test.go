package cgroupfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, 4095, 4096, 4097, 100000} {
		want := bytes.Repeat([]byte("x"), size)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
	}
	// A /proc file (size 0 to stat) reads whole, as os.ReadFile reads it.
	want, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile("/proc/self/mountinfo")
	if err != nil || len(got) == 0 || !bytes.Equal(got, want) {
		t.Fatalf("mountinfo: %d bytes (os.ReadFile %d), %v", len(got), len(want), err)
	}
	if _, err := ReadFile(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) || !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ReadFile(dir); err == nil {
		t.Fatal("a directory read")
	}
}

// A stats list reads a few such files for each pod and container.
func BenchmarkReadFile(b *testing.B) {
	const file = "/sys/fs/cgroup/memory/memory.stat"
	if _, err := os.Stat(file); err != nil {
		b.Skip("no cgroup v1 memory hierarchy")
	}
	b.Run("ReadFile", func(b *testing.B) {
		for range b.N {
			if _, err := ReadFile(file); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("os.ReadFile", func(b *testing.B) {
		for range b.N {
			if _, err := os.ReadFile(file); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestSubdirs(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 300 { // more than one getdents buffer
		name := fmt.Sprintf("child-%03d-%s", i, strings.Repeat("n", i%40))
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
		if err := os.WriteFile(filepath.Join(dir, name+".file"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := Subdirs(dir)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d dirs %v..., want %d", len(got), got[:min(len(got), 3)], len(want))
	}
	if _, err := Subdirs(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestKeyed(t *testing.T) {
	data := []byte("cache 10\nrss 20\ntotal_rss 30\nbad\nneg -1\nbig 18446744073709551615\nover 18446744073709551616\ntotal_rss_huge 5")
	got := Keyed(data, "total_rss", "rss", "none", "neg", "big", "over", "total_rss_huge")
	want := []uint64{30, 20, 0, 0, math.MaxUint64, 0, 5}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	flat := FlatKeyed(data)
	for i, k := range []string{"total_rss", "rss", "big", "total_rss_huge"} {
		if v := Keyed(data, k)[0]; v != flat[k] {
			t.Errorf("%s: Keyed %d, FlatKeyed %d (%d)", k, v, flat[k], i)
		}
	}
}
