package container

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func TestLayerCache(t *testing.T) {
	var walks atomic.Int64
	c := newLayerCache(func(dir string) LayerStats {
		n := walks.Add(1)
		return LayerStats{Mountpoint: dir, Bytes: uint64(n)}
	})
	if ls := c.get("/l"); ls.Bytes != 1 || ls.Mountpoint != "/l" {
		t.Fatalf("first get: %+v", ls)
	}
	if ls := c.get("/l"); ls.Bytes != 1 || walks.Load() != 1 {
		t.Fatalf("get within the TTL walked: %+v, %d walks", ls, walks.Load())
	}
	// Stale: the last walk answers, and a walk runs in the background.
	c.mu.Lock()
	c.m["/l"].walked = time.Now().Add(-layerTTL)
	c.mu.Unlock()
	if ls := c.get("/l"); ls.Bytes != 1 {
		t.Fatalf("stale get: %+v", ls)
	}
	for deadline := time.Now().Add(time.Minute); c.get("/l").Bytes != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no background walk")
		}
	}
	if n := walks.Load(); n != 2 {
		t.Fatalf("%d walks, want 2", n)
	}
	// A layer nobody asks about is dropped.
	c.mu.Lock()
	c.m["/l"].asked = time.Now().Add(-layerForget - time.Second)
	c.pruned = time.Time{}
	c.prune(time.Now())
	_, ok := c.m["/l"]
	c.mu.Unlock()
	if ok {
		t.Fatal("unasked layer kept")
	}
}

func TestLayerUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 10000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	ls := layerUsage(dir)
	// The dir and the file, its hard link counted once.
	if ls.Inodes != 2 || ls.Bytes < 10000 || ls.Bytes > 100000 {
		t.Fatalf("%+v", ls)
	}
}
