package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const cgroup2SuperMagic = 0x63677270

// The controllers berth sets limits with on cgroup v2.
var controllers = []string{"cpu", "memory", "pids", "io", "cpuset", "hugetlb"}

func variant(t *testing.T) string {
	t.Helper()
	v := os.Getenv("BERTH_VM_VARIANT")
	if v == "" {
		t.Skip("runs inside the test VM only (make test-vm)")
	}
	return v
}

func readWords(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	words := map[string]bool{}
	for _, w := range strings.Fields(string(b)) {
		words[w] = true
	}
	return words
}

func TestVMCgroupV2(t *testing.T) {
	v := variant(t)
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != cgroup2SuperMagic {
		t.Fatalf("/sys/fs/cgroup f_type = %#x, want cgroup2 (%#x)", st.Type, cgroup2SuperMagic)
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup" {
			t.Errorf("a cgroup v1 hierarchy is mounted: %s", line)
		}
	}
	avail := readWords(t, "/sys/fs/cgroup/cgroup.controllers")
	enabled := readWords(t, "/sys/fs/cgroup/cgroup.subtree_control")
	for _, c := range controllers {
		if !avail[c] {
			t.Errorf("controller %s not available at the root (%v)", c, avail)
		}
	}
	// The initramfs init enables every controller for the root's children;
	// systemd enables memory and pids, the rest when a unit asks.
	want := controllers
	if v == "systemd" {
		want = []string{"memory", "pids"}
	}
	for _, c := range want {
		if !enabled[c] {
			t.Errorf("controller %s not enabled in the root's subtree_control (%v)", c, enabled)
		}
	}

	// A child cgroup gets the limits berth writes.
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(self), "0::/") {
		t.Fatalf("/proc/self/cgroup = %q, want only the unified hierarchy", self)
	}
	dir := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("berth-vm-check-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	for file, val := range map[string]string{"memory.max": "33554432", "pids.max": "16", "cpu.max": "50000 100000"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
			t.Errorf("write %s: %v", file, err)
			continue
		}
		got, _ := os.ReadFile(filepath.Join(dir, file))
		if strings.TrimSpace(string(got)) != val {
			t.Errorf("%s = %q after writing %q", file, got, val)
		}
	}
}

func TestVMSystemd(t *testing.T) {
	if variant(t) != "systemd" {
		t.Skip("systemd variant only")
	}
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(comm)) != "systemd" {
		t.Fatalf("PID 1 is %q, want systemd", comm)
	}
	if out, err := exec.Command("systemctl", "is-active", "dbus.service").CombinedOutput(); err != nil {
		t.Fatalf("D-Bus is not running: %v %s", err, out)
	}
	// A transient scope with limits, as the systemd cgroup driver makes them.
	unit := fmt.Sprintf("berth-vm-check-%d.scope", os.Getpid())
	out, err := exec.Command("systemd-run", "--quiet", "--scope", "--unit", unit,
		"-p", "MemoryMax=32M", "-p", "TasksMax=16", "-p", "CPUWeight=50",
		"sh", "-c", `cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); cat $cg/memory.max $cg/pids.max $cg/cpu.weight; echo $cg`).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-run --scope: %v\n%s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 || f[0] != "33554432" || f[1] != "16" || f[2] != "50" || !strings.HasSuffix(f[3], "/"+unit) {
		t.Errorf("scope limits/path = %q, want 33554432 16 50 .../%s", out, unit)
	}
}
