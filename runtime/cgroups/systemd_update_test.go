package cgroups

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestSystemdUpdatePod resizes a live pod scope through the systemd driver
// and reads the limits back from the cgroup files systemd wrote. It needs
// systemd as PID 1 (the systemd VM of hack/vm).
func TestSystemdUpdatePod(t *testing.T) {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		t.Skip("systemd is not PID 1 here (runs in the systemd VM of hack/vm)")
	}
	s, err := NewSystemd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := s.PodCgroup("", "resize-unit-"+strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	shares, quota, period, mem := uint64(256), int64(20000), uint64(100000), int64(64<<20)
	place, err := s.CreatePod(p, &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period},
		Memory: &specs.LinuxMemory{Limit: &mem},
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.DeletePod(p); err != nil {
			t.Errorf("DeletePod: %v", err)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := place(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	shares, quota, mem = 1024, 50000, 128<<20
	if err := s.UpdatePod(p, &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period},
		Memory: &specs.LinuxMemory{Limit: &mem},
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cpu/cpu.shares":               "1024",
		"cpu/cpu.cfs_quota_us":         "50000",
		"memory/memory.limit_in_bytes": strconv.Itoa(128 << 20),
	}
	if Unified() {
		want = map[string]string{
			"cpu.weight": "39",
			"cpu.max":    "50000 100000",
			"memory.max": strconv.Itoa(128 << 20),
		}
	}
	for f, v := range want {
		ctrl, file := filepath.Split(f)
		b, err := os.ReadFile(filepath.Join(Root, ctrl, p, file))
		if err != nil {
			t.Errorf("read %s: %v", f, err)
			continue
		}
		if got := strings.TrimSpace(string(b)); got != v {
			t.Errorf("%s of the resized scope = %q, want %q", f, got, v)
		}
	}
	if err := s.UpdatePod("/berth/not-a-scope", nil); err == nil {
		t.Error("UpdatePod took a cgroupfs path")
	}
}
