package cgroups

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestKubeletWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 102: 4, 512: 20, 1024: 39, 2048: 79, 262144: 10000, 1 << 20: 10000} {
		if got := kubeletWeight(shares); got != want {
			t.Errorf("kubeletWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestV2Resources(t *testing.T) {
	mount := t.TempDir()
	limit, swap, unlimited := int64(64<<20), int64(96<<20), int64(-1)
	res := func(sw *int64) *specs.LinuxResources {
		return &specs.LinuxResources{
			CPU:    &specs.LinuxCPU{Shares: u64(512)},
			Memory: &specs.LinuxMemory{Limit: &limit, Swap: sw},
		}
	}
	// Without swap accounting, no memory.swap.max.
	if r := v2Resources(mount, "/p/c", res(nil)); r.Memory.Swap != nil || *r.CPU.Weight != 20 || *r.Memory.Max != limit {
		t.Errorf("no swap accounting: %+v %+v", r.Memory, r.CPU)
	}
	if err := os.WriteFile(filepath.Join(mount, "memory.swap.current"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		swap *int64
		want *int64
	}{{nil, i64(0)}, {&limit, i64(0)}, {&swap, i64(32 << 20)}, {&unlimited, nil}} {
		r := v2Resources(mount, "/p/c", res(tc.swap))
		if (r.Memory.Swap == nil) != (tc.want == nil) || r.Memory.Swap != nil && *r.Memory.Swap != *tc.want {
			t.Errorf("swap %v: memory.swap.max %v, want %v", tc.swap, r.Memory.Swap, tc.want)
		}
	}
}

func TestV2UnifiedNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "memory.high"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v2Unified(dir, "/", map[string]string{"memory.high": "100"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "memory.high")); string(b) != "100" {
		t.Errorf("memory.high = %q", b)
	}
	for _, k := range []string{"../x.y", "a/b.c", "cgroup.procs", "cgroup.subtree_control", "nodot", "pids.max"} {
		if err := v2Unified(dir, "/", map[string]string{k: "1"}); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}
