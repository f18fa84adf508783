package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCgroupfsUpdatePod resizes a pod cgroup of the cgroupfs driver on the
// node's cgroup version (v1 here, v2 in hack/vm's guests) and reads the
// limits back from the kernel's files.
func TestCgroupfsUpdatePod(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	parent := "/berth-unit-resize-" + strconv.Itoa(os.Getpid())
	p := podCgroupPath(parent, "pod1")
	t.Cleanup(func() {
		_ = deleteCgroup(p)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
		dirs = append(dirs, v2Mount+parent)
		for _, d := range dirs {
			_ = unix.Rmdir(d)
		}
	})
	d := cgroupfsDriver{}
	if _, err := d.CreatePod(p, linuxResources(&Resources{CPUShares: 256, CPUQuota: 20000, CPUPeriod: 100000, MemoryLimit: 64 << 20}, nil)); err != nil {
		t.Fatal(err)
	}
	// Grown, with an overhead added on top as at RunPodSandbox.
	res := linuxResources(&Resources{CPUShares: 1024, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 128 << 20}, &Resources{CPUShares: 24, MemoryLimit: 16 << 20})
	if err := d.UpdatePod(p, res); err != nil {
		t.Fatal(err)
	}
	read := func(ctrl, file string) string {
		t.Helper()
		dir := filepath.Join("/sys/fs/cgroup", ctrl, p)
		if unified() {
			dir = filepath.Join(v2Mount, p)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		return strings.TrimSpace(string(b))
	}
	want := map[[2]string]string{
		{"cpu", "cpu.shares"}:               "1048",
		{"cpu", "cpu.cfs_quota_us"}:         "50000",
		{"cpu", "cpu.cfs_period_us"}:        "100000",
		{"memory", "memory.limit_in_bytes"}: strconv.Itoa(144 << 20),
	}
	if unified() {
		want = map[[2]string]string{
			{"", "cpu.max"}:    "50000 100000",
			{"", "memory.max"}: strconv.Itoa(144 << 20),
		}
	}
	for k, v := range want {
		if got := read(k[0], k[1]); got != v {
			t.Errorf("%s = %q after the resize, want %q", k[1], got, v)
		}
	}
	if err := d.UpdatePod(podCgroupPath(parent, "gone"), res); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("resizing a missing pod cgroup: %v, want ErrNotExist", err)
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + podCgroupPath(parent, "gone")); len(dirs) != 0 {
		t.Errorf("resizing a missing pod cgroup made %v", dirs)
	}
}
