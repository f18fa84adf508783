package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testCgroup creates, fills, empties and deletes a pod cgroup through the
// current version's code path.
func testCgroup(t *testing.T, root string) {
	t.Helper()
	parent := "/berth-unit-" + strconv.Itoa(os.Getpid())
	p := podCgroupPath(parent, "pod1")
	defer func() {
		dirs, _ := filepath.Glob(root + parent)
		for _, d := range dirs {
			_ = unix.Rmdir(d)
		}
	}()
	cg, err := createCgroup(p, linuxResources(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if !strings.Contains(string(b), p) {
		t.Errorf("process not in %s:\n%s", p, b)
	}
	// While it holds a process the cgroup stays; deleteCgroup retries until
	// the process is gone.
	go func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := deleteCgroup(p); err != nil {
		t.Fatal(err)
	}
	if dirs, _ := filepath.Glob(root + p); len(dirs) != 0 {
		t.Errorf("left %v", dirs)
	}
	if err := deleteCgroup(p); err != nil {
		t.Errorf("deleting a deleted cgroup: %v", err)
	}
}

func TestCgroupV1OrCurrent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := "/sys/fs/cgroup/*"
	if unified() {
		root = "/sys/fs/cgroup"
	}
	testCgroup(t, root)
}

// TestCgroupV2OnHybrid drives the cgroup v2 code on the cgroup2 mount of a
// hybrid node (no controllers there, so no limits, but create, add and delete).
func TestCgroupV2OnHybrid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if unified() {
		t.Skip("cgroup v2 node: covered by TestCgroupV1OrCurrent")
	}
	const mnt = "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skip("no cgroup2 mount at " + mnt)
	}
	oldMount, oldUnified := v2Mount, unified
	v2Mount, unified = mnt, func() bool { return true }
	defer func() { v2Mount, unified = oldMount, oldUnified }()
	testCgroup(t, mnt)
}

func TestCgroupfsDriverRefusesDotDot(t *testing.T) {
	for _, p := range []string{"/kubepods/../../x", "../..", "/berth/.."} {
		if got, err := (cgroupfsDriver{}).PodCgroup(p, "abc"); err == nil {
			t.Errorf("parent %q gave %q", p, got)
		}
	}
	if got, err := (cgroupfsDriver{}).PodCgroup("/kubepods/pod1", "abc"); err != nil || got != "/kubepods/pod1/berth-abc" {
		t.Errorf("got %q, %v", got, err)
	}
}
