package cgroups

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/internal/heldproc"
)

// Usage must report what Stats reports, read from fewer files.
func TestUsageMatchesStats(t *testing.T) {
	path := testPath(t)
	cg, err := Create(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.Delete(); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()
	g, err := cgroupfs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// An idle process: its usage holds still between the reads.
	cmd := heldproc.Start(t, "exec sleep 1000", g.AddProc)
	defer func() {
		_ = g.KillAll()
		_ = cmd.Wait()
	}()
	time.Sleep(200 * time.Millisecond)
	var before, got, after *Stats
	for try := 0; try < 20; try++ {
		if before, err = cg.Stats(); err != nil {
			t.Fatal(err)
		}
		if got, err = Usage(path); err != nil {
			t.Fatal(err)
		}
		if after, err = cg.Stats(); err != nil {
			t.Fatal(err)
		}
		before.Time, got.Time, after.Time = time.Time{}, time.Time{}, time.Time{}
		before.OOMKills, after.OOMKills = 0, 0 // Usage leaves it out
		if *before == *after {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if *before != *after {
		t.Skipf("usage kept changing between reads: %+v, %+v", before, after)
	}
	if *got != *before {
		t.Errorf("Usage = %+v, Stats = %+v", got, before)
	}
	if got.MemoryUsage == 0 || got.CPUUsageNanos == 0 {
		t.Errorf("Usage of a cgroup with a process: %+v", got)
	}
}

func TestUsageMissing(t *testing.T) {
	path := testPath(t)
	if _, err := Usage(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("usage of a missing cgroup: %v", err)
	}
	if _, err := Usage("rel"); err == nil {
		t.Fatal("usage of a relative path succeeded")
	}
}
