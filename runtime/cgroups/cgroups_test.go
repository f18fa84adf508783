package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/cgroupfs"
	"github.com/berth-dev/berth/runtime/internal/heldproc"
)

func testPath(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// t.TempDir is /tmp/<test name><random>/<n>: unique on the machine.
	dir := t.TempDir()
	parent := "/berth-cgtest-" + filepath.Base(filepath.Dir(dir)) + "-" + filepath.Base(dir)
	t.Cleanup(func() {
		if p, err := Load(parent); err == nil {
			if err := p.Delete(); err != nil {
				t.Errorf("remove parent: %v", err)
			}
		}
	})
	return parent + "/ctr"
}

// controlFile is where a v1 or v2 cgroup keeps a setting.
func controlFile(path, v1Controller, v1File, v2File string) string {
	if Unified() {
		return filepath.Join(Root, path, v2File)
	}
	return filepath.Join(Root, v1Controller, path, v1File)
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func TestLifecycle(t *testing.T) {
	path := testPath(t)
	mem := int64(64 << 20)
	res := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000), Cpus: "0"},
		Memory: &specs.LinuxMemory{Limit: &mem, Swap: &mem},
		Pids:   &specs.LinuxPids{Limit: i64(64)},
	}
	cg, err := Create(path, res)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cg.Delete(); err != nil {
			t.Errorf("delete: %v", err)
		}
	}()
	checks := map[string]string{
		controlFile(path, "memory", "memory.limit_in_bytes", "memory.max"): "67108864",
		controlFile(path, "pids", "pids.max", "pids.max"):                  "64",
		controlFile(path, "cpuset", "cpuset.cpus", "cpuset.cpus"):          "0",
	}
	if Unified() {
		checks[controlFile(path, "", "", "cpu.max")] = "50000 100000"
	} else {
		checks[controlFile(path, "cpu", "cpu.shares", "")] = "512"
		checks[controlFile(path, "cpu", "cpu.cfs_quota_us", "")] = "50000"
		checks[controlFile(path, "cpu", "cpu.cfs_period_us", "")] = "100000"
	}
	for f, want := range checks {
		if got := readTrim(t, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}

	g, err := cgroupfs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cmd := heldproc.Start(t, "exec yes >/dev/null", g.AddProc)
	time.Sleep(200 * time.Millisecond)
	st, err := cg.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryUsage == 0 || st.MemoryWorkingSet > st.MemoryUsage || st.CPUUsageNanos == 0 {
		t.Errorf("memory stats %+v", st)
	}

	mem2 := int64(32 << 20)
	if err := cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem2, Swap: &mem2}}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, controlFile(path, "memory", "memory.limit_in_bytes", "memory.max")); got != "33554432" {
		t.Errorf("memory limit after update %s", got)
	}
	if st.OOMKills != 0 {
		t.Errorf("OOM kills %d", st.OOMKills)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if err := g.KillAll(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

func TestLoadMissing(t *testing.T) {
	path := testPath(t)
	if _, err := Load(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("load missing: %v", err)
	}
}

func TestBadPath(t *testing.T) {
	for _, p := range []string{"", "/", "rel", "/a/../b"} {
		if _, err := Create(p, nil); err == nil {
			t.Errorf("Create(%q) succeeded", p)
		}
	}
}
